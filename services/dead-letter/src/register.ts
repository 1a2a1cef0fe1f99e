import { DeadLetterServiceService } from '@jobmesh/contracts';
import type { GrpcServer, RpcKit } from '@jobmesh/grpc-kit';
import type { Backbone } from '@jobmesh/queue';
import type { Logger } from '@jobmesh/telemetry';
import { Capturer } from './capture';
import { deadLetterHandlers } from './dead-letter-service';
import { type EnqueueFn, schedulerEnqueuer } from './replay';
import { DeadLetterStore } from './store';

export interface DeadLetterDeps {
  backbone: Backbone;
  kit: RpcKit;
  logger: Logger;
  /** How often every queue's failed set is swept, ms. */
  sweepIntervalMs: number;
  /** "host:port" of SchedulerService, which replays go through. */
  schedulerAddress: string;
  /** Deadline of each EnqueueJob call of a replay, ms. @default 10000 */
  enqueueTimeoutMs?: number;
  /** Replaces the gRPC call to the scheduler (tests). */
  enqueue?: EnqueueFn;
}

export interface Registered {
  /** The capture loop; started by start(). */
  capturer: Capturer;
  /** Runs the first sweep, then sweeps every interval and listens to failed events. */
  start(): Promise<void>;
  /** Ends open streams, stops capture and closes the scheduler client. */
  close(): Promise<void>;
}

/** Mounts DeadLetterService on `server`; `jobmesh up` and main.ts both call this. */
export function register(server: GrpcServer, deps: DeadLetterDeps): Registered {
  const { backbone, logger } = deps;
  const shutdown = new AbortController();
  const store = new DeadLetterStore(backbone.redis, backbone.registry.keys);
  const capturer = new Capturer(backbone.redis, backbone.registry, store, backbone.workerConnection, logger, { sweepIntervalMs: deps.sweepIntervalMs });
  const scheduler = deps.enqueue ? undefined : schedulerEnqueuer(deps.schedulerAddress, deps.enqueueTimeoutMs ?? 10_000);
  const enqueue = deps.enqueue ?? scheduler!.enqueue;
  server.add('jobmesh.v1.DeadLetterService', DeadLetterServiceService, deadLetterHandlers(deps.kit, { store, capturer, enqueue, shutdown: shutdown.signal }) as never);
  return {
    capturer,
    start: () => capturer.start(),
    close: async () => {
      shutdown.abort();
      await capturer.close();
      scheduler?.close();
    },
  };
}
