import { durationToMs } from '@jobmesh/contracts';
import type * as pb from '@jobmesh/contracts';
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
import { type QueueRegistry, type ScheduleTrigger, ScheduleStore, jobOptionsFromProto } from '@jobmesh/queue';
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

/** UpsertSchedule, GetSchedule, ListSchedules, DeleteSchedule: checked here, stored by libs/queue's ScheduleStore. */
export class Schedules {
  private readonly store: ScheduleStore;

  constructor(
    private readonly registry: QueueRegistry,
    private readonly maxPayloadBytes: number,
  ) {
    this.store = new ScheduleStore(registry);
  }

  async upsert(s: pb.Schedule | undefined, traceparent?: string): Promise<pb.Schedule> {
    if (!s) throw new InvalidArgumentError('schedule', 'is required');
    const queueName = validateQueueName(s.queue, 'schedule.queue');
    const queue = await this.registry.get(queueName);
    validateScheduleId(s.id, 'schedule.id');
    const trigger = this.trigger(s);

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
    const options = resolveJobOptions(own, queue.defaultJobOptions);
    await this.store.upsert(queueName, s.id, trigger, { name, data, options, holdFailed: !queue.deadLetter.disabled, linkTraceparent: traceparent });
    return this.get(queueName, s.id);
  }

  /** When the schedule runs, checked: cron (with a time zone) or every, and its window. */
  private trigger(s: pb.Schedule): ScheduleTrigger {
    if (s.cron !== undefined && s.every !== undefined) throw new InvalidArgumentError('schedule.trigger', 'set either cron or every, not both');
    const tz = s.timezone || 'UTC';
    if (!validTimeZone(tz)) throw new InvalidArgumentError('schedule.timezone', `"${s.timezone}" is not an IANA time zone, e.g. "Europe/Berlin"`);
    let trigger: ScheduleTrigger;
    if (s.cron !== undefined) {
      try {
        CronExpressionParser.parse(s.cron, { tz });
      } catch (err) {
        throw new InvalidArgumentError('schedule.cron', `"${s.cron}" is not a valid cron expression: ${(err as Error).message}`);
      }
      trigger = { cron: s.cron, timezone: tz };
    } else if (s.every !== undefined) {
      const every = durationToMs(s.every)!;
      if (every < MIN_EVERY_MS) throw new InvalidArgumentError('schedule.every', `must be at least 1s, got ${every}ms`);
      trigger = { everyMs: every };
    } else {
      throw new InvalidArgumentError('schedule.trigger', 'is required: set cron or every');
    }
    if (s.startAt) trigger.startAt = s.startAt;
    if (s.endAt) {
      if (s.startAt && s.endAt <= s.startAt) throw new InvalidArgumentError('schedule.end_at', 'must be after start_at');
      trigger.endAt = s.endAt;
    }
    if (s.limit !== undefined) {
      if (s.limit < 1) throw new InvalidArgumentError('schedule.limit', 'must be at least 1');
      trigger.limit = s.limit;
    }
    return trigger;
  }

  async get(queue: string, id: string): Promise<pb.Schedule> {
    await this.registry.get(validateQueueName(queue));
    validateScheduleId(id, 'id');
    const found = await this.store.get(queue, id);
    if (!found) throw new ScheduleNotFoundError(queue, id);
    return found;
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
    // One more than a page, to tell whether there is a next one.
    const found = await this.store.list(queue, offset, size + 1);
    return { schedules: found.slice(0, size), nextPageToken: found.length > size ? String(offset + size) : '' };
  }

  async delete(queue: string, id: string): Promise<void> {
    await this.get(queue, id);
    await this.store.remove(queue, id);
  }
}
