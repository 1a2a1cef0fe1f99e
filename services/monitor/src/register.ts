import { keda, MonitorServiceService } from '@jobmesh/contracts';
import type { Dial, GrpcServer, RpcKit } from '@jobmesh/grpc-kit';
import type { Backbone } from '@jobmesh/queue';
import type { Logger, Registry } from '@jobmesh/telemetry';
import { QueueFigures } from './figures';
import { type HealthTarget, SystemHealth } from './health';
import { ScalerBacklog, scalerHandlers } from './keda';
import { monitorMetrics } from './metrics';
import { monitorHandlers } from './monitor-service';

export interface MonitorDeps {
  backbone: Backbone;
  kit: RpcKit;
  logger: Logger;
  /** The process's metrics registry; the queue-level gauges are registered on it. */
  metrics: Registry;
  /**
   * The services GetSystemHealth checks. A function is called at each check: `jobmesh up` knows
   * its own gRPC port only after listen, which comes after register.
   */
  targets: HealthTarget[] | (() => HealthTarget[]);
  /** Deadline of each health check, ms. */
  healthTimeoutMs: number;
  /** TLS and API key of the health checks; plaintext without a key when unset. */
  dial?: Dial;
}

export interface Registered {
  figures: QueueFigures;
  /** Ends open WatchQueueStats streams and closes the health clients. */
  close(): Promise<void>;
}

/** The services GetSystemHealth checks, at their addresses. */
export function healthTargets(a: { scheduler: string; workerPool: string; deadLetter: string; monitor?: string }): HealthTarget[] {
  const targets = [
    { service: 'jobmesh.v1.SchedulerService', address: a.scheduler },
    { service: 'jobmesh.v1.WorkerService', address: a.workerPool },
    { service: 'jobmesh.v1.DeadLetterService', address: a.deadLetter },
  ];
  if (a.monitor) targets.push({ service: 'jobmesh.v1.MonitorService', address: a.monitor });
  return targets;
}

/**
 * Mounts MonitorService and KEDA's externalscaler.ExternalScaler on `server`, and the queue gauges
 * on the metrics registry; `jobmesh up` and main.ts both call this.
 */
export function register(server: GrpcServer, deps: MonitorDeps): Registered {
  const shutdown = new AbortController();
  const figures = new QueueFigures(deps.backbone);
  const targets = deps.targets;
  const health = new SystemHealth(deps.backbone, figures, typeof targets === 'function' ? targets : () => targets, deps.healthTimeoutMs, deps.logger, deps.dial);
  monitorMetrics(deps.metrics, deps.backbone, figures, deps.logger);
  server.add('jobmesh.v1.MonitorService', MonitorServiceService, monitorHandlers(deps.kit, { figures, health, shutdown: shutdown.signal }) as never);
  server.add('externalscaler.ExternalScaler', keda.ExternalScalerService, scalerHandlers(deps.kit, new ScalerBacklog(deps.backbone), shutdown.signal) as never);
  return {
    figures,
    close: async () => {
      shutdown.abort();
      health.close();
    },
  };
}
