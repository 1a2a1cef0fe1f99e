import { resolveJobOptions } from '@jobmesh/core';
import type { Job } from 'bullmq';
import { JOBMESH_BACKOFF, jobmeshOpts, optionsOfBullJob, toBullOptions, traceIdOf } from './job-mapping';
import { durationToMs, jobOptionsFromProto, jobOptionsToProto, msToDuration, queueSpecFromProto, queueSpecToProto } from './proto-mapping';

const asJob = (opts: object, id = '7'): Job => ({ opts, id }) as unknown as Job;

describe('toBullOptions', () => {
  it("uses BullMQ's own exponential backoff when it means the same", () => {
    const opts = toBullOptions(resolveJobOptions({ backoff: { kind: 'exponential', delayMs: 500, jitter: 0.5 } }), {});
    expect(opts.backoff).toEqual({ type: 'exponential', delay: 500, jitter: 0.5 });
    expect((opts as { jobmesh?: unknown }).jobmesh).toBeUndefined();
  });

  it('uses the jobmesh strategy, with the spec kept on the job, for linear or capped backoff', () => {
    const spec = { kind: 'linear' as const, delayMs: 100, maxDelayMs: 1000 };
    const opts = toBullOptions(resolveJobOptions({ backoff: spec }), {});
    expect(opts.backoff).toEqual({ type: JOBMESH_BACKOFF, delay: 100 });
    expect(optionsOfBullJob(asJob(opts)).backoff).toEqual(spec);
  });

  it('reads the short option keys of jobs stored before they had names', () => {
    const old = asJob({ attempts: 2, jm: { b: { kind: 'linear', delayMs: 100 }, to: 1500, ik: 'k0', tp: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', rf: 'q:1:1', kf: { count: 3 } } });
    expect(optionsOfBullJob(old)).toMatchObject({ backoff: { kind: 'linear', delayMs: 100 }, timeoutMs: 1500, idempotencyKey: 'k0', replayOf: 'q:1:1', keepFailed: { count: 3 } });
    expect(traceIdOf(jobmeshOpts(old).traceparent)).toBe('0af7651916cd43dd8448eb211c80319c');
  });

  it('turns run_at into a delay from now and never a negative one', () => {
    const now = 1_000_000;
    expect(toBullOptions(resolveJobOptions({ runAt: new Date(now + 5000) }), {}, now).delay).toBe(5000);
    expect(toBullOptions(resolveJobOptions({ runAt: new Date(now - 5000) }), {}, now).delay).toBeUndefined();
  });

  it('maps retention to BullMQ keep-jobs with age in seconds, and count 0 to remove at once', () => {
    const opts = toBullOptions(resolveJobOptions({ keepCompleted: { count: 0 }, keepFailed: { count: 5, ageMs: 60_000 } }), {});
    expect(opts.removeOnComplete).toBe(true);
    expect(opts.removeOnFail).toEqual({ count: 5, age: 60 });
  });

  it('round-trips timeout, idempotency key, custom id and retention through a stored job', () => {
    const resolved = resolveJobOptions({ timeoutMs: 1500, idempotencyKey: 'k1', jobId: 'order-1', priority: 3, attempts: 4 });
    const back = optionsOfBullJob(asJob(toBullOptions(resolved, {}), 'order-1'));
    expect(back).toMatchObject({ timeoutMs: 1500, idempotencyKey: 'k1', jobId: 'order-1', priority: 3, attempts: 4, keepCompleted: { count: 1000, ageMs: 86_400_000 } });
  });

  it('does not report BullMQ numeric ids as custom job ids', () => {
    expect(optionsOfBullJob(asJob({}, '42')).jobId).toBeUndefined();
  });
});

describe('proto mapping', () => {
  it('converts durations both ways, with millisecond precision', () => {
    expect(durationToMs({ seconds: 2, nanos: 500_000_000 })).toBe(2500);
    expect(msToDuration(2500)).toEqual({ seconds: 2, nanos: 500_000_000 });
    expect(durationToMs(undefined)).toBeUndefined();
  });

  it('keeps job options through proto and back', () => {
    const spec = { attempts: 2, backoff: { kind: 'fixed' as const, delayMs: 250, jitter: 0.1 }, delayMs: 3000, priority: 9, timeoutMs: 100 };
    expect(jobOptionsFromProto(jobOptionsToProto(spec))).toMatchObject(spec);
  });

  it('gives a queue without concurrency the default, and drops a zero rate limit', () => {
    const spec = queueSpecFromProto(queueSpecToProto({ name: 'q', concurrency: 0, defaultJobOptions: {}, paused: false, deadLetter: {}, labels: {}, rateLimit: { max: 0, durationMs: 0 } }));
    expect(spec.concurrency).toBe(10);
    expect(spec.rateLimit).toBeUndefined();
  });

  it('reads the trace id out of a traceparent', () => {
    expect(traceIdOf('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(traceIdOf(undefined)).toBe('');
  });
});
