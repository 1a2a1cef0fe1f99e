// One trace across languages and processes: a Python grpcio producer that propagates a W3C
// traceparent by hand, the scheduler and two worker-pools as separate OS processes exporting over
// OTLP (the scheduler over gRPC, the pools over HTTP/protobuf) to a receiver that decodes the real
// requests, and the jobs run by an in-process processor (A) or by the example Python worker, which
// has no OpenTelemetry SDK and reports its own timing on Complete and Fail (B). The span design is
// libs/telemetry/src/job-tracing.ts's. The services run from their builds: `npm run build` first.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Metadata, credentials } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { JobmeshClient } from '@jobmesh/sdk';
import { type DecodedSpan, type OtlpReceiver, type RedisHandle, eventually, startOtlpReceiver, startRedis } from '@jobmesh/testing';
import { killAll, type ServiceProcess, startService } from '../system/fixtures/services';
import { PYTHON, cleanupPythonStubs, killGroup, lastJsonLine, pythonStubs, runPython } from './python';

const PRODUCER = join(__dirname, 'python_tracing_client.py');
const PY_WORKER = join(__dirname, 'python_tracing_worker.py');
const FLAKY_PROCESSOR = resolve(__dirname, '../system/fixtures/flaky-processor.js');
const PY_WORKER_ID = 'py-tracing';
/** Both fixtures' `flaky` fails attempts 1 and 2 and completes on 3. */
const ATTEMPTS = 3;
const BACKOFF_MS = 50;

let stubDir: string;
let redis: RedisHandle;
let receiver: OtlpReceiver;
let dir: string;
let client: JobmeshClient;
let scheduler: ServiceProcess;
/** Runs `flaky` in-process, on queueA only. */
let poolA: ServiceProcess;
/** Has no processors: its jobs (queueB only) go to the remote workers connected to it. */
let poolB: ServiceProcess;
const queueA = `trace-a-${randomUUID().slice(0, 8)}`;
const queueB = `trace-b-${randomUUID().slice(0, 8)}`;
let python: ChildProcess | undefined;
const pythonLog: string[] = [];

beforeAll(async () => {
  stubDir = await pythonStubs();
  redis = await startRedis({ own: true });
  receiver = await startOtlpReceiver();
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-interop-tracing-'));
  const common = { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: `tr-${randomUUID().slice(0, 8)}`, OTEL_BSP_SCHEDULE_DELAY: '100' };
  scheduler = await startService(
    'scheduler',
    { ...common, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.grpcUrl, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_SERVICE_NAME: 'jobmesh-scheduler' },
    dir,
  );
  client = new JobmeshClient({ address: scheduler.grpcAddress });
  for (const name of [queueA, queueB]) await client.createQueue({ queue: { name } });
  const poolEnv = { ...common, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.httpUrl, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_SERVICE_NAME: 'jobmesh-worker-pool' };
  [poolA, poolB] = await Promise.all([
    startService('worker-pool', { ...poolEnv, JOBMESH_PROCESSORS: FLAKY_PROCESSOR, JOBMESH_WORKER_QUEUES: queueA }, dir),
    startService('worker-pool', { ...poolEnv, JOBMESH_WORKER_QUEUES: queueB }, dir),
  ]);
  for (const [pool, queue] of [[poolA, queueA], [poolB, queueB]] as const) {
    await eventually(() => pool.logs().some((l) => l.msg === 'serving queue' && l.queue === queue), 10_000, `the worker-pool to serve ${queue}`);
  }
}, 90_000);

afterAll(async () => {
  if (python) killGroup(python, 'SIGKILL');
  client?.close();
  await killAll();
  await receiver?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  await cleanupPythonStubs();
}, 60_000);

/** Enqueues a `flaky` job from Python with a traceparent of its own; its ids and the job's. */
async function produce(queue: string): Promise<{ traceId: string; spanId: string; jobId: string }> {
  const res = await runPython(PRODUCER, [scheduler.grpcAddress, queue, stubDir, 'flaky', String(ATTEMPTS), String(BACKOFF_MS)], { timeoutMs: 30_000 });
  const out = lastJsonLine(res, 'python_tracing_client.py');
  expect({ error: out.error, code: res.code }).toEqual({ error: undefined, code: 0 });
  const traceId = String(out.trace_id);
  // The job joined the producer's trace: GetJob and dead letters show its trace id.
  expect(out.job_trace_id).toBe(traceId);
  return { traceId, spanId: String(out.span_id), jobId: String(out.job_id) };
}

async function completed(queue: string, id: string): Promise<pb.Job> {
  return eventually(
    async () => {
      const j = await client.getJob(queue, id);
      if (j.state === pb.JobState.JOB_STATE_FAILED || j.state === pb.JobState.JOB_STATE_DEAD_LETTERED) throw new Error(`job ${id} failed: ${j.failureReason}`);
      return j.state === pb.JobState.JOB_STATE_COMPLETED && j;
    },
    30_000,
    `job ${id} to complete`,
  );
}

/** The spans of `traceId` once `ready` holds for them. */
async function trace(traceId: string, ready: (spans: DecodedSpan[]) => boolean): Promise<DecodedSpan[]> {
  const of = (all: DecodedSpan[]): DecodedSpan[] => all.filter((s) => s.traceId === traceId);
  return of(await receiver.waitForSpans((all) => ready(of(all)), 20_000));
}

const named = (spans: DecodedSpan[], name: string, kind: DecodedSpan['kind']): DecodedSpan[] => spans.filter((s) => s.name === name && s.kind === kind);
const attemptOf = (s: DecodedSpan): number => Number(s.attributes['jobmesh.job.attempt']);
const byAttempt = (spans: DecodedSpan[]): DecodedSpan[] => [...spans].sort((a, b) => attemptOf(a) - attemptOf(b));

/** A span as the assertions look at it, so a failure shows the whole picture. */
const summary = (s: DecodedSpan) => ({
  name: s.name,
  kind: s.kind,
  service: s.serviceName,
  parent: s.parentSpanId,
  attempt: s.attributes['jobmesh.job.attempt'],
  status: s.status.code,
  exception: s.events.some((e) => e.name === 'exception'),
});

/**
 * The producer's side, the same in A and B: the scheduler's SERVER span continues the Python
 * producer's span, its PRODUCER span `send <queue>` is a child of it, and every span of the job
 * is in the producer's trace. Returns the PRODUCER span.
 */
function expectProducerSide(spans: DecodedSpan[], queue: string, p: { traceId: string; spanId: string; jobId: string }): DecodedSpan {
  const servers = named(spans, 'jobmesh.v1.SchedulerService/EnqueueJob', 'SERVER');
  expect(servers.map(summary)).toEqual([expect.objectContaining({ service: 'jobmesh-scheduler', parent: p.spanId })]);
  const server = servers[0]!;
  expect(server.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'jobmesh.v1.SchedulerService', 'rpc.method': 'EnqueueJob', 'rpc.grpc.status_code': 0 });
  const producers = named(spans, `send ${queue}`, 'PRODUCER');
  expect(producers.map(summary)).toEqual([expect.objectContaining({ service: 'jobmesh-scheduler', parent: server.spanId })]);
  const producer = producers[0]!;
  expect(producer.attributes).toMatchObject({ 'messaging.system': 'jobmesh', 'messaging.destination.name': queue, 'messaging.message.id': p.jobId, 'jobmesh.job.name': 'flaky' });
  // Every span that names the job (ids are per queue), wherever it was made, is in the producer's trace.
  const ofJob = receiver.spans().filter((s) => s.attributes['messaging.message.id'] === p.jobId && s.attributes['messaging.destination.name'] === queue);
  expect(ofJob.length).toBeGreaterThanOrEqual(1 + ATTEMPTS);
  expect([...new Set(ofJob.map((s) => s.traceId))]).toEqual([p.traceId]);
  return producer;
}

/** The three CONSUMER spans `process <queue>`, children of `producer`, attempts 1..3; 1 and 2 failed. */
function expectAttempts(spans: DecodedSpan[], queue: string, producer: DecodedSpan, jobId: string): DecodedSpan[] {
  const consumers = byAttempt(named(spans, `process ${queue}`, 'CONSUMER'));
  expect(consumers.map(summary)).toEqual([
    { name: `process ${queue}`, kind: 'CONSUMER', service: 'jobmesh-worker-pool', parent: producer.spanId, attempt: 1, status: 'ERROR', exception: true },
    { name: `process ${queue}`, kind: 'CONSUMER', service: 'jobmesh-worker-pool', parent: producer.spanId, attempt: 2, status: 'ERROR', exception: true },
    { name: `process ${queue}`, kind: 'CONSUMER', service: 'jobmesh-worker-pool', parent: producer.spanId, attempt: 3, status: expect.not.stringMatching(/^ERROR$/), exception: false },
  ]);
  for (const c of consumers) {
    expect(c.attributes).toMatchObject({ 'messaging.system': 'jobmesh', 'messaging.operation.type': 'process', 'messaging.destination.name': queue, 'messaging.message.id': jobId, 'jobmesh.job.name': 'flaky', 'jobmesh.job.max_attempts': ATTEMPTS });
  }
  const failure = consumers[0]!.events.find((e) => e.name === 'exception');
  expect(String(failure?.attributes['exception.message'])).toContain('failing attempt 1 on purpose');
  return consumers;
}

describe('one trace from a Python producer through the scheduler and worker-pool processes', () => {
  it('A: the in-process processor: SERVER under the producer, PRODUCER under it, three CONSUMER attempts under that, two of them ERROR', async () => {
    const p = await produce(queueA);
    await completed(queueA, p.jobId);
    const spans = await trace(p.traceId, (s) => named(s, `process ${queueA}`, 'CONSUMER').length >= ATTEMPTS && named(s, `send ${queueA}`, 'PRODUCER').length > 0 && named(s, 'jobmesh.v1.SchedulerService/EnqueueJob', 'SERVER').length > 0);
    const producer = expectProducerSide(spans, queueA, p);
    const consumers = expectAttempts(spans, queueA, producer, p.jobId);
    // In-process: no remote worker ran it.
    for (const c of consumers) expect(c.attributes).not.toHaveProperty('jobmesh.worker.id');
    expect(new Set(spans.map((s) => s.serviceName)).size).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it("B: the Python remote worker: each attempt's CONSUMER span names the worker, and the worker's reported span is its child", async () => {
    const worker = spawn(PYTHON, [PY_WORKER, '--concurrency', '2', '--worker-id', PY_WORKER_ID, '--names', 'flaky'], {
      env: { ...process.env, PYTHONPATH: stubDir, JOBMESH_ADDRESS: poolB.grpcAddress, JOBMESH_QUEUES: queueB },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    python = worker;
    worker.stdout!.on('data', (b: Buffer) => pythonLog.push(b.toString()));
    worker.stderr!.on('data', (b: Buffer) => pythonLog.push(b.toString()));
    await eventually(() => connected(poolB.grpcAddress, PY_WORKER_ID), 20_000, `the Python worker to connect (output: ${pythonLog.join('')})`);

    const p = await produce(queueB);
    await completed(queueB, p.jobId);
    const reportedOf = (s: DecodedSpan[]): DecodedSpan[] => byAttempt(s.filter((x) => x.attributes['jobmesh.span.reported'] === true));
    const spans = await trace(p.traceId, (s) => named(s, `process ${queueB}`, 'CONSUMER').length >= ATTEMPTS && reportedOf(s).length >= ATTEMPTS && named(s, `send ${queueB}`, 'PRODUCER').length > 0);
    const producer = expectProducerSide(spans, queueB, p);
    const consumers = expectAttempts(spans, queueB, producer, p.jobId);
    for (const c of consumers) expect(c.attributes['jobmesh.worker.id']).toBe(PY_WORKER_ID);

    const reported = reportedOf(spans);
    expect(reported.map(summary)).toEqual(
      consumers.map((c, i) => ({
        name: 'work flaky',
        kind: 'INTERNAL',
        service: 'jobmesh-worker-pool',
        parent: c.spanId,
        attempt: i + 1,
        status: i < 2 ? 'ERROR' : expect.not.stringMatching(/^ERROR$/),
        exception: false,
      })),
    );
    for (const r of reported) {
      // The worker's own attributes, as it sent them (a map<string, string>).
      expect(r.attributes).toMatchObject({ 'process.runtime.name': 'cpython', 'process.pid': String(worker.pid), 'jobmesh.job.name': 'flaky' });
      expect(r.endTimeUnixNano).toBeGreaterThanOrEqual(r.startTimeUnixNano);
    }
    expect(pythonLog.join('')).not.toMatch(/nack/i);
  }, 60_000);
});

/** Whether a worker with this id is connected to the replica at `address`. */
async function connected(address: string, workerId: string): Promise<boolean> {
  const c = new pb.WorkerServiceClient(address, credentials.createInsecure());
  try {
    const res = await new Promise<pb.ListWorkersResponse>((res, rej) =>
      c.listWorkers({ queue: '' }, new Metadata(), { deadline: new Date(Date.now() + 1000) }, (err, r) => (err ? rej(err) : res(r))),
    );
    return res.workers.some((w) => w.workerId === workerId);
  } catch {
    return false;
  } finally {
    c.close();
  }
}
