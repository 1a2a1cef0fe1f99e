import { hostname } from 'node:os';
import { type ChannelCredentials, type ClientDuplexStream, credentials as grpcCredentials, Metadata } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { JobCancelledError, RateLimitError, UnrecoverableError } from '@jobmesh/core';
import type { AnyProcessorDefinition, JobContext, JobInfo } from './processor';

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
  /** Free-form labels shown by ListWorkers. */
  labels?: Record<string, string>;
  logger?: RemoteWorkerLogger;
}

const SDK = 'jobmesh-node/0.1.0';
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 10_000;

const silent: RemoteWorkerLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };

function durationMs(d: { seconds: number; nanos: number } | undefined, fallback: number): number {
  if (!d) return fallback;
  return Number(d.seconds) * 1000 + Math.floor((d.nanos ?? 0) / 1e6);
}

function msDuration(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** Thrown by ctx.step() and ctx.runChildren() in a RemoteWorker. */
export class NotSupportedRemotelyError extends Error {
  override readonly name = 'NotSupportedRemotelyError';
}

/** An abort reason: the replica drained and the grace ran out, or the worker stopped. */
class WorkerShutdownError extends Error {
  override readonly name = 'WorkerShutdownError';
}

interface Running {
  queue: string;
  jobId: string;
  token: string;
  abort: AbortController;
  /** The stream the job was assigned on; results go only there. */
  conn: Connection;
  done: Promise<void>;
}

interface Connection {
  stream: ClientDuplexStream<pb.ConnectRequest, pb.ConnectResponse>;
  open: boolean;
  draining: boolean;
  heartbeat?: NodeJS.Timeout;
  drainTimer?: NodeJS.Timeout;
}

/**
 * Runs processors defined with {@link defineProcessor} outside the worker-pool, on a
 * WorkerService `Connect` stream (see docs/worker-protocol.md). It keeps `concurrency` credits
 * outstanding, heartbeats its leases, and reconnects with exponential backoff (250 ms → 10 s,
 * jittered) when the stream drops; jobs in flight then are abandoned (the server has already put
 * them back to waiting, so their results would be stale).
 *
 * Not supported remotely yet: `ctx.step()` and `ctx.runChildren()` throw
 * {@link NotSupportedRemotelyError}; `ctx.childrenResults()` returns `{}`.
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
    });
  }

  /** Jobs running now. */
  get inFlight(): number {
    return this.running.size;
  }

  /** Connects and starts taking jobs. Returns once the stream is opened (not necessarily welcomed). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.connect();
  }

  /**
   * Stops asking for work, waits up to `graceMs` for running jobs to finish and report, then
   * aborts the rest (their leases are released when the stream ends) and closes the stream.
   */
  async stop(opts: { graceMs?: number } = {}): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    const graceMs = opts.graceMs ?? 30_000;
    const all = Promise.all([...this.running.values()].map((r) => r.done));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    for (const r of this.running.values()) r.abort.abort(new WorkerShutdownError('the worker stopped before the job finished'));
    // Let verdicts already written reach the server before the stream ends.
    await new Promise((r) => setImmediate(r));
    const c = this.conn;
    this.conn = undefined;
    if (c) this.closeConnection(c, 'stopped');
    this.client.close();
  }

  private metadata(): Metadata {
    const md = new Metadata();
    if (this.opts.apiKey) md.set('authorization', `Bearer ${this.opts.apiKey}`);
    return md;
  }

  private connect(): void {
    if (this.stopping) return;
    const stream = this.client.connect(this.metadata());
    const c: Connection = { stream, open: true, draining: false };
    this.conn = c;
    this.outstanding = 0;
    stream.on('data', (msg: pb.ConnectResponse) => this.onMessage(c, msg));
    stream.on('error', (err: Error) => {
      if (!this.stopping) this.log.warn({ err: err.message, worker: this.workerId }, 'worker stream failed');
      this.onClosed(c);
    });
    stream.on('end', () => this.onClosed(c));
    stream.on('close', () => this.onClosed(c));
    this.send(c, {
      hello: { workerId: this.workerId, queues: this.queues, maxInFlight: this.concurrency, labels: { ...this.opts.labels }, sdk: SDK, jobNames: this.names },
    });
  }

  private send(c: Connection, msg: pb.ConnectRequest): void {
    if (!c.open || c.stream.writableEnded || c.stream.destroyed) return;
    try {
      c.stream.write(msg);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not write to the worker stream');
    }
  }

  private closeConnection(c: Connection, why: string): void {
    if (!c.open) return;
    c.open = false;
    clearInterval(c.heartbeat);
    clearTimeout(c.drainTimer);
    try {
      c.stream.end();
    } catch {
      /* already closed */
    }
    c.stream.cancel();
    this.abandon(c, why);
  }

  /** Jobs assigned on a stream that is gone: aborted, and their verdicts never sent. */
  private abandon(c: Connection, why: string): void {
    for (const r of this.running.values()) if (r.conn === c) r.abort.abort(new WorkerShutdownError(`the worker stream ended (${why}); the job was given back`));
  }

  private onClosed(c: Connection): void {
    if (!c.open) return;
    c.open = false;
    clearInterval(c.heartbeat);
    clearTimeout(c.drainTimer);
    this.abandon(c, 'stream closed');
    if (this.conn === c) this.conn = undefined;
    if (this.stopping) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt++;
    this.log.info({ worker: this.workerId, delayMs: delay }, 'worker stream closed; reconnecting');
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
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
    if (msg.welcome) {
      this.attempt = 0;
      const hb = Math.max(50, durationMs(msg.welcome.heartbeatInterval, 10_000));
      clearInterval(c.heartbeat);
      c.heartbeat = setInterval(() => {
        const tokens = [...this.running.values()].filter((r) => r.conn === c).map((r) => r.token);
        if (tokens.length) this.send(c, { heartbeat: { leaseTokens: tokens } });
      }, hb);
      this.refill(c);
    } else if (msg.assignment) {
      this.outstanding = Math.max(0, this.outstanding - 1);
      this.run(c, msg.assignment);
    } else if (msg.cancel) {
      const r = [...this.running.values()].find((x) => x.conn === c && x.queue === msg.cancel!.queue && x.jobId === msg.cancel!.jobId);
      r?.abort.abort(new JobCancelledError(msg.cancel.reason || 'cancelled'));
    } else if (msg.nack) {
      this.log.warn({ jobId: msg.nack.jobId, code: msg.nack.code, err: msg.nack.message }, 'the server refused a job message');
      // 9 = FAILED_PRECONDITION: the lease is stale; the job is no longer ours, drop its result.
      const r = this.running.get(msg.nack.leaseToken);
      if (msg.nack.code === 9 && r?.conn === c) r.abort.abort(new WorkerShutdownError(`lease lost: ${msg.nack.message}`));
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

  private run(c: Connection, a: pb.Assignment): void {
    const job = a.job!;
    const queue = job.queue;
    const token = a.leaseToken;
    const def = this.byKey.get(`${queue}\n${job.name}`);
    const abort = new AbortController();
    const r: Running = { queue, jobId: job.id, token, abort, conn: c, done: Promise.resolve() };
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
    const ctx: JobContext = {
      signal: abort.signal,
      attempt: info.attempt,
      progress: async (value) => {
        if (live()) this.send(c, { progress: { ...base, progress: value } });
      },
      log: async (message) => {
        if (live()) this.send(c, { log: { ...base, message } });
      },
      step: async () => {
        throw new NotSupportedRemotelyError('ctx.step() is not supported remotely yet');
      },
      runChildren: async () => {
        throw new NotSupportedRemotelyError('ctx.runChildren() is not supported remotely yet');
      },
      childrenResults: async () => ({}),
    };
    r.done = (async () => {
      try {
        if (!def) throw new UnrecoverableError(`PROCESSOR_NOT_FOUND: no processor for ${queue}/${job.name} in worker ${this.workerId}`);
        const result = await Promise.race([
          Promise.resolve().then(() => def.process(info, ctx)),
          new Promise<never>((_, reject) => abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true })),
        ]);
        if (c.open && !abort.signal.aborted) this.send(c, { complete: { ...base, result: result === undefined ? null : result } });
      } catch (err) {
        const reason = abort.signal.aborted ? abort.signal.reason : err;
        if (reason instanceof WorkerShutdownError) return; // abandoned: the lease is released when the stream ends
        if (c.open) this.send(c, { fail: failOf(base, reason) });
      } finally {
        this.running.delete(token);
        this.refill(c);
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
  if (e instanceof UnrecoverableError || e.name === 'UnrecoverableError') fail.kind = pb.FailureKind.FAILURE_KIND_UNRECOVERABLE;
  else if (e instanceof RateLimitError) {
    fail.kind = pb.FailureKind.FAILURE_KIND_RATE_LIMITED;
    fail.retryAfter = msDuration(e.retryAfterMs);
  }
  return fail;
}
