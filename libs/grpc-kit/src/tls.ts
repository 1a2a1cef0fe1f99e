import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { experimental, type ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from '@jobmesh/telemetry';

/** The PEM files a server serves TLS with (see ServerTlsFiles in libs/config). */
export interface PemFiles {
  certFile: string;
  keyFile: string;
  /** CA bundle client certificates must be signed by (mTLS). */
  clientCaFile?: string;
}

/** One consistent read of the files: a certificate, its key and the client CA, checked to go together. */
export interface PemSet {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  /** SHA-256 fingerprint of the leaf certificate, as openssl prints it (AB:CD:…). */
  fingerprint: string;
  serial: string;
}

/** Reads and checks `files`: each must be readable, the key must match the certificate. Throws naming the file. */
function readPemSet(files: PemFiles, read: (path: string) => Buffer): PemSet {
  const one = (what: string, path: string): Buffer => {
    try {
      return read(path);
    } catch (err) {
      throw new Error(`cannot read the TLS ${what} ${path}: ${(err as Error).message}`);
    }
  };
  const cert = one('certificate', files.certFile);
  const key = one('private key', files.keyFile);
  const ca = files.clientCaFile ? one('client CA', files.clientCaFile) : undefined;
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
    // Throws when the key does not match the certificate, or a file is not PEM.
    createSecureContext({ cert, key, ca });
  } catch (err) {
    throw new Error(`the TLS files ${[files.certFile, files.keyFile, files.clientCaFile].filter(Boolean).join(', ')} cannot be used: ${(err as Error).message}`);
  }
  return { cert, key, ca, fingerprint: leaf.fingerprint256, serial: leaf.serialNumber };
}

type IdentityListener = Parameters<experimental.CertificateProvider['addIdentityCertificateListener']>[0];
type CaListener = Parameters<experimental.CertificateProvider['addCaCertificateListener']>[0];

/**
 * A grpc-js CertificateProvider over PEM files that reloads them when they change. The first read
 * is synchronous and must succeed (a start with unusable files fails, naming the file). Every
 * `reloadMs` the files are read again; a changed set is used for new connections once it checks
 * out (the key matches the certificate), and a set that does not, say one caught half-written
 * during a rotation, is logged and ignored: the last good set stays in use, so the server never
 * drops connections for want of credentials.
 *
 * Why not grpc-js's own FileWatcherCertificateProvider: its first read is asynchronous (a bad
 * path shows only as refused connections), and a file missing or mismatched for one poll
 * withdraws the credentials, so every new connection is dropped until the next poll.
 */
export class PemFileProvider implements experimental.CertificateProvider {
  private current: PemSet;
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly caListeners = new Set<CaListener>();
  private readonly changeListeners = new Set<(set: PemSet) => void>();
  private readonly timer: NodeJS.Timeout;
  private polling = false;

  constructor(
    private readonly files: PemFiles,
    private readonly opts: { reloadMs: number; logger: Logger },
  ) {
    this.current = readPemSet(files, (p) => readFileSync(p));
    this.timer = setInterval(() => void this.poll(), opts.reloadMs);
    this.timer.unref();
  }

  /** The set in use. */
  get pem(): Readonly<PemSet> {
    return this.current;
  }

  /** Called with each new set once it is in use (e.g. to update an HTTPS server). */
  onChange(listener: (set: PemSet) => void): void {
    this.changeListeners.add(listener);
  }

  /** Reads the files now; resolves true when a new set was taken into use. */
  async poll(): Promise<boolean> {
    if (this.polling) return false;
    this.polling = true;
    try {
      const raw = new Map<string, Buffer>();
      for (const path of [this.files.certFile, this.files.keyFile, this.files.clientCaFile]) {
        if (path) raw.set(path, await readFile(path));
      }
      const same = (a: Buffer | undefined, b: Buffer | undefined): boolean => (a && b ? a.equals(b) : a === b);
      const c = this.current;
      const get = (p: string | undefined): Buffer | undefined => (p ? raw.get(p) : undefined);
      if (same(get(this.files.certFile), c.cert) && same(get(this.files.keyFile), c.key) && same(get(this.files.clientCaFile), c.ca)) return false;
      const next = readPemSet(this.files, (p) => raw.get(p)!);
      this.current = next;
      this.opts.logger.info({ certFile: this.files.certFile, fingerprint: next.fingerprint, serial: next.serial }, 'TLS certificate reloaded: new connections use it');
      this.publish();
      return true;
    } catch (err) {
      this.opts.logger.warn({ err: (err as Error).message }, 'TLS files changed but cannot be used; keeping the certificate in use');
      return false;
    } finally {
      this.polling = false;
    }
  }

  private publish(): void {
    const c = this.current;
    for (const l of this.identityListeners) l({ certificate: c.cert, privateKey: c.key });
    if (c.ca) for (const l of this.caListeners) l({ caCertificate: c.ca });
    for (const l of this.changeListeners) l(c);
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    const ca = this.current.ca;
    process.nextTick(() => listener(ca ? { caCertificate: ca } : null));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    const c = this.current;
    process.nextTick(() => listener({ certificate: c.cert, privateKey: c.key }));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  /** Stops watching the files. */
  close(): void {
    clearInterval(this.timer);
  }
}

/**
 * Server credentials over `provider`: TLS with its certificate and, when it has a client CA,
 * client certificates required and verified against it (mTLS). New connections use the latest
 * set the provider has taken into use; open connections keep theirs.
 */
export function serverTlsCredentials(provider: PemFileProvider): ServerCredentials {
  const mtls = Boolean(provider.pem.ca);
  // grpc-js 1.14 declares the parameters as (ca, identity, …) but passes them on as (identity, ca, …)
  // (server-credentials.js, createCertificateProviderServerCredentials): identity goes first.
  return experimental.createCertificateProviderServerCredentials(provider, mtls ? provider : null, mtls);
}
