import { DeadLetterServiceService } from '@jobmesh/contracts';
import type { Dial, GrpcServer, RpcKit } from '@jobmesh/grpc-kit';
import { type Backbone, DeadLetterStore, FailedJobs } from '@jobmesh/queue';
import type { Logger, Registry } from '@jobmesh/telemetry';
import { Alerts } from './alerts';
import { Capturer } from './capture';
import type { WebhookSettings } from './config';
import { deadLetterHandlers } from './dead-letter-service';
import { deadLetterMetrics } from './metrics';
import { type EnqueueFn, schedulerEnqueuer } from './replay';

export interface DeadLetterDeps {
  backbone: Backbone;
  kit: RpcKit;
  logger: Logger;
  /** The process's metrics registry; the dead-letter metrics are registered on it. */
  metrics: Registry;
  /** How often every queue's failed set is swept, ms. */
  sweepIntervalMs: number;
  /**
   * "host:port" of SchedulerService, which replays go through. A function is called at the first
   * replay: `jobmesh up` knows its own gRPC port only after listen, which comes after register.
   */
  schedulerAddress: string | (() => string);
  /** TLS and API key of the calls to the scheduler; plaintext without a key when unset. */
  dial?: Dial;
  /** Deadline of each EnqueueJob call of a replay, ms. @default 10000 */
  enqueueTimeoutMs?: number;
  /** Replaces the gRPC call to the scheduler (tests). */
  enqueue?: EnqueueFn;
  /** Webhook alerts for new dead letters; none when absent or when no severity has a URL. */
  webhooks?: WebhookSettings;
}

export interface Registered {
  /** The capture loop; started by start(). */
  capturer: Capturer;
  /** The webhook alerts, when any severity has a URL. */
  alerts?: Alerts;
  /** Starts alert delivery and capture; resolves once failed events are listened to (see Capturer.start). */
  start(): Promise<void>;
  /** Ends open streams, stops capture and alerting and closes the scheduler client. */
  close(): Promise<void>;
}

/** Mounts DeadLetterService on `server`; `jobmesh up` and main.ts both call this. */
export function register(server: GrpcServer, deps: DeadLetterDeps): Registered {
  const { backbone, logger } = deps;
  const shutdown = new AbortController();
  const store = new DeadLetterStore(backbone);
  const metrics = deadLetterMetrics(deps.metrics, store, logger);
  const alerts =
    deps.webhooks && Alerts.enabled(deps.webhooks)
      ? new Alerts({ backbone, settings: deps.webhooks, logger, metrics })
      : undefined;
  const capturer = new Capturer({ registry: backbone.registry, failed: new FailedJobs(backbone), store, logger }, {
    sweepIntervalMs: deps.sweepIntervalMs,
    onCaptured: async (d) => {
      metrics.captured.inc({ queue: d.job?.queue ?? '', category: d.category });
      await alerts?.alert(d);
    },
  });
  // The scheduler client is made at the first replay, when a lazy address is known.
  let scheduler: ReturnType<typeof schedulerEnqueuer> | undefined;
  const address = deps.schedulerAddress;
  const enqueue: EnqueueFn =
    deps.enqueue ??
    ((req, signal, traceparent) => {
      scheduler ??= schedulerEnqueuer(typeof address === 'function' ? address() : address, deps.enqueueTimeoutMs ?? 10_000, deps.dial);
      return scheduler.enqueue(req, signal, traceparent);
    });
  server.add('jobmesh.v1.DeadLetterService', DeadLetterServiceService, deadLetterHandlers(deps.kit, { store, enqueue, shutdown: shutdown.signal }) as never);
  return {
    capturer,
    alerts,
    start: async () => {
      alerts?.start();
      await capturer.start();
    },
    close: async () => {
      shutdown.abort();
      await capturer.close();
      await store.close();
      await alerts?.close();
      scheduler?.close();
    },
  };
}
