import { internalAddressReason, ipv6Bytes } from './internal-addresses';

describe('internalAddressReason', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.0.0.1', 'private (RFC 1918)'],
    ['172.16.0.1', 'private (RFC 1918)'],
    ['172.31.255.255', 'private (RFC 1918)'],
    ['192.168.1.1', 'private (RFC 1918)'],
    ['100.64.0.1', 'carrier-grade NAT (100.64.0.0/10)'],
    ['100.127.255.255', 'carrier-grade NAT (100.64.0.0/10)'],
    ['169.254.1.1', 'link-local'],
    ['169.254.169.254', 'a cloud metadata address'],
    ['168.63.129.16', 'a cloud metadata address'],
    ['0.0.0.0', 'unspecified (0.0.0.0/8, "this host")'],
    ['255.255.255.255', 'reserved (240.0.0.0/4, broadcast included)'],
    ['224.0.0.1', 'multicast'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['febf:ffff::1', 'link-local'],
    ['fc00::1', 'unique-local (fc00::/7)'],
    ['fd12:3456::1', 'unique-local (fc00::/7)'],
    ['fd00:ec2::254', 'a cloud metadata address'],
    ['ff02::1', 'multicast'],
  ])('refuses %s as %s', (address, reason) => {
    expect(internalAddressReason(address)).toBe(reason);
  });

  it.each([
    ['::ffff:127.0.0.1', 'loopback (the IPv4-mapped form of 127.0.0.1)'],
    ['::ffff:7f00:1', 'loopback (the IPv4-mapped form of 127.0.0.1)'],
    ['::ffff:a9fe:a9fe', 'a cloud metadata address (the IPv4-mapped form of 169.254.169.254)'],
    ['::ffff:10.1.2.3', 'private (RFC 1918) (the IPv4-mapped form of 10.1.2.3)'],
    ['::127.0.0.1', 'loopback (the IPv4-compatible form of 127.0.0.1)'],
    ['64:ff9b::a00:1', 'private (RFC 1918) (the NAT64 form of 10.0.0.1)'],
    ['2002:7f00:1::1', 'loopback (the 6to4 form of 127.0.0.1)'],
  ])('judges the IPv6 form %s by the IPv4 address it carries', (address, reason) => {
    expect(internalAddressReason(address)).toBe(reason);
  });

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '169.253.255.255', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808'])(
    'lets the public address %s through',
    (address) => {
      expect(internalAddressReason(address)).toBeUndefined();
    },
  );

  it.each(['http://2130706433/', 'http://127.1/', 'http://0x7f.1/', 'http://0177.0.0.1/', 'http://[::ffff:127.0.0.1]/', 'http://[0:0:0:0:0:0:0:1]/'])(
    'refuses the numeric host of %s, which the URL parser turns into a loopback address',
    (url) => {
      expect(internalAddressReason(new URL(url).hostname)).toMatch(/^loopback/);
    },
  );

  it('refuses what is not an IP address at all', () => {
    expect(internalAddressReason('localhost')).toBe('not an IP address');
  });
});

describe('ipv6Bytes', () => {
  it('expands ::, leading and trailing groups, and a dotted IPv4 tail', () => {
    expect(Array.from(ipv6Bytes('::1'))).toEqual([...Array<number>(15).fill(0), 1]);
    expect(Array.from(ipv6Bytes('fe80::'))).toEqual([0xfe, 0x80, ...Array<number>(14).fill(0)]);
    expect(Array.from(ipv6Bytes('::ffff:1.2.3.4'))).toEqual([...Array<number>(10).fill(0), 0xff, 0xff, 1, 2, 3, 4]);
    expect(Array.from(ipv6Bytes('1:2:3:4:5:6:7:8'))).toEqual([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
  });
});
