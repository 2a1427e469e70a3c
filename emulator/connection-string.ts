// The one parser of 'HostName=<host>;SharedAccessKeyName=<name>;SharedAccessKey=<key>', the
// connection strings of IoT Hub and DPS shared access policies: the emulator reads linked hubs'
// (validation.ts), the CLI's service client its own. Field names are case-insensitive, empty
// parts are skipped, values are trimmed. What each caller then requires of the host name (a port
// or not) and of the key is its own; the message never repeats the text, which holds a key.

export interface ConnectionStringFields {
  hostName: string;
  sharedAccessKeyName: string;
  sharedAccessKey: string;
}

/** The three fields, or why the text is not a connection string ("has a part that is not 'Name=value'", "lacks HostName"). */
export function splitConnectionString(text: string): ConnectionStringFields | { problem: string } {
  const fields = new Map<string, string>();
  for (const part of text.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) return { problem: "has a part that is not 'Name=value'" };
    fields.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  const hostName = fields.get('hostname') ?? '';
  const sharedAccessKeyName = fields.get('sharedaccesskeyname') ?? '';
  const sharedAccessKey = fields.get('sharedaccesskey') ?? '';
  const missing = [!hostName && 'HostName', !sharedAccessKeyName && 'SharedAccessKeyName', !sharedAccessKey && 'SharedAccessKey'].filter(
    Boolean,
  );
  if (missing.length > 0) return { problem: `lacks ${missing.join(', ')}` };
  return { hostName, sharedAccessKeyName, sharedAccessKey };
}
