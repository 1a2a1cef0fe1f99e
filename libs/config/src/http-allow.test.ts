import { parseConfig } from './config-file';
import { parseHttpAllowDestination, queueGlobMatches } from './http-allow';

describe('parseHttpAllowDestination', () => {
  it.each([
    ['vault.internal', { kind: 'host', host: 'vault.internal' }],
    ['Vault.Internal.:8200', { kind: 'host', host: 'vault.internal', port: 8200 }],
    ['localhost:9464', { kind: 'host', host: 'localhost', port: 9464 }],
    ['10.0.5.7', { kind: 'network', address: '10.0.5.7', prefix: 32, family: 'ipv4' }],
    ['10.0.5.7:8080', { kind: 'network', address: '10.0.5.7', prefix: 32, family: 'ipv4', port: 8080 }],
    ['127.1:80', { kind: 'network', address: '127.0.0.1', prefix: 32, family: 'ipv4', port: 80 }],
    ['fd00::7', { kind: 'network', address: 'fd00::7', prefix: 128, family: 'ipv6' }],
    ['[FD00::7]:8080', { kind: 'network', address: 'fd00::7', prefix: 128, family: 'ipv6', port: 8080 }],
    ['192.168.10.0/24', { kind: 'network', address: '192.168.10.0', prefix: 24, family: 'ipv4' }],
    ['fd00:1::/64', { kind: 'network', address: 'fd00:1::', prefix: 64, family: 'ipv6' }],
  ])('reads %s', (text, expected) => {
    expect(parseHttpAllowDestination(text)).toEqual({ text, ...expected });
  });

  it.each(['', 'http://vault.internal', 'user@vault.internal', 'vault.internal:0', 'vault.internal:70000', '10.0.0.0/33', 'fd00::/129', 'vault.internal/24', 'a:b:c', '[vault]:80', 'host name'])(
    'refuses %j',
    (text) => {
      expect(parseHttpAllowDestination(text)).toBeUndefined();
    },
  );
});

describe('queueGlobMatches', () => {
  it('matches names exactly, * as any characters, and nothing else as a pattern', () => {
    expect(queueGlobMatches('billing', 'billing')).toBe(true);
    expect(queueGlobMatches('billing', 'billing-eu')).toBe(false);
    expect(queueGlobMatches('hooks-*', 'hooks-eu')).toBe(true);
    expect(queueGlobMatches('hooks-*', 'hooks')).toBe(false);
    expect(queueGlobMatches('*', 'anything.at-all')).toBe(true);
    expect(queueGlobMatches('a.b', 'aXb')).toBe(false);
  });
});

describe('processors.http_request in the config file', () => {
  it('reads the caps and the allow-list rules', () => {
    const { processors } = parseConfig(
      `processors:
  http_request:
    max_redirects: 2
    max_response_bytes: 65536
    allow:
      - queues: [billing, "hooks-*"]
        to: [10.0.5.7:8080, vault.internal, 192.168.10.0/24]
`,
      'jobmesh.config.yaml',
    );
    expect(processors.http_request).toEqual({
      max_redirects: 2,
      max_response_bytes: 65536,
      allow: [
        {
          queues: ['billing', 'hooks-*'],
          to: [
            { text: '10.0.5.7:8080', kind: 'network', address: '10.0.5.7', prefix: 32, family: 'ipv4', port: 8080 },
            { text: 'vault.internal', kind: 'host', host: 'vault.internal' },
            { text: '192.168.10.0/24', kind: 'network', address: '192.168.10.0', prefix: 24, family: 'ipv4' },
          ],
        },
      ],
    });
  });

  it('leaves it unset when the file does not mention it', () => {
    expect(parseConfig('queues: []', 'jobmesh.config.yaml').processors.http_request).toBeUndefined();
  });

  it('refuses a destination it cannot read, naming where it is and the forms it takes', () => {
    expect(() => parseConfig(`processors:\n  http_request:\n    allow:\n      - { queues: ["*"], to: ["http://10.0.0.1/"] }\n`, 'jobmesh.config.yaml')).toThrow(
      /processors\.http_request\.allow\.0\.to\.0.*"http:\/\/10\.0\.0\.1\/" is not a host, host:port, IP address, IP:port \(\[IPv6\]:port\) or CIDR network/,
    );
  });

  it('refuses a rule without queues, a bad queue glob, and an unknown key', () => {
    expect(() => parseConfig(`processors:\n  http_request:\n    allow:\n      - { queues: [], to: [10.0.0.1] }\n`)).toThrow(/allow\.0\.queues/);
    expect(() => parseConfig(`processors:\n  http_request:\n    allow:\n      - { queues: ["a b"], to: [10.0.0.1] }\n`)).toThrow(/must be a queue name/);
    expect(() => parseConfig(`processors:\n  http_request:\n    allowed: []\n`)).toThrow(/processors\.http_request/);
  });
});
