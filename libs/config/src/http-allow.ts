import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * One destination a queue's `http.request` jobs may reach in production mode although it is
 * internal (loopback, private, link-local, …). Written as text in the config file:
 * - `vault.internal` or `vault.internal:8200`: a host name (as in the URL), on any port or one;
 * - `10.0.5.7`, `10.0.5.7:8080`, `fd00::7`, `[fd00::7]:8080`: one address, on any port or one;
 * - `192.168.10.0/24`, `fd00:1::/64`: a network (CIDR), any port.
 * Host names are compared the way the URL spells them after normalising (lower case, IDN in
 * punycode, no trailing dot); a host name entry opens whatever that name resolves to.
 */
export type HttpAllowDestination =
  | { text: string; kind: 'host'; host: string; port?: number }
  | { text: string; kind: 'network'; address: string; prefix: number; family: 'ipv4' | 'ipv6'; port?: number };

/** Parses one allow-list entry; undefined when it is none of the forms above. */
export function parseHttpAllowDestination(text: string): HttpAllowDestination | undefined {
  const v = text.trim();
  if (v.includes('/')) {
    const m = /^\[?([0-9A-Fa-f:.]+)\]?\/(\d{1,3})$/.exec(v);
    const family = m ? isIP(m[1]!) : 0;
    if (!m || family === 0) return undefined;
    const prefix = Number(m[2]);
    if (prefix > (family === 4 ? 32 : 128)) return undefined;
    return { text: v, kind: 'network', address: m[1]!.toLowerCase(), prefix, family: family === 4 ? 'ipv4' : 'ipv6' };
  }
  let host: string;
  let port: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(v);
  const hostPort = /^([^:[\]]+):(\d{1,5})$/.exec(v);
  if (bracketed && isIP(bracketed[1]!) !== 6) return undefined;
  if (bracketed) [host, port] = [bracketed[1]!, bracketed[2]];
  else if (hostPort) [host, port] = [hostPort[1]!, hostPort[2]];
  else if (!v.includes(':') || isIP(v) === 6) host = v;
  else return undefined;
  const portNumber = port === undefined ? undefined : Number(port);
  if (portNumber !== undefined && (portNumber < 1 || portNumber > 65_535)) return undefined;
  if (isIP(host) === 6) return { text: v, kind: 'network', address: host.toLowerCase(), prefix: 128, family: 'ipv6', ...(portNumber !== undefined && { port: portNumber }) };
  if (host === '' || /[\s@/?#\\%]/.test(host)) return undefined;
  // The URL parser normalises the name as it does the job's URL: 127.1 and 2130706433 become
  // 127.0.0.1, upper case and IDN become lower-case punycode.
  let normal: string;
  try {
    normal = new URL(`http://${host}/`).hostname.replace(/\.$/, '');
  } catch {
    return undefined;
  }
  if (normal === '') return undefined;
  if (isIP(normal) === 4) return { text: v, kind: 'network', address: normal, prefix: 32, family: 'ipv4', ...(portNumber !== undefined && { port: portNumber }) };
  return { text: v, kind: 'host', host: normal, ...(portNumber !== undefined && { port: portNumber }) };
}

const destination = z.string().transform((v, ctx) => {
  const parsed = parseHttpAllowDestination(v);
  if (!parsed) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a host, host:port, IP address, IP:port ([IPv6]:port) or CIDR network` });
    return z.NEVER;
  }
  return parsed;
});

/** Queue names, where `*` stands for any characters: `billing`, `hooks-*`, `*`. */
const queueGlob = z.string().regex(/^[A-Za-z0-9._*-]{1,100}$/, 'must be a queue name, where * matches any characters');

/** `processors.http_request` of the config file. */
export const httpRequestSettingsSchema = z.strictObject({
  /** Redirects followed per attempt before the job fails. @default 5 */
  max_redirects: z.number().int().min(0).max(20).optional(),
  /** Largest response body read; past it the job fails. @default 1048576 (1 MiB) */
  max_response_bytes: z.number().int().min(1).optional(),
  /**
   * What production mode's refusal of internal destinations lets through, per queue. Each rule
   * opens its `to` destinations for the queues its `queues` name; rules add up.
   */
  allow: z.array(z.strictObject({ queues: z.array(queueGlob).min(1), to: z.array(destination).min(1) })).default([]),
});

export type HttpRequestSettingsConfig = z.infer<typeof httpRequestSettingsSchema>;
export type HttpAllowRule = HttpRequestSettingsConfig['allow'][number];

/** Whether a rule's queue glob names `queue`. */
export function queueGlobMatches(glob: string, queue: string): boolean {
  const re = new RegExp(`^${glob.split('*').map((s) => s.replace(/[.\-]/g, '\\$&')).join('.*')}$`);
  return re.test(queue);
}
