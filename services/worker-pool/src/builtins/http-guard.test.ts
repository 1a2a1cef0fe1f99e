import { type HttpAllowDestination, parseHttpAllowDestination } from '@jobmesh/config';
import { refusalReason } from './http-guard';

const allow = (...texts: string[]): HttpAllowDestination[] => texts.map((t) => parseHttpAllowDestination(t)!);

describe('refusalReason', () => {
  it('lets public addresses through with or without an allow-list', () => {
    expect(refusalReason('example.com', 443, '93.184.215.14', [])).toBeUndefined();
    expect(refusalReason('example.com', 443, '2606:2800:21f:cb07:6820:80da:af6b:8b2c', allow('10.0.0.0/8'))).toBeUndefined();
  });

  it('names the host, the address it resolved to, why it is refused and the entry that would permit it', () => {
    expect(refusalReason('db.internal', 5432, '10.1.2.3', [])).toBe(
      'db.internal resolves to 10.1.2.3, which is private (RFC 1918); add "db.internal:5432" to processors.http_request.allow to permit it',
    );
    expect(refusalReason('::1', 80, '::1', [])).toBe('::1 is loopback; add "[::1]:80" to processors.http_request.allow to permit it');
  });

  it('opens a host name entry for what that name resolves to, on its port if it names one', () => {
    expect(refusalReason('vault.internal', 8200, '10.0.0.5', allow('vault.internal'))).toBeUndefined();
    expect(refusalReason('Vault.Internal.', 8200, '10.0.0.5', allow('vault.internal:8200'))).toBeUndefined();
    expect(refusalReason('vault.internal', 8201, '10.0.0.5', allow('vault.internal:8200'))).toMatch(/^vault\.internal resolves to 10\.0\.0\.5/);
    expect(refusalReason('other.internal', 8200, '10.0.0.5', allow('vault.internal'))).toMatch(/^other\.internal resolves to 10\.0\.0\.5/);
  });

  it('opens an address or network entry for any name resolving into it', () => {
    expect(refusalReason('a.internal', 80, '192.168.10.7', allow('192.168.10.0/24'))).toBeUndefined();
    expect(refusalReason('a.internal', 80, '192.168.11.7', allow('192.168.10.0/24'))).toMatch(/private/);
    expect(refusalReason('10.0.0.5', 8080, '10.0.0.5', allow('10.0.0.5:8080'))).toBeUndefined();
    expect(refusalReason('10.0.0.5', 8081, '10.0.0.5', allow('10.0.0.5:8080'))).toMatch(/^10\.0\.0\.5 is private/);
    expect(refusalReason('fd00::7', 443, 'fd00::7', allow('[fd00::7]:443'))).toBeUndefined();
    expect(refusalReason('169.254.169.254', 80, '169.254.169.254', allow('10.0.0.0/8'))).toMatch(/^169\.254\.169\.254 is a cloud metadata address/);
  });
});
