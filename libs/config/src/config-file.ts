import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { compileMessagePattern } from './message-pattern';
import { type JobOptionsSpec, type QueueSpec, validateQueueSpec, defaultQueueSpec, InvalidArgumentError } from '@jobmesh/core';
import YAML from 'yaml';
import { z } from 'zod';
import { durationMs } from './durations';
import { httpRequestSettingsSchema } from './http-allow';

const retention = z.strictObject({ count: z.number().int().min(0).optional(), age: durationMs.optional() });

const backoff = z.strictObject({
  kind: z.enum(['fixed', 'exponential', 'linear', 'custom']),
  delay: durationMs,
  max_delay: durationMs.optional(),
  jitter: z.number().min(0).max(1).optional(),
  custom_strategy: z.string().optional(),
});

const jobOptions = z.strictObject({
  attempts: z.number().int().min(1).optional(),
  backoff: backoff.optional(),
  delay: durationMs.optional(),
  priority: z.number().int().min(0).optional(),
  timeout: durationMs.optional(),
  keep_completed: retention.optional(),
  keep_failed: retention.optional(),
});

const deadLetterRule = z.strictObject({
  error_name: z.string().optional(),
  message_pattern: z.string().optional(),
  job_name: z.string().optional(),
  category: z.string().min(1),
  severity: z.enum(['info', 'warning', 'critical']).optional(),
  quarantine: z.boolean().optional(),
});

const queue = z.strictObject({
  name: z.string(),
  concurrency: z.number().int().min(1).optional(),
  rate_limit: z.strictObject({ max: z.number().int().min(0), duration: durationMs }).optional(),
  default_job_options: jobOptions.optional(),
  paused: z.boolean().optional(),
  dead_letter: z
    .strictObject({ disabled: z.boolean().optional(), rules: z.array(deadLetterRule).optional(), retention: retention.optional() })
    .optional(),
  labels: z.record(z.string(), z.string()).optional(),
  /** How long a job whose name nothing serves waits for a processor; 0 fails it at once. Default 1h. */
  processor_wait: durationMs.optional(),
});

const processors = z.strictObject({
  /** Module paths (relative to the config file) whose exports include defineProcessor(...) values. */
  modules: z.array(z.string()).default([]),
  /** Built-in processors, on by default. */
  builtins: z.strictObject({ 'http.request': z.boolean().default(true), 'email.send': z.boolean().default(true) }).prefault({}),
  /** The built-in http.request's redirect and body caps, and its per-queue allow-list (see http-allow.ts). */
  http_request: httpRequestSettingsSchema.optional(),
});

const smtp = z.strictObject({
  /** smtp:// or smtps:// URL with user and password, e.g. smtps://user:pass@mail.example.com:465 */
  url: z.string().url(),
  /** Default sender when a job gives none. */
  from: z.string().optional(),
});

/** The jobmesh.config.yaml schema. Unknown keys are errors, so typos do not pass silently. */
export const configFileSchema = z.strictObject({
  queues: z.array(queue).default([]),
  processors: processors.prefault({}),
  smtp: smtp.optional(),
});

export type ProcessorsConfig = z.infer<typeof processors>;
export type SmtpConfig = z.infer<typeof smtp>;

export type ConfigFile = z.infer<typeof configFileSchema>;

/** A queue declared in the config file: its spec, and which fields the file set explicitly. */
export interface DeclaredQueue {
  spec: QueueSpec;
  /** True when the file sets `paused`; otherwise the stored pause state is kept. */
  setsPaused: boolean;
}

export interface LoadedConfigFile {
  path?: string;
  queues: DeclaredQueue[];
  /** Processor modules as absolute paths, and which built-ins are on. */
  processors: ProcessorsConfig;
  smtp?: SmtpConfig;
}

const EMPTY: Omit<LoadedConfigFile, 'path'> = { queues: [], processors: { modules: [], builtins: { 'http.request': true, 'email.send': true } } };

/**
 * Reads the config file: `path` if given (it must exist), else ./jobmesh.config.yaml,
 * ./jobmesh.config.yml or ./jobmesh.config.json if one exists, else nothing.
 */
export function loadConfigFile(path?: string, cwd = process.cwd()): LoadedConfigFile {
  const candidates = path ? [resolve(cwd, path)] : ['jobmesh.config.yaml', 'jobmesh.config.yml', 'jobmesh.config.json'].map((p) => resolve(cwd, p));
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    if (path) throw new InvalidArgumentError('JOBMESH_CONFIG', `config file ${candidates[0]} does not exist`);
    return structuredClone(EMPTY);
  }
  const parsed = parseConfig(readFileSync(found, 'utf8'), found);
  const dir = dirname(found);
  return { path: found, ...parsed, processors: { ...parsed.processors, modules: parsed.processors.modules.map((m) => resolve(dir, m)) } };
}

/** Parses config file text (YAML or JSON): queues, processors and SMTP settings. */
export function parseConfig(text: string, source = 'config'): Omit<LoadedConfigFile, 'path'> {
  const data = parseRaw(text, source);
  return { queues: toQueues(data, source), processors: data.processors, smtp: data.smtp };
}

function parseRaw(text: string, source: string): ConfigFile {
  let raw: unknown;
  try {
    raw = source.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(source, `cannot be parsed: ${(err as Error).message}`);
  }
  const parsed = configFileSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InvalidArgumentError(`${source}: ${issue.path.join('.') || '(root)'}`, issue.message);
  }
  return parsed.data;
}

/** Parses config file text (YAML or JSON) into validated queue specs. */
export function parseConfigFile(text: string, source = 'config'): DeclaredQueue[] {
  return toQueues(parseRaw(text, source), source);
}

function toQueues(data: ConfigFile, source: string): DeclaredQueue[] {
  const seen = new Set<string>();
  return data.queues.map((q, i) => {
    if (seen.has(q.name)) throw new InvalidArgumentError(`${source}: queues[${i}].name`, `queue "${q.name}" is declared twice`);
    seen.add(q.name);
    const spec: QueueSpec = {
      ...defaultQueueSpec(q.name),
      ...(q.concurrency !== undefined && { concurrency: q.concurrency }),
      ...(q.rate_limit && { rateLimit: { max: q.rate_limit.max, durationMs: q.rate_limit.duration } }),
      defaultJobOptions: toJobOptions(q.default_job_options ?? {}),
      paused: q.paused ?? false,
      deadLetter: {
        disabled: q.dead_letter?.disabled,
        rules: q.dead_letter?.rules?.map((r) => ({
          errorName: r.error_name,
          messagePattern: r.message_pattern,
          jobName: r.job_name,
          category: r.category,
          severity: r.severity,
          quarantine: r.quarantine,
        })),
        retention: q.dead_letter?.retention && { count: q.dead_letter.retention.count, ageMs: q.dead_letter.retention.age },
      },
      labels: q.labels ?? {},
      ...(q.processor_wait !== undefined && { processorWaitMs: q.processor_wait }),
    };
    validateQueueSpec(spec, compileMessagePattern, `${source}: queues[${i}]`);
    return { spec, setsPaused: q.paused !== undefined };
  });
}

function toJobOptions(o: z.infer<typeof jobOptions>): JobOptionsSpec {
  return {
    attempts: o.attempts,
    backoff: o.backoff && {
      kind: o.backoff.kind,
      delayMs: o.backoff.delay,
      maxDelayMs: o.backoff.max_delay,
      jitter: o.backoff.jitter,
      customStrategy: o.backoff.custom_strategy,
    },
    delayMs: o.delay,
    priority: o.priority,
    timeoutMs: o.timeout,
    keepCompleted: o.keep_completed && { count: o.keep_completed.count, ageMs: o.keep_completed.age },
    keepFailed: o.keep_failed && { count: o.keep_failed.count, ageMs: o.keep_failed.age },
  };
}
