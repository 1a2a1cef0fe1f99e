import { settlesWithin } from '@jobmesh/core';
// Reading a queue's job events: BullMQ's own and those Jobmesh adds (events.ts), as
// jobmesh.v1 JobEvents, for WatchJob.
import * as pb from '@jobmesh/contracts';
import type { Logger } from '@jobmesh/telemetry';
import { type ConnectionOptions, QueueEvents } from 'bullmq';
import type { Backbone } from './backbone';
import type { JobEventFields } from './events';

/**
 * How long a reader's XREAD blocks. Short, so a reader closed while Redis is down is gone soon:
 * BullMQ abandons an XREAD that Redis never answered only after the block time plus 1 s.
 */
const READ_BLOCK_MS = 1000;
/** How long closing a reader may wait for its connection to end: past BullMQ's XREAD watchdog. */
const CLOSE_BOUND_MS = READ_BLOCK_MS + 1500;

type RawEvent = Record<string, string | undefined> & { jobId: string };

/** Jobmesh's own events on the stream, with BullMQ's `jobId`, and those the worker-pool writes in Lua. */
type OwnEvent = { [E in keyof JobEventFields]: JobEventFields[E] & { jobId: string } } & {
  'dead-lettered': { jobId: string; reason?: string };
  'waiting-for-processor': { jobId: string; until: string };
};

export interface JobEventReaderOptions {
  queue: string;
  /** Whether anyone wants this job's events now; events of other jobs are dropped unread. */
  wants(jobId: string): boolean;
  onEvent(event: pb.JobEvent): void;
  logger: Logger;
}

/**
 * Reads one queue's event stream from its end as it was when the reader opened (so nothing after
 * `ready` is missed), on a connection of its own that reconnects by itself, and hands each event
 * of a wanted job over as a JobEvent. A 'delayed' event that follows an attempt is a scheduled
 * retry; one that follows a worker-pool setting the job aside (it waits for a processor, or goes
 * to another replica) is not, and is dropped.
 */
export class JobEventReader {
  /** Resolves once the reader is positioned; rejects if it could not be opened. */
  readonly ready: Promise<void>;
  private events?: QueueEvents;
  private closing?: Promise<void>;

  constructor(
    private readonly backbone: Pick<Backbone, 'redis' | 'registry' | 'workerConnection'>,
    private readonly opts: JobEventReaderOptions,
  ) {
    this.ready = this.open();
  }

  private async open(): Promise<void> {
    const { queue, logger } = this.opts;
    const { redis, registry } = this.backbone;
    const last = await redis.xrevrange(registry.keys.events(queue), '+', '-', 'COUNT', 1);
    const events = new QueueEvents(queue, {
      connection: this.backbone.workerConnection as ConnectionOptions,
      prefix: registry.keys.queuePrefix(queue),
      lastEventId: last[0]?.[0] ?? '0-0',
      autorun: false,
      blockingTimeout: READ_BLOCK_MS,
    });
    this.events = events;
    events.on('error', (err) => logger.warn({ err: err.message, queue }, 'queue events error'));
    this.listen(events);
    void events.run().catch((err: Error) => logger.warn({ err: err.message, queue }, 'queue events reader stopped'));
    await events.waitUntilReady();
  }

  private listen(events: QueueEvents): void {
    const { queue, wants, onEvent } = this.opts;
    const T = pb.JobEventType;
    const emit = (type: pb.JobEventType, raw: { jobId: string }, extra: Partial<pb.JobEvent> = {}): void => {
      if (wants(raw.jobId)) onEvent(pb.JobEvent.fromPartial({ jobId: raw.jobId, queue, type, at: new Date(), ...extra }));
    };
    // Jobs whose next 'delayed' event is a worker-pool setting them aside, not a retry.
    const setAside = new Set<string>();
    events.on('added', (e) => emit(T.JOB_EVENT_TYPE_ADDED, e));
    events.on('active', (e) => emit(T.JOB_EVENT_TYPE_ACTIVE, e));
    events.on('progress', (e) => emit(T.JOB_EVENT_TYPE_PROGRESS, e, { progress: e.data }));
    // QueueEvents has parsed the result already (parsing it again turned a string "1" into 1).
    events.on('completed', (e) => emit(T.JOB_EVENT_TYPE_COMPLETED, e, { result: e.returnvalue }));
    events.on('failed', (e) => emit(T.JOB_EVENT_TYPE_FAILED, e, { reason: e.failedReason ?? '' }));
    events.on('stalled', (e) => emit(T.JOB_EVENT_TYPE_STALLED, e));
    events.on('delayed', (e) => {
      if (setAside.delete(e.jobId)) return;
      emit(T.JOB_EVENT_TYPE_RETRY_SCHEDULED, e, { reason: 'retry after backoff' });
    });
    // A waiting event for a job that was active or failed is a retry; one after delayed, its time came.
    events.on('waiting', (e) => {
      const { prev } = e as RawEvent;
      if (prev === 'active' || prev === 'failed') emit(T.JOB_EVENT_TYPE_RETRY_SCHEDULED, e);
      else if (prev === 'delayed') emit(T.JOB_EVENT_TYPE_WAITING, e);
    });
    const own = events as unknown as { on<E extends keyof OwnEvent>(name: E, f: (e: OwnEvent[E]) => void): void };
    own.on('cancelled', (e) => emit(T.JOB_EVENT_TYPE_CANCELLED, e, { reason: e.reason ?? '' }));
    own.on('dead-lettered', (e) => emit(T.JOB_EVENT_TYPE_DEAD_LETTERED, e, { reason: e.reason ?? '' }));
    own.on('log', (e) => emit(T.JOB_EVENT_TYPE_LOG, e, { message: e.message ?? '' }));
    own.on('waiting-for-processor', (e) => {
      if (wants(e.jobId)) setAside.add(e.jobId);
      const until = new Date(Number(e.until)).toISOString();
      emit(T.JOB_EVENT_TYPE_WAITING_FOR_PROCESSOR, e, { reason: `nothing serves this job name yet; it waits for a processor until ${until}` });
    });
    own.on('requeued', (e) => {
      if (wants(e.jobId)) setAside.add(e.jobId);
    });
  }

  /**
   * Stops reading. A reader still opening waits for Redis (its connection retries until it can);
   * it is closed anyway, once it exists, within a bound. Closing never fails: at worst the
   * connection is already gone.
   */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      await bounded(this.ready.catch(() => undefined)); // a failed open has nothing to close
      // QueueEvents.close() waits for ioredis' 'end' event, which never comes when Redis is down
      // and the connection is between reconnect attempts (ioredis#1247): shutdown would hang.
      // disconnect() has cleared the reconnect timer by then, so wait only until BullMQ has
      // given up its last XREAD, and go on.
      if (this.events) await bounded(this.events.close().catch(() => undefined));
    })());
  }
}

/** Waits for `p`, or for CLOSE_BOUND_MS, whichever comes first. */
async function bounded(p: Promise<unknown>): Promise<void> {
  await settlesWithin(p, CLOSE_BOUND_MS);
}
