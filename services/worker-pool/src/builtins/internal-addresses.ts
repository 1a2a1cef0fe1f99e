import { BlockList, isIP } from 'node:net';

/**
 * The address ranges `http.request` refuses in production mode, each with the reason a refusal
 * gives. First match wins, so the single metadata addresses come before the ranges holding them.
 */
const RANGES: ReadonlyArray<readonly [reason: string, family: 'ipv4' | 'ipv6', network: string, prefix: number]> = [
  ['a cloud metadata address', 'ipv4', '169.254.169.254', 32], // AWS, GCP (metadata.google.internal), Azure, OpenStack
  ['a cloud metadata address', 'ipv4', '168.63.129.16', 32], // Azure WireServer, reachable from every VM
  ['a cloud metadata address', 'ipv6', 'fd00:ec2::254', 128], // AWS IMDS over IPv6
  ['loopback', 'ipv4', '127.0.0.0', 8],
  ['unspecified (0.0.0.0/8, "this host")', 'ipv4', '0.0.0.0', 8],
  ['private (RFC 1918)', 'ipv4', '10.0.0.0', 8],
  ['private (RFC 1918)', 'ipv4', '172.16.0.0', 12],
  ['private (RFC 1918)', 'ipv4', '192.168.0.0', 16],
  ['carrier-grade NAT (100.64.0.0/10)', 'ipv4', '100.64.0.0', 10],
  ['link-local', 'ipv4', '169.254.0.0', 16],
  ['reserved (IETF protocol assignments)', 'ipv4', '192.0.0.0', 24],
  ['reserved (benchmarking)', 'ipv4', '198.18.0.0', 15],
  ['multicast', 'ipv4', '224.0.0.0', 4],
  ['reserved (240.0.0.0/4, broadcast included)', 'ipv4', '240.0.0.0', 4],
  ['unspecified', 'ipv6', '::', 128],
  ['loopback', 'ipv6', '::1', 128],
  ['link-local', 'ipv6', 'fe80::', 10],
  ['unique-local (fc00::/7)', 'ipv6', 'fc00::', 7],
  ['site-local (deprecated, fec0::/10)', 'ipv6', 'fec0::', 10],
  ['multicast', 'ipv6', 'ff00::', 8],
  ['local-use NAT64 (64:ff9b:1::/48)', 'ipv6', '64:ff9b:1::', 48],
];

const LISTS = RANGES.map(([reason, family, network, prefix]) => {
  const list = new BlockList();
  list.addSubnet(network, prefix, family);
  return { reason, family, list };
});

/**
 * IPv6 forms that carry an IPv4 address, and where: a connection to one reaches (or may reach,
 * through a translator) that IPv4 address, so it is judged by it.
 */
const EMBEDDING: ReadonlyArray<{ form: string; matches: (b: Uint8Array) => boolean; at: number }> = [
  { form: 'IPv4-mapped', matches: (b) => b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff, at: 12 },
  { form: 'IPv4-compatible', matches: (b) => b.subarray(0, 12).every((x) => x === 0), at: 12 },
  { form: 'NAT64', matches: (b) => b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && b.subarray(4, 12).every((x) => x === 0), at: 12 },
  { form: '6to4', matches: (b) => b[0] === 0x20 && b[1] === 0x02, at: 2 },
];

/**
 * Why `address` (an IP address, v4 or v6) is internal, e.g. "loopback", or undefined when it is
 * not. IPv6 forms that embed an IPv4 address (::ffff:127.0.0.1, 64:ff9b::a00:1, 2002:7f00:1::)
 * are judged by that address. Anything that is not an IP address is refused as such.
 */
export function internalAddressReason(address: string): string | undefined {
  const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 0) return 'not an IP address';
  if (family === 6) {
    const bytes = ipv6Bytes(bare);
    // :: and ::1 first: they are IPv4-compatible in form only.
    const own = match(bare, 'ipv6');
    if (own) return own;
    for (const e of EMBEDDING) {
      if (!e.matches(bytes)) continue;
      const v4 = Array.from(bytes.subarray(e.at, e.at + 4)).join('.');
      const reason = match(v4, 'ipv4');
      return reason && `${reason} (the ${e.form} form of ${v4})`;
    }
    return undefined;
  }
  return match(bare, 'ipv4');
}

function match(address: string, family: 'ipv4' | 'ipv6'): string | undefined {
  return LISTS.find((l) => l.family === family && l.list.check(address, family))?.reason;
}

/** The 16 bytes of a valid IPv6 address (one that net.isIP accepts), a dotted IPv4 tail included. */
export function ipv6Bytes(address: string): Uint8Array {
  let text = address;
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const [a, b, c, d] = tail[1]!.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, tail.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const groups = (s: string | undefined): string[] => (s ? s.split(':') : []);
  const left = groups(head);
  const right = groups(rest);
  const all = rest === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    const n = parseInt(g, 16);
    bytes[i * 2] = n >> 8;
    bytes[i * 2 + 1] = n & 0xff;
  });
  return bytes;
}
