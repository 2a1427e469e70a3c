// Which proxy a wss:// connection goes through, from the environment as curl reads it:
//   HTTPS_PROXY (or https_proxy, then ALL_PROXY / all_proxy): the proxy's URL; a bare host:port
//     is taken as http://host:port.
//   NO_PROXY (or no_proxy): comma- or space-separated names that go direct: `*` for all; a name
//     matches itself and its subdomains (`azure-devices.net` and `.azure-devices.net` both match
//     `hub.azure-devices.net`); an IP address matches itself; `name:port` only that port.
// Loopback names are not exempt by themselves: list them in NO_PROXY (curl does the same).

export type ProxyFor = (url: string) => string | undefined;

export function proxyFromEnv(env: Record<string, string | undefined>): ProxyFor {
  const proxy = [env.HTTPS_PROXY, env.https_proxy, env.ALL_PROXY, env.all_proxy].find((value) => value?.trim())?.trim();
  const exempt = (env.NO_PROXY ?? env.no_proxy ?? '')
    .split(/[\s,]+/)
    .map((entry) => entry.trim().toLowerCase())
    .filter((entry) => entry !== '');
  return (url) => {
    if (!proxy) return undefined;
    const target = new URL(url);
    const host = target.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    const port = target.port || (target.protocol === 'wss:' || target.protocol === 'https:' ? '443' : '80');
    const bypass = exempt.some((entry) => {
      if (entry === '*') return true;
      const { name, port: entryPort } = parseEntry(entry);
      if (entryPort !== undefined && entryPort !== port) return false;
      const bare = name.replace(/^\*?\./, '');
      return host === bare || host.endsWith(`.${bare}`);
    });
    if (bypass) return undefined;
    return /^[a-z][a-z0-9+.-]*:\/\//i.test(proxy) ? proxy : `http://${proxy}`;
  };
}

/** `name`, `name:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address (no port). */
function parseEntry(entry: string): { name: string; port?: string } {
  const bracketed = /^\[([^\]]*)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return { name: bracketed[1]!, ...(bracketed[2] !== undefined && { port: bracketed[2] }) };
  const colon = entry.indexOf(':');
  if (colon !== -1 && colon === entry.lastIndexOf(':') && /^\d+$/.test(entry.slice(colon + 1))) {
    return { name: entry.slice(0, colon), port: entry.slice(colon + 1) };
  }
  return { name: entry };
}
