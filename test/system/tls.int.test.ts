// TLS and mTLS on real services, with certificates made by openssl at test time (libs/testing
// certs.ts): a TLS scheduler answers a client that trusts its CA and refuses a plaintext one; with
// a client CA it refuses clients without a certificate or with one from a foreign CA; a
// certificate replaced on disk is served to new connections without a restart; production mode
// refuses a non-loopback address without TLS; the inter-service clients (dead-letter → scheduler
// replays, monitor → services health checks) dial mTLS and send JOBMESH_API_KEY; the CLI dials TLS.
import { execFile } from 'node:child_process';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import { loadPackageDefinition, type Metadata, type ServiceDefinition, status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { up } from '@jobmesh/cli';
import * as pb from '@jobmesh/contracts';
import { hashSecret } from '@jobmesh/core';
import { loadDeadLetterEnv, type RunningDeadLetter, startDeadLetter } from '@jobmesh/dead-letter';
import { useDeadLetterHarness } from '@jobmesh/dead-letter/testing';
import { PemFileProvider, serverTlsCredentials } from '@jobmesh/grpc-kit';
import { loadMonitorEnv, startMonitor } from '@jobmesh/monitor';
import { loadSchedulerEnv, type RunningScheduler, startScheduler } from '@jobmesh/scheduler';
import { DeadLetterClient, JobmeshClient, MonitorClient, RemoteWorker, defineProcessor, tlsCredentials } from '@jobmesh/sdk';
import { silentLogger } from '@jobmesh/telemetry';
import { type GrpcTestServer, type RedisHandle, type TestPki, connectRedis, eventually, keyspace, makeTestPki, serviceEnv, startGrpcServer, startRedis, uniquePrefix, uniqueQueue, waitFor } from '@jobmesh/testing';
import { protoPath as healthProtoPath } from 'grpc-health-check';

const CLI = resolve(__dirname, '../../cli/dist/main.js');
const run = promisify(execFile);

let pki: TestPki;
let redis: RedisHandle;
const stops: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  pki = await makeTestPki();
  redis = await startRedis();
});
afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
  await redis?.stop();
  await pki?.remove();
});

/** The settings of a server that serves `pki.server` (and requires client certificates from `pki.ca` with `mtls`). */
const serving = (mtls: boolean, files = pki.server): Record<string, string> => ({
  JOBMESH_TLS_CERT: files.cert,
  JOBMESH_TLS_KEY: files.key,
  JOBMESH_TLS_RELOAD_INTERVAL: '100ms',
  ...(mtls ? { JOBMESH_TLS_CLIENT_CA: pki.ca.cert } : {}),
});
/** The settings of a process whose clients trust `pki.ca` and present `pki.client`. */
const dialing = (): Record<string, string> => ({ JOBMESH_TLS_CA: pki.ca.cert, JOBMESH_TLS_CLIENT_CERT: pki.client.cert, JOBMESH_TLS_CLIENT_KEY: pki.client.key });

/** A scheduler with `extra` settings; on `on`'s Redis and prefix when given (another harness's). */
async function scheduler(extra: Record<string, string>, on?: { redis: RedisHandle; prefix: string }): Promise<RunningScheduler & { address: string }> {
  const s = await startScheduler(loadSchedulerEnv(serviceEnv(on?.redis ?? redis, on?.prefix ?? uniquePrefix(), extra)), { logger: silentLogger() });
  stops.push(() => s.stop());
  return { ...s, address: `127.0.0.1:${s.grpcPort}` };
}

/** A client of `address` with `credentials`, one try per call, so a refusal shows at once. */
function client(address: string, credentials?: ReturnType<typeof tlsCredentials>, apiKey?: string): JobmeshClient {
  const c = new JobmeshClient({ address, credentials, apiKey, timeoutMs: 5000, retry: { maxTries: 1 }, coalesce: false });
  stops.push(() => c.close());
  return c;
}

const trustingCa = () => tlsCredentials({ ca: pki.ca.cert });

/** The gRPC status code a call failed with. */
async function codeOf(call: Promise<unknown>): Promise<number> {
  const err = (await call.then(
    () => ({ code: status.OK }),
    (e: { code: number }) => e,
  )) as { code: number };
  return err.code;
}

/** The SHA-256 fingerprint of the certificate a new TLS connection to 127.0.0.1:`port` is served. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((done, fail) => {
    const socket = connect({ host: '127.0.0.1', port, ca: [], rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      const fp = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      done(fp);
    });
    socket.once('error', fail);
  });
}

describe('a scheduler serving TLS (JOBMESH_TLS_CERT, JOBMESH_TLS_KEY)', () => {
  let s: RunningScheduler & { address: string };
  beforeAll(async () => {
    s = await scheduler(serving(false));
  });

  it('answers a TLS client that trusts its CA', async () => {
    const c = client(s.address, trustingCa());
    const name = uniqueQueue('tls');
    await c.createQueue({ queue: { name } });
    expect((await c.getQueue(name)).name).toBe(name);
  });

  it('refuses a plaintext client with UNAVAILABLE', async () => {
    expect(await codeOf(client(s.address).listQueues())).toBe(status.UNAVAILABLE);
  });

  it('refuses a client that does not trust its CA with UNAVAILABLE', async () => {
    expect(await codeOf(client(s.address, tlsCredentials({ ca: pki.foreignCa.cert })).listQueues())).toBe(status.UNAVAILABLE);
  });
});

describe('a scheduler requiring client certificates (JOBMESH_TLS_CLIENT_CA)', () => {
  let s: RunningScheduler & { address: string };
  beforeAll(async () => {
    s = await scheduler(serving(true));
  });

  it('answers a client with a certificate from the client CA', async () => {
    const c = client(s.address, tlsCredentials({ ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }));
    await expect(c.listQueues()).resolves.toBeDefined();
  });

  it('refuses a client without a certificate', async () => {
    expect(await codeOf(client(s.address, trustingCa()).listQueues())).toBe(status.UNAVAILABLE);
  });

  it('refuses a client certificate from a foreign CA', async () => {
    const foreign = tlsCredentials({ ca: pki.ca.cert, cert: pki.foreignClient.cert, key: pki.foreignClient.key });
    expect(await codeOf(client(s.address, foreign).listQueues())).toBe(status.UNAVAILABLE);
  });

  it('refuses a plaintext client', async () => {
    expect(await codeOf(client(s.address).listQueues())).toBe(status.UNAVAILABLE);
  });
});

describe('certificate reload', () => {
  it('serves a certificate replaced on disk to new connections, gRPC and HTTPS, without a restart', async () => {
    const cert = join(pki.dir, 'live.pem');
    const key = join(pki.dir, 'live-key.pem');
    await copyFile(pki.server.cert, cert);
    await copyFile(pki.server.key, key);
    const s = await scheduler({ ...serving(false, { cert, key, fingerprint: pki.server.fingerprint }), JOBMESH_HTTP_TLS: 'true' });
    expect(await servedFingerprint(s.grpcPort)).toBe(pki.server.fingerprint);
    expect(await servedFingerprint(s.httpPort)).toBe(pki.server.fingerprint);
    const before = client(s.address, trustingCa());
    await before.listQueues();

    const rotated = await pki.issueServer('rotated');
    expect(rotated.fingerprint).not.toBe(pki.server.fingerprint);
    // Key first: between the two copies the pair does not match, and the server keeps the old one.
    await copyFile(rotated.key, key);
    await copyFile(rotated.cert, cert);
    await eventually(async () => (await servedFingerprint(s.grpcPort)) === rotated.fingerprint, 10_000, 'the rotated certificate on a new connection');
    // The ops server (JOBMESH_HTTP_TLS) follows the same files.
    await eventually(async () => (await servedFingerprint(s.httpPort)) === rotated.fingerprint, 10_000, 'the rotated certificate on the ops port');
    // A new client is served the new certificate and its calls work; the open connection goes on.
    await expect(client(s.address, trustingCa()).listQueues()).resolves.toBeDefined();
    await expect(before.listQueues()).resolves.toBeDefined();
  });

  it('keeps the certificate in use when the files on disk stop matching', async () => {
    const cert = join(pki.dir, 'half.pem');
    const key = join(pki.dir, 'half-key.pem');
    await copyFile(pki.server.cert, cert);
    await copyFile(pki.server.key, key);
    const provider = new PemFileProvider({ certFile: cert, keyFile: key }, { reloadMs: 60_000, logger: silentLogger() });
    stops.push(() => provider.close());
    await copyFile(pki.client.key, key);
    expect(await provider.poll()).toBe(false);
    expect(provider.pem.fingerprint).toBe(pki.server.fingerprint);
  });
});

describe('client certificate reload', () => {
  it('a long-lived SDK client presents a client certificate replaced on disk, without being made again', async () => {
    const s = await scheduler(serving(true));
    const cert = join(pki.dir, 'sdk-client.pem');
    const key = join(pki.dir, 'sdk-client-key.pem');
    await copyFile(pki.foreignClient.cert, cert);
    await copyFile(pki.foreignClient.key, key);
    const c = client(s.address, tlsCredentials({ ca: pki.ca.cert, cert, key }, { intervalMs: 100 }));
    // A certificate from a foreign CA: the server refuses the handshake.
    expect(await codeOf(c.listQueues())).toBe(status.UNAVAILABLE);
    await copyFile(pki.client.key, key);
    await copyFile(pki.client.cert, cert);
    await eventually(async () => (await codeOf(c.listQueues())) === status.OK, 15_000, 'a call with the rotated client certificate');
  });
});

describe('production mode (JOBMESH_MODE=production)', () => {
  // Production mode also needs auth on (test/auth has that refusal): a keys file with one admin key.
  const ADMIN_KEY = 'admin.admin-secret';
  let production: Record<string, string>;
  beforeAll(async () => {
    const file = join(pki.dir, 'keys.yaml');
    await writeFile(file, `keys:\n  - { id: admin, hash: "${hashSecret('admin-secret')}", role: admin, queues: ["*"] }\n`);
    production = { JOBMESH_MODE: 'production', JOBMESH_API_KEYS_FILE: file };
  });

  it('refuses a non-loopback gRPC address without TLS, with one paragraph saying what to do, and writes nothing', async () => {
    const prefix = uniquePrefix();
    const start = startScheduler(loadSchedulerEnv(serviceEnv(redis, prefix, { ...production, JOBMESH_GRPC_ADDRESS: '0.0.0.0:0' })), { logger: silentLogger() });
    const err = (await start.then(
      () => new Error('started'),
      (e: Error) => e,
    )) as Error;
    expect(err.message).toMatch(/^Refusing to start in production mode: gRPC would listen on 0\.0\.0\.0:0, .* without TLS/);
    expect(err.message).toContain('Set JOBMESH_TLS_CERT and JOBMESH_TLS_KEY');
    expect(err.message).not.toContain('\n');
    const raw = connectRedis(redis.url);
    stops.push(() => void raw.disconnect());
    expect(await keyspace(raw, prefix)).toEqual({});
  });

  it('starts on a non-loopback address with TLS', async () => {
    const s = await scheduler({ ...serving(false), ...production, JOBMESH_GRPC_ADDRESS: '0.0.0.0:0' });
    await expect(client(`127.0.0.1:${s.grpcPort}`, trustingCa(), ADMIN_KEY).listQueues()).resolves.toBeDefined();
  });

  it('starts on a loopback address without TLS', async () => {
    const s = await scheduler(production);
    await expect(client(s.address, undefined, ADMIN_KEY).listQueues()).resolves.toBeDefined();
  });
});

describe('TLS settings that do not go together', () => {
  it('refuses a certificate without its key, naming both settings', async () => {
    const start = startScheduler(loadSchedulerEnv(serviceEnv(redis, uniquePrefix(), { JOBMESH_TLS_CERT: pki.server.cert })), { logger: silentLogger() });
    await expect(start).rejects.toThrow('JOBMESH_TLS_CERT is set without JOBMESH_TLS_KEY');
  });

  it('refuses a key that does not match the certificate, naming the files', async () => {
    const start = startScheduler(loadSchedulerEnv(serviceEnv(redis, uniquePrefix(), { JOBMESH_TLS_CERT: pki.server.cert, JOBMESH_TLS_KEY: pki.client.key })), { logger: silentLogger() });
    await expect(start).rejects.toThrow(`the TLS files ${pki.server.cert}, ${pki.client.key} cannot be used`);
  });

  it('refuses a certificate file that cannot be read, naming it', async () => {
    const missing = join(pki.dir, 'missing.pem');
    const start = startScheduler(loadSchedulerEnv(serviceEnv(redis, uniquePrefix(), { JOBMESH_TLS_CERT: missing, JOBMESH_TLS_KEY: pki.server.key })), { logger: silentLogger() });
    await expect(start).rejects.toThrow(`cannot read the TLS certificate ${missing}`);
  });
});

/** The mTLS server credentials of `pki` for a fake service. */
function fakeServerCredentials() {
  const provider = new PemFileProvider({ certFile: pki.server.cert, keyFile: pki.server.key, clientCaFile: pki.ca.cert }, { reloadMs: 60_000, logger: silentLogger() });
  stops.push(() => provider.close());
  return serverTlsCredentials(provider);
}

async function fake<D extends ServiceDefinition>(definition: D, handlers: Parameters<typeof startGrpcServer<D>>[1]): Promise<GrpcTestServer> {
  const f = await startGrpcServer(definition, handlers, { credentials: fakeServerCredentials() });
  stops.push(() => f.stop());
  return f;
}

const bearer = (md: Metadata): unknown => md.get('authorization')[0];

describe('inter-service calls over mTLS, with JOBMESH_API_KEY', () => {
  const h = useDeadLetterHarness();
  let dl: DeadLetterClient;
  beforeAll(async () => {
    dl = (await h.startDeadLetter()).client;
  });

  /** `n` dead letters (UNRECOVERABLE) on a new queue; their ids. */
  async function deadLetters(n: number): Promise<string[]> {
    const queue = uniqueQueue('tls-dlq');
    await h.client.createQueue({ queue: { name: queue } });
    await h.client.enqueueJobs({ queue, jobs: Array.from({ length: n }, (_, i) => ({ name: 'fatal', data: { i }, options: { attempts: 1 } })) });
    await waitFor(`${n} dead letters on ${queue}`, async () => (await dl.stats(queue)).total === n, 30_000);
    return (await dl.list({ filter: { queue } })).deadLetters.map((d) => d.id);
  }

  async function tlsDeadLetter(schedulerAddress: string, extra: Record<string, string> = {}): Promise<{ service: RunningDeadLetter; client: DeadLetterClient }> {
    const service = await startDeadLetter(
      loadDeadLetterEnv(serviceEnv(h.redis, h.prefix, { ...serving(true), ...dialing(), JOBMESH_API_KEY: 'dl.s3cret', JOBMESH_SCHEDULER_ADDRESS: schedulerAddress, JOBMESH_DLQ_SWEEP_INTERVAL: '1h', ...extra })),
      { logger: silentLogger() },
    );
    stops.push(() => service.stop());
    const c = DeadLetterClient.connect(`127.0.0.1:${service.grpcPort}`, { credentials: tlsCredentials({ ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }) });
    stops.push(() => c.close());
    return { service, client: c };
  }

  it('replays dead letters through a scheduler that requires client certificates', async () => {
    const ids = await deadLetters(2);
    const s = await scheduler(serving(true), { redis: h.redis, prefix: h.prefix });
    const { client: tlsDl } = await tlsDeadLetter(s.address);
    const target = uniqueQueue('tls-replayed');
    await h.client.createQueue({ queue: { name: target, paused: true } });
    const res = await tlsDl.replay({ ids, targetQueue: target });
    expect(res.replayed).toHaveLength(2);
    const jobs = await h.client.listJobs({ queue: target });
    expect(jobs.jobs.map((j) => j.options?.replayOf).sort()).toEqual([...ids].sort());
  });

  it('replays with a client certificate rotated on disk while the dead-letter service runs', async () => {
    const ids = await deadLetters(1);
    const s = await scheduler(serving(true), { redis: h.redis, prefix: h.prefix });
    const cert = join(pki.dir, 'dl-client.pem');
    const key = join(pki.dir, 'dl-client-key.pem');
    await copyFile(pki.foreignClient.cert, cert);
    await copyFile(pki.foreignClient.key, key);
    const { client: tlsDl } = await tlsDeadLetter(s.address, { JOBMESH_TLS_CLIENT_CERT: cert, JOBMESH_TLS_CLIENT_KEY: key });
    const replayed = (): Promise<number> => tlsDl.replay({ ids }).then((r) => r.replayed.length, () => 0);
    // The scheduler refuses the foreign certificate, so nothing is replayed.
    expect(await replayed()).toBe(0);
    await copyFile(pki.client.key, key);
    await copyFile(pki.client.cert, cert);
    await eventually(async () => (await replayed()) === 1, 15_000, 'a replay with the rotated client certificate');
  });

  it('sends the API key on each replay call', async () => {
    const ids = await deadLetters(1);
    const seen: unknown[] = [];
    const f = await fake(pb.SchedulerServiceService, {
      enqueueJob: (call, cb) => {
        seen.push(bearer(call.metadata));
        cb(null, pb.EnqueueJobResponse.fromPartial({ job: { id: 'j1', queue: call.request.queue, name: call.request.job?.name } }));
      },
    });
    const { client: tlsDl } = await tlsDeadLetter(f.address);
    await tlsDl.replay({ ids });
    expect(seen).toEqual(['Bearer dl.s3cret']);
  });

  it('runs jobs on an SDK RemoteWorker connected over mTLS to a worker-pool that requires client certificates', async () => {
    const queue = uniqueQueue('tls-remote');
    await h.client.createQueue({ queue: { name: queue } });
    const pool = await h.startPool([], serving(true));
    const remote = (credentials: ReturnType<typeof tlsCredentials>) =>
      new RemoteWorker({ address: `127.0.0.1:${pool.grpcPort}`, credentials, apiKey: 'w.s3cret', processors: [defineProcessor({ queue, name: 'double', process: async (job) => (job.data.n as number) * 2 })] });
    const worker = remote(tlsCredentials({ ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }));
    await worker.start();
    stops.push(() => worker.stop());
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'double', data: { n: 21 } } });
    const done = await eventually(async () => {
      const j = await h.client.getJob(queue, job!.id);
      return j.state === pb.JobState.JOB_STATE_COMPLETED ? j : undefined;
    }, 15_000, 'the job to complete on the remote worker');
    expect(done.result).toBe(42);
  });

  it('checks the health of TLS services from the monitor, over mTLS and with the API key', async () => {
    const s = await scheduler(serving(true), { redis: h.redis, prefix: h.prefix });
    const seen: unknown[] = [];
    const healthDef = (loadPackageDefinition(loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true })) as unknown as { grpc: { health: { v1: { Health: { service: ServiceDefinition } } } } }).grpc.health.v1.Health.service;
    const health = await fake(healthDef, {
      check: (call: { metadata: Metadata }, cb: (err: null, res: { status: string }) => void) => {
        seen.push(bearer(call.metadata));
        cb(null, { status: 'SERVING' });
      },
    } as never);
    const m = await startMonitor(
      loadMonitorEnv(
        serviceEnv(h.redis, h.prefix, { ...serving(true), ...dialing(), JOBMESH_API_KEY: 'mon.s3cret', JOBMESH_SCHEDULER_ADDRESS: s.address, JOBMESH_WORKER_POOL_ADDRESS: health.address, JOBMESH_DEAD_LETTER_ADDRESS: health.address }),
      ),
      { logger: silentLogger() },
    );
    stops.push(() => m.stop());
    const mc = MonitorClient.connect(`127.0.0.1:${m.grpcPort}`, { credentials: tlsCredentials({ ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }) });
    stops.push(() => mc.close());
    const res = await mc.systemHealth();
    const of = (service: string) => res.services.find((x) => x.service === service);
    expect(of('jobmesh.v1.SchedulerService')).toMatchObject({ status: pb.ServingStatus.SERVING_STATUS_SERVING, error: '' });
    expect(of('jobmesh.v1.WorkerService')).toMatchObject({ status: pb.ServingStatus.SERVING_STATUS_SERVING });
    expect(seen).toEqual(['Bearer mon.s3cret', 'Bearer mon.s3cret']);
  });
});

describe('the CLI over TLS', () => {
  let s: RunningScheduler & { address: string };
  beforeAll(async () => {
    s = await scheduler(serving(true));
  });
  const jobmesh = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, [CLI, '--address', s.address, '--timeout', '5s', ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
    );

  it('creates and lists queues over mTLS with --tls-ca, --tls-cert and --tls-key', async () => {
    const name = uniqueQueue('cli-tls');
    const flags = ['--tls-ca', pki.ca.cert, '--tls-cert', pki.client.cert, '--tls-key', pki.client.key];
    expect(await jobmesh(['queues', 'create', name, ...flags])).toMatchObject({ code: 0 });
    const listed = await jobmesh(['queues', 'list', '--json', ...flags]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(name);
  });

  it('reads the same from JOBMESH_TLS_CA, JOBMESH_TLS_CLIENT_CERT and JOBMESH_TLS_CLIENT_KEY', async () => {
    const res = await jobmesh(['queues', 'list'], { JOBMESH_TLS_CA: pki.ca.cert, JOBMESH_TLS_CLIENT_CERT: pki.client.cert, JOBMESH_TLS_CLIENT_KEY: pki.client.key });
    expect(res).toMatchObject({ code: 0 });
  });

  it('fails with UNAVAILABLE in plaintext, and names a certificate without its key', async () => {
    const plain = await jobmesh(['queues', 'list']);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain('UNAVAILABLE');
    const half = await jobmesh(['queues', 'list', '--tls-cert', pki.client.cert]);
    expect(half.code).toBe(2);
    expect(half.stderr).toContain('needs its private key');
  });
});

describe('the ops HTTP server over TLS (JOBMESH_HTTP_TLS)', () => {
  it('serves /livez over HTTPS with the gRPC certificate', async () => {
    const s = await scheduler({ ...serving(false), JOBMESH_HTTP_TLS: 'true' });
    const body = await new Promise<string>((done, fail) => {
      void readFile(pki.ca.cert).then((ca) => {
        const socket = connect({ host: '127.0.0.1', port: s.httpPort, ca, servername: 'localhost' }, () => {
          socket.write('GET /livez HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n');
        });
        let data = '';
        socket.on('data', (b: Buffer) => (data += b.toString()));
        socket.on('end', () => done(data));
        socket.once('error', fail);
      }, fail);
    });
    expect(body).toMatch(/^HTTP\/1\.1 200/);
  });
});

describe('jobmesh up over mTLS', () => {
  it('serves every service over mTLS and reaches itself for the health checks with the client settings', async () => {
    const lines: string[] = [];
    const handle = await up(
      { ...serviceEnv(redis, uniquePrefix()), ...serving(true), ...dialing(), JOBMESH_DLQ_SWEEP_INTERVAL: '1h' },
      (l) => lines.push(l),
    );
    stops.push(() => handle.stop());
    expect(lines.join('\n')).toContain(`TLS    on, client certificates required (mTLS), ${pki.server.cert}`);
    const c = client(handle.grpcAddress, tlsCredentials({ ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }));
    const health = await c.monitor.systemHealth();
    const grpcServices = health.services.filter((x) => x.service.startsWith('jobmesh.v1.'));
    expect(grpcServices.map((x) => [x.service, x.status, x.error])).toEqual(grpcServices.map((x) => [x.service, pb.ServingStatus.SERVING_STATUS_SERVING, '']));
    expect(grpcServices).toHaveLength(4);
  });
});
