import { parseEnv } from '@jobmesh/config';
import { onShutdownSignal, openServiceHost } from '@jobmesh/host';
import { deadLetterOwnEnvShape, register as registerDeadLetter, webhookSettings } from '@jobmesh/dead-letter';
import { dashboardHandler, healthTargets, monitorOwnEnvShape, register as registerMonitor } from '@jobmesh/monitor';
import { register as registerScheduler, schedulerOwnEnvShape } from '@jobmesh/scheduler';
import { register as registerWorkerPool, workerPoolEnvSchema } from '@jobmesh/worker-pool';
import { createLogger } from '@jobmesh/telemetry';
import { type LocalRedis, NO_REDIS_HELP, hasRedisServer, startLocalRedis } from './local-redis';

/**
 * Every service's settings: the worker-pool's schema extends the common one (and so covers the
 * scheduler's); the dead-letter service adds its capture and alerting settings.
 */
export const upEnvSchema = workerPoolEnvSchema.extend({ ...schedulerOwnEnvShape, ...deadLetterOwnEnvShape, ...monitorOwnEnvShape });

export interface UpHandle {
  grpcAddress: string;
  httpAddress: string;
  redisUrl: string;
  stop(): Promise<void>;
}

/**
 * `jobmesh up`: every service in one process, on one gRPC port and one HTTP port, with Redis from
 * REDIS_URL or a redis-server it starts and stops itself.
 */
export async function up(envSource: NodeJS.ProcessEnv = process.env, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<UpHandle> {
  const env = parseEnv(upEnvSchema, envSource);
  let local: LocalRedis | undefined;
  let redisUrl = env.REDIS_URL;
  if (!redisUrl && !env.REDIS_SENTINELS) {
    if (!hasRedisServer()) throw new Error(NO_REDIS_HELP);
    local = await startLocalRedis();
    redisUrl = local.url;
  }
  // Closed last, and also if start-up fails part-way: a Redis connection left open would keep
  // reconnecting to the stopped local Redis and the process would never exit.
  const host = await openServiceHost(env, { name: 'jobmesh', redisUrl }).catch(async (err: unknown) => {
    await local?.stop();
    throw err;
  });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopped ??= host.stop().finally(() => local?.stop()));
  try {
    const { backbone, kit, logger, metrics, config } = host;
    // The host stops services in reverse order: worker-pool first (it lets active jobs finish
    // while the scheduler still answers), then dead-letter (its replays need the scheduler).
    const scheduler = registerScheduler(host.server, {
      backbone,
      kit,
      logger,
      maxPayloadBytes: env.JOBMESH_MAX_PAYLOAD_BYTES,
      idempotencyTtlMs: env.JOBMESH_IDEMPOTENCY_TTL,
      scheduleLimits: { maxPerQueue: env.JOBMESH_MAX_SCHEDULES_PER_QUEUE, minIntervalMs: env.JOBMESH_MIN_SCHEDULE_INTERVAL },
    });
    host.onStop(() => scheduler.close());
    // Replays go through this process's own SchedulerService, whose port is known after listen.
    let selfAddress = '';
    const webhooks = webhookSettings(env);
    const deadLetter = registerDeadLetter(host.server, {
      backbone,
      kit,
      logger,
      metrics,
      sweepIntervalMs: env.JOBMESH_DLQ_SWEEP_INTERVAL,
      schedulerAddress: () => selfAddress,
      webhooks,
    });
    host.onStop(() => deadLetter.close());
    const workerPool = await registerWorkerPool(host.server, { backbone, kit, logger, metrics, env, config });
    host.onStop(() => workerPool.close());
    // Every service is on this process's one port: GetSystemHealth asks them there.
    const monitor = registerMonitor(host.server, {
      backbone,
      kit,
      logger,
      metrics,
      targets: () => healthTargets({ scheduler: selfAddress, workerPool: selfAddress, deadLetter: selfAddress, monitor: selfAddress }),
      healthTimeoutMs: env.JOBMESH_HEALTH_TIMEOUT,
    });
    host.onStop(() => monitor.close());
    // The web dashboard on the HTTP port, calling the services on this process's own gRPC port.
    const dashboard = dashboardHandler({
      schedulerAddress: () => selfAddress,
      deadLetterAddress: () => selfAddress,
      workerPoolAddress: () => selfAddress,
      monitorAddress: () => selfAddress,
      readOnly: env.JOBMESH_DASHBOARD_READ_ONLY,
      traceUiUrl: env.JOBMESH_TRACE_UI_URL,
      logger,
    });
    host.onStop(() => dashboard.close());
    const { grpcPort, grpcHost, ops } = await host.listen({ routes: dashboard.routes });
    const grpcAddress = `${grpcHost}:${grpcPort}`;
    selfAddress = dialAddress(grpcHost, grpcPort);
    const loopback = /^(127\.|localhost|\[?::1\]?)/.test(grpcAddress);
    // Listens at once; the first sweep, which after an outage may take a while, runs on meanwhile.
    await deadLetter.start();

    out('Jobmesh is up.');
    out(`  gRPC   ${grpcAddress}   jobmesh.v1.SchedulerService, WorkerService, DeadLetterService and MonitorService, grpc.health.v1, reflection`);
    out(`  HTTP   http://${ops.address}   / (the dashboard${env.JOBMESH_DASHBOARD_READ_ONLY ? ', read-only' : ''}) /metrics /livez /readyz`);
    const modules = env.JOBMESH_PROCESSORS.length + config.processors.modules.length;
    out(`  Worker in-process, built-in processors: ${workerPool.processors.names('*').join(', ') || 'none'}; ${modules} processor module(s) loaded`);
    const alerted = Object.keys(webhooks.urls);
    out(`  DLQ    webhook alerts: ${alerted.length ? alerted.join(', ') : 'none (set JOBMESH_DLQ_WEBHOOK_CRITICAL, …)'}`);
    out(local ? `  Redis  ${local.url}   started by jobmesh, AOF on, data in ${local.dataDir}` : `  Redis  ${redact(redisUrl)}`);
    if (config.path) out(`  Config ${config.path} (${config.queues.length} queues)`);
    out(`  Auth   none: anyone who can reach ${loopback ? 'this loopback port' : grpcAddress} can call every RPC`);
    out('Try:   npx jobmesh queues create hooks && npx jobmesh enqueue hooks http.request --data \'{"url":"https://example.com"}\'');
    out('Stop:  Ctrl-C');
    return { grpcAddress, httpAddress: ops.address, redisUrl: redisUrl ?? '', stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Where this process reaches its own gRPC server: a wildcard listen address is dialled on loopback. */
function dialAddress(host: string, port: number): string {
  if (host === '0.0.0.0' || host === '') return `127.0.0.1:${port}`;
  if (host === '::') return `[::1]:${port}`;
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function redact(url: string | undefined): string {
  return (url ?? '').replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

export async function runUp(): Promise<void> {
  const handle = await up();
  onShutdownSignal(createLogger({ name: 'jobmesh', level: 'info' }), handle.stop);
}
