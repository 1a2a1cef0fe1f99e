import { resolve } from 'node:path';
import { JobmeshClient } from '@jobmesh/sdk';
import { type SinkMode, startOtlpSink } from '../otlp-sink';
import type { FeatureScenario, JobmeshContext } from '../scenario';
import { jobmeshProcessing, queuePaused } from './processing';

const CONCURRENCY = 100;
const NOOP_PROCESSOR = resolve(__dirname, '../../fixtures/noop-processor.js');
/** The OpenTelemetry SDK's default OTLP protocol. */
const PROTOCOL = 'http/protobuf';
/** The receiver the traced side exports to (see otlp-sink.ts): BENCH_OTLP_RECEIVER, `count` or `decode`. */
const RECEIVER = process.env.BENCH_OTLP_RECEIVER?.trim() || 'count';

function receiverMode(): SinkMode {
  if (RECEIVER !== 'count' && RECEIVER !== 'decode') throw new Error(`BENCH_OTLP_RECEIVER must be count or decode, not "${RECEIVER}"`);
  return RECEIVER;
}

/**
 * One run of end-to-end (no-op jobs at concurrency 100 on a worker-pool process, timed from resume
 * to the last completion) with `otel` in the environment of its processes: the worker-pool and a
 * scheduler of the run's own that queues the jobs and is stopped before the clock starts. With
 * tracing on, that scheduler's enqueue spans are exported and every job stores the traceparent of
 * its `create` span, which its attempt's span continues, as in a traced deployment. The bench's
 * own scheduler (untraced, as in every scenario) only answers UpdateQueue and, inside the clock,
 * ResumeQueue, on both sides alike.
 */
async function tracedOrNot(ctx: JobmeshContext, otel: Record<string, string>, clockStarted?: () => void, clockStopped?: () => void): Promise<number> {
  await ctx.client.updateQueue({ queue: { name: ctx.queue, concurrency: CONCURRENCY }, updateMask: ['concurrency'] });
  return jobmeshProcessing(
    {
      ...ctx,
      startClock: () => {
        ctx.startClock();
        clockStarted?.();
      },
      stopClock: () => {
        ctx.stopClock();
        clockStopped?.();
      },
    },
    () => ctx.env.spawnWorkerPool({ JOBMESH_PROCESSORS: NOOP_PROCESSOR, JOBMESH_WORKER_QUEUES: ctx.queue, ...otel }),
    {
      enqueue: async () => {
        const scheduler = await ctx.env.spawnScheduler(otel);
        const client = new JobmeshClient({ address: `127.0.0.1:${scheduler.port}` });
        try {
          await queuePaused(client, ctx.queue, ctx.jobs);
        } finally {
          client.close();
          // A stop flushes the scheduler's spans; they are all in before the clock starts.
          await scheduler.stop();
        }
      },
    },
  );
}

const workerPoolSpans = (spans: Record<string, number>): number =>
  Object.entries(spans).reduce((n, [key, count]) => (key.startsWith('worker-pool ') ? n + count : n), 0);

/**
 * End-to-end with tracing on against the same with tracing off: 100 % sampling (always_on),
 * spans exported over OTLP/HTTP protobuf with the SDK's default batch settings to a receiver
 * started for the run as a process of its own (see otlp-sink.ts; by default the lean one, which
 * counts spans without decoding them). The ratio is traced over untraced jobs/s, both through
 * Jobmesh. Each traced run records the spans the receiver got, by service and kind, once the
 * processes have stopped (their stop flushes them), how many of the worker-pool's had arrived
 * when the clock stopped, and the CPU time the receiver used while the clock ran.
 */
export const endToEndTraced: FeatureScenario = {
  kind: 'feature',
  name: 'end-to-end-traced',
  title: `no-op jobs, concurrency ${CONCURRENCY}, traced (always_on, OTLP ${PROTOCOL}, receiver: ${RECEIVER}) vs untraced`,
  defaultJobs: 20_000,
  labels: { off: 'Jobmesh, tracing off', on: 'Jobmesh, tracing on' },

  off: (ctx) => tracedOrNot(ctx, {}),

  async on(ctx) {
    const sink = await startOtlpSink(receiverMode());
    try {
      // Asked when the clock stops, answered whenever the receiver gets to it; never rejects.
      let atClockStop: Promise<{ spans: number; cpuMs: number }> | undefined;
      let atClockStart: Promise<number> | undefined;
      const done = await tracedOrNot(
        ctx,
        { OTEL_EXPORTER_OTLP_ENDPOINT: sink.httpUrl, OTEL_EXPORTER_OTLP_PROTOCOL: PROTOCOL, OTEL_TRACES_SAMPLER: 'always_on' },
        () => (atClockStart = sink.counts().then((c) => c.cpuMs, () => Number.NaN)),
        () => (atClockStop = sink.counts().then((c) => ({ spans: workerPoolSpans(c.spans), cpuMs: c.cpuMs }), () => ({ spans: Number.NaN, cpuMs: Number.NaN }))),
      );
      const started = (await atClockStart) ?? Number.NaN;
      const stopped = (await atClockStop) ?? { spans: Number.NaN, cpuMs: Number.NaN };
      // The processes have stopped, and a stop flushes their spans: what they made has arrived.
      const counts = await sink.counts();
      ctx.record({
        ...Object.fromEntries(Object.entries(counts.spans).map(([key, n]) => [`spans ${key}`, n])),
        'worker-pool spans by clock stop': stopped.spans,
        'receiver CPU ms while timed': Math.round(stopped.cpuMs - started),
        'export requests': counts.requests,
        'other requests': counts.otherRequests,
      });
      return done;
    } finally {
      await sink.stop();
    }
  },
};
