// `jobmesh up` mounts DeadLetterService: it captures dead letters of the in-process worker-pool,
// alerts them with the DLQ webhook settings, and replays them through its own SchedulerService.
// It mounts MonitorService too, which sees every service healthy on the one port and counts the
// dead letter.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { JobmeshClient } from '@jobmesh/sdk';
import { type Probe, type RedisHandle, startRedis, waitFor as poll } from '@jobmesh/testing';

const MAIN = resolve(__dirname, '../../cli/dist/main.js');

let redis: RedisHandle;
let dir: string;
let child: ChildProcess | undefined;
let output = '';

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** @jobmesh/testing's waitFor, every 50 ms, with what `jobmesh up` printed when it times out. */
async function waitFor<T>(what: string, probe: Probe<T>, timeoutMs = 15_000): Promise<T> {
  try {
    return await poll(what, probe, timeoutMs, 50);
  } catch (err) {
    (err as Error).message += `\n${output}`;
    throw err;
  }
}

function unary<Req, Res>(client: pb.DeadLetterServiceClient, method: 'listDeadLetters' | 'replayDeadLetters', req: Req): Promise<Res> {
  return new Promise((res, rej) => {
    const m = client[method] as unknown as (r: Req, md: Metadata, o: object, cb: (err: ServiceError | null, r: Res) => void) => void;
    m.call(client, req, new Metadata(), { deadline: new Date(Date.now() + 10_000) }, (err, r) => (err ? rej(err) : res(r)));
  });
}

function monitorCall<Res>(client: pb.MonitorServiceClient, method: 'getSystemHealth' | 'getQueueStats', req: object): Promise<Res> {
  return new Promise((res, rej) => {
    const m = client[method] as unknown as (r: object, md: Metadata, o: object, cb: (err: ServiceError | null, r: Res) => void) => void;
    m.call(client, req, new Metadata(), { deadline: new Date(Date.now() + 10_000) }, (err, r) => (err ? rej(err) : res(r)));
  });
}

it('serves DeadLetterService: captures, alerts and replays through its own scheduler', async () => {
  redis = await startRedis({ own: true });
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-up-dlq-'));
  const received: Array<{ severity: string; id: string }> = [];
  const hook = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      received.push(JSON.parse(raw) as { severity: string; id: string });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
  const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/critical`;

  child = spawn(process.execPath, [MAIN, 'up'], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      REDIS_URL: redis.url,
      JOBMESH_REDIS_PREFIX: `up-${randomUUID().slice(0, 8)}`,
      JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
      JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
      JOBMESH_DLQ_SWEEP_INTERVAL: '200ms',
      JOBMESH_DLQ_WEBHOOK_CRITICAL: hookUrl,
      LOG_LEVEL: 'warn',
    },
  });
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
  const address = await Promise.race([
    waitFor('jobmesh up to start', () => output.includes('Stop:') && /gRPC\s+(\S+)/.exec(output)?.[1], 20_000),
    exited.then((code) => Promise.reject(new Error(`jobmesh up exited with ${code}:\n${output}`))),
  ]);
  expect(output).toMatch(/gRPC\s+\S+\s+jobmesh\.v1\.SchedulerService, WorkerService, DeadLetterService and MonitorService/);
  expect(output).toMatch(/webhook alerts: critical/);

  const client = new JobmeshClient({ address });
  const dlq = new pb.DeadLetterServiceClient(address, credentials.createInsecure());
  const monitor = new pb.MonitorServiceClient(address, credentials.createInsecure());
  try {
    const queue = `ghosts-${randomUUID().slice(0, 6)}`;
    // processor_wait 0: a job nothing serves fails at once instead of waiting for a processor.
    await client.createQueue({ queue: { name: queue, processorWait: { seconds: 0, nanos: 0 } } });
    // No processor for 'ghost': the in-process worker-pool fails it as PROCESSOR_NOT_FOUND (critical).
    const { job } = await client.enqueueJob({ queue, job: { name: 'ghost', data: { n: 1 } } });
    const list = () => unary<pb.ListDeadLettersRequest, pb.ListDeadLettersResponse>(dlq, 'listDeadLetters', pb.ListDeadLettersRequest.fromPartial({ filter: { queue } }));
    const [d] = await waitFor('the dead letter', async () => {
      const { deadLetters } = await list();
      return deadLetters.length ? deadLetters : undefined;
    });
    expect(d).toMatchObject({ category: 'PROCESSOR_NOT_FOUND', severity: pb.Severity.SEVERITY_CRITICAL, job: { id: job!.id, queue, name: 'ghost' } });
    await waitFor('the webhook', () => received.length === 1);
    expect(received[0]).toMatchObject({ severity: 'critical', id: d!.id });

    // The replay goes through SchedulerService on this process's own port.
    const replayed = await unary<pb.ReplayDeadLettersRequest, pb.ReplayDeadLettersResponse>(dlq, 'replayDeadLetters', pb.ReplayDeadLettersRequest.fromPartial({ ids: [d!.id] }));
    expect(replayed.replayed).toEqual([{ deadLetterId: d!.id, job: { queue, id: expect.any(String) }, deduplicated: false }]);
    expect(replayed.replayed[0]!.job!.id).not.toBe(job!.id);
    await expect(client.getJob(queue, replayed.replayed[0]!.job!.id)).resolves.toMatchObject({ name: 'ghost', data: { n: 1 } });

    const health = await monitorCall<pb.GetSystemHealthResponse>(monitor, 'getSystemHealth', {});
    expect(health.services.map((s) => [s.service, s.status])).toEqual(
      ['jobmesh.v1.SchedulerService', 'jobmesh.v1.WorkerService', 'jobmesh.v1.DeadLetterService', 'jobmesh.v1.MonitorService', 'redis'].map((n) => [n, pb.ServingStatus.SERVING_STATUS_SERVING]),
    );
    expect(health.status).toBe(pb.ServingStatus.SERVING_STATUS_SERVING);
    // The replayed ghost has no processor either: it is the second dead letter of the queue.
    const stats = await waitFor('the monitor to count both dead letters', async () => {
      const s = (await monitorCall<pb.GetQueueStatsResponse>(monitor, 'getQueueStats', { queue })).stats!;
      return s.counts?.deadLettered === 2 ? s : undefined;
    });
    expect(stats.counts).toMatchObject({ waiting: 0, active: 0, failed: 2 });
    expect(stats.inProcessWorkers).toBe(1);

    // The dashboard, on the HTTP port, reads the same figures through the gRPC services.
    const http = /HTTP\s+(http:\/\/\S+)/.exec(output)![1]!;
    const page = await fetch(`${http}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<html/i);
    const overview = (await (await fetch(`${http}/api/overview`)).json()) as { stats: Array<{ queue: string }> };
    expect(overview.stats.map((s) => s.queue)).toContain(queue);
  } finally {
    monitor.close();
    dlq.close();
    client.close();
    hook.closeAllConnections();
    hook.close();
  }

  child.kill('SIGTERM');
  await expect(exited).resolves.toBe(0);
});
