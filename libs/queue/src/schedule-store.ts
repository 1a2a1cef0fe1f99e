// Recurring schedules, stored as BullMQ job schedulers: BullMQ adds each run as a delayed job.
import { msToDuration } from '@jobmesh/contracts';
import type * as pb from '@jobmesh/contracts';
import type { ResolvedJobOptions } from '@jobmesh/core';
import type { JobSchedulerJson, JobsOptions, RepeatOptions } from 'bullmq';
import { optionsOfBullJob, toBullOptions } from './job-mapping';
import { jobOptionsToProto } from './proto-mapping';
import type { QueueRegistry } from './registry';

/** When a schedule runs: a cron pattern in a time zone, or every so many ms; within a window, a number of times. */
export type ScheduleTrigger = ({ cron: string; timezone: string } | { everyMs: number }) & {
  startAt?: Date;
  endAt?: Date;
  /** Runs at most this many times. */
  limit?: number;
};

/** The job each run adds. Its options hold no delay, run_at, job id or idempotency key. */
export interface ScheduleTemplate {
  name: string;
  data: Record<string, unknown>;
  options: ResolvedJobOptions;
  /** The queue captures dead letters (see toBullOptions). */
  holdFailed: boolean;
  /** The traceparent each run's attempts link to (the upsert's), not continue. */
  linkTraceparent?: string;
}

/** Schedules of a queue, by id. Queue names are not checked against the registry here. */
export class ScheduleStore {
  constructor(private readonly registry: QueueRegistry) {}

  /** Creates the schedule `id` of `queue`, or replaces it (with its next, not yet due run). */
  async upsert(queue: string, id: string, trigger: ScheduleTrigger, template: ScheduleTemplate): Promise<void> {
    const repeat: Omit<RepeatOptions, 'key'> = 'cron' in trigger ? { pattern: trigger.cron, tz: trigger.timezone } : { every: trigger.everyMs };
    if (trigger.startAt) repeat.startDate = trigger.startAt;
    if (trigger.endAt) repeat.endDate = trigger.endAt;
    if (trigger.limit !== undefined) repeat.limit = trigger.limit;
    // BullMQ gives each run its own id and delay.
    const { delay: _delay, jobId: _jobId, ...opts } = toBullOptions(template.options, { holdFailed: template.holdFailed, linkTraceparent: template.linkTraceparent });
    await this.registry.bullQueue(queue).upsertJobScheduler(id, repeat, { name: template.name, data: template.data, opts });
  }

  async get(queue: string, id: string): Promise<pb.Schedule | undefined> {
    const json = await this.registry.bullQueue(queue).getJobScheduler(id);
    return json ? toProtoSchedule(queue, id, json) : undefined;
  }

  /** Up to `count` schedules of `queue` from `offset`, in BullMQ's order (by next run). */
  async list(queue: string, offset: number, count: number): Promise<pb.Schedule[]> {
    const found = await this.registry.bullQueue(queue).getJobSchedulers(offset, offset + count - 1, true);
    return found.map((j) => toProtoSchedule(queue, j.key, j));
  }

  /** How many schedules `queue` holds. */
  count(queue: string): Promise<number> {
    return this.registry.bullQueue(queue).getJobSchedulersCount();
  }

  /** Deletes the schedule with its next, not yet due run. */
  async remove(queue: string, id: string): Promise<void> {
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
