import { hostname } from 'node:os';
import { type ChannelCredentials, type ClientDuplexStream, connectivityState, credentials as grpcCredentials, Metadata, type StatusObject, status } from '@grpc/grpc-js';
import { type Keepalive, keepaliveChannelOptions } from './keepalive';
import * as pb from '@jobmesh/contracts';
import { JobCancelledError, RateLimitError, UnrecoverableError, isUnrecoverable, settlesWithin } from '@jobmesh/core';
import { type Context, ROOT_CONTEXT, context as otelContext, trace } from '@opentelemetry/api';
import { markStatusError, serviceErrorOf, type StatusFacts, toClientError } from './errors';
import type { AnyProcessorDefinition, ChildJobSpec, JobContext, JobInfo } from './processor';

/** The logger a RemoteWorker writes to; pino-compatible. */
export interface RemoteWorkerLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface RemoteWorkerOptions {
  /** "host:port" of a worker-pool replica's gRPC endpoint (WorkerService). */
  address: string;
  /** A stable id for this worker process. @default `<hostname>-<pid>` */
  workerId?: string;
  /** The processors it runs; its queues and job names come from them. Queue '*' is not allowed. */
  processors: AnyProcessorDefinition[];
  /** The most jobs it runs at once (Hello.max_in_flight). @default 10 */
  concurrency?: number;
  /** An API key, sent as `authorization: Bearer <key>`. */
  apiKey?: string;
  /** TLS credentials; plaintext when unset. */
  credentials?: ChannelCredentials;
  /**
   * gRPC keepalive of its stream: a connection that stops answering (a blackholed route) is
   * dropped within `intervalMs + timeoutMs`; the jobs it held are given up (the server re-leases
   * them) and the worker reconnects. `false`: none. @default DEFAULT_KEEPALIVE (15 s at most)
   */
  keepalive?: Keepalive | false;
  /** Free-form labels shown by ListWorkers. */
  labels?: Record<string, string>;
  logger?: RemoteWorkerLogger;
}

const SDK = 'jobmesh-node/0.2.0';
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 10_000;

/**
 * Statuses that end a Connect stream for good: reconnecting would be refused the same way (bad or
 * missing API key, a key without the right, an unknown queue, a Hello the server refused, a server
 * that has no WorkerService). Any other status (UNAVAILABLE, a reset stream, INTERNAL, …) and an
 * OK end (after a Drain) are transient: the worker reconnects with backoff.
 */
const FATAL: ReadonlySet<number> = new Set([status.UNAUTHENTICATED, status.PERMISSION_DENIED, status.NOT_FOUND, status.INVALID_ARGUMENT, status.UNIMPLEMENTED]);

const silent: RemoteWorkerLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };

const durationMs = (d: pb.Duration | undefined, fallback: number): number => pb.durationToMs(d) ?? fallback;
const msDuration = pb.msToDuration;

/** A value as JSON would store it, as ctx.step results are in-process. */
function asJson(value: unknown): unknown {
  return value === undefined ? null : (JSON.parse(JSON.stringify(value)) as unknown);
}

const TRACEPARENT = /^([\da-f]{2})-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})$/;

/**
 * The context a processor runs in: its parent is the remote span an Assignment's W3C traceparent
 * names (the worker-pool's span of the attempt, or the producer's), so the spans a processor makes
 * with @opentelemetry/api nest under it once the process registered an SDK. The root context for
 * an empty or invalid traceparent (version ff, an all-zero trace or span id).
 */
function traceContextOf(traceparent: string): Context {
  const m = TRACEPARENT.exec(traceparent.trim());
  if (!m || m[1] === 'ff' || /^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, { traceId: m[2]!, spanId: m[3]!, traceFlags: parseInt(m[4]!, 16) & 1, isRemote: true });
}

/**
 * The server refused the worker for good, so it stopped instead of reconnecting: `code` is the
 * gRPC status (UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND for an unknown queue,
 * INVALID_ARGUMENT for a refused Hello, UNIMPLEMENTED). `start()` and `run()` reject with it.
 * `cause` is the same status as a client call would throw it: a QueueNotFoundError naming the
 * queue, an InvalidArgumentError with the field, an UnauthenticatedError, … (a StatusError, as
 * this error itself is).
 */
export class WorkerRejectedError extends Error implements StatusFacts {
  override readonly name = 'WorkerRejectedError';
  override readonly cause: Error & StatusFacts;
  constructor(
    readonly code: number,
    readonly details: string,
    readonly metadata = new Metadata(),
  ) {
    super(`the server refused the worker (${status[code] ?? code}): ${details}`);
    this.cause = toClientError(serviceErrorOf({ code, details, metadata }));
    markStatusError(this);
  }
}

/**
 * A SaveStep, AddChildren or GetChildrenResults the server refused (Nack): `code` is the gRPC
 * status, e.g. NOT_FOUND for a child on an unknown queue, FAILED_PRECONDITION for a lost lease;
 * `cause` is that status as a typed error (NotFoundError, FailedPreconditionError, …).
 */
export class WorkerRequestError extends Error implements StatusFacts {
  override readonly name = 'WorkerRequestError';
  readonly details: string;
  readonly metadata = new Metadata();
  override readonly cause: Error & StatusFacts;
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.details = message;
    this.cause = toClientError(serviceErrorOf({ code, details: message }));
    markStatusError(this);
  }
}

/** An abort reason: the replica drained and the grace ran out, or the worker stopped. */
class WorkerShutdownError extends Error {
  override readonly name = 'WorkerShutdownError';
}

/** The attempt ended because the job now waits for its children; no verdict is sent. */
class WaitingChildrenError extends Error {
  override readonly name = 'WaitingChildrenError';
}

interface Running {
  queue: string;
  jobId: string;
  token: string;
  abort: AbortController;
  /** The stream the job was assigned on; results go only there. */
  conn: Connection;
  done: Promise<void>;
  /** The server ended the lease without a verdict (the job waits for its children). */
  ended: boolean;
}

interface Request {
  token: string;
  resolve(ack: pb.Ack): void;
  reject(err: Error): void;
}

interface Connection {
  stream: ClientDuplexStream<pb.ConnectRequest, pb.ConnectResponse>;
  open: boolean;
  draining: boolean;
  heartbeat?: NodeJS.Timeout;
  drainTimer?: NodeJS.Timeout;
  /** SaveStep / AddChildren / GetChildrenResults waiting for their Ack, by request id. */
  requests: Map<string, Request>;
  /** Messages to write at the end of this turn (flush). */
  outbox: pb.ConnectRequest[];
  flushDue: boolean;
  /** A refill is due at the end of this turn (refillSoon). */
  refillDue: boolean;
  /** The server reads ConnectRequest.batch (its Welcome said so). */
  batches: boolean;
}

/** The most messages the worker puts in one batch (the server takes up to 1,000). */
const MAX_BATCH = 500;

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
  settled: boolean;
}

function deferred(): Deferred {
  const d = { settled: false } as Deferred;
  d.promise = new Promise<void>((resolve, reject) => {
    d.resolve = () => {
      d.settled = true;
      resolve();
    };
    d.reject = (err) => {
      d.settled = true;
      reject(err);
    };
  });
  // Whoever awaits start() or run() sees the rejection; an unawaited one must not crash the process.
  d.promise.catch(() => undefined);
  return d;
}

/**
 * Runs processors defined with {@link defineProcessor} outside the worker-pool, on a
 * WorkerService `Connect` stream (see docs/worker-protocol.md), with the same `ctx` as
 * in-process: progress, log, signal, attempt, `step()` (results saved on the server, so a retry
 * resumes at the step that failed), `runChildren()` and `childrenResults()`. It keeps
 * `concurrency` credits outstanding, heartbeats its leases, and reconnects when the stream drops
 * for a transient reason: as soon as the server answers again when the connection was lost, else
 * with exponential backoff (250 ms → 10 s, jittered); jobs in flight
 * then are abandoned (the server has already put them back to waiting, so their results would be
 * stale). A fatal refusal (see {@link WorkerRejectedError}) stops it instead.
 *
 * A processor runs in the OpenTelemetry context of its Assignment's traceparent (see
 * docs/worker-protocol.md §15): once the process has registered an SDK, the spans it makes through
 * `@opentelemetry/api` are children of the worker-pool's span of the attempt.
 *
 * ```ts
 * const worker = new RemoteWorker({ address, processors: [resize] });
 * await worker.start();   // welcomed by the server
 * await worker.run();     // until stop(); rejects on a fatal error
 * ```
 */
export class RemoteWorker {
  readonly workerId: string;
  private readonly client: pb.WorkerServiceClient;
  private readonly byKey = new Map<string, AnyProcessorDefinition>();
  private readonly queues: string[];
  private readonly names: string[];
  private readonly concurrency: number;
  private readonly log: RemoteWorkerLogger;
  private readonly running = new Map<string, Running>();
  private conn?: Connection;
  private started = false;
  private stopping = false;
  private attempt = 0;
  private reconnectTimer?: NodeJS.Timeout;
  /** Credits granted on the current stream and not yet used by an Assignment. */
  private outstanding = 0;
  private requestSeq = 0;
  private readonly welcomed = deferred();
  private readonly finished = deferred();

  constructor(private readonly opts: RemoteWorkerOptions) {
    if (!opts.address) throw new TypeError('RemoteWorker needs an address');
    if (!opts.processors?.length) throw new TypeError('RemoteWorker needs at least one processor');
    for (const p of opts.processors) {
      if (p.queue === '*') throw new TypeError(`processor ${p.name}: queue '*' is not allowed in a RemoteWorker; name the queue`);
      const key = `${p.queue}\n${p.name}`;
      if (this.byKey.has(key)) throw new TypeError(`two processors for ${p.queue}/${p.name}`);
      this.byKey.set(key, p);
    }
    this.queues = [...new Set(opts.processors.map((p) => p.queue))];
    this.names = [...new Set(opts.processors.map((p) => p.name))];
    this.concurrency = Math.max(1, Math.floor(opts.concurrency ?? 10));
    this.workerId = opts.workerId ?? `${hostname()}-${process.pid}`;
    this.log = opts.logger ?? silent;
    this.client = new pb.WorkerServiceClient(opts.address, opts.credentials ?? grpcCredentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      // How often the channel tries a lost address again (grpc-js's default starts at 1 s and
      // grows to 2 min): the worker's stream reopens once it answers (connectWhenReachable).
      'grpc.initial_reconnect_backoff_ms': 250,
      'grpc.max_reconnect_backoff_ms': 2_000,
      ...keepaliveChannelOptions(opts.keepalive, true),
    });
  }

  /** Jobs running now. */
  get inFlight(): number {
    return this.running.size;
  }

  /**
   * Connects and starts taking jobs. Resolves once the server has welcomed the worker (it keeps
   * retrying a server it cannot reach meanwhile); rejects with {@link WorkerRejectedError} when
   * the server refuses it for good, or when stop() is called first.
   */
  start(): Promise<void> {
    if (!this.started) {
      this.started = true;
      this.connect();
    }
    return this.welcomed.promise;
  }

  /**
   * Starts the worker if needed and runs it: resolves once stop() has finished, rejects with
   * {@link WorkerRejectedError} when the server refuses the worker for good (bad credentials,
   * unknown queue, refused Hello) instead of reconnecting forever.
   */
  run(): Promise<void> {
    void this.start();
    return this.finished.promise;
  }

  /**
   * Stops asking for work, waits up to `graceMs` for running jobs to finish and report, then
   * aborts the rest (their leases are released when the stream ends) and closes the stream.
   */
  async stop(opts: { graceMs?: number } = {}): Promise<void> {
    // Already stopping, or stopped by a refusal: run() carries that error; stop() just waits.
    if (this.stopping) return this.finished.promise.catch(() => undefined);
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    const graceMs = opts.graceMs ?? 30_000;
    const all = Promise.all([...this.running.values()].map((r) => r.done));
    await settlesWithin(all, graceMs);
    for (const r of this.running.values()) r.abort.abort(new WorkerShutdownError('the worker stopped before the job finished'));
    // Let verdicts already written reach the server before the stream ends.
    await new Promise((r) => setImmediate(r));
    const c = this.conn;
    this.conn = undefined;
    if (c) this.closeConnection(c, 'stopped');
    this.client.close();
    if (!this.welcomed.settled) this.welcomed.reject(new Error('the worker was stopped before the server welcomed it'));
    this.finished.resolve();
  }

  private metadata(): Metadata {
    const md = new Metadata();
    if (this.opts.apiKey) md.set('authorization', `Bearer ${this.opts.apiKey}`);
    return md;
  }

  private connect(): void {
    if (this.stopping) return;
    const stream = this.client.connect(this.metadata());
    const c: Connection = { stream, open: true, draining: false, requests: new Map(), outbox: [], flushDue: false, refillDue: false, batches: false };
    this.conn = c;
    this.outstanding = 0;
    stream.on('data', (msg: pb.ConnectResponse) => this.onMessage(c, msg));
    // The status (always emitted, after 'error' for a failure) decides: reconnect, or stop.
    stream.on('status', (s: StatusObject) => this.onClosed(c, s));
    stream.on('error', (err: Error) => {
      if (!this.stopping) this.log.warn({ err: err.message, worker: this.workerId }, 'worker stream failed');
    });
    stream.on('close', () => this.onClosed(c));
    this.send(c, {
      hello: { workerId: this.workerId, queues: this.queues, maxInFlight: this.concurrency, labels: { ...this.opts.labels }, sdk: SDK, jobNames: this.names, acceptsBatches: true },
    });
  }

  /**
   * Sends at the end of this turn of the event loop, with whatever else is sent in it: as one
   * batch to a server that reads batches, else one message after another, in order.
   */
  private send(c: Connection, msg: pb.ConnectRequest): void {
    if (!c.open) return;
    c.outbox.push(msg);
    this.flushSoon(c);
  }

  private flushSoon(c: Connection): void {
    if (c.flushDue) return;
    c.flushDue = true;
    setImmediate(() => this.flush(c));
  }

  private flush(c: Connection): void {
    // The credits freed in this turn go with its verdicts.
    if (c.refillDue) {
      c.refillDue = false;
      this.refill(c);
    }
    c.flushDue = false;
    const msgs = c.outbox;
    c.outbox = [];
    if (!msgs.length || c.stream.writableEnded || c.stream.destroyed) return;
    try {
      if (!c.batches) for (const m of msgs) c.stream.write(m);
      else for (let i = 0; i < msgs.length; i += MAX_BATCH) {
        const part = msgs.slice(i, i + MAX_BATCH);
        c.stream.write(part.length === 1 ? part[0]! : { batch: { messages: part } });
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not write to the worker stream');
    }
  }

  private closeConnection(c: Connection, why: string): void {
    if (!c.open) return;
    // What was sent in this turn goes out before the stream ends.
    this.flush(c);
    c.open = false;
    clearInterval(c.heartbeat);
    clearTimeout(c.drainTimer);
    try {
      c.stream.end();
    } catch {
      // already closed: nothing left to end
    }
    c.stream.cancel();
    this.abandon(c, why);
  }

  /** Jobs assigned on a stream that is gone: aborted, and their verdicts never sent. */
  private abandon(c: Connection, why: string): void {
    const reason = new WorkerShutdownError(`the worker stream ended (${why}); the job was given back`);
    for (const r of this.running.values()) if (r.conn === c) r.abort.abort(reason);
    for (const req of c.requests.values()) req.reject(reason);
    c.requests.clear();
  }

  private onClosed(c: Connection, s?: StatusObject): void {
    if (!c.open) return;
    c.open = false;
    clearInterval(c.heartbeat);
    clearTimeout(c.drainTimer);
    this.abandon(c, s ? `${status[s.code] ?? s.code}: ${s.details}` : 'stream closed');
    if (this.conn === c) this.conn = undefined;
    if (this.stopping) return;
    if (s && FATAL.has(s.code)) {
      this.fatal(new WorkerRejectedError(s.code, s.details, s.metadata));
      return;
    }
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt++;
    this.log.info({ worker: this.workerId, delayMs: delay, code: s?.code }, 'worker stream closed; reconnecting');
    // The connection itself was lost (a replica restarting, a network cut): the channel probes
    // the address again by itself, and the stream reopens as soon as it answers rather than at
    // the end of a backoff that may be 10 s by then. A stream that ended on a live connection
    // waits the backoff out.
    const lost = this.client.getChannel().getConnectivityState(false) !== connectivityState.READY;
    const timer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delay);
    this.reconnectTimer = timer;
    if (lost) this.connectWhenReachable(timer, Date.now() + delay);
  }

  /** Connects at once when the channel is READY before `deadline`, unless `timer` (the backoff) was superseded. */
  private connectWhenReachable(timer: NodeJS.Timeout, deadline: number): void {
    if (this.stopping || this.reconnectTimer !== timer) return;
    const channel = this.client.getChannel();
    const state = channel.getConnectivityState(true);
    if (state === connectivityState.READY) {
      clearTimeout(timer);
      this.reconnectTimer = undefined;
      this.connect();
      return;
    }
    channel.watchConnectivityState(state, deadline, (err) => {
      if (!err) this.connectWhenReachable(timer, deadline);
    });
  }

  /** A refusal for good: no reconnect; start() (if still waiting) and run() reject. */
  private fatal(err: WorkerRejectedError): void {
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    this.log.error({ worker: this.workerId, code: err.code, err: err.details }, 'the server refused the worker; it stops');
    this.client.close();
    if (!this.welcomed.settled) this.welcomed.reject(err);
    this.finished.reject(err);
  }

  /**
   * Refills once the jobs ending in this turn of the event loop have all ended, so the credits
   * they free go out as one Credit message rather than one each.
   */
  private refillSoon(c: Connection): void {
    if (c.refillDue || !c.open) return;
    c.refillDue = true;
    this.flushSoon(c);
  }

  /** Tops credit up to `concurrency` minus jobs held. */
  private refill(c: Connection): void {
    if (this.stopping || c.draining || !c.open || this.conn !== c) return;
    let held = 0;
    for (const r of this.running.values()) if (r.conn === c) held++;
    const n = this.concurrency - held - this.outstanding;
    if (n > 0) {
      this.outstanding += n;
      this.send(c, { credit: { n } });
    }
  }

  private onMessage(c: Connection, msg: pb.ConnectResponse): void {
    if (msg.batch) {
      for (const m of msg.batch.messages) this.onMessage(c, m);
    } else if (msg.welcome) {
      c.batches = msg.welcome.acceptsBatches;
      this.attempt = 0;
      const hb = Math.max(50, durationMs(msg.welcome.heartbeatInterval, 10_000));
      clearInterval(c.heartbeat);
      c.heartbeat = setInterval(() => {
        const tokens = [...this.running.values()].filter((r) => r.conn === c && !r.ended).map((r) => r.token);
        if (tokens.length) this.send(c, { heartbeat: { leaseTokens: tokens } });
      }, hb);
      this.refill(c);
      if (!this.welcomed.settled) this.welcomed.resolve();
    } else if (msg.assignment) {
      this.outstanding = Math.max(0, this.outstanding - 1);
      this.runJob(c, msg.assignment);
    } else if (msg.cancel) {
      const r = [...this.running.values()].find((x) => x.conn === c && x.queue === msg.cancel!.queue && x.jobId === msg.cancel!.jobId);
      r?.abort.abort(new JobCancelledError(msg.cancel.reason || 'cancelled'));
    } else if (msg.ack) {
      const req = msg.ack.requestId ? c.requests.get(msg.ack.requestId) : undefined;
      if (req) {
        c.requests.delete(msg.ack.requestId);
        req.resolve(msg.ack);
      }
    } else if (msg.nack) {
      const n = msg.nack;
      this.log.warn({ jobId: n.jobId, code: n.code, err: n.message }, 'the server refused a job message');
      const req = n.requestId ? c.requests.get(n.requestId) : undefined;
      if (req) {
        c.requests.delete(n.requestId);
        req.reject(new WorkerRequestError(n.code, n.message));
      }
      // 9 = FAILED_PRECONDITION: the lease is stale; the job is no longer ours, drop its result.
      const r = this.running.get(n.leaseToken);
      if (n.code === status.FAILED_PRECONDITION && r?.conn === c) r.abort.abort(new WorkerShutdownError(`lease lost: ${n.message}`));
    } else if (msg.drain) {
      c.draining = true;
      const grace = durationMs(msg.drain.grace, 0);
      this.log.info({ worker: this.workerId, graceMs: grace }, 'server draining: finishing jobs in flight');
      const mine = [...this.running.values()].filter((r) => r.conn === c);
      const reconnect = (): void => {
        if (this.conn !== c) return;
        this.conn = undefined;
        this.closeConnection(c, 'drained');
        this.onReconnectAfterDrain();
      };
      c.drainTimer = setTimeout(() => {
        for (const r of mine) r.abort.abort(new WorkerShutdownError('the server drain grace ran out'));
      }, grace);
      void Promise.all(mine.map((r) => r.done)).then(() => {
        clearTimeout(c.drainTimer);
        // Give the last verdicts a moment to be written before the stream ends.
        setTimeout(reconnect, 50);
      });
    }
  }

  private onReconnectAfterDrain(): void {
    if (this.stopping) return;
    this.attempt = 0;
    const delay = Math.round(BACKOFF_MIN_MS / 2 + Math.random() * (BACKOFF_MIN_MS / 2));
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  /** Sends a SaveStep / AddChildren / GetChildrenResults and waits for its Ack. */
  private request(c: Connection, r: Running, build: (requestId: string) => pb.ConnectRequest): Promise<pb.Ack> {
    r.abort.signal.throwIfAborted();
    if (!c.open) throw new WorkerShutdownError('the worker stream ended; the job was given back');
    const requestId = String(++this.requestSeq);
    return new Promise<pb.Ack>((resolve, reject) => {
      c.requests.set(requestId, { token: r.token, resolve, reject });
      this.send(c, build(requestId));
    });
  }

  private runJob(c: Connection, a: pb.Assignment): void {
    const job = a.job!;
    const queue = job.queue;
    const token = a.leaseToken;
    const def = this.byKey.get(`${queue}\n${job.name}`);
    const abort = new AbortController();
    const r: Running = { queue, jobId: job.id, token, abort, conn: c, done: Promise.resolve(), ended: false };
    this.running.set(token, r);
    const info: JobInfo = {
      id: job.id,
      queue,
      name: job.name,
      data: (job.data ?? {}) as Record<string, unknown>,
      attempt: a.attempt || job.attemptsMade + 1,
      maxAttempts: job.options?.attempts || 1,
      createdAt: job.createdAt ?? new Date(),
      parent: job.parent ? { queue: job.parent.queue, id: job.parent.id } : undefined,
      traceId: job.traceId || undefined,
    };
    const base = { queue, jobId: job.id, leaseToken: token };
    const live = (): boolean => c.open && !abort.signal.aborted;
    // What earlier runs of the job left, from the Assignment.
    const steps = new Map<string, unknown>(Object.entries(a.steps ?? {}));
    const childrenAdded = new Set(a.childrenAdded ?? []);
    let childrenResults: Record<string, unknown> | undefined = a.childrenResultsLoaded ? (a.childrenResults ?? {}) : undefined;
    const ctx: JobContext = {
      signal: abort.signal,
      attempt: info.attempt,
      progress: async (value) => {
        if (live()) this.send(c, { progress: { ...base, progress: value } });
      },
      log: async (message) => {
        if (live()) this.send(c, { log: { ...base, message } });
      },
      step: async <T>(name: string, fn: () => T | Promise<T>): Promise<T> => {
        if (!name) throw new TypeError('ctx.step needs a name');
        if (steps.has(name)) return steps.get(name) as T;
        abort.signal.throwIfAborted();
        const value = await fn();
        await this.request(c, r, (requestId) => ({ saveStep: { ...base, requestId, name, value: asJson(value) } }));
        steps.set(name, value);
        return value;
      },
      runChildren: async (name: string, children: ChildJobSpec[]) => {
        if (!name) throw new TypeError('ctx.runChildren needs a name');
        if (childrenAdded.has(name)) return ctx.childrenResults();
        const ack = await this.request(c, r, (requestId) => ({
          addChildren: {
            ...base,
            requestId,
            name,
            children: children.map((ch) => ({ queue: ch.queue ?? '', name: ch.name, data: ch.data ?? {}, jobId: ch.jobId ?? '', attempts: ch.attempts ?? 0 })),
          },
        }));
        childrenAdded.add(name);
        if (ack.waitingChildren) {
          // The lease has ended: the job runs again once its children completed.
          r.ended = true;
          throw new WaitingChildrenError('the job waits for its children; it runs again once they completed');
        }
        childrenResults = ack.childrenResults ?? {};
        return childrenResults;
      },
      childrenResults: async () => {
        if (childrenResults) return childrenResults;
        const ack = await this.request(c, r, (requestId) => ({ getChildrenResults: { ...base, requestId } }));
        childrenResults = ack.childrenResults ?? {};
        return childrenResults;
      },
    };
    r.done = (async () => {
      try {
        if (!def) throw new UnrecoverableError(`PROCESSOR_NOT_FOUND: no processor for ${queue}/${job.name} in worker ${this.workerId}`);
        const result = await Promise.race([
          Promise.resolve().then(() => otelContext.with(traceContextOf(a.traceparent), () => def.process(info, ctx))),
          new Promise<never>((_, reject) => abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true })),
        ]);
        if (r.ended) return;
        if (c.open && !abort.signal.aborted) this.send(c, { complete: { ...base, result: result === undefined ? null : result } });
      } catch (err) {
        if (r.ended) return; // waiting for children: the lease is over, no verdict
        const reason = abort.signal.aborted ? abort.signal.reason : err;
        if (reason instanceof WorkerShutdownError) return; // abandoned: the lease is released when the stream ends
        if (c.open) this.send(c, { fail: failOf(base, reason) });
      } finally {
        this.running.delete(token);
        for (const [id, req] of c.requests) {
          if (req.token !== token) continue;
          c.requests.delete(id);
          req.reject(new WorkerShutdownError('the job ended'));
        }
        this.refillSoon(c);
      }
    })();
  }
}

function failOf(base: { queue: string; jobId: string; leaseToken: string }, err: unknown): pb.Fail {
  const e = err instanceof Error ? err : new Error(String(err));
  const fail: pb.Fail = {
    ...base,
    message: e.message,
    errorName: e.name,
    stacktrace: e.stack ? [e.stack] : [],
    kind: pb.FailureKind.FAILURE_KIND_RETRYABLE,
    retryAfter: undefined,
  };
  if (isUnrecoverable(e)) fail.kind = pb.FailureKind.FAILURE_KIND_UNRECOVERABLE;
  else if (e instanceof RateLimitError) {
    fail.kind = pb.FailureKind.FAILURE_KIND_RATE_LIMITED;
    fail.retryAfter = msDuration(e.retryAfterMs);
  }
  return fail;
}
