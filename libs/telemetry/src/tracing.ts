import { settlesWithin } from '@jobmesh/core';
import type { NodeSDK } from '@opentelemetry/sdk-node';

/** What startTracing returns. */
export interface TracingHandle {
  /** True when an SDK was started and exports spans; false means the no-op API is in place. */
  readonly enabled: boolean;
  /**
   * Flushes the spans not yet exported and stops the SDK, waiting at most `timeoutMs`: past that it
   * resolves and the export goes on unawaited. Idempotent. With several handles in one process (one
   * per ServiceHost), the SDK stops with the last of them.
   */
  shutdown(timeoutMs: number): Promise<void>;
}

export interface TracingOptions {
  /**
   * service.name when neither OTEL_SERVICE_NAME nor a service.name in OTEL_RESOURCE_ATTRIBUTES
   * sets one (those win, as the OpenTelemetry specification has it).
   * @default the SDK's own, `unknown_service:node`
   */
  serviceName?: string;
}

const DISABLED: TracingHandle = { enabled: false, shutdown: async () => undefined };

/** The process's one SDK, shared by every handle, and how many handles have not shut down yet. */
let shared: { sdk: NodeSDK; users: number; stopped?: Promise<void> } | undefined;

/**
 * Whether this process exports spans now: startTracing started an SDK that has not shut down. The
 * span helpers (job-tracing.ts) do nothing else while it is false.
 */
export function tracingActive(): boolean {
  return shared !== undefined && shared.stopped === undefined;
}

/**
 * Starts OpenTelemetry tracing for this process, configured by the standard variables only, which
 * the SDK reads itself: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_ENDPOINT
 * (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), OTEL_EXPORTER_OTLP_PROTOCOL (`grpc`, `http/protobuf`,
 * `http/json`; the SDK's default is http/protobuf), OTEL_TRACES_SAMPLER (+ OTEL_TRACES_SAMPLER_ARG).
 *
 * Without an exporter endpoint, or with OTEL_SDK_DISABLED=true, nothing starts and the SDK is not
 * even loaded: spans made through @opentelemetry/api cost what its no-op tracer costs.
 *
 * Traces only: metrics stay with prom-client and logs with pino, so no metric reader or log
 * exporter starts whatever OTEL_METRICS_EXPORTER or OTEL_LOGS_EXPORTER say. No instrumentation is
 * registered (ioredis's per-command spans in particular stay off).
 *
 * Call it before the code whose spans it should see; a second call in the same process shares the
 * SDK the first one started.
 */
export function startTracing(opts: TracingOptions = {}): TracingHandle {
  // The gate reads the standard OTel variables themselves (not a Jobmesh config), as the SDK does.
  const env = process.env;
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (!endpoint || env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return DISABLED;

  if (shared === undefined || shared.stopped !== undefined) {
    // Loaded here, not at the top: a process without an endpoint never pays for the SDK's modules.
    const otel = require('@opentelemetry/sdk-node') as typeof import('@opentelemetry/sdk-node');
    const { defaultResource, resourceFromAttributes } = otel.resources;
    const sdk = new otel.NodeSDK({
      // The env detector (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME) merges over this default.
      resource: opts.serviceName === undefined ? undefined : defaultResource().merge(resourceFromAttributes({ 'service.name': opts.serviceName })),
      // An empty list, not undefined: with no `metricReaders` the SDK builds an OTLP metric reader
      // from OTEL_METRICS_EXPORTER, whose default is otlp.
      metricReaders: [],
      // Likewise: without processors it builds an OTLP log exporter from OTEL_LOGS_EXPORTER.
      logRecordProcessors: [],
      instrumentations: [],
    });
    sdk.start();
    shared = { sdk, users: 0 };
  }
  const mine = shared;
  mine.users += 1;
  let done: Promise<void> | undefined;
  return {
    enabled: true,
    shutdown(timeoutMs) {
      done ??= (async () => {
        mine.users -= 1;
        if (mine.users > 0) return;
        mine.stopped ??= mine.sdk.shutdown();
        await settlesWithin(mine.stopped, timeoutMs);
      })();
      return done;
    },
  };
}
