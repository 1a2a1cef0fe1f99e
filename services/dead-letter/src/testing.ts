import * as pb from '@jobmesh/contracts';
import { DeadLetterClient, defineProcessor, UnrecoverableError } from '@jobmesh/sdk';
import { silentLogger } from '@jobmesh/telemetry';
import { serviceEnv, useHarness } from '@jobmesh/testing';
import { type PoolHarness, startPoolHarness } from '@jobmesh/worker-pool/testing';
import { loadDeadLetterEnv, type RunningDeadLetter, startDeadLetter } from './index';

export { failedCount, uniqueQueue, waitFor } from '@jobmesh/testing';

export { DeadLetterClient };

export interface DeadLetterHarness extends PoolHarness {
  /**
   * Starts a dead-letter service (port 0, sweep every 300 ms) on the harness's Redis and prefix,
   * with `env` on top (e.g. JOBMESH_DLQ_WEBHOOK_*); its stop() is idempotent.
   */
  startDeadLetter(env?: Record<string, string>): Promise<{ service: RunningDeadLetter; client: DeadLetterClient }>;
}

/** startDeadLetterHarness for a test file: started in beforeAll, stopped in afterAll (see useHarness). */
export function useDeadLetterHarness(poolEnv: Record<string, string> = {}): DeadLetterHarness {
  return useHarness('dead-letter', () => startDeadLetterHarness(poolEnv));
}

/**
 * A scheduler, one worker-pool replica with the processors below on every queue, and
 * dead-letter services started on demand; stop() stops them all.
 * - `fail`: always throws Error('boom').
 * - `fatal`: throws UnrecoverableError('bad input'), unless its data has `fixed: true`.
 * - `hang`: runs until its attempt is aborted (a timeout).
 * - jobs of any other name have no processor.
 * `poolEnv` is added to the worker-pool's settings (e.g. a short JOBMESH_STALLED_INTERVAL).
 */
export async function startDeadLetterHarness(poolEnv: Record<string, string> = {}): Promise<DeadLetterHarness> {
  const h = await startPoolHarness();
  const pool = [
    defineProcessor({ queue: '*', name: 'fail', process: async () => Promise.reject(new Error('boom')) }),
    defineProcessor({
      queue: '*',
      name: 'fatal',
      process: async (job) => {
        if (job.data.fixed !== true) throw new UnrecoverableError('bad input');
        return { fixed: true };
      },
    }),
    defineProcessor({
      queue: '*',
      name: 'hang',
      process: (_job, ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error), { once: true })),
    }),
  ];
  await h.startPool(pool, poolEnv);
  const running: Array<{ service: RunningDeadLetter; client: DeadLetterClient }> = [];
  return {
    ...h,
    startDeadLetter: async (env = {}) => {
      const service = await startDeadLetter(
        loadDeadLetterEnv(serviceEnv(h.redis, h.prefix, { JOBMESH_DLQ_SWEEP_INTERVAL: '300ms', JOBMESH_SCHEDULER_ADDRESS: h.address, ...env })),
        { logger: silentLogger() },
      );
      const client = DeadLetterClient.connect(`127.0.0.1:${service.grpcPort}`);
      // Idempotent, so a test may stop an instance and stop() still call it.
      let stopping: Promise<void> | undefined;
      const stopOnce = service.stop;
      service.stop = () => (stopping ??= (client.close(), stopOnce()));
      const r = { service, client };
      running.push(r);
      return r;
    },
    stop: async () => {
      await Promise.all(running.map((r) => r.service.stop()));
      await h.stop();
    },
  };
}

const tinyBackoff = { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: pb.msToDuration(10) };

/**
 * Enqueues `fail` (attempts 2, 10 ms backoff), `fatal` and no-processor (`ghost`) jobs. Ghosts are
 * to be dead-lettered at once rather than wait for a processor: their queue gets processor_wait 0
 * (a change the worker-pool also applies to ghosts it already holds waiting).
 */
export async function enqueueFailures(h: PoolHarness, queue: string, n: { fail?: number; fatal?: number; ghost?: number }): Promise<void> {
  if (n.ghost) await h.client.updateQueue({ queue: { name: queue, processorWait: { seconds: 0, nanos: 0 } }, updateMask: ['processor_wait'] });
  const jobs = [
    ...Array.from({ length: n.fail ?? 0 }, (_, i) => ({ name: 'fail', data: { i }, options: { attempts: 2, backoff: tinyBackoff } })),
    ...Array.from({ length: n.fatal ?? 0 }, (_, i) => ({ name: 'fatal', data: { i }, options: { attempts: 3 } })),
    ...Array.from({ length: n.ghost ?? 0 }, (_, i) => ({ name: 'ghost', data: { i }, options: { attempts: 3 } })),
  ];
  await h.client.enqueueJobs({ queue, jobs });
}
