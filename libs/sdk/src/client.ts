import { type CallOptions, type ChannelCredentials, type ChannelOptions, credentials as grpcCredentials, Metadata, type ServiceError, type ClientReadableStream, status } from '@grpc/grpc-js';
import { type Keepalive, keepaliveChannelOptions } from './keepalive';
import * as pb from '@jobmesh/contracts';
import { EnqueueStream, type EnqueueStreamOptions } from './enqueue-stream';
import { toClientError } from './errors';

export interface JobmeshClientOptions {
  /** "host:port" of the Jobmesh gRPC endpoint. @default 127.0.0.1:50051 */
  address?: string;
  /** TLS credentials; plaintext when unset. */
  credentials?: ChannelCredentials;
  /** An API key, sent as `authorization: Bearer <key>`. */
  apiKey?: string;
  /** Deadline of each unary call, ms. @default 10000 */
  timeoutMs?: number;
  /** "host:port" of DeadLetterService, when it runs apart (`jobmesh up` serves it at `address`). @default address */
  deadLetterAddress?: string;
  /** "host:port" of MonitorService, when it runs apart (`jobmesh up` serves it at `address`). @default address */
  monitorAddress?: string;
  /** How calls that may be repeated are retried (see Caller); a call's own `retry` overrides it. */
  retry?: RetryPolicy;
  /**
   * `enqueueJob` calls made together share one EnqueueStream (see EnqueueStream): those of one
   * turn of the event loop, or of `maxDelayMs`, go out in one message, up to `maxBatch`, and each
   * caller still gets its own answer or its own error. `false` sends each as an EnqueueJob call
   * of its own. A call with metadata other than `traceparent`/`tracestate` always goes alone, as
   * does every call to a server without EnqueueStream. @default {}
   */
  coalesce?: EnqueueStreamOptions | false;
  /** gRPC keepalive while calls are open (WatchJob, EnqueueStream, a unary call waiting); `false`: none. @default DEFAULT_KEEPALIVE */
  keepalive?: Keepalive | false;
}

/** How a call that may be repeated is retried (see Caller). */
export interface RetryPolicy {
  /** Tries in all, the first one included. @default 4 */
  maxTries?: number;
  /**
   * Each try's own deadline, ms, inside the call's `timeoutMs`. A try that runs out of it is
   * given up and retried as one that failed with UNAVAILABLE, so one answer that never comes
   * (a stalled server, a paused Redis) does not use up the whole deadline; the next try finds out
   * what the first one did. Only for calls that may be repeated; leave it unset for calls that
   * legitimately take long (a paced replay). Unset: a try may use all the time that is left.
   */
  attemptTimeoutMs?: number;
}

export interface CallSettings {
  /** Overrides the client's deadline for this call, ms; `Infinity` for none. */
  timeoutMs?: number;
  /** Extra metadata, e.g. a W3C `traceparent`. */
  metadata?: Record<string, string>;
  signal?: AbortSignal;
  /** Overrides the client's retry policy for this call, field by field. */
  retry?: RetryPolicy;
}

/** At most this many tries of an idempotent call that fails with UNAVAILABLE, unless `retry.maxTries` says otherwise. */
export const RETRY_MAX_TRIES = 4;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2000;

type Unary<Req, Res> = (req: Req, metadata: Metadata, options: Partial<CallOptions>, cb: (err: ServiceError | null, res: Res) => void) => unknown;

/** Any message with every field optional, as `fromPartial` accepts it. */
export type DeepPartial<T> = T extends Date | Buffer | string | number | boolean | undefined
  ? T
  : T extends Array<infer U>
    ? DeepPartial<U>[]
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

/**
 * Unary calls with the client's API key, deadline and retry rule, for any generated client.
 *
 * **Retries.** A call that fails with `UNAVAILABLE` (the server could not be reached, or went
 * away before answering) is retried only when it is marked idempotent: repeating it cannot do
 * anything twice. Retries back off exponentially from 100 ms to 2 s with full jitter, make at most
 * 4 tries in all (`retry.maxTries`), and stay within the call's deadline (`timeoutMs`): the
 * deadline covers all tries, and no retry starts after it. With `retry.attemptTimeoutMs`, each
 * try also has a deadline of its own, and a try that runs out of it (DEADLINE_EXCEEDED before the
 * call's deadline) is retried too. Any other status code is never retried. An aborted `signal`
 * stops retrying.
 */
export class Caller {
  readonly timeoutMs: number;
  private readonly apiKey?: string;
  private readonly retry: RetryPolicy;

  constructor(opts: Pick<JobmeshClientOptions, 'apiKey' | 'timeoutMs' | 'retry'>) {
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.apiKey = opts.apiKey;
    this.retry = opts.retry ?? {};
  }

  metadata(s?: CallSettings): Metadata {
    const md = new Metadata();
    if (this.apiKey) md.set('authorization', `Bearer ${this.apiKey}`);
    for (const [k, v] of Object.entries(s?.metadata ?? {})) md.set(k, v);
    return md;
  }

  /** Calls `method` of `client`; with `idempotent`, retries UNAVAILABLE as the class comment says. */
  unary<C, Req, Res>(client: C, method: Unary<Req, Res>, req: Req, s?: CallSettings, idempotent = false): Promise<Res> {
    return this.retrying(
      (tryDeadline) =>
        new Promise<Res>((resolve, reject) => {
          const cancel = (): void => call.cancel();
          const call = method.call(client, req, this.metadata(s), { deadline: tryDeadline }, (err, res) => {
            s?.signal?.removeEventListener('abort', cancel);
            if (err) reject(toClientError(err));
            else resolve(res);
          }) as { cancel(): void };
          s?.signal?.addEventListener('abort', cancel, { once: true });
        }),
      s,
      idempotent,
    );
  }

  /**
   * Runs `once` (one try, given its deadline, epoch ms) within the call's deadline; with
   * `idempotent`, tries again as the class comment says.
   */
  retrying<Res>(once: (tryDeadline: number) => Promise<Res>, s?: CallSettings, idempotent = false): Promise<Res> {
    const deadline = Date.now() + (s?.timeoutMs ?? this.timeoutMs);
    if (!idempotent) return once(deadline);
    const { maxTries = RETRY_MAX_TRIES, attemptTimeoutMs } = { ...this.retry, ...s?.retry };
    return (async () => {
      for (let tries = 1; ; tries++) {
        const tryDeadline = attemptTimeoutMs ? Math.min(deadline, Date.now() + attemptTimeoutMs) : deadline;
        try {
          return await once(tryDeadline);
        } catch (err) {
          const code = (err as Partial<ServiceError>).code;
          // A try's own deadline that fired before the call's is an answer that did not come in time.
          const retryable = code === status.UNAVAILABLE || (code === status.DEADLINE_EXCEEDED && tryDeadline < deadline);
          if (!retryable || tries >= maxTries || s?.signal?.aborted) throw err;
          const cap = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (tries - 1));
          const wait = Math.round(cap / 2 + Math.random() * (cap / 2));
          if (Date.now() + wait >= deadline) throw err;
          await new Promise((r) => setTimeout(r, wait));
          if (s?.signal?.aborted) throw err;
        }
      }
    })();
  }

  /**
   * Yields each message of a server stream until it ends; leaving the loop cancels the call. A
   * stream that ends with an error status throws it as a typed error (see errors.ts).
   */
  async *stream<T>(open: (md: Metadata) => ClientReadableStream<T>, s?: Omit<CallSettings, 'timeoutMs'>): AsyncGenerator<T> {
    const stream = open(this.metadata(s));
    s?.signal?.addEventListener('abort', () => stream.cancel(), { once: true });
    try {
      for await (const msg of stream as AsyncIterable<T>) yield msg;
    } catch (err) {
      throw toClientError(err);
    } finally {
      stream.cancel();
    }
  }
}

/**
 * A typed, promise-based client of SchedulerService, of DeadLetterService as `deadLetters` and of
 * MonitorService as `monitor`.
 *
 * Retried on `UNAVAILABLE` (see Caller), as repeating them cannot do anything twice:
 * - reads: `getQueue`, `listQueues`, `getJob`, `listJobs`, `getSchedule`, `listSchedules`;
 * - `enqueueJob` / `enqueueJobs`, only when every job carries `options.idempotency_key` or
 *   `options.job_id` (the server then returns the same job instead of adding a second one);
 * - `enqueueFlow`, only when the root carries `options.job_id` (a repeat adds nothing).
 *
 * Every other call (creates, updates, deletes, cancel, retry, promote, flows and enqueues without
 * a key) fails at once, since the first try may have been applied.
 *
 * **Errors.** A call that fails rejects with a typed error (errors.ts): `QueueNotFoundError`
 * (with `queue`), `JobNotFoundError`, `ScheduleNotFoundError`, `InvalidArgumentError` (with
 * `field`), `AlreadyExistsError`, `FailedPreconditionError`, `PermissionDeniedError`,
 * `UnauthenticatedError`, `ResourceExhaustedError`, `UnavailableError`, `DeadlineExceededError`,
 * or a `StatusError` for any other status. Each carries the numeric gRPC `code`, `details`,
 * `metadata` and the grpc-js error as `cause`; `instanceof StatusError` holds for all of them.
 */
export class JobmeshClient {
  readonly scheduler: pb.SchedulerServiceClient;
  /** DeadLetterService, at `deadLetterAddress` or `address`. */
  readonly deadLetters: DeadLetterClient;
  /** MonitorService, at `monitorAddress` or `address`. */
  readonly monitor: MonitorClient;
  private readonly caller: Caller;
  /** Where coalesced enqueueJob calls go; unset when coalescing is off or the server lacks EnqueueStream. */
  private coalescer?: EnqueueStream;

  constructor(opts: JobmeshClientOptions = {}) {
    const address = opts.address ?? '127.0.0.1:50051';
    const creds = opts.credentials ?? grpcCredentials.createInsecure();
    const channel = channelOptions(opts);
    this.scheduler = new pb.SchedulerServiceClient(address, creds, channel);
    this.caller = new Caller(opts);
    this.deadLetters = new DeadLetterClient(new pb.DeadLetterServiceClient(opts.deadLetterAddress ?? address, creds, channel), this.caller);
    this.monitor = new MonitorClient(new pb.MonitorServiceClient(opts.monitorAddress ?? address, creds, channel), this.caller);
    if (opts.coalesce !== false) this.coalescer = this.openEnqueueStream(opts.coalesce);
  }

  /**
   * A stream of its own for enqueueing many jobs each on its own (EnqueueStream), with flow
   * control: see EnqueueStream. Close it when done.
   */
  openEnqueueStream(opts: EnqueueStreamOptions = {}): EnqueueStream {
    return new EnqueueStream(
      (md) => this.scheduler.enqueueStream(md),
      () => this.caller.metadata(),
      opts,
    );
  }

  private call<Req, Res>(method: Unary<Req, Res>, req: Req, s?: CallSettings, idempotent = false): Promise<Res> {
    return this.caller.unary(this.scheduler, method, req, s, idempotent);
  }

  /** Read-only calls and keyed enqueues may be repeated; see the class comment. */
  private read<Req, Res>(method: Unary<Req, Res>, req: Req, s?: CallSettings): Promise<Res> {
    return this.call(method, req, s, true);
  }

  createQueue = (req: DeepPartial<pb.CreateQueueRequest>, s?: CallSettings) =>
    this.call(this.scheduler.createQueue, pb.CreateQueueRequest.fromPartial(req), s).then((r) => r.queue!);
  updateQueue = (req: DeepPartial<pb.UpdateQueueRequest>, s?: CallSettings) =>
    this.call(this.scheduler.updateQueue, pb.UpdateQueueRequest.fromPartial(req), s).then((r) => r.queue!);
  getQueue = (name: string, s?: CallSettings) => this.read(this.scheduler.getQueue, { name }, s).then((r) => r.queue!);
  listQueues = (req: Partial<pb.ListQueuesRequest> = {}, s?: CallSettings) => this.read(this.scheduler.listQueues, pb.ListQueuesRequest.fromPartial(req), s);
  deleteQueue = (name: string, force = false, s?: CallSettings) => this.call(this.scheduler.deleteQueue, { name, force }, s).then(() => undefined);
  pauseQueue = (name: string, s?: CallSettings) => this.call(this.scheduler.pauseQueue, { name }, s).then((r) => r.queue!);
  resumeQueue = (name: string, s?: CallSettings) => this.call(this.scheduler.resumeQueue, { name }, s).then((r) => r.queue!);

  /**
   * Retried on UNAVAILABLE only when the job has `options.idempotency_key` or `options.job_id`.
   * Calls made together share one message of an EnqueueStream (see `coalesce`).
   */
  enqueueJob = (req: DeepPartial<pb.EnqueueJobRequest>, s?: CallSettings): Promise<pb.EnqueueJobResponse> => {
    const msg = pb.EnqueueJobRequest.fromPartial(req);
    const stream = this.coalescer;
    const traceparent = streamedTraceparent(s);
    if (!stream || traceparent === false) return this.call(this.scheduler.enqueueJob, msg, s, keyed(msg.job));
    return this.caller.retrying((deadline) => stream.enqueue(msg, { deadline, traceparent, signal: s?.signal }), s, keyed(msg.job)).catch((err: unknown) => {
      // A server without EnqueueStream enqueued nothing: this and later calls go one by one.
      if ((err as { code?: unknown }).code !== status.UNIMPLEMENTED) throw err;
      if (this.coalescer === stream) {
        this.coalescer = undefined;
        stream.cancel();
      }
      return this.call(this.scheduler.enqueueJob, msg, s, keyed(msg.job));
    });
  };
  /** Retried on UNAVAILABLE only when every job has `options.idempotency_key` or `options.job_id`. */
  enqueueJobs = (req: DeepPartial<pb.EnqueueJobsRequest>, s?: CallSettings) => {
    const msg = pb.EnqueueJobsRequest.fromPartial(req);
    return this.call(this.scheduler.enqueueJobs, msg, s, msg.jobs.length > 0 && msg.jobs.every(keyed));
  };
  /** Retried on UNAVAILABLE only when the root has `options.job_id`. */
  enqueueFlow = (req: DeepPartial<pb.EnqueueFlowRequest>, s?: CallSettings) => {
    const msg = pb.EnqueueFlowRequest.fromPartial(req);
    return this.call(this.scheduler.enqueueFlow, msg, s, !!msg.root?.job?.options?.jobId);
  };

  getJob = (queue: string, id: string, s?: CallSettings) => this.read(this.scheduler.getJob, pb.GetJobRequest.fromPartial({ queue, id }), s).then((r) => r.job!);
  /** GetJob with its log lines (the newest `maxLogs`, default 1000) and its flow children. */
  getJobDetails = (queue: string, id: string, opts: { maxLogs?: number } = {}, s?: CallSettings) =>
    this.read(this.scheduler.getJob, pb.GetJobRequest.fromPartial({ queue, id, includeLogs: true, maxLogs: opts.maxLogs, includeChildren: true }), s);
  listJobs = (req: Partial<pb.ListJobsRequest> & { queue: string }, s?: CallSettings) => this.read(this.scheduler.listJobs, pb.ListJobsRequest.fromPartial(req), s);
  cancelJob = (queue: string, id: string, reason = '', s?: CallSettings) => this.call(this.scheduler.cancelJob, { queue, id, reason }, s);
  retryJob = (queue: string, id: string, s?: CallSettings) => this.call(this.scheduler.retryJob, { queue, id }, s).then((r) => r.job!);
  promoteJob = (queue: string, id: string, s?: CallSettings) => this.call(this.scheduler.promoteJob, { queue, id }, s).then((r) => r.job!);

  upsertSchedule = (schedule: DeepPartial<pb.Schedule>, s?: CallSettings) =>
    this.call(this.scheduler.upsertSchedule, pb.UpsertScheduleRequest.fromPartial({ schedule }), s).then((r) => r.schedule!);
  getSchedule = (queue: string, id: string, s?: CallSettings) => this.read(this.scheduler.getSchedule, { queue, id }, s).then((r) => r.schedule!);
  listSchedules = (req: Partial<pb.ListSchedulesRequest> & { queue: string }, s?: CallSettings) =>
    this.read(this.scheduler.listSchedules, pb.ListSchedulesRequest.fromPartial(req), s);
  deleteSchedule = (queue: string, id: string, s?: CallSettings) => this.call(this.scheduler.deleteSchedule, { queue, id }, s).then(() => undefined);

  /** Streams a job's events until it reaches a terminal state. Break out of the loop to stop. */
  async *watchJob(queue: string, id: string, s?: Omit<CallSettings, 'timeoutMs'>): AsyncGenerator<pb.JobEvent> {
    for await (const msg of this.caller.stream((md) => this.scheduler.watchJob({ queue, id }, md), s)) if (msg.event) yield msg.event;
  }

  /** Closes the channels; coalesced enqueues already made are sent first. */
  close(): void {
    void this.coalescer?.close();
    this.scheduler.close();
    this.deadLetters.close();
    this.monitor.close();
  }
}

/**
 * DeadLetterService (get one from `JobmeshClient.deadLetters`). It throws the same typed errors
 * as JobmeshClient, and `DeadLetterNotFoundError` (with `id`). Reads, quarantine and replay are
 * retried on UNAVAILABLE: a replay run again replays nothing twice (each dead letter's replay has
 * an idempotency key of its own, and a filter skips dead letters already replayed). Purge is not
 * retried: by ids, a purge repeated after it was applied fails with NOT_FOUND.
 */
export class DeadLetterClient {
  constructor(
    readonly raw: pb.DeadLetterServiceClient,
    private readonly caller: Caller,
  ) {}

  /** A client of the DeadLetterService at `address` alone. */
  static connect(address: string, opts: Omit<JobmeshClientOptions, 'address' | 'deadLetterAddress'> = {}): DeadLetterClient {
    const raw = new pb.DeadLetterServiceClient(address, opts.credentials ?? grpcCredentials.createInsecure(), channelOptions(opts));
    return new DeadLetterClient(raw, new Caller(opts));
  }

  list = (req: DeepPartial<pb.ListDeadLettersRequest> = {}, s?: CallSettings) =>
    this.caller.unary(this.raw, this.raw.listDeadLetters, pb.ListDeadLettersRequest.fromPartial(req), s, true);
  get = (id: string, s?: CallSettings) => this.caller.unary(this.raw, this.raw.getDeadLetter, { id }, s, true).then((r) => r.deadLetter!);
  stats = (queue = '', s?: CallSettings) => this.caller.unary(this.raw, this.raw.getDeadLetterStats, { queue }, s, true);
  /**
   * Paced by the server at `max_per_second`: give a bulk replay a deadline to match (or
   * `Infinity`), or use `streamReplay` to see it progress. A failure part-way rejects with the
   * failing call's status code, and a message saying how many were replayed before it.
   */
  replay = (req: DeepPartial<pb.ReplayDeadLettersRequest>, s?: CallSettings) =>
    this.caller.unary(this.raw, this.raw.replayDeadLetters, pb.ReplayDeadLettersRequest.fromPartial(req), s, true);

  /**
   * Runs a replay as `replay` does, yielding its progress (StreamReplayDeadLetters): a message at
   * the start with `progress.total`, then as it goes, each with the jobs enqueued since the one
   * before. A failure part-way throws the failing call's status after the last message. Leaving
   * the loop or aborting `signal` stops the replay; the same request later goes on from there.
   */
  async *streamReplay(req: DeepPartial<pb.ReplayDeadLettersRequest>, s?: Omit<CallSettings, 'timeoutMs'>): AsyncGenerator<pb.StreamReplayDeadLettersResponse> {
    const msg = pb.StreamReplayDeadLettersRequest.fromPartial({ replay: req });
    yield* this.caller.stream((md) => this.raw.streamReplayDeadLetters(msg, md), s);
  }
  purge = (req: DeepPartial<pb.PurgeDeadLettersRequest>, s?: CallSettings) =>
    this.caller.unary(this.raw, this.raw.purgeDeadLetters, pb.PurgeDeadLettersRequest.fromPartial(req), s);
  quarantine = (req: DeepPartial<pb.QuarantineDeadLettersRequest>, s?: CallSettings) =>
    this.caller.unary(this.raw, this.raw.quarantineDeadLetters, pb.QuarantineDeadLettersRequest.fromPartial(req), s, true);

  /** Streams new dead letters matching `filter` until the loop is left or `signal` aborts. */
  async *watch(filter: DeepPartial<pb.DeadLetterFilter> = {}, s?: Omit<CallSettings, 'timeoutMs'>): AsyncGenerator<pb.DeadLetter> {
    const req = pb.WatchDeadLettersRequest.fromPartial({ filter });
    for await (const msg of this.caller.stream((md) => this.raw.watchDeadLetters(req, md), s)) if (msg.deadLetter) yield msg.deadLetter;
  }

  close(): void {
    this.raw.close();
  }
}

/**
 * MonitorService (get one from `JobmeshClient.monitor`): queue figures and every service's
 * health. It reads and changes nothing, so every call is retried on UNAVAILABLE (see Caller). It
 * throws the same typed errors as JobmeshClient: `QueueNotFoundError` for a queue that does not
 * exist, `InvalidArgumentError` (field `interval`) for a watch interval under 1 s.
 */
export class MonitorClient {
  constructor(
    readonly raw: pb.MonitorServiceClient,
    private readonly caller: Caller,
  ) {}

  /** A client of the MonitorService at `address` alone. */
  static connect(address: string, opts: Omit<JobmeshClientOptions, 'address' | 'deadLetterAddress' | 'monitorAddress'> = {}): MonitorClient {
    const raw = new pb.MonitorServiceClient(address, opts.credentials ?? grpcCredentials.createInsecure(), channelOptions(opts));
    return new MonitorClient(raw, new Caller(opts));
  }

  /** One queue's figures. */
  queueStats = (queue: string, s?: CallSettings) => this.caller.unary(this.raw, this.raw.getQueueStats, { queue }, s, true).then((r) => r.stats!);
  /** Every queue's figures, ordered by name. */
  listQueueStats = (s?: CallSettings) => this.caller.unary(this.raw, this.raw.listQueueStats, {}, s, true).then((r) => r.stats);
  /** Every service's grpc.health.v1 status and key figures; `status` is SERVING when every service is. */
  systemHealth = (s?: CallSettings) => this.caller.unary(this.raw, this.raw.getSystemHealth, {}, s, true);

  /**
   * Yields the figures of `queues` (all when empty) at once and then every `intervalMs` (the
   * server's default, 5 s, when unset; at least 1000), one array per round, until the loop is
   * left or `signal` aborts. An unknown queue throws `QueueNotFoundError` before anything is
   * yielded; a queue deleted while watched drops out of later rounds. Not retried: a stream that
   * fails throws, and the caller decides whether to watch again.
   */
  async *watchQueueStats(opts: { queues?: string[]; intervalMs?: number } = {}, s?: Omit<CallSettings, 'timeoutMs'>): AsyncGenerator<pb.QueueStats[]> {
    const req = pb.WatchQueueStatsRequest.fromPartial({ queues: opts.queues ?? [], interval: opts.intervalMs === undefined ? undefined : pb.msToDuration(opts.intervalMs) });
    for await (const msg of this.caller.stream((md) => this.raw.watchQueueStats(req, md), s)) yield msg.stats;
  }

  close(): void {
    this.raw.close();
  }
}

/** A client channel's options: replies up to 64 MiB, and `opts.keepalive`. */
const channelOptions = (opts: Pick<JobmeshClientOptions, 'keepalive'>): ChannelOptions => ({
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  ...keepaliveChannelOptions(opts.keepalive),
});

/** Whether enqueueing `job` twice yields one job: it carries an idempotency key or a job id. */
function keyed(job: { options?: { idempotencyKey?: string; jobId?: string } } | undefined): boolean {
  return !!(job?.options?.idempotencyKey || job?.options?.jobId);
}

/**
 * The traceparent a coalesced enqueue carries in its stream message, or false when the call's
 * metadata holds more than trace headers and so must go as a call of its own.
 */
function streamedTraceparent(s: CallSettings | undefined): string | undefined | false {
  const md = s?.metadata;
  if (!md) return undefined;
  for (const key of Object.keys(md)) if (key !== 'traceparent' && key !== 'tracestate') return false;
  return md.traceparent;
}
