import { type ClientDuplexStream, Metadata, type StatusObject, status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { ERROR_TRAILER } from '@jobmesh/core';
import { serviceErrorOf, toClientError } from './errors';

export interface EnqueueStreamOptions {
  /**
   * At most this many jobs are sent and not yet answered; more wait in the client, and `ready()`
   * waits while this many are unanswered in all. @default 1000
   */
  maxInFlight?: number;
  /** At most this many jobs in one message. @default 500 */
  maxBatch?: number;
  /**
   * Jobs enqueued within this many ms of the first go out together; 0 sends those of one turn of
   * the event loop together. @default 0
   */
  maxDelayMs?: number;
  /** The stream is closed after this many ms with nothing to send or answer, and opened again on the next job. @default 50 */
  idleMs?: number;
}

/** One job's own settings on a stream. */
export interface StreamedJobSettings {
  /** W3C traceparent the job's enqueue span continues. */
  traceparent?: string;
  /** Epoch ms after which the job is given up as DEADLINE_EXCEEDED (it may still be enqueued if already sent). */
  deadline?: number;
  /** Gives the job up as CANCELLED (it may still be enqueued if already sent). */
  signal?: AbortSignal;
}

interface Item {
  queue: string;
  job: pb.JobSpec | undefined;
  traceparent: string;
  seq: number;
  settled: boolean;
  resolve: (res: pb.EnqueueJobResponse) => void;
  reject: (err: unknown) => void;
  cleanup?: () => void;
}

type Call = ClientDuplexStream<pb.EnqueueStreamRequest, pb.EnqueueStreamResponse>;

/**
 * Enqueues jobs over one EnqueueStream, each job answered on its own (see the RPC's comment in
 * proto/): a bad job rejects only its own promise, with the same typed error an `enqueueJob` call
 * would have thrown (errors.ts). Jobs enqueued together (in one turn of the event loop, or within
 * `maxDelayMs`) go out in one message, and the server writes them to Redis together.
 *
 * Flow control: at most `maxInFlight` jobs are sent and unanswered; the rest wait here. A producer
 * that must not buffer without bound awaits `ready()` before each `enqueue()`:
 *
 *     const stream = client.openEnqueueStream();
 *     for (const job of jobs) {
 *       await stream.ready();
 *       stream.enqueue({ queue: 'emails', job }).catch(report);
 *     }
 *     await stream.close();
 *
 * When the stream breaks (the server went away, a network fault), every job sent and not
 * answered is rejected with the stream's status, typically `UnavailableError`: it may or may not
 * have been enqueued, so send it again only if it carries an idempotency key or a job id (the
 * client's `enqueueJob` does that by itself). Jobs not yet sent go on a new stream. When the
 * server ends the stream itself (it is shutting down), it has answered every job it read, so
 * the unanswered ones were not enqueued and are sent again on a new stream.
 */
export class EnqueueStream {
  private readonly maxInFlight: number;
  private readonly maxBatch: number;
  private readonly maxDelayMs: number;
  private readonly idleMs: number;
  private call?: Call;
  /** Not yet sent, in order. */
  private queued: Item[] = [];
  /** Sent on `call` and not answered, in the order sent. */
  private sent: Item[] = [];
  private seq = 0;
  private flushTimer?: NodeJS.Immediate | NodeJS.Timeout;
  private idleTimer?: NodeJS.Timeout;
  private roomWaiters: (() => void)[] = [];
  private closeWaiters: (() => void)[] = [];
  private closed = false;
  /** The current call has answered at least one job. */
  private heard = false;

  constructor(
    private readonly open: (metadata: Metadata) => Call,
    private readonly metadata: () => Metadata,
    opts: EnqueueStreamOptions = {},
  ) {
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 1000);
    this.maxBatch = Math.max(1, opts.maxBatch ?? 500);
    this.maxDelayMs = Math.max(0, opts.maxDelayMs ?? 0);
    this.idleMs = Math.max(0, opts.idleMs ?? 50);
  }

  /** Jobs enqueued and not yet answered: waiting here or sent. */
  get pending(): number {
    return this.queued.length + this.sent.length;
  }

  /** Jobs sent on the stream and not yet answered (at most `maxInFlight`). */
  get inFlight(): number {
    return this.sent.length;
  }

  /** Resolves once fewer than `maxInFlight` jobs are unanswered. */
  ready(): Promise<void> {
    if (this.pending < this.maxInFlight) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Enqueues one job; resolves with what EnqueueJob would have answered, or rejects with its error. */
  enqueue(req: pb.EnqueueJobRequest, s: StreamedJobSettings = {}): Promise<pb.EnqueueJobResponse> {
    if (this.closed) return Promise.reject(new Error('EnqueueStream is closed'));
    return new Promise((resolve, reject) => {
      const item: Item = { queue: req.queue, job: req.job, traceparent: s.traceparent ?? '', seq: 0, settled: false, resolve, reject };
      const giveUp = (err: unknown): void => {
        const at = this.queued.indexOf(item);
        if (at >= 0) this.queued.splice(at, 1);
        this.settle(item, undefined, err);
      };
      if (s.signal?.aborted) return giveUp(statusError(status.CANCELLED, 'Cancelled on client'));
      let timer: NodeJS.Timeout | undefined;
      if (s.deadline !== undefined && Number.isFinite(s.deadline)) {
        timer = setTimeout(() => giveUp(statusError(status.DEADLINE_EXCEEDED, 'Deadline exceeded')), Math.max(0, s.deadline - Date.now()));
      }
      const onAbort = (): void => giveUp(statusError(status.CANCELLED, 'Cancelled on client'));
      s.signal?.addEventListener('abort', onAbort, { once: true });
      if (timer || s.signal) {
        item.cleanup = () => {
          if (timer) clearTimeout(timer);
          s.signal?.removeEventListener('abort', onAbort);
        };
      }
      this.queued.push(item);
      this.schedule();
    });
  }

  /** Sends what is queued, waits until every job is answered, and closes the stream. */
  async close(): Promise<void> {
    this.closed = true;
    this.flush();
    if (this.pending > 0) await new Promise<void>((resolve) => this.closeWaiters.push(resolve));
    this.endCall();
  }

  /** Closes the stream at once; unanswered jobs are rejected as CANCELLED. */
  cancel(): void {
    this.closed = true;
    const err = statusError(status.CANCELLED, 'EnqueueStream cancelled');
    for (const item of [...this.sent, ...this.queued]) this.settle(item, undefined, err);
    this.sent = [];
    this.queued = [];
    this.call?.cancel();
    this.call = undefined;
    this.changed();
  }

  private schedule(): void {
    if (this.idleTimer) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    if (this.queued.length >= this.maxBatch && this.sent.length < this.maxInFlight) return this.flush();
    if (this.flushTimer) return;
    this.flushTimer = this.maxDelayMs > 0 ? setTimeout(() => this.flush(), this.maxDelayMs) : setImmediate(() => this.flush());
  }

  private flush(): void {
    if (this.flushTimer) {
      clearTimeout(this.flushTimer as NodeJS.Timeout);
      clearImmediate(this.flushTimer as NodeJS.Immediate);
      this.flushTimer = undefined;
    }
    while (this.queued.length > 0 && this.sent.length < this.maxInFlight) {
      const n = Math.min(this.maxBatch, this.maxInFlight - this.sent.length, this.queued.length);
      const batch = this.queued.splice(0, n);
      const call = this.call ?? this.connect();
      const jobs: pb.StreamedJob[] = batch.map((item) => {
        item.seq = ++this.seq;
        return { seq: item.seq, queue: item.queue, job: item.job, traceparent: item.traceparent };
      });
      this.sent.push(...batch);
      call.write({ jobs });
    }
    this.changed();
  }

  private connect(): Call {
    const call = this.open(this.metadata());
    this.call = call;
    this.heard = false;
    call.on('data', (res: pb.EnqueueStreamResponse) => this.answered(call, res));
    call.on('status', (s: StatusObject) => this.ended(call, s));
    // Reported by 'status' as well; without a listener an error event would throw.
    call.on('error', () => undefined);
    return call;
  }

  private answered(call: Call, res: pb.EnqueueStreamResponse): void {
    if (call !== this.call) return;
    this.heard = true;
    for (const ack of res.acks) {
      const item = this.sent[0];
      if (!item || item.seq !== ack.seq) continue;
      this.sent.shift();
      if (ack.error) this.settle(item, undefined, ackError(ack.error));
      else this.settle(item, ack.enqueued ?? pb.EnqueueJobResponse.fromPartial({}));
    }
    this.changed();
    if (this.queued.length > 0) this.schedule();
  }

  private ended(call: Call, s: StatusObject): void {
    if (call !== this.call) return;
    this.call = undefined;
    const unanswered = this.sent;
    this.sent = [];
    if (s.code === status.OK && this.heard) {
      // The server ended the stream after answering every job it read: these it never read.
      this.queued.unshift(...unanswered);
    } else {
      // A stream ended without a word about its jobs is given up, not opened again and again.
      const err = toClientError(serviceErrorOf(s.code === status.OK ? { code: status.UNAVAILABLE, details: 'the server ended the stream without answering its jobs' } : s));
      for (const item of unanswered) this.settle(item, undefined, err);
    }
    if (this.queued.length > 0) this.schedule();
    this.changed();
  }

  private settle(item: Item, res: pb.EnqueueJobResponse | undefined, err?: unknown): void {
    if (item.settled) return;
    item.settled = true;
    item.cleanup?.();
    if (err !== undefined) item.reject(err);
    else item.resolve(res!);
  }

  /** After anything that changes what is pending: wake who waits for room or for the end, and close an idle stream. */
  private changed(): void {
    const pending = this.pending;
    if (pending < this.maxInFlight && this.roomWaiters.length > 0) for (const wake of this.roomWaiters.splice(0)) wake();
    if (pending > 0) return;
    for (const wake of this.closeWaiters.splice(0)) wake();
    if (this.call && !this.idleTimer && !this.closed) {
      this.idleTimer = setTimeout(() => {
        this.idleTimer = undefined;
        if (this.pending === 0) this.endCall();
      }, this.idleMs);
    }
  }

  private endCall(): void {
    if (this.idleTimer) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    const call = this.call;
    this.call = undefined;
    call?.end();
  }
}

/** The typed error of a job the server refused, as a unary EnqueueJob's status would map. */
function ackError(e: pb.EnqueueError): unknown {
  const metadata = new Metadata();
  if (e.errorFacts.length > 0) metadata.set(ERROR_TRAILER, Buffer.from(e.errorFacts));
  return toClientError(serviceErrorOf({ code: e.code, details: e.message, metadata }));
}

function statusError(code: status, details: string): unknown {
  return toClientError(serviceErrorOf({ code, details }));
}
