import { type ApiKeyEntry, settlesWithin } from '@jobmesh/core';
import { type CommonEnv, type LoadedConfigFile, authOffInProduction, loadApiKeysFile, loadConfigFile, plaintextExposure, splitHostPort, tlsSettings } from '@jobmesh/config';
import { ApiKeyAuth, type Dial, GrpcServer, PemFileProvider, RpcKit, serverTlsCredentials } from '@jobmesh/grpc-kit';
import { keepaliveChannelOptions, tlsCredentials } from '@jobmesh/sdk';
import { type Backbone, openBackboneFromEnv, redisUnavailable } from '@jobmesh/queue';
import { type Logger, type OpsRoutes, type OpsServer, type Registry, createLogger, createRegistry, startOpsServer, startTracing } from '@jobmesh/telemetry';

/**
 * What every Jobmesh process is built on: logger, metrics, config file, Redis backbone, one gRPC
 * server with its RpcKit (which answers a Redis outage with UNAVAILABLE), and the ops HTTP
 * server. Services mount themselves on it (their `register`), add their close to `onStop`, then
 * the host listens.
 */
export interface ServiceHost {
  readonly logger: Logger;
  readonly metrics: Registry;
  readonly config: LoadedConfigFile;
  readonly backbone: Backbone;
  readonly server: GrpcServer;
  readonly kit: RpcKit;
  /** The API keys in force when JOBMESH_API_KEYS_FILE is set; undefined: auth is off. */
  readonly auth?: ApiKeyAuth;
  /** How this process calls other services: TLS from JOBMESH_TLS_CA/CLIENT_CERT/CLIENT_KEY, key from JOBMESH_API_KEY. */
  readonly dial: Dial;
  /** Runs `close` when the host stops, after NOT_SERVING and before gRPC calls drain; the last added runs first. */
  onStop(close: () => Promise<void>): void;
  /**
   * Starts the ops HTTP server (/metrics, /livez, /readyz, and `routes`, e.g. the monitor's
   * dashboard), then binds gRPC.
   */
  listen(opts?: { routes?: OpsRoutes }): Promise<{ grpcPort: number; grpcHost: string; ops: OpsServer }>;
  /**
   * NOT_SERVING, the onStop closes, gRPC calls drained within JOBMESH_SHUTDOWN_GRACE, the ops
   * server, Redis, then the spans not yet exported (in what is left of the grace). Idempotent, and
   * safe after a start that failed part-way: whatever opened closes.
   */
  stop(): Promise<void>;
}

/** Opens a host. `redisUrl` overrides REDIS_URL (`jobmesh up`'s own redis-server). */
export async function openServiceHost(
  env: CommonEnv,
  opts: {
    name: string;
    logger?: Logger;
    redisUrl?: string;
    /** With auth on: keys accepted on top of the file's, held in memory only (ApiKeyAuth's `internal`). */
    internalKeys?: ApiKeyEntry[];
  },
): Promise<ServiceHost> {
  // First, so that what the host opens is traced. Configured by the standard OTEL_* variables; without an
  // exporter endpoint nothing starts. `name` is only the default service.name: OTEL_SERVICE_NAME wins.
  const tracing = startTracing({ serviceName: opts.name });
  const logger = opts.logger ?? createLogger({ name: opts.name, level: env.LOG_LEVEL });
  const unsafe = authOffInProduction(env);
  if (unsafe) {
    await tracing.shutdown(STOP_MARGIN_MS).catch(() => undefined);
    throw new Error(unsafe);
  }
  if (tracing.enabled) logger.info('tracing on: exporting spans over OTLP');
  const metrics = createRegistry();
  let backbone: Backbone;
  let config: LoadedConfigFile;
  let auth: ApiKeyAuth | undefined;
  let pem: PemFileProvider | undefined;
  let dial: Dial;
  try {
    // Before Redis: a start that production mode refuses, or with unusable TLS files, opens nothing.
    const tls = tlsSettings(env);
    const exposed = plaintextExposure(env, tls);
    if (exposed) throw new Error(exposed);
    if (tls.server) pem = new PemFileProvider(tls.server, { reloadMs: tls.reloadMs, logger });
    const keepalive = { intervalMs: env.JOBMESH_KEEPALIVE_INTERVAL, timeoutMs: env.JOBMESH_KEEPALIVE_TIMEOUT };
    // The inter-service clients live as long as the process: they read their files again, as the server does.
    const reload = {
      intervalMs: tls.reloadMs,
      onReload: () => logger.info('TLS client files reloaded: new connections to other services use them'),
      onError: (err: Error) => logger.warn({ err: err.message }, 'TLS client files changed but cannot be used; keeping the ones in use'),
    };
    const clientCredentials = tls.client && tlsCredentials({ ca: tls.client.caFile, cert: tls.client.certFile, key: tls.client.keyFile }, reload);
    dial = { apiKey: env.JOBMESH_API_KEY, options: keepaliveChannelOptions(keepalive), credentials: clientCredentials || undefined };
    config = loadConfigFile(env.JOBMESH_CONFIG);
    // A bad keys file refuses the start, before Redis is opened.
    if (env.JOBMESH_API_KEYS_FILE) auth = new ApiKeyAuth({ path: env.JOBMESH_API_KEYS_FILE, read: loadApiKeysFile, logger, internal: opts.internalKeys });
    backbone = await openBackboneFromEnv(env, logger, config.queues, opts.redisUrl ?? env.REDIS_URL);
  } catch (err) {
    auth?.close();
    pem?.close();
    // The host never existed, so no stop() will flush what the failed start traced.
    await tracing.shutdown(STOP_MARGIN_MS).catch(() => undefined);
    throw err;
  }
  // grpc-kit knows no backend: libs/queue tells it which errors are a Redis outage.
  const kit = new RpcKit({ logger, registry: metrics, translate: redisUnavailable, auth: auth?.hook });
  if (auth) logger.info({ path: env.JOBMESH_API_KEYS_FILE, keys: auth.size }, 'auth on: every call needs an API key');
  const server = new GrpcServer({
    logger,
    maxMessageBytes: env.JOBMESH_MAX_MESSAGE_BYTES,
    credentials: pem && serverTlsCredentials(pem),
    keepalive: { intervalMs: env.JOBMESH_KEEPALIVE_INTERVAL, timeoutMs: env.JOBMESH_KEEPALIVE_TIMEOUT },
    maxConcurrentStreams: env.JOBMESH_GRPC_MAX_STREAMS,
    refused: (method, code) => kit.refused(method, code),
  });
  const httpTls = pem && env.JOBMESH_HTTP_TLS ? { cert: pem.pem.cert, key: pem.pem.key, onChange: (l: (p: { cert: Buffer; key: Buffer }) => void) => pem!.onChange(l) } : undefined;
  const closes: (() => Promise<void>)[] = [];
  let ops: OpsServer | undefined;
  let listening = false;
  let stopping: Promise<void> | undefined;
  return {
    logger,
    metrics,
    config,
    backbone,
    server,
    kit,
    auth,
    dial,
    onStop: (close) => void closes.push(close),
    async listen({ routes } = {}) {
      const http = splitHostPort(env.JOBMESH_HTTP_ADDRESS);
      ops = await startOpsServer({ host: http.host, port: http.port, registry: metrics, ready: backbone.ready, routes, tls: httpTls });
      const grpcPort = await server.listen(env.JOBMESH_GRPC_ADDRESS);
      listening = true;
      return { grpcPort, grpcHost: splitHostPort(env.JOBMESH_GRPC_ADDRESS).host, ops };
    },
    stop: () =>
      (stopping ??= (async () => {
        const graceEnds = Date.now() + env.JOBMESH_SHUTDOWN_GRACE;
        server.setStatus('NOT_SERVING');
        // A close gets the grace period (the worker-pool's uses it for running jobs) and a margin;
        // one that hangs, say on a Redis that is gone, must not keep the process from exiting.
        const bound = env.JOBMESH_SHUTDOWN_GRACE + STOP_MARGIN_MS;
        for (const close of closes.reverse()) {
          await within(close(), bound, logger, 'a service close').catch((err: Error) => logger.warn({ err: err.message }, 'close failed during stop'));
        }
        if (listening) await server.shutdown(env.JOBMESH_SHUTDOWN_GRACE);
        else server.server.forceShutdown();
        await ops?.close();
        auth?.close();
        pem?.close();
        await within(backbone.close(), STOP_MARGIN_MS, logger, 'closing the Redis connections');
        // Last, so the spans of everything above go too; bounded by what is left of the grace, with a
        // floor so that a stop which used it all still gets one export attempt.
        await tracing.shutdown(Math.max(graceEnds - Date.now(), MIN_FLUSH_MS)).catch((err: Error) => logger.warn({ err: err.message }, 'flushing spans failed during stop'));
      })()),
  };
}

/** How much longer than the grace period a step of stop() may take before stop() goes on without it. */
const STOP_MARGIN_MS = 5000;

/** The least time stop() gives the span flush, even when the grace is used up. */
const MIN_FLUSH_MS = 1000;

/** Waits for `work` for at most `ms`; past that, logs and resolves (the work goes on unawaited). */
async function within(work: Promise<void>, ms: number, logger: Logger, what: string): Promise<void> {
  if (!(await settlesWithin(work, ms))) logger.warn({ afterMs: ms }, `${what} did not finish in time; stopping without it`);
}
