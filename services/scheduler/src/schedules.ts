import { durationToMs } from '@jobmesh/contracts';
import type * as pb from '@jobmesh/contracts';
import {
  INVALID_DURATION,
  InvalidArgumentError,
  MAX_DURATION_MS,
  ResourceExhaustedError,
  ScheduleNotFoundError,
  shorten,
  validateLength,
  resolveJobOptions,
  validateJobName,
  validateJobOptions,
  validatePayload,
  validateQueueName,
  validateScheduleId,
} from '@jobmesh/core';
import { type QueueRegistry, type ScheduleTrigger, ScheduleStore, jobOptionsFromProto } from '@jobmesh/queue';
import { type CronExpression, CronExpressionParser } from 'cron-parser';

/** Limits on the schedules of one queue. */
export interface ScheduleLimits {
  /** The shortest interval between two fires (every, or a cron's first two). @default 1 s */
  minIntervalMs: number;
  /** Schedules one queue may hold. @default 1000 */
  maxPerQueue: number;
}

export const DEFAULT_SCHEDULE_LIMITS: Readonly<ScheduleLimits> = Object.freeze({ minIntervalMs: 1000, maxPerQueue: 1000 });

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
    private readonly limits: ScheduleLimits = DEFAULT_SCHEDULE_LIMITS,
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
    const own = jobOptionsFromProto(t.options, 'schedule.template.options');
    validateJobOptions(own, 'schedule.template.options');
    for (const [key, field] of [['delayMs', 'delay'], ['runAt', 'run_at'], ['jobId', 'job_id'], ['idempotencyKey', 'idempotency_key'], ['replayOf', 'replay_of']] as const) {
      if (own[key] !== undefined) throw new InvalidArgumentError(`schedule.template.options.${field}`, 'is not allowed in a schedule template');
    }
    const options = resolveJobOptions(own, queue.defaultJobOptions);
    // A new id counts against the queue's limit; replacing an existing one does not. Checked, not
    // locked: upserts racing for the last places may pass it by a few.
    if (!(await this.store.get(queueName, s.id)) && (await this.store.count(queueName)) >= this.limits.maxPerQueue) {
      throw new ResourceExhaustedError(`queue "${queueName}" has ${this.limits.maxPerQueue} schedules, the most it may hold (JOBMESH_MAX_SCHEDULES_PER_QUEUE); delete one first`);
    }
    await this.store.upsert(queueName, s.id, trigger, { name, data, options, holdFailed: !queue.deadLetter.disabled, linkTraceparent: traceparent });
    return this.get(queueName, s.id);
  }

  /** When the schedule runs, checked: cron (with a time zone) or every, and its window; it must fire at least once. */
  private trigger(s: pb.Schedule): ScheduleTrigger {
    if (s.cron !== undefined && s.every !== undefined) throw new InvalidArgumentError('schedule.trigger', 'set either cron or every, not both');
    const tz = s.timezone || 'UTC';
    if (!validTimeZone(tz)) throw new InvalidArgumentError('schedule.timezone', `"${shorten(s.timezone, 40)}" is not an IANA time zone, e.g. "Europe/Berlin"`);
    if (s.startAt && Number.isNaN(s.startAt.getTime())) throw new InvalidArgumentError('schedule.start_at', 'is not a valid time');
    if (s.endAt && Number.isNaN(s.endAt.getTime())) throw new InvalidArgumentError('schedule.end_at', 'is not a valid time');
    const now = Date.now();
    // The first time it could fire: start_at, or now.
    const from = Math.max(now, s.startAt?.getTime() ?? now);
    let trigger: ScheduleTrigger;
    let first: number;
    if (s.cron !== undefined) {
      if (!s.cron.trim()) throw new InvalidArgumentError('schedule.cron', 'is empty: set a cron expression, or every instead');
      validateLength(s.cron, 200, 'schedule.cron');
      let fires: CronExpression;
      try {
        fires = CronExpressionParser.parse(s.cron, { tz, currentDate: new Date(from - 1) });
      } catch (err) {
        throw new InvalidArgumentError('schedule.cron', `"${s.cron}" is not a valid cron expression: ${(err as Error).message}`);
      }
      let second: number;
      try {
        first = fires.next().getTime();
        second = fires.next().getTime();
      } catch {
        throw new InvalidArgumentError('schedule.cron', `"${s.cron}" never fires`);
      }
      if (second - first < this.limits.minIntervalMs) {
        throw new InvalidArgumentError('schedule.cron', `"${s.cron}" fires every ${second - first}ms; at most once every ${this.limits.minIntervalMs}ms`);
      }
      trigger = { cron: s.cron, timezone: tz };
    } else if (s.every !== undefined) {
      const every = durationToMs(s.every)!;
      if (!Number.isFinite(every)) throw new InvalidArgumentError('schedule.every', INVALID_DURATION);
      if (every < this.limits.minIntervalMs) throw new InvalidArgumentError('schedule.every', `must be at least ${this.limits.minIntervalMs}ms, got ${every}ms`);
      if (every > MAX_DURATION_MS) throw new InvalidArgumentError('schedule.every', `must be at most ${MAX_DURATION_MS}ms (10 years), got ${every}ms`);
      trigger = { everyMs: every };
      first = from;
    } else {
      throw new InvalidArgumentError('schedule.trigger', 'is required: set cron or every');
    }
    if (s.startAt) trigger.startAt = s.startAt;
    if (s.endAt) {
      if (s.startAt && s.endAt <= s.startAt) throw new InvalidArgumentError('schedule.end_at', 'must be after start_at');
      if (s.endAt.getTime() <= now) throw new InvalidArgumentError('schedule.end_at', `is in the past (${s.endAt.toISOString()}): the schedule would never fire`);
      if (first > s.endAt.getTime()) throw new InvalidArgumentError('schedule.end_at', `is before the first time the schedule fires (${new Date(first).toISOString()})`);
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
