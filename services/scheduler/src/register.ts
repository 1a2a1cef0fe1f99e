import { setMaxListeners } from 'node:events';
import { SchedulerServiceService } from '@jobmesh/contracts';
import type { GrpcServer, RpcKit } from '@jobmesh/grpc-kit';
import { type Backbone, type DurableAck, JobAdmin } from '@jobmesh/queue';
import type { Logger } from '@jobmesh/telemetry';
import { Enqueuer } from './enqueue';
import { Jobs } from './jobs';
import { Queues } from './queues';
import { schedulerHandlers } from './scheduler-service';
import { type ScheduleLimits, Schedules } from './schedules';
import { JobEventHub } from './watch';

export interface SchedulerDeps {
  backbone: Backbone;
  kit: RpcKit;
  logger: Logger;
  maxPayloadBytes: number;
  idempotencyTtlMs: number;
  /** Enqueues answer once this many replicas have them (JOBMESH_DURABLE_ACK); unset, at once. */
  durableAck?: DurableAck;
  /** Per-queue schedule limits. @default 1000 schedules, 1 s minimum interval */
  scheduleLimits?: ScheduleLimits;
}

export interface Registered {
  /** Ends open streams and releases the service's Redis resources. */
  close(): Promise<void>;
}

/** Mounts SchedulerService on `server`; `jobmesh up` and main.ts both call this. */
export function register(server: GrpcServer, deps: SchedulerDeps): Registered {
  const { backbone, logger } = deps;
  const shutdown = new AbortController();
  // Every open WatchJob listens to it: no limit, and no MaxListenersExceededWarning past ten.
  setMaxListeners(0, shutdown.signal);
  const admin = new JobAdmin(backbone);
  const enqueuer = new Enqueuer(backbone, admin, { maxPayloadBytes: deps.maxPayloadBytes, idempotencyTtlMs: deps.idempotencyTtlMs, durableAck: deps.durableAck });
  const hub = new JobEventHub(backbone, logger);
  const parts = {
    queues: new Queues(backbone.registry, admin),
    enqueuer,
    jobs: new Jobs(backbone.registry, admin),
    schedules: new Schedules(backbone.registry, deps.maxPayloadBytes, deps.scheduleLimits),
    hub,
    logger,
    shutdown: shutdown.signal,
  };
  server.add('jobmesh.v1.SchedulerService', SchedulerServiceService, schedulerHandlers(deps.kit, parts) as never);
  return {
    close: async () => {
      shutdown.abort();
      await hub.close();
      await enqueuer.close();
    },
  };
}
