import { openServiceHost } from '@jobmesh/host';
import type { Logger } from '@jobmesh/telemetry';
import type { MonitorEnv } from './config';
import { dashboardHandler } from './dashboard/dashboard';
import { healthTargets, register } from './register';

export interface RunningMonitor {
  /** The bound gRPC port (useful with port 0). */
  grpcPort: number;
  httpPort: number;
  logger: Logger;
  /** Graceful stop: NOT_SERVING, drain calls within the grace period, close Redis. */
  stop(): Promise<void>;
}

/** Starts the monitor as its own process would: Redis, MonitorService, the queue gauges on /metrics, the web dashboard at /. */
export async function startMonitor(env: MonitorEnv, opts: { logger?: Logger } = {}): Promise<RunningMonitor> {
  const host = await openServiceHost(env, { name: 'monitor', logger: opts.logger });
  try {
    const { backbone, kit, logger, metrics } = host;
    const targets = healthTargets({ scheduler: env.JOBMESH_SCHEDULER_ADDRESS, workerPool: env.JOBMESH_WORKER_POOL_ADDRESS, deadLetter: env.JOBMESH_DEAD_LETTER_ADDRESS });
    const monitor = register(host.server, { backbone, kit, logger, metrics, targets, healthTimeoutMs: env.JOBMESH_HEALTH_TIMEOUT, dial: host.dial });
    host.onStop(() => monitor.close());
    // The dashboard calls this monitor's own MonitorService, whose port is known after listen.
    let self = '';
    const dashboard = dashboardHandler({
      schedulerAddress: env.JOBMESH_SCHEDULER_ADDRESS,
      deadLetterAddress: env.JOBMESH_DEAD_LETTER_ADDRESS,
      workerPoolAddress: env.JOBMESH_WORKER_POOL_ADDRESS,
      monitorAddress: () => self,
      readOnly: env.JOBMESH_DASHBOARD_READ_ONLY,
      traceUiUrl: env.JOBMESH_TRACE_UI_URL,
      logger,
      auth: host.auth,
      dial: host.dial,
    });
    host.onStop(() => dashboard.close());
    const { grpcPort, grpcHost, ops } = await host.listen({ routes: dashboard.routes });
    self = dialAddress(grpcHost, grpcPort);
    logger.info({ grpc: `${grpcHost}:${grpcPort}`, http: ops.address, checks: targets.map((t) => `${t.service}@${t.address}`) }, 'monitor listening');
    return { grpcPort, httpPort: ops.port, logger, stop: host.stop };
  } catch (err) {
    await host.stop();
    throw err;
  }
}

/** Where this process reaches its own gRPC server: a wildcard listen address is dialled on loopback. */
function dialAddress(host: string, port: number): string {
  if (host === '0.0.0.0' || host === '') return `127.0.0.1:${port}`;
  if (host === '::') return `[::1]:${port}`;
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
