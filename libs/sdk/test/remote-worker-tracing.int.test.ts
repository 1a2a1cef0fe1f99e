// A RemoteWorker runs each processor in the OpenTelemetry context of its Assignment's traceparent,
// so a user's spans nest under the worker-pool's attempt span. The pool here does not export
// traces (no SDK in this process), so Assignment.traceparent is the one the producer sent with the
// enqueue, as the scheduler stored it: the test knows the ids to expect. A context manager is
// registered, as an SDK would, so that context.active() follows the processor's awaits.
import { randomBytes } from 'node:crypto';
import * as pb from '@jobmesh/contracts';
import { defineProcessor, RemoteWorker } from '@jobmesh/sdk';
import { ROOT_CONTEXT, type SpanContext, context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '@jobmesh/worker-pool/testing';

let h: PoolHarness;
let address: string;
const workers: RemoteWorker[] = [];

beforeAll(async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  h = await startPoolHarness();
  const pool = await h.startPool([]);
  address = `127.0.0.1:${pool.grpcPort}`;
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop({ graceMs: 0 })));
});
afterAll(async () => {
  await h.stop();
  context.disable();
});

/** What a processor saw: the active span context at its start and after an await. */
interface Seen {
  atStart: SpanContext | undefined;
  afterAwait: SpanContext | undefined;
}

/**
 * A RemoteWorker on a new queue whose processor `p` records what it saw, by job id; started (and
 * so connected, its stream's callbacks bound) inside `ambient` when given, as in a caller's span.
 */
async function tracedWorker(ambient?: SpanContext): Promise<{ queue: string; seen: Map<string, Seen> }> {
  const queue = uniqueQueue('rw-trace');
  await h.client.createQueue({ queue: { name: queue } });
  const seen = new Map<string, Seen>();
  const w = new RemoteWorker({
    address,
    processors: [
      defineProcessor({
        queue,
        name: 'p',
        async process(job, ctx) {
          const atStart = trace.getSpanContext(context.active());
          await ctx.progress(50);
          // A timer hop too (not a wait for anything): the context must survive both kinds of await.
          await new Promise((r) => setTimeout(r, 1));
          seen.set(job.id, { atStart, afterAwait: trace.getSpanContext(context.active()) });
          return 'ok';
        },
      }),
    ],
  });
  workers.push(w);
  await (ambient ? context.with(trace.setSpanContext(ROOT_CONTEXT, ambient), () => w.start()) : w.start());
  return { queue, seen };
}

async function completed(queue: string, id: string): Promise<void> {
  await eventually(async () => (await h.client.getJob(queue, id)).state === pb.JobState.JOB_STATE_COMPLETED, 20_000, `job ${id} to complete`);
}

it("runs a processor in the context of the Assignment's traceparent: its active span context is that remote parent, across awaits", async () => {
  const { queue, seen } = await tracedWorker();
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'p' } }, { metadata: { traceparent: `00-${traceId}-${spanId}-01` } });
  await completed(queue, job!.id);
  const expected = { traceId, spanId, traceFlags: 1, isRemote: true };
  expect(seen.get(job!.id)).toEqual({ atStart: expect.objectContaining(expected) as SpanContext, afterAwait: expect.objectContaining(expected) as SpanContext });
});

it('keeps the sampled flag of the traceparent: 00 is not sampled', async () => {
  const { queue, seen } = await tracedWorker();
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'p' } }, { metadata: { traceparent: `00-${traceId}-${spanId}-00` } });
  await completed(queue, job!.id);
  expect(seen.get(job!.id)?.atStart).toEqual(expect.objectContaining({ traceId, spanId, traceFlags: 0, isRemote: true }));
});

it('runs a job without a traceparent in the root context, not in the context the worker was started in', async () => {
  const ambient: SpanContext = { traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex'), traceFlags: 1, isRemote: true };
  const { queue, seen } = await tracedWorker(ambient);
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'p' } });
  await completed(queue, job!.id);
  expect(seen.get(job!.id)).toEqual({ atStart: undefined, afterAwait: undefined });
});
