import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext, rootCertificates } from 'node:tls';
import { type ChannelCredentials, credentials, experimental } from '@grpc/grpc-js';

/** PEM files a client dials TLS with. */
export interface TlsFiles {
  /** CA bundle the server's certificate must chain to. Unset: the system's roots. */
  ca?: string;
  /** Client certificate presented to a server that requires one (mTLS); needs `key`. */
  cert?: string;
  /** Private key of `cert`. */
  key?: string;
}

/** Reading the files again while the credentials are in use, so rotated certificates are picked up. */
export interface TlsReload {
  /** How often the files are read, while a channel uses the credentials. */
  intervalMs: number;
  /** A changed set of files was taken into use: new connections present and trust it. */
  onReload?: (files: TlsFiles) => void;
  /** The files changed but cannot be used (say, caught half-written): the set in use stays. */
  onError?: (err: Error) => void;
}

interface PemSet {
  ca: Buffer | null;
  cert: Buffer | null;
  key: Buffer | null;
}

function checkPair(files: TlsFiles): void {
  if (Boolean(files.cert) !== Boolean(files.key)) throw new TypeError('a TLS client certificate needs its private key, and a key its certificate: give both or neither');
}

/** Reads `files`, naming the one that cannot be read, and checks that the key matches the certificate. */
function readPemSet(files: TlsFiles, read: (path: string) => Buffer): PemSet {
  const one = (what: string, path: string | undefined): Buffer | null => {
    if (!path) return null;
    try {
      return read(path);
    } catch (err) {
      throw new Error(`cannot read the TLS ${what} ${path}: ${(err as Error).message}`);
    }
  };
  const set = { ca: one('CA', files.ca), cert: one('client certificate', files.cert), key: one('client key', files.key) };
  try {
    createSecureContext({ ca: set.ca ?? undefined, cert: set.cert ?? undefined, key: set.key ?? undefined });
  } catch (err) {
    throw new Error(`the TLS files ${[files.ca, files.cert, files.key].filter(Boolean).join(', ')} cannot be used: ${(err as Error).message}`);
  }
  return set;
}

/**
 * TLS channel credentials from PEM files, for JobmeshClient, RemoteWorker or any generated client
 * (`credentials: tlsCredentials({ ca: 'ca.pem', cert: 'client.pem', key: 'client-key.pem' })`).
 * The files are read now; a missing file or a certificate without its key throws, naming it.
 * Without `reload` they are read once. With it they are read again every `reload.intervalMs`
 * while a channel uses the credentials, and a changed set that checks out is used for new
 * connections: a long-running worker picks up a rotated client certificate or CA without a restart.
 */
export function tlsCredentials(files: TlsFiles = {}, reload?: TlsReload): ChannelCredentials {
  checkPair(files);
  const set = readPemSet(files, (p) => readFileSync(p));
  if (!reload) return credentials.createSsl(set.ca, set.key, set.cert);
  const provider = new ReloadingPemProvider(files, set, reload);
  return experimental.createCertificateProviderChannelCredentials(provider, files.cert ? provider : null);
}

type IdentityListener = Parameters<experimental.CertificateProvider['addIdentityCertificateListener']>[0];
type CaListener = Parameters<experimental.CertificateProvider['addCaCertificateListener']>[0];

/**
 * A grpc-js CertificateProvider over a client's PEM files. It polls them only while grpc-js
 * listens (a channel holds a connector made from the credentials), so credentials no channel uses
 * leave no timer behind. Without a CA file it trusts the system's roots, as createSsl does.
 */
class ReloadingPemProvider implements experimental.CertificateProvider {
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly caListeners = new Set<CaListener>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly files: TlsFiles,
    private current: PemSet,
    private readonly reload: TlsReload,
  ) {}

  /** Reads the files; resolves true when a changed set was taken into use. */
  async poll(): Promise<boolean> {
    if (this.polling) return false;
    this.polling = true;
    try {
      const raw = new Map<string, Buffer>();
      for (const path of [this.files.ca, this.files.cert, this.files.key]) if (path) raw.set(path, await readFile(path));
      const same = (path: string | undefined, b: Buffer | null): boolean => (path ? Boolean(b?.equals(raw.get(path)!)) : b === null);
      const c = this.current;
      if (same(this.files.ca, c.ca) && same(this.files.cert, c.cert) && same(this.files.key, c.key)) return false;
      this.current = readPemSet(this.files, (p) => raw.get(p)!);
      for (const l of this.caListeners) l(this.caUpdate());
      for (const l of this.identityListeners) l(this.identityUpdate());
      this.reload.onReload?.(this.files);
      return true;
    } catch (err) {
      this.reload.onError?.(err as Error);
      return false;
    } finally {
      this.polling = false;
    }
  }

  private caUpdate(): { caCertificate: Buffer } {
    return { caCertificate: this.current.ca ?? Buffer.from(rootCertificates.join('\n')) };
  }

  private identityUpdate(): { certificate: Buffer; privateKey: Buffer } | null {
    const { cert, key } = this.current;
    return cert && key ? { certificate: cert, privateKey: key } : null;
  }

  private watch(): void {
    if (this.timer || this.caListeners.size + this.identityListeners.size === 0) return;
    this.timer = setInterval(() => void this.poll(), this.reload.intervalMs);
    this.timer.unref();
  }

  private unwatch(): void {
    if (this.caListeners.size + this.identityListeners.size > 0) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    listener(this.caUpdate());
    this.watch();
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
    this.unwatch();
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    listener(this.identityUpdate());
    this.watch();
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
    this.unwatch();
  }
}
