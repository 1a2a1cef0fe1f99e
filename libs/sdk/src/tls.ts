import { readFileSync } from 'node:fs';
import { type ChannelCredentials, credentials } from '@grpc/grpc-js';

/** PEM files a client dials TLS with. */
export interface TlsFiles {
  /** CA bundle the server's certificate must chain to. Unset: the system's roots. */
  ca?: string;
  /** Client certificate presented to a server that requires one (mTLS); needs `key`. */
  cert?: string;
  /** Private key of `cert`. */
  key?: string;
}

/**
 * TLS channel credentials from PEM files, for JobmeshClient, RemoteWorker or any generated client
 * (`credentials: tlsCredentials({ ca: 'ca.pem', cert: 'client.pem', key: 'client-key.pem' })`).
 * The files are read once, now; a missing file or a certificate without its key throws, naming
 * it. A client made later reads them again, so a long-running process picks up rotated client
 * certificates with its next client.
 */
export function tlsCredentials(files: TlsFiles = {}): ChannelCredentials {
  if (Boolean(files.cert) !== Boolean(files.key)) throw new TypeError('a TLS client certificate needs its private key, and a key its certificate: give both or neither');
  const read = (what: string, path: string | undefined): Buffer | null => {
    if (!path) return null;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`cannot read the TLS ${what} ${path}: ${(err as Error).message}`);
    }
  };
  return credentials.createSsl(read('CA', files.ca), read('client key', files.key), read('client certificate', files.cert));
}
