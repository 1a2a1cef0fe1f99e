import * as pb from '@jobmesh/contracts';
import type { JobStateName } from '@jobmesh/core';
import type { Logger } from '@jobmesh/telemetry';
import type { QueueRegistry } from '@jobmesh/queue';
import { type ConnectionOptions, QueueEvents } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';

type Listener = (event: pb.JobEvent) => void;
type RawEvent = Record<string, string | undefined> & { jobId: string };

interface QueueTap {
  events: QueueEvents;
  listeners: Map<string, Set<Listener>>;
  ready: Promise<void>;
}

const TERMINAL_EVENTS = new Set([
  pb.JobEventType.JOB_EVENT_TYPE_COMPLETED,
  pb.JobEventType.JOB_EVENT_TYPE_FAILED,
  pb.JobEventType.JOB_EVENT_TYPE_DEAD_LETTERED,
  pb.JobEventType.JOB_EVENT_TYPE_CANCELLED,
]);

export const isTerminalEvent = (e: pb.JobEvent): boolean => TERMINAL_EVENTS.has(e.type);

/**
 * Fans BullMQ's per-queue event stream out to WatchJob calls: one QueueEvents reader per queue
 * with watchers, whatever their number, closed when the last watcher leaves.
 */
export class JobEventHub {
  private readonly taps = new Map<string, QueueTap>();
  private readonly closing = new Set<Promise<void>>();

  constructor(
    private readonly redis: Redis,
    private readonly registry: QueueRegistry,
    private readonly connection: RedisOptions,
    private readonly logger: Logger,
  ) {}

  /** Listens to a job's events. Resolves once the reader is positioned; call the result to stop. */
  async subscribe(queue: string, jobId: string, listener: Listener): Promise<() => void> {
    const tap = this.taps.get(queue) ?? this.open(queue);
    let set = tap.listeners.get(jobId);
    if (!set) tap.listeners.set(jobId, (set = new Set()));
    set.add(listener);
    await tap.ready;
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
    const streamKey = this.registry.keys.events(queue);
    const listeners = new Map<string, Set<Listener>>();
    const tap: QueueTap = { events: undefined as unknown as QueueEvents, listeners, ready: Promise.resolve() };
    // Read from the stream's current end, fetched before the reader starts, so nothing that
    // happens after subscribe() resolves is missed.
    const ready = (async () => {
      const last = await this.redis.xrevrange(streamKey, '+', '-', 'COUNT', 1);
      const lastEventId = last[0]?.[0] ?? '0-0';
      const events = new QueueEvents(queue, {
        connection: this.connection as ConnectionOptions,
        prefix: this.registry.keys.prefix,
        lastEventId,
        autorun: false,
        blockingTimeout: READ_BLOCK_MS,
      });
      tap.events = events;
      events.on('error', (err) => this.logger.warn({ err: err.message, queue }, 'queue events error'));
      const emit = (type: pb.JobEventType, raw: RawEvent, extra: Partial<pb.JobEvent> = {}): void => {
        const set = listeners.get(raw.jobId);
        if (!set) return;
        const event = pb.JobEvent.fromPartial({ jobId: raw.jobId, queue, type, at: new Date(), ...extra });
        for (const l of set) l(event);
      };
      const T = pb.JobEventType;
      // Jobs whose next 'delayed' event is a worker-pool setting them aside (waiting for a
      // processor, or handed to another replica), not a retry: announced just before it.
      const setAside = new Set<string>();
      events.on('added', (e) => emit(T.JOB_EVENT_TYPE_ADDED, e as RawEvent));
      events.on('active', (e) => emit(T.JOB_EVENT_TYPE_ACTIVE, e as RawEvent));
      events.on('progress', (e) => emit(T.JOB_EVENT_TYPE_PROGRESS, e as unknown as RawEvent, { progress: (e as { data: unknown }).data }));
      // QueueEvents has parsed the result already (parsing it again turned a string "1" into 1).
      events.on('completed', (e) => emit(T.JOB_EVENT_TYPE_COMPLETED, e as RawEvent, { result: (e as { returnvalue: unknown }).returnvalue }));
      events.on('failed', (e) => emit(T.JOB_EVENT_TYPE_FAILED, e as RawEvent, { reason: (e as RawEvent).failedReason ?? '' }));
      events.on('stalled', (e) => emit(T.JOB_EVENT_TYPE_STALLED, e as RawEvent));
      // A delayed or waiting event for a job that was active is a scheduled retry.
      events.on('delayed', (e) => {
        const raw = e as unknown as RawEvent;
        if (setAside.delete(raw.jobId)) return;
        emit(T.JOB_EVENT_TYPE_RETRY_SCHEDULED, raw, { reason: 'retry after backoff' });
      });
      events.on('waiting', (e) => {
        const raw = e as RawEvent;
        if (raw.prev === 'active' || raw.prev === 'failed') emit(T.JOB_EVENT_TYPE_RETRY_SCHEDULED, raw);
        else if (raw.prev === 'delayed') emit(T.JOB_EVENT_TYPE_WAITING, raw);
      });
      // Events Jobmesh itself writes to the stream.
      const custom = events as unknown as { on(name: string, f: (e: RawEvent) => void): void };
      custom.on('cancelled', (e) => emit(T.JOB_EVENT_TYPE_CANCELLED, e, { reason: e.reason ?? '' }));
      custom.on('dead-lettered', (e) => emit(T.JOB_EVENT_TYPE_DEAD_LETTERED, e, { reason: e.reason ?? '' }));
      custom.on('log', (e) => emit(T.JOB_EVENT_TYPE_LOG, e, { message: e.message ?? '' }));
      custom.on('waiting-for-processor', (e) => {
        if (listeners.has(e.jobId)) setAside.add(e.jobId);
        const until = new Date(Number(e.until)).toISOString();
        emit(T.JOB_EVENT_TYPE_WAITING_FOR_PROCESSOR, e, { reason: `nothing serves this job name yet; it waits for a processor until ${until}` });
      });
      custom.on('requeued', (e) => {
        if (listeners.has(e.jobId)) setAside.add(e.jobId);
      });
      void events.run().catch((err: Error) => this.logger.warn({ err: err.message, queue }, 'queue events reader stopped'));
      await events.waitUntilReady();
    })();
    tap.ready = ready;
    this.taps.set(queue, tap);
    ready.catch(() => this.taps.delete(queue));
    return tap;
  }

  /** Closes a tap's reader; close() waits for every reader closed this way. */
  private closeTap(tap: QueueTap): void {
    const closing = (async () => {
      // A tap still opening waits for Redis (its reader connects until it can); close it anyway,
      // once its reader exists. A tap that failed to open (its error went to the WatchJob that
      // opened it) has nothing to close.
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, QUEUE_EVENTS_CLOSE_MS)));
      await Promise.race([tap.ready.catch(() => undefined), bound]);
      clearTimeout(timer);
      if (tap.events) await closeQueueEvents(tap.events);
    })();
    this.closing.add(closing);
    void closing.finally(() => this.closing.delete(closing));
  }

  async close(): Promise<void> {
    for (const tap of this.taps.values()) this.closeTap(tap);
    this.taps.clear();
    await Promise.all(this.closing);
  }
}

/**
 * How long a reader's XREAD blocks. Short, so a reader closed while Redis is down is gone soon:
 * BullMQ abandons an XREAD that Redis never answered only after the block time plus 1 s.
 */
const READ_BLOCK_MS = 1000;
/** How long closing a reader may wait for its connection to end: past BullMQ's XREAD watchdog. */
const QUEUE_EVENTS_CLOSE_MS = READ_BLOCK_MS + 1500;

/**
 * QueueEvents.close() waits for ioredis' 'end' event, which never comes when Redis is down and
 * the connection is between reconnect attempts (ioredis#1247): shutdown would hang. The socket is
 * gone and disconnect() has cleared the reconnect timer by then, so wait only until BullMQ has
 * given up its last XREAD, and go on.
 */
async function closeQueueEvents(events: QueueEvents): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, QUEUE_EVENTS_CLOSE_MS)));
  // At worst the reader's connection is already gone: nothing to lose by an error here.
  await Promise.race([events.close().catch(() => undefined), bound]);
  clearTimeout(timer);
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

