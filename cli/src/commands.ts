import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as pb from '@jobmesh/contracts';
import { parseDuration } from '@jobmesh/core';
import type { DeadLetterClient, JobmeshClient, MonitorClient } from '@jobmesh/sdk';
import { describeJob, eventName, queueRow, scheduleRow, stateName, table, time } from './format';

/** A mistake in how the command was called; main prints it with the usage and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface CommandContext {
  client: JobmeshClient;
  /** DeadLetterService, at --dlq-address (the same address as `client` unless told otherwise). */
  deadLetters: DeadLetterClient;
  /** MonitorService, at --monitor-address (the same address as `client` unless told otherwise). */
  monitor: MonitorClient;
  json: boolean;
  out(line: string): void;
  /** The trace viewer's link for a trace id, when JOBMESH_TRACE_UI_URL is set. */
  traceUrl?: (traceId: string) => string;
}

/** A command; a number it resolves with is its exit code (0 when it resolves with nothing). */
export type Handler = (args: string[], ctx: CommandContext) => Promise<void | number>;

type Options = NonNullable<ParseArgsConfig['options']>;

/** node:util parseArgs with positionals allowed, and its mistakes (unknown flag, missing value) as usage errors. */
export function flags<O extends Options>(args: string[], options: O): ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true }>> {
  try {
    return parseArgs({ args, options, allowPositionals: true });
  } catch (err) {
    if (String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')) throw new UsageError((err as Error).message);
    throw err;
  }
}

/** A duration flag ("500ms", "30s", "7d") in ms. */
export function durationMs(text: string, flag: string): number {
  try {
    return parseDuration(text, flag);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function msDuration(text: string, flag: string): pb.Duration {
  const v = durationMs(text, flag);
  return pb.msToDuration(v);
}

export function jsonObject(text: string | undefined, flag: string): Record<string, unknown> {
  if (text === undefined) return {};
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new UsageError(`${flag} must be a JSON object, e.g. '{"to":"ada@example.com"}'`);
}

export function int(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} must be a whole number, got "${text}"`);
  return n;
}

export function positional(args: string[], n: number, usage: string): string[] {
  if (args.length < n) throw new UsageError(`usage: jobmesh ${usage}`);
  return args;
}

export function print(ctx: CommandContext, value: unknown, human: () => string): void {
  ctx.out(ctx.json ? JSON.stringify(value) : human());
}

const queues: Handler = async (args, ctx) => {
  const [sub = 'list', ...rest] = args;
  const { values, positionals } = flags(rest, { concurrency: { type: 'string' }, 'rate-limit': { type: 'string' }, force: { type: 'boolean' }, attempts: { type: 'string' }, 'processor-wait': { type: 'string' } });
  const c = ctx.client;
  switch (sub) {
    case 'list': {
      const res = await c.listQueues({ pageSize: 1000 });
      return print(ctx, res.queues.map((q) => pb.QueueConfig.toJSON(q)), () => table(res.queues.map(queueRow), ['name', 'concurrency', 'rate limit', 'paused', 'processor wait']));
    }
    case 'create':
    case 'update': {
      const [name] = positional(positionals, 1, `queues ${sub} <name> [--concurrency N] [--rate-limit MAX/DURATION] [--attempts N] [--processor-wait DURATION]`);
      let rateLimit: pb.RateLimit | undefined;
      if (values['rate-limit']) {
        const m = /^(\d+)\/(.+)$/.exec(values['rate-limit']);
        if (!m) throw new UsageError('--rate-limit must look like 100/1s (at most 100 job starts per second)');
        rateLimit = { max: Number(m[1]), duration: msDuration(m[2]!, '--rate-limit') };
      }
      const queue = {
        name: name!,
        concurrency: int(values.concurrency, '--concurrency') ?? 0,
        rateLimit,
        defaultJobOptions: { attempts: int(values.attempts, '--attempts') },
        processorWait: values['processor-wait'] === undefined ? undefined : msDuration(values['processor-wait'], '--processor-wait'),
      };
      const mask = [
        values.concurrency && 'concurrency',
        values['rate-limit'] && 'rate_limit',
        values.attempts && 'default_job_options',
        values['processor-wait'] && 'processor_wait',
      ].filter(Boolean) as string[];
      const q = sub === 'create' ? await c.createQueue({ queue }) : await c.updateQueue({ queue, updateMask: mask });
      return print(ctx, pb.QueueConfig.toJSON(q), () => `${sub === 'create' ? 'created' : 'updated'} queue ${q.name} (concurrency ${q.concurrency})`);
    }
    case 'get': {
      const [name] = positional(positionals, 1, 'queues get <name>');
      const q = await c.getQueue(name!);
      return print(ctx, pb.QueueConfig.toJSON(q), () => JSON.stringify(pb.QueueConfig.toJSON(q), null, 2));
    }
    case 'pause':
    case 'resume': {
      const [name] = positional(positionals, 1, `queues ${sub} <name>`);
      const q = sub === 'pause' ? await c.pauseQueue(name!) : await c.resumeQueue(name!);
      return print(ctx, pb.QueueConfig.toJSON(q), () => `queue ${q.name} ${q.paused ? 'paused' : 'resumed'}`);
    }
    case 'delete': {
      const [name] = positional(positionals, 1, 'queues delete <name> [--force]');
      await c.deleteQueue(name!, values.force ?? false);
      return print(ctx, { deleted: name }, () => `deleted queue ${name}`);
    }
    default:
      throw new UsageError(`unknown command "queues ${sub}"; use list, create, update, get, pause, resume or delete`);
  }
};

const enqueue: Handler = async (args, ctx) => {
  const { values, positionals } = flags(args, {
    data: { type: 'string', short: 'd' },
    delay: { type: 'string' },
    'run-at': { type: 'string' },
    priority: { type: 'string' },
    attempts: { type: 'string' },
    timeout: { type: 'string' },
    'job-id': { type: 'string' },
    'idempotency-key': { type: 'string' },
  });
  const [queue, name] = positional(positionals, 2, 'enqueue <queue> <job-name> [--data JSON] [--delay 5s] [--priority N] [--attempts N]');
  let runAt: Date | undefined;
  if (values['run-at']) {
    runAt = new Date(values['run-at']);
    if (Number.isNaN(runAt.getTime())) throw new UsageError('--run-at must be an ISO time, e.g. 2026-12-01T09:00:00Z');
  }
  const res = await ctx.client.enqueueJob({
    queue,
    job: {
      name,
      data: jsonObject(values.data, '--data'),
      options: {
        delay: values.delay ? msDuration(values.delay, '--delay') : undefined,
        runAt,
        priority: int(values.priority, '--priority'),
        attempts: int(values.attempts, '--attempts'),
        timeout: values.timeout ? msDuration(values.timeout, '--timeout') : undefined,
        jobId: values['job-id'] ?? '',
        idempotencyKey: values['idempotency-key'] ?? '',
      },
    },
  });
  const job = res.job!;
  print(ctx, pb.EnqueueJobResponse.toJSON(res), () =>
    res.deduplicated ? `job ${job.id} already exists (deduplicated), ${stateName(job.state)}` : `enqueued job ${job.id} on ${queue} (${stateName(job.state)})`,
  );
};

const get: Handler = async (args, ctx) => {
  const [queue, id] = positional(args, 2, 'get <queue> <job-id>');
  const job = await ctx.client.getJob(queue!, id!);
  print(ctx, pb.Job.toJSON(job), () => describeJob(job, ctx.traceUrl));
};

const STATES = ['waiting', 'delayed', 'prioritized', 'active', 'waiting-children', 'completed', 'failed', 'dead-lettered', 'cancelled'];

const list: Handler = async (args, ctx) => {
  const { values, positionals } = flags(args, { state: { type: 'string', short: 's' }, limit: { type: 'string', short: 'n' }, 'page-token': { type: 'string' } });
  const [queue] = positional(positionals, 1, `list <queue> [--state ${STATES.slice(0, 3).join(',')}…] [--limit N]`);
  const states = (values.state ?? '')
    .split(',')
    .filter(Boolean)
    .map((s) => {
      if (!STATES.includes(s)) throw new UsageError(`unknown state "${s}"; use ${STATES.join(', ')}`);
      return pb.jobStateFromJSON(`JOB_STATE_${s.toUpperCase().replace('-', '_')}`);
    });
  const res = await ctx.client.listJobs({ queue: queue!, states, pageSize: int(values.limit, '--limit') ?? 50, pageToken: values['page-token'] ?? '' });
  print(ctx, pb.ListJobsResponse.toJSON(res), () => {
    const rows = res.jobs.map((j) => ({ id: j.id, name: j.name, state: j.processorWaitUntil ? `${stateName(j.state)} (no processor)` : stateName(j.state), attempts: String(j.attemptsMade), created: time(j.createdAt) }));
    const more = res.nextPageToken ? `\nmore: --page-token ${res.nextPageToken}` : '';
    return table(rows, ['id', 'name', 'state', 'attempts', 'created']) + more;
  });
};

const cancel: Handler = async (args, ctx) => {
  const { values, positionals } = flags(args, { reason: { type: 'string' } });
  const [queue, id] = positional(positionals, 2, 'cancel <queue> <job-id> [--reason TEXT]');
  const res = await ctx.client.cancelJob(queue!, id!, values.reason ?? '');
  print(ctx, pb.CancelJobResponse.toJSON(res), () =>
    res.pending ? `job ${id} is running; its worker was asked to stop it` : `job ${id} cancelled`,
  );
};

const watch: Handler = async (args, ctx) => {
  const [queue, id] = positional(args, 2, 'watch <queue> <job-id>');
  for await (const e of ctx.client.watchJob(queue!, id!)) {
    print(ctx, pb.JobEvent.toJSON(e), () => {
      const detail = e.reason || e.message || (e.progress !== undefined ? JSON.stringify(e.progress) : e.result !== undefined ? JSON.stringify(e.result) : '');
      return `${time(e.at)}  ${eventName(e.type).padEnd(16)} ${detail}`.trimEnd();
    });
  }
};

const schedules: Handler = async (args, ctx) => {
  const [sub = 'list', ...rest] = args;
  const { values, positionals } = flags(rest, { cron: { type: 'string' }, tz: { type: 'string' }, every: { type: 'string' }, name: { type: 'string' }, data: { type: 'string', short: 'd' } });
  const c = ctx.client;
  switch (sub) {
    case 'list': {
      const [queue] = positional(positionals, 1, 'schedules list <queue>');
      const res = await c.listSchedules({ queue: queue!, pageSize: 1000 });
      return print(ctx, pb.ListSchedulesResponse.toJSON(res), () => table(res.schedules.map(scheduleRow), ['id', 'trigger', 'job', 'next', 'fired']));
    }
    case 'upsert': {
      const usage = 'schedules upsert <queue> <id> (--cron "0 9 * * *" [--tz Europe/Berlin] | --every 30s) --name <job-name> [--data JSON]';
      const [queue, id] = positional(positionals, 2, usage);
      if (!values.name || (!values.cron && !values.every)) throw new UsageError(`usage: jobmesh ${usage}`);
      const s = await c.upsertSchedule({
        id,
        queue,
        cron: values.cron,
        every: values.every ? msDuration(values.every, '--every') : undefined,
        timezone: values.tz ?? '',
        template: { name: values.name, data: jsonObject(values.data, '--data') },
      });
      return print(ctx, pb.Schedule.toJSON(s), () => `schedule ${s.id} on ${s.queue}: next run ${time(s.nextRunAt)}`);
    }
    case 'get': {
      const [queue, id] = positional(positionals, 2, 'schedules get <queue> <id>');
      const s = await c.getSchedule(queue!, id!);
      return print(ctx, pb.Schedule.toJSON(s), () => table([scheduleRow(s)], ['id', 'trigger', 'job', 'next', 'fired']));
    }
    case 'delete': {
      const [queue, id] = positional(positionals, 2, 'schedules delete <queue> <id>');
      await c.deleteSchedule(queue!, id!);
      return print(ctx, { deleted: id }, () => `deleted schedule ${id}`);
    }
    default:
      throw new UsageError(`unknown command "schedules ${sub}"; use list, upsert, get or delete`);
  }
};

export const COMMANDS: Record<string, Handler> = { queues, enqueue, get, list, cancel, watch, schedules };
