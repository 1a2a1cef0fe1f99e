import { randomBytes } from 'node:crypto';
import { parseEnv } from '@jobmesh/config';
import { newApiKey } from '@jobmesh/core';
import { onShutdownSignal, openServiceHost } from '@jobmesh/host';
import { deadLetterOwnEnvShape, register as registerDeadLetter, webhookSettings } from '@jobmesh/dead-letter';
import { dashboardHandler, healthTargets, monitorOwnEnvShape, register as registerMonitor } from '@jobmesh/monitor';
import { durableAck, register as registerScheduler, schedulerOwnEnvShape } from '@jobmesh/scheduler';
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
  const parsed = parseEnv(upEnvSchema, envSource);
  // With auth on, the process calls itself (dead-letter replays into its own scheduler) with
  // JOBMESH_API_KEY; without one set, with a key of its own, held in memory and never printed.
  const internal = parsed.JOBMESH_API_KEYS_FILE && !parsed.JOBMESH_API_KEY ? newApiKey(`jobmesh-up-${randomBytes(6).toString('hex')}`) : undefined;
  const env = internal ? { ...parsed, JOBMESH_API_KEY: internal.key } : parsed;
  const internalKeys = internal && [{ id: internal.key.split('.')[0]!, hash: internal.hash, role: 'admin' as const, queues: ['*'] }];
  let local: LocalRedis | undefined;
  let redisUrl = env.REDIS_URL;
  if (!redisUrl && !env.REDIS_SENTINELS && !env.REDIS_CLUSTER_NODES) {
    if (!hasRedisServer()) throw new Error(NO_REDIS_HELP);
    local = await startLocalRedis();
    redisUrl = local.url;
  }
  // Closed last, and also if start-up fails part-way: a Redis connection left open would keep
  // reconnecting to the stopped local Redis and the process would never exit.
  const host = await openServiceHost(env, { name: 'jobmesh', redisUrl, internalKeys }).catch(async (err: unknown) => {
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
      durableAck: durableAck(env),
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
      dial: host.dial,
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
      dial: host.dial,
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
      auth: host.auth,
      dial: host.dial,
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
    out(`  HTTP   ${ops.scheme}://${ops.address}   / (the dashboard${env.JOBMESH_DASHBOARD_READ_ONLY ? ', read-only' : ''}) /metrics /livez /readyz`);
    const modules = env.JOBMESH_PROCESSORS.length + config.processors.modules.length;
    out(`  Worker in-process, built-in processors: ${workerPool.processors.names('*').join(', ') || 'none'}; ${modules} processor module(s) loaded`);
    const alerted = Object.keys(webhooks.urls);
    out(`  DLQ    webhook alerts: ${alerted.length ? alerted.join(', ') : 'none (set JOBMESH_DLQ_WEBHOOK_CRITICAL, …)'}`);
    out(
      local
        ? `  Redis  ${local.url}   started by jobmesh, AOF fsynced on every write, data in ${local.dataDir}`
        : env.REDIS_CLUSTER_NODES
          ? `  Redis  Cluster ${env.REDIS_CLUSTER_NODES}, a hash slot per queue`
          : `  Redis  ${redact(redisUrl)}`,
    );
    if (config.path) out(`  Config ${config.path} (${config.queues.length} queues)`);
    out(`  TLS    ${env.JOBMESH_TLS_CERT ? `on${env.JOBMESH_TLS_CLIENT_CA ? ', client certificates required (mTLS)' : ''}, ${env.JOBMESH_TLS_CERT}` : 'off (set JOBMESH_TLS_CERT and JOBMESH_TLS_KEY)'}`);
    if (host.auth) out(`  Auth   API keys from ${env.JOBMESH_API_KEYS_FILE} (${host.auth.size - (internal ? 1 : 0)} keys, reloaded when it changes); the dashboard asks for a viewer or admin key`);
    else out(`  Auth   none: anyone who can reach ${loopback ? 'this loopback port' : grpcAddress} can call every RPC (set JOBMESH_API_KEYS_FILE; jobmesh keys create makes keys)`);
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
