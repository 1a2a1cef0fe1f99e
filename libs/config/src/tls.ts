import { type CommonEnv, splitHostPort } from './env';
import { ConfigError } from './load';

/** The PEM files a gRPC server serves TLS with. */
export interface ServerTlsFiles {
  certFile: string;
  keyFile: string;
  /** With it, client certificates signed by this CA are required (mTLS). */
  clientCaFile?: string;
}

/** The PEM files a gRPC client dials TLS with. */
export interface ClientTlsFiles {
  /** Trusted CA bundle; unset: the system's roots. */
  caFile?: string;
  /** Client certificate and key, presented for mTLS. */
  certFile?: string;
  keyFile?: string;
}

export interface TlsSettings {
  /** Unset: the gRPC servers are plaintext. */
  server?: ServerTlsFiles;
  /**
   * Unset: inter-service clients are plaintext. Set when any of JOBMESH_TLS_CA,
   * JOBMESH_TLS_CLIENT_CERT or JOBMESH_TLS_CERT is: a process that serves TLS dials TLS too.
   */
  client?: ClientTlsFiles;
  /** How often the server's files are checked for a change, ms. */
  reloadMs: number;
  /** The ops HTTP server serves HTTPS with the server's certificate. */
  http: boolean;
}

type TlsEnv = Pick<
  CommonEnv,
  | 'JOBMESH_TLS_CERT'
  | 'JOBMESH_TLS_KEY'
  | 'JOBMESH_TLS_CLIENT_CA'
  | 'JOBMESH_TLS_CA'
  | 'JOBMESH_TLS_CLIENT_CERT'
  | 'JOBMESH_TLS_CLIENT_KEY'
  | 'JOBMESH_TLS_RELOAD_INTERVAL'
  | 'JOBMESH_HTTP_TLS'
>;

/**
 * The TLS settings of a parsed env. Throws ConfigError, naming every problem, for settings that
 * only make sense together: a certificate without its key (or the reverse), a client CA or HTTPS
 * without a server certificate.
 */
export function tlsSettings(env: TlsEnv): TlsSettings {
  const issues: string[] = [];
  const pair = (cert: keyof TlsEnv, key: keyof TlsEnv): void => {
    if (Boolean(env[cert]) !== Boolean(env[key])) {
      issues.push(`${env[cert] ? cert : key} is set without ${env[cert] ? key : cert}: set both (a PEM certificate and its private key) or neither`);
    }
  };
  pair('JOBMESH_TLS_CERT', 'JOBMESH_TLS_KEY');
  pair('JOBMESH_TLS_CLIENT_CERT', 'JOBMESH_TLS_CLIENT_KEY');
  const serving = Boolean(env.JOBMESH_TLS_CERT && env.JOBMESH_TLS_KEY);
  if (env.JOBMESH_TLS_CLIENT_CA && !serving) issues.push('JOBMESH_TLS_CLIENT_CA requires client certificates over TLS: set JOBMESH_TLS_CERT and JOBMESH_TLS_KEY too');
  if (env.JOBMESH_HTTP_TLS && !serving) issues.push('JOBMESH_HTTP_TLS serves HTTPS with the gRPC certificate: set JOBMESH_TLS_CERT and JOBMESH_TLS_KEY too');
  if (issues.length) throw new ConfigError(issues);
  const server = serving ? { certFile: env.JOBMESH_TLS_CERT!, keyFile: env.JOBMESH_TLS_KEY!, clientCaFile: env.JOBMESH_TLS_CLIENT_CA } : undefined;
  const dialsTls = Boolean(env.JOBMESH_TLS_CA || env.JOBMESH_TLS_CLIENT_CERT || serving);
  const client = dialsTls ? { caFile: env.JOBMESH_TLS_CA, certFile: env.JOBMESH_TLS_CLIENT_CERT, keyFile: env.JOBMESH_TLS_CLIENT_KEY } : undefined;
  return { server, client, reloadMs: env.JOBMESH_TLS_RELOAD_INTERVAL, http: env.JOBMESH_HTTP_TLS };
}

/** True for 127.0.0.0/8, ::1 and localhost: an address only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}

/**
 * Production mode's TLS check: the paragraph to refuse a start with, when the gRPC address can be
 * reached from other machines and nothing encrypts it; undefined when the start is safe.
 */
export function plaintextExposure(env: Pick<CommonEnv, 'JOBMESH_MODE' | 'JOBMESH_GRPC_ADDRESS'>, tls: TlsSettings): string | undefined {
  if (env.JOBMESH_MODE !== 'production' || tls.server) return undefined;
  const { host } = splitHostPort(env.JOBMESH_GRPC_ADDRESS);
  if (isLoopbackHost(host)) return undefined;
  return (
    `Refusing to start in production mode: gRPC would listen on ${env.JOBMESH_GRPC_ADDRESS}, which other machines can reach, ` +
    'without TLS, so API keys, job payloads and results would cross the network in clear. Set JOBMESH_TLS_CERT and ' +
    'JOBMESH_TLS_KEY (PEM files; add JOBMESH_TLS_CLIENT_CA to require client certificates), or listen on a loopback ' +
    'address (127.0.0.1) behind a TLS-terminating proxy, or leave production mode (JOBMESH_MODE=development).'
  );
}
