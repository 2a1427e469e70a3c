// Text from elsewhere (a DPS answer, a device, a stored record) made safe to print: a terminal or
// a log reader acts on control characters instead of showing them (an escape sequence repaints
// the screen, a newline forges a line, a carriage return overwrites one, a bidi override reorders
// what is read). Pure ES2022: the firmware traces with it as the Node host prints with it.

/**
 * What must not reach a terminal or a log raw: the C0 controls, DEL and the C1 controls
 * (U+0000-U+001F, U+007F-U+009F), the bidi marks, embeddings, overrides and isolates (U+061C,
 * U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) and the line and paragraph separators (U+2028,
 * U+2029).
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/**
 * `text` with each of those characters replaced by a visible escape: `\n`, `\r`, `\t`, or `\u`
 * and four hex digits (`\u001b` for ESC, `\u2028`, `\u202e`). The escapes are JSON's, so a JSON
 * text keeps its meaning line by line. Other characters, backslashes included, stay as they are:
 * the result is for reading, not for parsing back. Idempotent.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}
