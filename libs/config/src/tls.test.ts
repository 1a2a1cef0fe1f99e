import { commonEnvSchema } from './env';
import { parseEnv } from './load';
import { isLoopbackHost, plaintextExposure, tlsSettings } from './tls';

const env = (vars: Record<string, string>) => parseEnv(commonEnvSchema, vars);

describe('tlsSettings', () => {
  it('is plaintext, server and clients, when nothing is set', () => {
    expect(tlsSettings(env({}))).toEqual({ server: undefined, client: undefined, reloadMs: 30_000, http: false });
  });

  it('serves TLS with a certificate and its key, and then dials TLS too (system roots without JOBMESH_TLS_CA)', () => {
    const t = tlsSettings(env({ JOBMESH_TLS_CERT: 'c.pem', JOBMESH_TLS_KEY: 'k.pem' }));
    expect(t.server).toEqual({ certFile: 'c.pem', keyFile: 'k.pem', clientCaFile: undefined });
    expect(t.client).toEqual({ caFile: undefined, certFile: undefined, keyFile: undefined });
  });

  it('requires client certificates with JOBMESH_TLS_CLIENT_CA, and dials with a client certificate', () => {
    const t = tlsSettings(
      env({ JOBMESH_TLS_CERT: 'c.pem', JOBMESH_TLS_KEY: 'k.pem', JOBMESH_TLS_CLIENT_CA: 'ca.pem', JOBMESH_TLS_CA: 'ca.pem', JOBMESH_TLS_CLIENT_CERT: 'cc.pem', JOBMESH_TLS_CLIENT_KEY: 'ck.pem' }),
    );
    expect(t.server?.clientCaFile).toBe('ca.pem');
    expect(t.client).toEqual({ caFile: 'ca.pem', certFile: 'cc.pem', keyFile: 'ck.pem' });
  });

  it('treats an empty value as unset', () => {
    expect(tlsSettings(env({ JOBMESH_TLS_CERT: '', JOBMESH_TLS_KEY: '' })).server).toBeUndefined();
  });

  it('refuses a certificate without its key, a key without its certificate, and a client certificate without its key', () => {
    expect(() => tlsSettings(env({ JOBMESH_TLS_CERT: 'c.pem' }))).toThrow('JOBMESH_TLS_CERT is set without JOBMESH_TLS_KEY');
    expect(() => tlsSettings(env({ JOBMESH_TLS_KEY: 'k.pem' }))).toThrow('JOBMESH_TLS_KEY is set without JOBMESH_TLS_CERT');
    expect(() => tlsSettings(env({ JOBMESH_TLS_CLIENT_CERT: 'c.pem' }))).toThrow('JOBMESH_TLS_CLIENT_CERT is set without JOBMESH_TLS_CLIENT_KEY');
  });

  it('refuses a client CA or HTTPS without a server certificate', () => {
    expect(() => tlsSettings(env({ JOBMESH_TLS_CLIENT_CA: 'ca.pem' }))).toThrow('JOBMESH_TLS_CLIENT_CA requires client certificates over TLS');
    expect(() => tlsSettings(env({ JOBMESH_HTTP_TLS: 'true' }))).toThrow('JOBMESH_HTTP_TLS serves HTTPS with the gRPC certificate');
  });
});

describe('plaintextExposure', () => {
  const check = (vars: Record<string, string>) => {
    const e = env(vars);
    return plaintextExposure(e, tlsSettings(e));
  };

  it('refuses production on a wildcard or another machine\'s address without TLS', () => {
    expect(check({ JOBMESH_MODE: 'production', JOBMESH_GRPC_ADDRESS: '0.0.0.0:50051' })).toMatch(/^Refusing to start in production mode: gRPC would listen on 0\.0\.0\.0:50051/);
    expect(check({ JOBMESH_MODE: 'production', JOBMESH_GRPC_ADDRESS: '[::]:50051' })).toBeDefined();
    expect(check({ JOBMESH_MODE: 'production', JOBMESH_GRPC_ADDRESS: '10.0.0.5:50051' })).toBeDefined();
  });

  it('allows production with TLS, production on loopback, and development anywhere', () => {
    expect(check({ JOBMESH_MODE: 'production', JOBMESH_GRPC_ADDRESS: '0.0.0.0:50051', JOBMESH_TLS_CERT: 'c', JOBMESH_TLS_KEY: 'k' })).toBeUndefined();
    expect(check({ JOBMESH_MODE: 'production', JOBMESH_GRPC_ADDRESS: '127.0.0.1:50051' })).toBeUndefined();
    expect(check({ JOBMESH_GRPC_ADDRESS: '0.0.0.0:50051' })).toBeUndefined();
  });
});

describe('isLoopbackHost', () => {
  it.each(['127.0.0.1', '127.1.2.3', '::1', 'localhost', 'LOCALHOST', 'api.localhost', '::ffff:127.0.0.1'])('%s is loopback', (h) => expect(isLoopbackHost(h)).toBe(true));
  it.each(['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '127.0.0.1.nip.io'])('%s is not', (h) => expect(isLoopbackHost(h)).toBe(false));
});
