import { isSpanContextValid, trace } from '@opentelemetry/api';
import pino, { type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/** What a redacted value is replaced with. */
export const REDACTED = '[REDACTED]';

/**
 * Keys whose values are secrets wherever a log line holds them (at the top or up to four levels
 * down: `headers.authorization`, `metadata.authorization`, `env.JOBMESH_API_KEY`,
 * `job.data.headers.authorization`, `smtp.auth.pass`, …).
 */
const SECRET_KEYS = [
  'authorization',
  'Authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'x-jobmesh-signature',
  'password',
  'pass',
  'secret',
  'token',
  'apiKey',
  'api_key',
  'JOBMESH_API_KEY',
  'JOBMESH_API_KEYS',
  'JOBMESH_SMTP_URL',
  'JOBMESH_DLQ_WEBHOOK_SECRET',
  'smtpUrl',
];

const segment = (key: string): string => (/^[A-Za-z_$][\w$]*$/.test(key) ? key : `["${key}"]`);
const join = (prefix: string, key: string): string => (prefix ? `${prefix}${segment(key).startsWith('[') ? '' : '.'}${segment(key)}` : segment(key));

/**
 * pino's redaction paths: every secret key at depth 0 to 4, the SMTP URL of a config, and the
 * arguments of a failed Redis command (ioredis puts them on its errors; they hold job data).
 */
export const REDACT_PATHS: string[] = [
  ...['', '*', '*.*', '*.*.*', '*.*.*.*'].flatMap((prefix) => SECRET_KEYS.map((k) => join(prefix, k))),
  'smtp.url',
  '*.smtp.url',
  'err.command.args',
  '*.command.args',
];

/** user:password@ in any URL (redis://, smtps://, https://, …); the user and the host stay. */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@:]*):([^\s/?#@]+)@/gi;
/** The credentials of an HTTP or gRPC authorization value. */
const AUTH_SCHEME = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;

/** A string with URL passwords and Bearer/Basic credentials replaced by {@link REDACTED}. */
export function scrubSecrets(text: string): string {
  return text.replace(URL_CREDENTIALS, `$1$2:${REDACTED}@`).replace(AUTH_SCHEME, `$1 ${REDACTED}`);
}

/** Scrubs every string in plain objects and arrays (not other instances), up to a depth. */
function scrubDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubSecrets(value);
  if (depth > 8 || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((v) => scrubDeep(v, depth + 1));
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrubDeep(v, depth + 1)]));
}

/**
 * The one logger factory: JSON lines on stdout (or `destination`), level from config.
 * Job payloads are never logged at info level. A line written inside a span carries its
 * `trace_id` and `span_id` (OpenTelemetry's names for them in logs); without a tracing SDK there is
 * never an active span, and the lookup is the no-op API's.
 *
 * Secrets do not reach the output: the values of secret keys ({@link REDACT_PATHS}: authorization
 * headers and metadata, API keys, webhook secrets, SMTP URLs, passwords) are redacted by pino, and
 * every string written (the message, fields, errors' messages and stacks) has URL passwords and
 * Bearer/Basic credentials cut out, which catches them in error messages too. Not logging a
 * secret in the first place is still the rule; this is the net under it.
 */
export function createLogger(opts: { name: string; level?: string; destination?: NodeJS.WritableStream } = { name: 'jobmesh' }): Logger {
  const options: LoggerOptions = {
    name: opts.name,
    level: opts.level ?? 'info',
    base: { service: opts.name },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }), log: (object) => scrubDeep(object) as Record<string, unknown> },
    // pino's own err serializer, its result (an object of its own prototype) as a plain one to scrub.
    serializers: { err: (err: unknown) => scrubDeep(typeof err === 'object' && err !== null ? { ...pino.stdSerializers.err(err as Error) } : err) },
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    hooks: {
      logMethod(args, method) {
        // logger.error(err) takes its message from the error: give it the scrubbed one.
        const [first, ...rest] = args as unknown[];
        if (first instanceof Error && typeof rest[0] !== 'string') return method.apply(this, [{ err: first }, scrubSecrets(first.message)]);
        return method.apply(this, args.map((a) => (typeof a === 'string' ? scrubSecrets(a) : a)) as Parameters<typeof method>);
      },
    },
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
