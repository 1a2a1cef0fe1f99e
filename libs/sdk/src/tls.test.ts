import { tlsCredentials } from './tls';

describe('tlsCredentials', () => {
  it('is TLS trusting the system roots with no files', () => {
    expect(tlsCredentials()._isSecure()).toBe(true);
  });

  it('names a file it cannot read', () => {
    expect(() => tlsCredentials({ ca: '/nonexistent/ca.pem' })).toThrow('cannot read the TLS CA /nonexistent/ca.pem');
  });

  it('refuses a client certificate without its key, and a key without its certificate', () => {
    expect(() => tlsCredentials({ cert: 'c.pem' })).toThrow('needs its private key');
    expect(() => tlsCredentials({ key: 'k.pem' })).toThrow('needs its private key');
  });
});
