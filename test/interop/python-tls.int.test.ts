// The example Python producer and worker (examples/python-worker) over mTLS with an API key, with
// certificates made by openssl at test time: against a scheduler and a worker-pool that require
// client certificates, the producer's jobs are stored and the worker completes them; against
// fake services (mTLS too) each sends `authorization: Bearer <key>`; without a client certificate
// nothing gets through; and with a keys file on the real services, the producer's and the
// worker's keys are what lets them in. Missing tools fail the test (never skip it): `.ci/run` installs them.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { hashSecret } from '@jobmesh/core';
import { PemFileProvider, serverTlsCredentials } from '@jobmesh/grpc-kit';
import { loadSchedulerEnv, type RunningScheduler, startScheduler } from '@jobmesh/scheduler';
import { JobmeshClient, tlsCredentials } from '@jobmesh/sdk';
import { silentLogger } from '@jobmesh/telemetry';
import { type GrpcTestServer, type TestPki, makeTestPki, serviceEnv, startGrpcServer } from '@jobmesh/testing';
import { type PoolHarness, eventually, startPoolHarness, uniqueQueue } from '@jobmesh/worker-pool/testing';
import { PYTHON, ROOT, cleanupPythonStubs, killGroup, lastJsonLine, pythonStubs, runPython } from './python';

const PRODUCER = join(ROOT, 'examples/python-worker/producer.py');
const WORKER = join(ROOT, 'examples/python-worker/worker.py');

let pki: TestPki;
let stubDir: string;
let h: PoolHarness;
let scheduler: RunningScheduler;
let poolAddress: string;
const children: ChildProcess[] = [];
const stops: (() => Promise<void> | void)[] = [];

/** Servers that serve pki.server and require client certificates from pki.ca. */
const mtlsServing = (): Record<string, string> => ({ JOBMESH_TLS_CERT: pki.server.cert, JOBMESH_TLS_KEY: pki.server.key, JOBMESH_TLS_CLIENT_CA: pki.ca.cert });
/** The Python scripts' TLS flags with the test client certificate. */
const tlsFlags = (): string[] => ['--tls-ca', pki.ca.cert, '--tls-cert', pki.client.cert, '--tls-key', pki.client.key];

beforeAll(async () => {
  [stubDir, pki] = await Promise.all([pythonStubs(), makeTestPki()]);
  h = await startPoolHarness();
  scheduler = await startScheduler(loadSchedulerEnv(serviceEnv(h.redis, h.prefix, mtlsServing())), { logger: silentLogger() });
  const pool = await h.startPool([], mtlsServing());
  poolAddress = `127.0.0.1:${pool.grpcPort}`;
}, 60_000);

afterAll(async () => {
  for (const c of children) killGroup(c, 'SIGKILL');
  for (const stop of stops.reverse()) await stop();
  await scheduler?.stop();
  await h?.stop();
  await cleanupPythonStubs();
  await pki?.remove();
}, 60_000);

interface Summary {
  enqueued: number;
  refused: number;
  unknown: number;
  unsent: number;
  error: string | null;
}

async function produce(address: string, args: string[]): Promise<{ summary: Summary; code: number | null }> {
  const res = await runPython(PRODUCER, ['--address', address, '--stubs', stubDir, '--json', '--reconnects', '1', ...args], { timeoutMs: 60_000 });
  return { summary: lastJsonLine(res, 'producer.py') as unknown as Summary, code: res.code };
}

/** A fake of part of one service over mTLS (pki.server, client certificates from pki.ca). */
async function fake<D extends Parameters<typeof startGrpcServer>[0]>(definition: D, handlers: Parameters<typeof startGrpcServer<D>>[1]): Promise<GrpcTestServer> {
  const provider = new PemFileProvider({ certFile: pki.server.cert, keyFile: pki.server.key, clientCaFile: pki.ca.cert }, { reloadMs: 60_000, logger: silentLogger() });
  const f = await startGrpcServer(definition, handlers, { credentials: serverTlsCredentials(provider) });
  stops.push(() => provider.close(), () => f.stop());
  return f;
}

/**
 * Runs the Python worker with `args` and `env` until `client` sees `n` completed jobs on `queue`
 * (60 s at most), then kills it; a timeout says what the worker printed.
 */
async function workerCompletes(args: string[], env: Record<string, string>, client: Pick<JobmeshClient, 'listJobs'>, queue: string, n: number): Promise<void> {
  const log: string[] = [];
  const child = spawn(PYTHON, [WORKER, ...args], { env: { ...process.env, PYTHONPATH: stubDir, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.push(child);
  child.stdout!.on('data', (b: Buffer) => log.push(b.toString()));
  child.stderr!.on('data', (b: Buffer) => log.push(b.toString()));
  try {
    await eventually(
      async () => (await client.listJobs({ queue, states: [pb.JobState.JOB_STATE_COMPLETED], pageSize: 100 })).jobs.length === n,
      60_000,
      `${n} completed jobs (worker output: ${log.join('')})`,
      100,
    );
  } finally {
    killGroup(child, 'SIGKILL');
  }
}

describe('the Python producer and worker over mTLS', () => {
  it('enqueue with --tls-ca/--tls-cert/--tls-key, and the worker (env twins) completes every job', async () => {
    const queue = uniqueQueue('pytls');
    await h.client.createQueue({ queue: { name: queue } });
    const { summary, code } = await produce(`127.0.0.1:${scheduler.grpcPort}`, ['--queue', queue, '--count', '20', '--name', 'echo', '--api-key', 'prod.s3cret', ...tlsFlags()]);
    expect({ code, summary }).toMatchObject({ code: 0, summary: { enqueued: 20, unknown: 0, unsent: 0, error: null } });

    await workerCompletes(
      ['--worker-id', 'py-tls'],
      {
        JOBMESH_ADDRESS: poolAddress,
        JOBMESH_QUEUES: queue,
        JOBMESH_API_KEY: 'work.s3cret',
        JOBMESH_TLS_CA: pki.ca.cert,
        JOBMESH_TLS_CLIENT_CERT: pki.client.cert,
        JOBMESH_TLS_CLIENT_KEY: pki.client.key,
      },
      h.client,
      queue,
      20,
    );
  });

  it('the producer gets nothing through to a server requiring client certificates without one', async () => {
    const queue = uniqueQueue('pytls-nocert');
    await h.client.createQueue({ queue: { name: queue } });
    const { summary, code } = await produce(`127.0.0.1:${scheduler.grpcPort}`, ['--queue', queue, '--count', '3', '--tls-ca', pki.ca.cert]);
    expect(code).toBe(1);
    expect(summary.enqueued).toBe(0);
    expect((await h.client.listJobs({ queue })).jobs).toEqual([]);
  });

  it('the producer sends its API key over mTLS', async () => {
    const seen: string[][] = [];
    const f = await fake(pb.SchedulerServiceService, {
      enqueueStream: (call) => {
        seen.push(call.metadata.get('authorization').map(String));
        call.emit('error', Object.assign(new Error('recorded'), { code: status.UNAUTHENTICATED }));
      },
    });
    const { summary } = await produce(f.address, ['--queue', 'q', '--count', '1', '--api-key', 'prod.s3cret', ...tlsFlags()]);
    expect(summary.error).toBe('UNAUTHENTICATED: recorded');
    expect(seen).toEqual([['Bearer prod.s3cret']]);
  });

  it('the worker sends its API key (--api-key) on the Connect stream over mTLS, and stops for good when refused', async () => {
    const seen: string[][] = [];
    const f = await fake(pb.WorkerServiceService, {
      connect: (call) => {
        seen.push(call.metadata.get('authorization').map(String));
        call.emit('error', Object.assign(new Error('recorded'), { code: status.UNAUTHENTICATED }));
      },
    });
    const res = await runPython(WORKER, ['--address', f.address, '--queues', 'q', '--stubs', stubDir, '--api-key', 'work.s3cret', ...tlsFlags()], { timeoutMs: 30_000 });
    expect(res.code).toBe(2);
    expect(seen).toEqual([['Bearer work.s3cret']]);
  });

  it('with auth on in the services themselves: the producer and worker keys work over mTLS, and no key gets nothing in', async () => {
    // A scheduler and a worker-pool of their own, on the same Redis, with a keys file.
    const file = join(pki.dir, 'keys.yaml');
    await writeFile(
      file,
      'keys:\n' +
        `  - { id: admin, hash: "${hashSecret('admin-secret')}", role: admin, queues: ["*"] }\n` +
        `  - { id: prod, hash: "${hashSecret('prod-secret')}", role: producer, queues: ["pyauth-*"] }\n` +
        `  - { id: work, hash: "${hashSecret('work-secret')}", role: worker, queues: ["pyauth-*"] }\n`,
    );
    const authed = { ...mtlsServing(), JOBMESH_API_KEYS_FILE: file };
    const s = await startScheduler(loadSchedulerEnv(serviceEnv(h.redis, h.prefix, authed)), { logger: silentLogger() });
    stops.push(() => s.stop());
    const pool = await h.startPool([], authed);
    const admin = new JobmeshClient({ address: `127.0.0.1:${s.grpcPort}`, apiKey: 'admin.admin-secret', credentials: tlsCredentials({ ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }) });
    stops.push(() => admin.close());
    const queue = uniqueQueue('pyauth');
    await admin.createQueue({ queue: { name: queue } });

    const refused = await produce(`127.0.0.1:${s.grpcPort}`, ['--queue', queue, '--count', '2', '--name', 'echo', ...tlsFlags()]);
    expect(refused.summary.enqueued).toBe(0);
    expect(refused.summary.error).toMatch(/^UNAUTHENTICATED/);
    const { summary, code } = await produce(`127.0.0.1:${s.grpcPort}`, ['--queue', queue, '--count', '5', '--name', 'echo', '--api-key', 'prod.prod-secret', ...tlsFlags()]);
    expect({ code, summary }).toMatchObject({ code: 0, summary: { enqueued: 5, unknown: 0, unsent: 0, error: null } });

    await workerCompletes(['--worker-id', 'py-auth', '--address', `127.0.0.1:${pool.grpcPort}`, '--queues', queue, '--api-key', 'work.work-secret', ...tlsFlags()], {}, admin, queue, 5);
  });

  it('the worker names a client certificate given without its key', async () => {
    const res = await runPython(WORKER, ['--address', poolAddress, '--queues', 'q', '--stubs', stubDir, '--tls-cert', pki.client.cert], { timeoutMs: 30_000 });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--tls-cert and --tls-key');
  });
});
