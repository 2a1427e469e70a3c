// The console's colours, read from its stylesheet: every text colour with each background it is
// shown on has a contrast ratio of at least 4.5:1 (WCAG 2.1 SC 1.4.3), and the focus ring and
// the text fields' border at least 3:1 against what surrounds them (SC 1.4.11). No browser:
// the pairs below say where each colour sits, and every colour the stylesheet gives text or a
// background must be in one of them.
import { describe, expect, it } from 'vitest';
import { CONSOLE_CSS } from '../emulator/console/assets.js';

/** WCAG 2.1 relative luminance of #rgb or #rrggbb: https://www.w3.org/TR/WCAG21/#dfn-relative-luminance */
function luminance(hex: string): number {
  const digits = hex.length === 4 ? [...hex.slice(1)].map((d) => d + d).join('') : hex.slice(1);
  const [r, g, b] = [0, 2, 4].map((i) => {
    const c = Number.parseInt(digits.slice(i, i + 2), 16) / 255;
    // WCAG 2.2 says 0.04045 (sRGB's own figure): no 8-bit channel lies between the two.
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  }) as [number, number, number];
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** (L1 + 0.05) / (L2 + 0.05), L1 the lighter: https://www.w3.org/TR/WCAG21/#dfn-contrast-ratio */
function contrast(a: string, b: string): number {
  const [lighter, darker] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (lighter + 0.05) / (darker + 0.05);
}

interface Rule {
  selectors: string[];
  declarations: Map<string, string>;
}

/** The stylesheet's rules (it has no at-rules and no nesting). */
const RULES: Rule[] = [...CONSOLE_CSS.matchAll(/([^{}]+)\{([^}]*)\}/g)].map(([, selectors, body]) => ({
  selectors: selectors!.split(',').map((s) => s.trim()),
  declarations: new Map(
    body!
      .split(';')
      .filter((d) => d.includes(':'))
      .map((d) => [d.slice(0, d.indexOf(':')).trim(), d.slice(d.indexOf(':') + 1).trim()] as [string, string]),
  ),
}));

/** The colour a rule for `selector` gives `property` (a custom property resolved from :root). */
function colour(selector: string, property: string): string {
  const rule = RULES.filter((r) => r.selectors.includes(selector) && r.declarations.has(property)).at(-1);
  const token = rule?.declarations.get(property)?.match(/var\((--[\w-]+)\)|#[0-9a-f]{6}\b|#[0-9a-f]{3}\b/i);
  if (!token) throw new Error(`${selector} has no colour for ${property}`);
  if (token[1] === undefined) return token[0];
  return colour(':root', token[1]);
}

type Place = [selector: string, property: string];
const PAGE: Place = ['body', 'background'];
const PANEL: Place = ['.card', 'background'];
const HEADER: Place = ['header', 'background'];

/** [what, its text colour, the background it is on]. */
const TEXT: Array<[string, Place, Place]> = [
  ['text', ['body', 'color'], PAGE],
  ['text in a form card', ['body', 'color'], PANEL],
  ['preformatted text', ['body', 'color'], ['pre', 'background']],
  ['table headings', ['body', 'color'], ['thead th', 'background']],
  ['what is typed in a field', ['textarea', 'color'], ['textarea', 'background']],
  ['the header', ['header', 'color'], HEADER],
  ['the header links', ['header a', 'color'], HEADER],
  ['links', ['a', 'color'], PAGE],
  ['links in a form card (Cancel)', ['a', 'color'], PANEL],
  ['buttons (Sign out in the header too)', ['button', 'color'], ['button', 'background']],
  ['secondary buttons (Show keys)', ['button.secondary', 'color'], ['button.secondary', 'background']],
  ['delete buttons', ['button', 'color'], ['button.danger', 'background']],
  ['hints', ['.hint', 'color'], PAGE],
  ['hints in a form card', ['.hint', 'color'], PANEL],
  ['errors (a registration record)', ['.error', 'color'], PAGE],
  ['errors next to a field', ['.error', 'color'], PANEL],
  ['an error line after a change', ['.error', 'color'], ['.flash.error', 'background']],
  ['a line after a change', ['body', 'color'], ['.flash', 'background']],
  ['badges', ['body', 'color'], ['.badge', 'background']],
  ['online badges', ['.badge.ok', 'color'], ['.badge', 'background']],
  ['out of date badges', ['.badge.warn', 'color'], ['.badge', 'background']],
  ['the skip link when focused', ['.skip:focus', 'color'], ['.skip:focus', 'background']],
  ['event times', ['ol.events time', 'color'], PAGE],
  ['chart labels', ['.chart text', 'fill'], PAGE],
];

/** [what, its colour, what surrounds it]. */
const NON_TEXT: Array<[string, Place, Place]> = [
  ['the focus ring on the page', ['a:focus-visible', 'outline'], PAGE],
  ['the focus ring in a form card', ['a:focus-visible', 'outline'], PANEL],
  ['the focus ring in the header', ['a:focus-visible', 'outline'], HEADER],
  ['a text field on the page (Sign in)', ['textarea', 'border'], PAGE],
  ['a text field in a form card', ['textarea', 'border'], PANEL],
];

/** Graphics, not text: the legend's swatches and the charts' bars (the tables beside them give the figures). */
const GRAPHICS = /::before$|^\.chart \.(devices|weight)$|^\.series-/;

describe('the contrast ratio (WCAG 2.1)', () => {
  // The W3C's ACT rule "Text has minimum contrast" (https://www.w3.org/WAI/standards-guidelines/act/rules/afw4f7/),
  // its test cases' ratios, which it gives cut to one or two decimals.
  it.each([
    ['#000', '#fff', 21],
    ['#333', '#fff', 12.6], // Passed Example 1
    ['#0000ee', '#fff', 9.39], // Passed Example 10, the default link colour
    ['#000', '#666', 3.6], // Passed Example 5
    ['#aaa', '#fff', 2.3], // Failed Example 1
  ])('%s on %s is %s:1', (text, background, ratio) => {
    const places = 10 ** (String(ratio).split('.')[1]?.length ?? 0);
    expect(Math.floor(contrast(text, background) * places) / places).toBe(ratio);
    expect(contrast(background, text)).toBe(contrast(text, background));
  });
});

describe('the console stylesheet', () => {
  it.each(TEXT)('%s: at least 4.5:1', (_, text, background) => {
    expect(contrast(colour(...text), colour(...background))).toBeGreaterThanOrEqual(4.5);
  });

  it.each(NON_TEXT)('%s: at least 3:1', (_, part, around) => {
    expect(contrast(colour(...part), colour(...around))).toBeGreaterThanOrEqual(3);
  });

  it('gives no text or background a colour that is not in a pair above', () => {
    const checked = new Set(TEXT.flatMap(([, text, background]) => [text.join(' '), background.join(' ')]));
    const unchecked = RULES.flatMap((rule) =>
      [...rule.declarations.keys()]
        .filter((property) => ['color', 'background', 'fill'].includes(property))
        .filter((property) => !rule.selectors.some((s) => GRAPHICS.test(s) || checked.has(`${s} ${property}`)))
        .map((property) => `${rule.selectors.join(',')} ${property}`),
    );
    expect(unchecked).toEqual([]);
  });
});
