import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A certificate and its key as PEM files. */
export interface CertFiles {
  cert: string;
  key: string;
  /** SHA-256 fingerprint (AB:CD:…), as X509Certificate.fingerprint256 gives it. */
  fingerprint: string;
}

/** Certificates made with openssl for one test file, in a temp dir; `remove()` deletes them. */
export interface TestPki {
  dir: string;
  /** The CA that signs the server and client certificates. */
  ca: CertFiles;
  /** Server certificate for 127.0.0.1, ::1 and localhost (SAN), serverAuth. */
  server: CertFiles;
  /** Client certificate (CN=jobmesh-test-client), clientAuth, from `ca`. */
  client: CertFiles;
  /** A CA nobody trusts, and a client certificate it signed. */
  foreignCa: CertFiles;
  foreignClient: CertFiles;
  /** Issues another server certificate from `ca` (new key, new serial) into files named `name`. */
  issueServer(name: string): Promise<CertFiles>;
  remove(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed (is openssl installed? apt-get install openssl): ${e.stderr || e.message}`);
  }
}

async function files(dir: string, name: string): Promise<CertFiles> {
  const cert = join(dir, `${name}.pem`);
  return { cert, key: join(dir, `${name}-key.pem`), fingerprint: new X509Certificate(await readFile(cert)).fingerprint256 };
}

async function makeCa(dir: string, name: string, cn: string): Promise<CertFiles> {
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${cn}`, '-keyout', `${name}-key.pem`, '-out', `${name}.pem`], dir);
  return files(dir, name);
}

async function issue(dir: string, ca: CertFiles, name: string, cn: string, ext: string): Promise<CertFiles> {
  await writeFile(join(dir, `${name}.ext`), ext);
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`], dir);
  await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`], dir);
  return files(dir, name);
}

const SERVER_EXT = 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth\n';
const CLIENT_EXT = 'extendedKeyUsage=clientAuth\n';

/**
 * A CA, a server and a client certificate from it, and a foreign CA with a client certificate of
 * its own, made with openssl at test time (EC P-256, valid two days) in a temp dir.
 */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'jobmesh-pki-'));
  const ca = await makeCa(dir, 'ca', 'Jobmesh test CA');
  const foreignCa = await makeCa(dir, 'foreign-ca', 'Foreign test CA');
  // One after another: openssl keeps each CA's next serial in a file (-CAcreateserial).
  const server = await issue(dir, ca, 'server', 'jobmesh-test-server', SERVER_EXT);
  const client = await issue(dir, ca, 'client', 'jobmesh-test-client', CLIENT_EXT);
  const foreignClient = await issue(dir, foreignCa, 'foreign-client', 'foreign-client', CLIENT_EXT);
  return {
    dir,
    ca,
    server,
    client,
    foreignCa,
    foreignClient,
    issueServer: (name) => issue(dir, ca, name, `jobmesh-test-server-${name}`, SERVER_EXT),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
