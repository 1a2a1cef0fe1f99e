import * as pb from '@jobmesh/contracts';
import {
  InvalidArgumentError,
  ScheduleNotFoundError,
  resolveJobOptions,
  validateJobName,
  validateJobOptions,
  validatePayload,
  validateQueueName,
  validateScheduleId,
} from '@jobmesh/core';
import { type QueueRegistry, durationToMs, jobOptionsFromProto, msToDuration, optionsOfBullJob, jobOptionsToProto, toBullOptions } from '@jobmesh/queue';
import type { JobSchedulerJson, JobsOptions, RepeatOptions } from 'bullmq';
import { CronExpressionParser } from 'cron-parser';

const MIN_EVERY_MS = 1000;

function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** Recurring schedules, stored as BullMQ job schedulers. */
export class Schedules {
  constructor(
    private readonly registry: QueueRegistry,
    private readonly maxPayloadBytes: number,
  ) {}

  async upsert(s: pb.Schedule | undefined): Promise<pb.Schedule> {
    if (!s) throw new InvalidArgumentError('schedule', 'is required');
    const queueName = validateQueueName(s.queue, 'schedule.queue');
    const queue = await this.registry.get(queueName);
    validateScheduleId(s.id, 'schedule.id');
    const repeat: Omit<RepeatOptions, 'key'> = {};
    if (s.cron !== undefined && s.every !== undefined) throw new InvalidArgumentError('schedule.trigger', 'set either cron or every, not both');
    const tz = s.timezone || 'UTC';
    if (!validTimeZone(tz)) throw new InvalidArgumentError('schedule.timezone', `"${s.timezone}" is not an IANA time zone, e.g. "Europe/Berlin"`);
    if (s.cron !== undefined) {
      try {
        CronExpressionParser.parse(s.cron, { tz });
      } catch (err) {
        throw new InvalidArgumentError('schedule.cron', `"${s.cron}" is not a valid cron expression: ${(err as Error).message}`);
      }
      repeat.pattern = s.cron;
      repeat.tz = tz;
    } else if (s.every !== undefined) {
      const every = durationToMs(s.every)!;
      if (every < MIN_EVERY_MS) throw new InvalidArgumentError('schedule.every', `must be at least 1s, got ${every}ms`);
      repeat.every = every;
    } else {
      throw new InvalidArgumentError('schedule.trigger', 'is required: set cron or every');
    }
    if (s.startAt) repeat.startDate = s.startAt;
    if (s.endAt) {
      if (s.startAt && s.endAt <= s.startAt) throw new InvalidArgumentError('schedule.end_at', 'must be after start_at');
      repeat.endDate = s.endAt;
    }
    if (s.limit !== undefined) {
      if (s.limit < 1) throw new InvalidArgumentError('schedule.limit', 'must be at least 1');
      repeat.limit = s.limit;
    }

    const t = s.template;
    if (!t) throw new InvalidArgumentError('schedule.template', 'is required');
    const name = validateJobName(t.name, 'schedule.template.name');
    const data = t.data ?? {};
    validatePayload(data, this.maxPayloadBytes, 'schedule.template.data');
    const own = jobOptionsFromProto(t.options);
    validateJobOptions(own, 'schedule.template.options');
    for (const [key, field] of [['delayMs', 'delay'], ['runAt', 'run_at'], ['jobId', 'job_id'], ['idempotencyKey', 'idempotency_key'], ['replayOf', 'replay_of']] as const) {
      if (own[key] !== undefined) throw new InvalidArgumentError(`schedule.template.options.${field}`, 'is not allowed in a schedule template');
    }
    const opts = toBullOptions(resolveJobOptions(own, queue.defaultJobOptions), { holdFailed: !queue.deadLetter.disabled });
    const { delay: _delay, jobId: _jobId, ...templateOpts } = opts as JobsOptions;
    await this.registry.bullQueue(queueName).upsertJobScheduler(s.id, repeat, { name, data, opts: templateOpts });
    return this.get(queueName, s.id);
  }

  async get(queue: string, id: string): Promise<pb.Schedule> {
    await this.registry.get(validateQueueName(queue));
    validateScheduleId(id, 'id');
    const json = await this.registry.bullQueue(queue).getJobScheduler(id);
    if (!json) throw new ScheduleNotFoundError(queue, id);
    return toProtoSchedule(queue, id, json);
  }

  async list(req: pb.ListSchedulesRequest): Promise<pb.ListSchedulesResponse> {
    const queue = validateQueueName(req.queue);
    await this.registry.get(queue);
    if (req.pageSize > 1000) throw new InvalidArgumentError('page_size', `must be at most 1000, got ${req.pageSize}`);
    const size = req.pageSize || 100;
    const offset = req.pageToken ? Number.parseInt(req.pageToken, 10) : 0;
    if (!Number.isInteger(offset) || offset < 0 || (req.pageToken && String(offset) !== req.pageToken)) {
      throw new InvalidArgumentError('page_token', 'is not a token returned by this call');
    }
    const found = await this.registry.bullQueue(queue).getJobSchedulers(offset, offset + size, true);
    const page = found.slice(0, size);
    return {
      schedules: page.map((j) => toProtoSchedule(queue, j.key, j)),
      nextPageToken: found.length > size ? String(offset + size) : '',
    };
  }

  async delete(queue: string, id: string): Promise<void> {
    await this.get(queue, id);
    await this.registry.bullQueue(queue).removeJobScheduler(id);
  }
}

function toProtoSchedule(queue: string, id: string, j: JobSchedulerJson): pb.Schedule {
  const opts = (j.template?.opts ?? {}) as JobsOptions;
  return {
    id: j.id ?? id,
    queue,
    cron: j.pattern ?? undefined,
    every: j.every ? msToDuration(Number(j.every)) : undefined,
    timezone: j.pattern ? (j.tz ?? 'UTC') : '',
    template: {
      name: j.name,
      data: (j.template?.data ?? {}) as Record<string, unknown>,
      options: jobOptionsToProto(optionsOfBullJob({ opts, id: undefined } as never)),
    },
    startAt: j.startDate ? new Date(Number(j.startDate)) : undefined,
    endAt: j.endDate ? new Date(Number(j.endDate)) : undefined,
    limit: j.limit ? Number(j.limit) : undefined,
    nextRunAt: j.next ? new Date(Number(j.next)) : undefined,
    iterationCount: Number(j.iterationCount ?? 0),
  };
}
