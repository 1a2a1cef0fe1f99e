import { isSpanContextValid, trace } from '@opentelemetry/api';
import pino, { type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/**
 * The one logger factory: JSON lines on stdout (or `destination`), level from config.
 * Job payloads are never logged at info level. A line written inside a span carries its
 * `trace_id` and `span_id` (OpenTelemetry's names for them in logs); without a tracing SDK there is
 * never an active span, and the lookup is the no-op API's.
 */
export function createLogger(opts: { name: string; level?: string; destination?: NodeJS.WritableStream } = { name: 'jobmesh' }): Logger {
  const options: LoggerOptions = {
    name: opts.name,
    level: opts.level ?? 'info',
    base: { service: opts.name },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    mixin: traceFields,
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

/** A logger that writes nothing, for tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** The active span's ids, for a log line; nothing outside a (sampled or not) span. */
function traceFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan()?.spanContext();
  return span && isSpanContextValid(span) ? { trace_id: span.traceId, span_id: span.spanId } : {};
}
