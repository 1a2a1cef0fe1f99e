import { loadConfigFile, parseEnv, splitHostPort } from '@jobmesh/config';
import { GrpcServer, RpcKit, onShutdownSignal } from '@jobmesh/grpc-kit';
import { openBackboneFromEnv } from '@jobmesh/queue';
import { register as registerScheduler } from '@jobmesh/scheduler';
import { register as registerWorkerPool, type WorkerPoolEnv, workerPoolEnvSchema } from '@jobmesh/worker-pool';
import { createLogger, createRegistry, startOpsServer } from '@jobmesh/telemetry';
import { type LocalRedis, NO_REDIS_HELP, hasRedisServer, startLocalRedis } from './local-redis';

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
  // Every service's settings; the worker-pool's schema extends the common one (and so the scheduler's).
  const env: WorkerPoolEnv = parseEnv(workerPoolEnvSchema, envSource);
  const logger = createLogger({ name: 'jobmesh', level: env.LOG_LEVEL });
  let local: LocalRedis | undefined;
  let redisUrl = env.REDIS_URL;
  if (!redisUrl && !env.REDIS_SENTINELS) {
    if (!hasRedisServer()) throw new Error(NO_REDIS_HELP);
    local = await startLocalRedis();
    redisUrl = local.url;
  }
  // What is open so far, closed in reverse if start-up fails part-way: a leaked Redis connection
  // would keep reconnecting to the stopped local Redis and the process would never exit.
  const opened: (() => Promise<void>)[] = [];
  try {
    const config = loadConfigFile(env.JOBMESH_CONFIG);
    const backbone = await openBackboneFromEnv(env, logger, config.queues, redisUrl);
    opened.push(() => backbone.close());
    const metrics = createRegistry();
    const server = new GrpcServer({ logger, maxMessageBytes: env.JOBMESH_MAX_MESSAGE_BYTES });
    const kit = new RpcKit({ logger, registry: metrics });
    const scheduler = registerScheduler(server, {
      backbone,
      kit,
      logger,
      maxPayloadBytes: env.JOBMESH_MAX_PAYLOAD_BYTES,
      idempotencyTtlMs: env.JOBMESH_IDEMPOTENCY_TTL,
    });
    opened.push(() => scheduler.close());
    const workerPool = await registerWorkerPool(server, { backbone, kit, logger, metrics, env, config });
    opened.push(() => workerPool.close());
    const http = splitHostPort(env.JOBMESH_HTTP_ADDRESS);
    const ops = await startOpsServer({ host: http.host, port: http.port, registry: metrics, ready: backbone.ping });
    opened.push(() => ops.close());
    const grpcPort = await server.listen(env.JOBMESH_GRPC_ADDRESS);
    const grpcAddress = `${splitHostPort(env.JOBMESH_GRPC_ADDRESS).host}:${grpcPort}`;
    const loopback = /^(127\.|localhost|\[?::1\]?)/.test(grpcAddress);

    out('Jobmesh is up.');
    out(`  gRPC   ${grpcAddress}   jobmesh.v1.SchedulerService and WorkerService, grpc.health.v1, reflection`);
    out(`  HTTP   http://${ops.address}   /metrics /livez /readyz`);
    const modules = env.JOBMESH_PROCESSORS.length + config.processors.modules.length;
    out(`  Worker in-process, built-in processors: ${workerPool.processors.names('*').join(', ') || 'none'}; ${modules} processor module(s) loaded`);
    out(local ? `  Redis  ${local.url}   started by jobmesh, AOF on, data in ${local.dataDir}` : `  Redis  ${redact(redisUrl)}`);
    if (config.path) out(`  Config ${config.path} (${config.queues.length} queues)`);
    out(`  Auth   none: anyone who can reach ${loopback ? 'this loopback port' : grpcAddress} can call every RPC`);
    out('Try:   npx jobmesh queues create hooks && npx jobmesh enqueue hooks http.request --data \'{"url":"https://example.com"}\'');
    out('Stop:  Ctrl-C');

    let stopped: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopped ??= (async () => {
        server.setStatus('NOT_SERVING');
        // Worker-pool first: it lets active jobs finish while the scheduler still answers.
        await workerPool.close();
        await scheduler.close();
        await server.shutdown(env.JOBMESH_SHUTDOWN_GRACE);
        await ops.close();
        await backbone.close();
        await local?.stop();
      })());
    return { grpcAddress, httpAddress: ops.address, redisUrl: redisUrl ?? '', stop };
  } catch (err) {
    for (const close of opened.reverse()) await close().catch(() => undefined);
    await local?.stop();
    throw err;
  }
}

function redact(url: string | undefined): string {
  return (url ?? '').replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

export async function runUp(): Promise<void> {
  const handle = await up();
  onShutdownSignal(createLogger({ name: 'jobmesh', level: 'info' }), handle.stop);
}
