// Traces across the scheduler, a worker-pool and the dead-letter service, run as separate OS
// processes exporting over OTLP/gRPC to a receiver that decodes the real requests: a job's trace
// from the caller's traceparent through its attempts, bulk and flow enqueues, schedules (a new
// trace per run, linked), and a dead letter and its replay linked both ways.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as pb from '@jobmesh/contracts';
import { DeadLetterClient, JobmeshClient } from '@jobmesh/sdk';
import { type DecodedSpan, type OtlpReceiver, type RedisHandle, startOtlpReceiver, startRedis, waitFor } from '@jobmesh/testing';
import { FAILING_PROCESSOR, killAll, startService } from './fixtures/services';

const TRACING_PROCESSOR = resolve(__dirname, 'fixtures/tracing-processor.js');
const tinyBackoff = { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: { seconds: 0, nanos: 20_000_000 } };

let redis: RedisHandle;
let receiver: OtlpReceiver;
let dir: string;
let client: JobmeshClient;
/** "host:port" of the scheduler process. */
let schedulerAddress: string;
let dl: DeadLetterClient;

const hex = (n: number): string => randomUUID().replace(/-/g, '').repeat(2).slice(0, n);

beforeAll(async () => {
  redis = await startRedis();
  receiver = await startOtlpReceiver();
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-tracing-'));
  const common = {
    REDIS_URL: redis.url,
    JOBMESH_REDIS_PREFIX: `tr-${randomUUID().slice(0, 8)}`,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.grpcUrl,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
    OTEL_BSP_SCHEDULE_DELAY: '100',
  };
  const scheduler = await startService('scheduler', { ...common, OTEL_SERVICE_NAME: 'jobmesh-scheduler' }, dir);
  await startService('worker-pool', { ...common, OTEL_SERVICE_NAME: 'jobmesh-worker-pool', JOBMESH_PROCESSORS: `${TRACING_PROCESSOR},${FAILING_PROCESSOR}` }, dir);
  const dlq = await startService('dead-letter', { ...common, OTEL_SERVICE_NAME: 'jobmesh-dead-letter', JOBMESH_SCHEDULER_ADDRESS: scheduler.grpcAddress }, dir);
  schedulerAddress = scheduler.grpcAddress;
  client = new JobmeshClient({ address: schedulerAddress });
  dl = DeadLetterClient.connect(dlq.grpcAddress);
}, 60_000);

afterAll(async () => {
  client?.close();
  dl?.close();
  await killAll();
  await receiver?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function newQueue(): Promise<string> {
  const queue = `tr-${randomUUID().slice(0, 8)}`;
  await client.createQueue({ queue: { name: queue, concurrency: 5 } });
  return queue;
}

const ofTrace = (traceId: string): DecodedSpan[] => receiver.spans().filter((s) => s.traceId === traceId);
/** Whether `traceId` has at least `n` spans of each kind given (each service exports on its own schedule). */
const hasKinds = (traceId: string, kinds: Partial<Record<DecodedSpan['kind'], number>>): boolean =>
  Object.entries(kinds).every(([kind, n]) => ofTrace(traceId).filter((s) => s.kind === kind).length >= n!);
const one = (spans: DecodedSpan[], pred: (s: DecodedSpan) => boolean, what: string): DecodedSpan => {
  const found = spans.filter(pred);
  if (found.length !== 1) throw new Error(`expected one ${what}, found ${found.length}: ${spans.map((s) => `${s.serviceName}/${s.name}`).join(', ')}`);
  return found[0]!;
};

it("continues the caller's traceparent through the enqueue and every attempt, retries as sibling spans", async () => {
  const queue = await newQueue();
  const traceId = hex(32);
  const callerSpan = hex(16);
  // A unary EnqueueJob (coalescing off), which has a SERVER span of its own.
  const unary = new JobmeshClient({ address: schedulerAddress, coalesce: false });
  const { job } = await unary
    .enqueueJob({ queue, job: { name: 'flaky', data: {}, options: { attempts: 3, backoff: tinyBackoff } } }, { metadata: { traceparent: `00-${traceId}-${callerSpan}-01` } })
    .finally(() => unary.close());
  await waitFor('the job to complete', async () => (await client.getJob(queue, job!.id)).state === pb.JobState.JOB_STATE_COMPLETED, 30_000);
  expect((await client.getJob(queue, job!.id)).traceId).toBe(traceId);
  const spans = await receiver
    .waitForSpans(() => ofTrace(traceId).filter((s) => s.name === 'flaky-work').length === 3 && hasKinds(traceId, { SERVER: 1, PRODUCER: 1, CONSUMER: 3 }), 15_000)
    .then(() => ofTrace(traceId));

  const server = one(spans, (s) => s.name === 'jobmesh.v1.SchedulerService/EnqueueJob', 'server span');
  expect(server).toMatchObject({ kind: 'SERVER', parentSpanId: callerSpan, serviceName: 'jobmesh-scheduler' });
  expect(server.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'jobmesh.v1.SchedulerService', 'rpc.method': 'EnqueueJob', 'rpc.grpc.status_code': 0 });
  const producer = one(spans, (s) => s.kind === 'PRODUCER', 'producer span');
  expect(producer).toMatchObject({ name: `send ${queue}`, parentSpanId: server.spanId, serviceName: 'jobmesh-scheduler' });
  expect(producer.attributes).toMatchObject({ 'messaging.system': 'jobmesh', 'messaging.operation.type': 'send', 'messaging.destination.name': queue, 'messaging.message.id': job!.id, 'jobmesh.job.name': 'flaky' });

  const attempts = spans.filter((s) => s.kind === 'CONSUMER').sort((a, b) => Number(a.attributes['jobmesh.job.attempt']) - Number(b.attributes['jobmesh.job.attempt']));
  expect(attempts.map((a) => [a.name, a.parentSpanId, a.serviceName, a.attributes['jobmesh.job.attempt']])).toEqual([1, 2, 3].map((n) => [`process ${queue}`, producer.spanId, 'jobmesh-worker-pool', n]));
  expect(attempts.map((a) => a.status.code)).toEqual(['ERROR', 'ERROR', 'UNSET']);
  expect(attempts[0]!.events.find((e) => e.name === 'exception')?.attributes['exception.message']).toBe('flaky attempt 1');
  expect(attempts[1]!.attributes['jobmesh.attempt.final']).toBe(false);
  expect(attempts[0]!.attributes['messaging.operation.type']).toBe('process');
  // Each attempt starts after the one before ended (the retry's delay is the gap between them).
  expect(attempts[1]!.startTimeUnixNano).toBeGreaterThanOrEqual(attempts[0]!.endTimeUnixNano);
  // The processor's own span runs inside its attempt's.
  const work = spans.filter((s) => s.name === 'flaky-work').map((s) => s.parentSpanId).sort();
  expect(work).toEqual(attempts.map((a) => a.spanId).sort());
}, 60_000);

it("gives a coalesced enqueueJob (an EnqueueStream message) a send span that is the caller's span's child", async () => {
  const queue = await newQueue();
  const traceId = hex(32);
  const callerSpan = hex(16);
  const { job } = await client.enqueueJob({ queue, job: { name: 'ok', data: {} } }, { metadata: { traceparent: `00-${traceId}-${callerSpan}-01` } });
  // The scheduler and the worker-pool export on their own schedules: wait for both spans.
  await receiver.waitForSpans(() => hasKinds(traceId, { PRODUCER: 1, CONSUMER: 1 }), 20_000);
  const spans = ofTrace(traceId);
  // Streams have no SERVER span: the job's own send span continues the caller's.
  expect(spans.filter((s) => s.kind === 'SERVER')).toEqual([]);
  const send = one(spans, (s) => s.kind === 'PRODUCER', 'producer span');
  expect(send).toMatchObject({ name: `send ${queue}`, parentSpanId: callerSpan, serviceName: 'jobmesh-scheduler' });
  expect(send.attributes['messaging.message.id']).toBe(job!.id);
  expect(one(spans, (s) => s.kind === 'CONSUMER', 'attempt span').parentSpanId).toBe(send.spanId);
}, 60_000);

it('gives a bulk enqueue one span with the batch count and each job its own context', async () => {
  const queue = await newQueue();
  const traceId = hex(32);
  const res = await client.enqueueJobs({ queue, jobs: [1, 2, 3].map(() => ({ name: 'ok', data: {} })) }, { metadata: { traceparent: `00-${traceId}-${hex(16)}-01` } });
  const ids = res.jobs.map((j) => j.id);
  // The send span and its three create spans are the scheduler's, the attempts the worker-pool's.
  await receiver.waitForSpans(() => hasKinds(traceId, { CONSUMER: 3 }) && ofTrace(traceId).filter((s) => s.name === `create ${queue}` || s.name === `send ${queue}`).length === 4, 20_000);
  const spans = ofTrace(traceId);
  const send = one(spans, (s) => s.name === `send ${queue}`, 'send span');
  expect(send.attributes['messaging.batch.message_count']).toBe(3);
  const creates = spans.filter((s) => s.name === `create ${queue}`);
  expect(creates.map((c) => c.parentSpanId)).toEqual([send.spanId, send.spanId, send.spanId]);
  expect(creates.map((c) => c.attributes['messaging.message.id']).sort()).toEqual([...ids].sort());
  // Each job's attempt is a child of its own create span.
  const byId = new Map(creates.map((c) => [c.attributes['messaging.message.id'], c.spanId]));
  for (const a of spans.filter((s) => s.kind === 'CONSUMER')) expect(a.parentSpanId).toBe(byId.get(a.attributes['messaging.message.id']));
}, 60_000);

it("links a flow parent's enqueue span to its children's", async () => {
  const queue = await newQueue();
  const traceId = hex(32);
  await client.enqueueFlow(
    { root: { queue, job: { name: 'ok', data: {} }, children: [{ queue, job: { name: 'ok', data: { c: 1 } } }, { queue, job: { name: 'ok', data: { c: 2 } } }] } },
    { metadata: { traceparent: `00-${traceId}-${hex(16)}-01` } },
  );
  await receiver.waitForSpans(() => ofTrace(traceId).filter((s) => s.kind === 'CONSUMER' && s.status.code !== 'ERROR').length >= 3 && hasKinds(traceId, { PRODUCER: 3 }), 20_000);
  const sends = ofTrace(traceId).filter((s) => s.kind === 'PRODUCER');
  expect(sends).toHaveLength(3);
  const root = one(sends, (s) => s.links.length > 0, 'flow root span');
  expect(root.attributes['messaging.batch.message_count']).toBe(3);
  expect(root.links.map((l) => l.spanId).sort()).toEqual(sends.filter((s) => s !== root).map((s) => s.spanId).sort());
}, 60_000);

it('starts a new trace for each run of a schedule, linked to the schedule', async () => {
  const queue = await newQueue();
  const traceId = hex(32);
  await client.upsertSchedule({ id: 'tick', queue, every: { seconds: 1, nanos: 0 }, limit: 1, template: { name: 'ok', data: {} } }, { metadata: { traceparent: `00-${traceId}-${hex(16)}-01` } });
  const upsert = (await receiver.waitForSpans(() => ofTrace(traceId).some((s) => s.name.endsWith('/UpsertSchedule')), 15_000)).find((s) => s.traceId === traceId && s.name.endsWith('/UpsertSchedule'))!;
  const spans = await receiver.waitForSpans((all) => all.some((s) => s.name === `process ${queue}`), 20_000);
  const run = spans.find((s) => s.name === `process ${queue}`)!;
  expect(run.traceId).not.toBe(traceId);
  expect(run.parentSpanId).toBe('');
  expect(run.links).toEqual([expect.objectContaining({ traceId, spanId: upsert.spanId })]);
  expect(run.attributes['jobmesh.schedule.id']).toBe('tick');
}, 60_000);

it("records the dead letter's capture in the job's trace, and the replay links back to it", async () => {
  const queue = await newQueue();
  const traceId = hex(32);
  const { job } = await client.enqueueJob({ queue, job: { name: 'fail', data: {}, options: { attempts: 2, backoff: tinyBackoff } } }, { metadata: { traceparent: `00-${traceId}-${hex(16)}-01` } });
  const id = `${queue}:${job!.id}:2`;
  await waitFor('the dead letter', () => dl.get(id).then(() => true, () => false), 30_000);
  const letter = await dl.get(id);
  expect(letter.traceId).toBe(traceId);

  const spans = await receiver
    .waitForSpans(() => ofTrace(traceId).some((s) => s.name === `dead_letter ${queue}`) && hasKinds(traceId, { PRODUCER: 1, CONSUMER: 2 }), 15_000)
    .then(() => ofTrace(traceId));
  const producer = one(spans, (s) => s.kind === 'PRODUCER', 'producer span');
  const capture = one(spans, (s) => s.name === `dead_letter ${queue}`, 'capture span');
  expect(capture).toMatchObject({ parentSpanId: producer.spanId, serviceName: 'jobmesh-dead-letter' });
  expect(capture.attributes).toMatchObject({ 'jobmesh.dead_letter.id': id, 'jobmesh.dead_letter.category': 'EXHAUSTED_RETRIES', 'jobmesh.dead_letter.severity': expect.any(String) });
  expect(letter.traceparent).toBe(`00-${traceId}-${capture.spanId}-01`);
  expect(spans.filter((s) => s.name === `process ${queue}`).map((s) => s.status.code)).toEqual(['ERROR', 'ERROR']);

  const replayed = (await dl.replay({ ids: [id] })).replayed[0]!;
  const all = await receiver.waitForSpans((s) => {
    const replaySpan = s.find((x) => x.name === `replay ${queue}`);
    return !!replaySpan && s.some((x) => x.kind === 'PRODUCER' && x.attributes['messaging.message.id'] === replayed.job!.id) && hasKinds(replaySpan.traceId, { SERVER: 1 });
  }, 15_000);
  const replay = all.find((s) => s.name === `replay ${queue}`)!;
  expect(replay).toMatchObject({ parentSpanId: '', serviceName: 'jobmesh-dead-letter' });
  expect(replay.traceId).not.toBe(traceId);
  expect(replay.links).toEqual([expect.objectContaining({ traceId, spanId: capture.spanId })]);
  // The replayed job's enqueue continues the replay's trace: its trace links back.
  const server = one(ofTrace(replay.traceId), (s) => s.kind === 'SERVER', "the replay's enqueue");
  expect(server.parentSpanId).toBe(replay.spanId);
  expect((await client.getJob(replayed.job!.queue, replayed.job!.id)).traceId).toBe(replay.traceId);
}, 90_000);
