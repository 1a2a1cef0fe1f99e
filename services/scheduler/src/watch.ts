import * as pb from '@jobmesh/contracts';
import type { JobStateName } from '@jobmesh/core';
import { type Backbone, JobEventReader } from '@jobmesh/queue';
import type { Logger } from '@jobmesh/telemetry';

type Listener = (event: pb.JobEvent) => void;

interface QueueTap {
  reader: JobEventReader;
  listeners: Map<string, Set<Listener>>;
}

const TERMINAL_EVENTS = new Set([
  pb.JobEventType.JOB_EVENT_TYPE_COMPLETED,
  pb.JobEventType.JOB_EVENT_TYPE_FAILED,
  pb.JobEventType.JOB_EVENT_TYPE_DEAD_LETTERED,
  pb.JobEventType.JOB_EVENT_TYPE_CANCELLED,
]);

export const isTerminalEvent = (e: pb.JobEvent): boolean => TERMINAL_EVENTS.has(e.type);

/**
 * Fans a queue's job events out to WatchJob calls: one JobEventReader per queue with watchers,
 * whatever their number, closed when the last watcher leaves.
 */
export class JobEventHub {
  private readonly taps = new Map<string, QueueTap>();
  private readonly closing = new Set<Promise<void>>();

  constructor(
    private readonly backbone: Backbone,
    private readonly logger: Logger,
  ) {}

  /** Listens to a job's events. Resolves once the reader is positioned; call the result to stop. */
  async subscribe(queue: string, jobId: string, listener: Listener): Promise<() => void> {
    const tap = this.taps.get(queue) ?? this.open(queue);
    let set = tap.listeners.get(jobId);
    if (!set) tap.listeners.set(jobId, (set = new Set()));
    set.add(listener);
    await tap.reader.ready;
    return () => {
      set!.delete(listener);
      if (set!.size === 0) tap.listeners.delete(jobId);
      if (tap.listeners.size === 0 && this.taps.get(queue) === tap) {
        this.taps.delete(queue);
        this.closeTap(tap);
      }
    };
  }

  private open(queue: string): QueueTap {
    const listeners = new Map<string, Set<Listener>>();
    const reader = new JobEventReader(this.backbone, {
      queue,
      logger: this.logger,
      wants: (jobId) => listeners.has(jobId),
      onEvent: (event) => {
        for (const l of listeners.get(event.jobId) ?? []) l(event);
      },
    });
    const tap: QueueTap = { reader, listeners };
    this.taps.set(queue, tap);
    // Its error went to the WatchJob that opened it; the next watcher opens a new reader.
    reader.ready.catch(() => {
      if (this.taps.get(queue) === tap) this.taps.delete(queue);
    });
    return tap;
  }

  /** Closes a tap's reader; close() waits for every reader closed this way. */
  private closeTap(tap: QueueTap): void {
    const closing = tap.reader.close();
    this.closing.add(closing);
    void closing.finally(() => this.closing.delete(closing));
  }

  async close(): Promise<void> {
    for (const tap of this.taps.values()) this.closeTap(tap);
    this.taps.clear();
    await Promise.all(this.closing);
  }
}

/** The event that describes a job's current state, sent first on every WatchJob stream. */
export function currentStateEvent(job: pb.Job, state: JobStateName | undefined): pb.JobEvent {
  const T = pb.JobEventType;
  const base = { jobId: job.id, queue: job.queue, at: new Date(), attempt: job.attemptsMade };
  switch (state) {
    case 'active':
      return pb.JobEvent.fromPartial({ ...base, type: T.JOB_EVENT_TYPE_ACTIVE, attempt: job.attemptsMade + 1, at: job.processedAt ?? base.at });
    case 'completed':
      return pb.JobEvent.fromPartial({ ...base, type: T.JOB_EVENT_TYPE_COMPLETED, result: job.result, at: job.finishedAt ?? base.at });
    case 'failed':
      return pb.JobEvent.fromPartial({ ...base, type: T.JOB_EVENT_TYPE_FAILED, reason: job.failureReason, at: job.finishedAt ?? base.at });
    case 'cancelled':
      return pb.JobEvent.fromPartial({ ...base, type: T.JOB_EVENT_TYPE_CANCELLED, reason: job.failureReason, at: job.finishedAt ?? base.at });
    case 'dead-lettered':
      return pb.JobEvent.fromPartial({ ...base, type: T.JOB_EVENT_TYPE_DEAD_LETTERED, reason: job.failureReason });
    default:
      if (job.processorWaitUntil) {
        const reason = `nothing serves this job name yet; it waits for a processor until ${job.processorWaitUntil.toISOString()}`;
        return pb.JobEvent.fromPartial({ ...base, type: T.JOB_EVENT_TYPE_WAITING_FOR_PROCESSOR, reason });
      }
      return pb.JobEvent.fromPartial({ ...base, type: T.JOB_EVENT_TYPE_ADDED, at: job.createdAt ?? base.at });
  }
}

