import * as pb from '@jobmesh/contracts';
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  InvalidArgumentError,
  MAX_FAILURE_MESSAGE_LENGTH,
  MAX_LOG_LINE_LENGTH,
  MAX_PROGRESS_BYTES,
  MAX_STACK_LINE_LENGTH,
  MAX_STACK_LINES,
  RateLimitError,
  StaleLeaseError,
  UnrecoverableError,
  shorten,
  validateJsonSize,
  validateLength,
} from '@jobmesh/core';
import { type FailedAttempt, JobSetAside, type RunningJob, durationToMs } from '@jobmesh/queue';
import type { AttemptSpan, Logger } from '@jobmesh/telemetry';
import type { AttemptContext } from '../context';
import { type Clock, type Lease, LeaseTable, systemClock } from './lease-table';
import { PendingAssignments, type PendingJob } from './pending';
import { type Session, StreamSession, UnarySession, type WorkerSpec } from './sessions';

export type { Session } from './sessions';

/** What a remote worker's lease stands for: the pending job, now assigned to `session`. */
export interface Assigned extends PendingJob {
  session: Session;
}

export type RemoteLease = Lease<Assigned>;

/** The lease was lost without a verdict (stream closed, heartbeats stopped): the job goes back to waiting. */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError';
}

/** What became of a job after a remote Fail (FailJobResponse, and the Ack of a Fail). */
export interface FailResult {
  outcome: pb.FailOutcome;
  /** With RETRY_SCHEDULED and RATE_LIMITED: the earliest time the job runs again. */
  retryAt?: Date;
}

/** What a remote AddChildren did. */
export interface ChildrenResult {
  waiting: boolean;
  children: pb.JobRef[];
  /** When not waiting: the children's results. */
  childrenResults: Record<string, unknown>;
}

/** Children one AddChildren may add, as many as one EnqueueJobs. */
const MAX_CHILDREN = 10_000;

export interface DispatcherOptions {
  leaseTtlMs: number;
  logger: Logger;
  /** Called when the remote capacity for a queue changes, so the runner can fetch more (or fewer). */
  onCapacity(queue: string): void;
  /** Called when the (queue, name) pairs served here may have changed: they are published. */
  onServedChange(): void;
  /** Lease expiry and unary sessions' idle lapse; the system clock by default. */
  clock?: Clock;
  /** Largest JSON-encoded result or step value a remote worker may store. @default 256 KiB */
  maxPayloadBytes?: number;
}

/** A unary worker's LeaseJobs call: what it asks for. */
export interface LeaseRequest extends WorkerSpec {
  max: number;
}

/**
 * Hands jobs fetched by this replica's runners to the remote workers connected to it, within
 * their credit, and settles them when the workers answer. Three parts: the sessions (a Connect
 * stream, or a unary worker's polls), the jobs pending assignment, and the lease table, whose
 * token names one assignment, so a verdict with any other token is stale.
 */
export class RemoteDispatcher {
  readonly sessions = new Map<string, Session>();
  /** Unary sessions by worker id, queue and job names. */
  private readonly unary = new Map<string, UnarySession>();
  private readonly leases: LeaseTable<Assigned>;
  private readonly pending = new PendingAssignments();
  /** Jobs a remote Fail settled (or cancelled, below) whose outcome the runner has not reported yet. */
  private readonly outcomes = new Map<RunningJob, (r: FailResult) => void>();
  /**
   * Leases withdrawn because their job was cancelled, by token, for a lease TTL. The worker stops
   * the job on Cancel and may Fail it: that Fail is answered with what became of the job
   * (FAIL_OUTCOME_CANCELLED once the runner recorded it), not refused as stale.
   */
  private readonly cancelledLeases = new Map<string, { session: Session; queue: string; jobId: string; outcome: Promise<FailResult> }>();
  private readonly clock: Clock;
  private readonly maxPayloadBytes: number;
  private draining = false;
  /** Verdicts refused as stale (Nack code 9 / FAILED_PRECONDITION) since start. */
  refused = 0;

  constructor(private readonly opts: DispatcherOptions) {
    this.clock = opts.clock ?? systemClock;
    this.maxPayloadBytes = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.leases = new LeaseTable<Assigned>(
      opts.leaseTtlMs,
      (lease) => {
        const { queue, job, session } = lease.value;
        opts.logger.warn({ queue, jobId: job.id, worker: session.workerId }, 'lease expired: no heartbeat within the lease TTL');
        this.ended(lease, (a) => a.reject(new LeaseLostError(`lease expired after ${opts.leaseTtlMs} ms without a heartbeat`)));
      },
      this.clock,
    );
  }

  get leaseTtlMs(): number {
    return this.opts.leaseTtlMs;
  }

  /** Whether some connected worker takes jobs named `name` on `queue`. */
  canServe(queue: string, name: string): boolean {
    if (this.draining) return false;
    for (const s of this.sessions.values()) if (s.accepting && s.takes(queue, name)) return true;
    return false;
  }

  /** Runner slots this replica's remote workers may occupy on `queue`. */
  capacity(queue: string): number {
    let n = 0;
    for (const s of this.sessions.values()) if (!s.draining && s.queues.has(queue)) n += s.capacity;
    return n;
  }

  /**
   * (queue, name) pairs served here, '*' for every name: published for other replicas. Exactly
   * the sessions canServe counts, or other replicas would hand jobs here that this one refuses.
   */
  served(): { queue: string; name: string }[] {
    const out: { queue: string; name: string }[] = [];
    if (this.draining) return out;
    for (const s of this.sessions.values()) {
      if (!s.accepting) continue;
      for (const q of s.queues) for (const n of s.names.size ? s.names : ['*']) out.push({ queue: q, name: n });
    }
    return out;
  }

  /** A Connect stream said Hello. */
  openStream(spec: WorkerSpec, maxInFlight: number, send: (msg: pb.ConnectResponse) => void, end: () => void): StreamSession {
    const s = new StreamSession(spec, this.draining, maxInFlight, send, end);
    this.add(s);
    return s;
  }

  private add(s: Session): void {
    this.sessions.set(s.id, s);
    this.capacityChanged(s);
    this.opts.onServedChange();
    this.pump(s);
  }

  private capacityChanged(s: Session): void {
    for (const q of s.queues) this.opts.onCapacity(q);
  }

  /**
   * A LeaseJobs call starts: the worker's session (opened on its first call, kept while it keeps
   * polling) waits for up to `max` assignments. Returns the list they arrive in and the session;
   * call endPoll when the call is over.
   */
  startPoll(req: LeaseRequest, onAssignment: () => void): { session: UnarySession; got: pb.Assignment[] } {
    const key = `${req.workerId}\n${[...req.queues].join(',')}\n${[...req.names].sort().join(',')}`;
    let session = this.unary.get(key);
    const fresh = !session;
    if (!session) {
      session = new UnarySession(req, this.draining, key);
      this.unary.set(key, session);
    }
    const got = session.startPoll(req.max, onAssignment);
    if (fresh) this.add(session);
    else {
      this.capacityChanged(session);
      this.pump(session);
    }
    return { session, got };
  }

  /** The LeaseJobs call is over; the session lapses a lease TTL later unless the worker calls again. */
  endPoll(session: UnarySession, got: pb.Assignment[]): void {
    session.endPoll(got, this.clock.now() + this.opts.leaseTtlMs);
    if (!this.sessions.has(session.id)) return;
    this.capacityChanged(session);
    this.watchIdle(session);
  }

  /** One timer per unary session, however often it polls: it looks again when it fires. */
  private watchIdle(s: UnarySession): void {
    if (s.idleTimer !== undefined || s.polling) return;
    s.idleTimer = this.clock.setTimer(() => this.lapseIfIdle(s), Math.max(1, s.idleUntil - this.clock.now()));
  }

  /** A unary session that neither polls nor holds a lease, a lease TTL after its last call, is gone. */
  private lapseIfIdle(s: UnarySession): void {
    s.idleTimer = undefined;
    if (!this.sessions.has(s.id) || s.polling) return;
    const now = this.clock.now();
    if (s.leases.size === 0 && now >= s.idleUntil) return this.close(s, 'no call within the lease TTL');
    // Its leases lapse by themselves within a lease TTL unless it extends them.
    if (now >= s.idleUntil) s.idleUntil = now + this.opts.leaseTtlMs;
    this.watchIdle(s);
  }

  /** Ends a session: its leased jobs go back to waiting at once. */
  close(session: Session, why: string): void {
    if (!this.sessions.delete(session.id)) return;
    // Why a worker left: its stream ended, was cancelled (a keepalive that went unanswered closes
    // the connection, and with it the stream), or failed; and how many leases that released.
    if (session.kind === 'stream') this.opts.logger.info({ worker: session.workerId, session: session.id, why, leases: session.leases.size }, 'worker disconnected');
    if (session.kind === 'unary') {
      this.unary.delete(session.key);
      if (session.idleTimer !== undefined) this.clock.clearTimer(session.idleTimer);
    }
    for (const token of [...session.leases]) {
      const lease = this.leases.get(token);
      if (lease) this.settle(lease, (a) => a.reject(new LeaseLostError(`worker ${session.workerId}: ${why}`)));
    }
    this.releaseOrphans(session.queues, `worker ${session.workerId}: ${why}`);
    this.capacityChanged(session);
    this.opts.onServedChange();
  }

  /**
   * Jobs fetched for remote workers that no connected worker can take any more (it left or is
   * draining) go back to waiting at once rather than sit in this replica.
   */
  private releaseOrphans(queues: Iterable<string>, why: string): void {
    for (const p of this.pending.release(queues, (p) => this.canServe(p.queue, p.job.name))) p.reject(new LeaseLostError(why));
  }

  /**
   * Runs a job on a remote worker: resolves with its result, rejects with its failure, or with
   * LeaseLostError when the lease ends without a verdict.
   */
  delegate(queue: string, job: RunningJob, ctx: AttemptContext, span?: AttemptSpan): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.pending.add({ queue, job, ctx, span, resolve, reject });
      this.pumpQueue(queue);
    });
  }

  /**
   * Withdraws a job (cancelled, timed out, shutting down): the worker holding it gets Cancel. For
   * a `cancelled` job, the worker's Fail that may follow is answered with the job's outcome, which
   * the runner then reports (reportOutcome); after a timeout or shutdown it is refused as stale.
   */
  withdraw(lockToken: string, reason: string, cancelled = false): void {
    if (this.pending.withdraw(lockToken)) return;
    const lease = this.leases.ofLock(lockToken);
    if (!lease) return;
    this.settle(lease, () => undefined);
    const { session, queue, job } = lease.value;
    if (cancelled) {
      const outcome = new Promise<FailResult>((resolve) => this.outcomes.set(job, resolve));
      this.cancelledLeases.set(lease.token, { session, queue, jobId: job.id, outcome });
      setTimeout(() => this.cancelledLeases.delete(lease.token), this.opts.leaseTtlMs).unref();
    }
    if (session.kind === 'stream') session.send({ cancel: { queue, jobId: job.id, reason } });
  }

  addCredit(session: StreamSession, n: number): void {
    session.credit += n;
    this.pump(session);
  }

  private pump(session: Session): void {
    for (const q of session.queues) this.pumpQueue(q);
  }

  private pumpQueue(queue: string): void {
    this.pending.offer(
      queue,
      (p) => {
        const session = this.pick(queue, p.job.name);
        if (!session) return false;
        this.assign(session, p);
        return true;
      },
      () => this.roomFor(queue),
    );
  }

  /** Whether some session serving `queue` has room for another job. */
  private roomFor(queue: string): boolean {
    for (const s of this.sessions.values()) if (s.hasRoom && s.queues.has(queue)) return true;
    return false;
  }

  /** The session with room that takes this job and holds the fewest leases. */
  private pick(queue: string, name: string): Session | undefined {
    let best: Session | undefined;
    for (const s of this.sessions.values()) {
      if (!s.hasRoom || !s.takes(queue, name)) continue;
      if (!best || s.leases.size < best.leases.size) best = s;
    }
    return best;
  }

  private assign(session: Session, p: PendingJob): void {
    session.credit -= 1;
    const lease = this.leases.issue(p.job.lockToken!, { ...p, session });
    session.leases.add(lease.token);
    // A unary session's capacity follows its leases (a stream's is its max_in_flight).
    if (session.kind === 'unary') this.capacityChanged(session);
    // What earlier runs saved (steps, children); a job's first run reads nothing (see resumeState).
    p.ctx.resumeState().then(
      (state) => {
        // Withdrawn or lost while the state was read: the worker must not get it.
        if (!this.leases.holds(lease)) return;
        const assignment: pb.Assignment = {
          job: p.job.snapshot('active'),
          leaseToken: lease.token,
          leaseExpiresAt: new Date(lease.expiresAt),
          // The attempt span's, so the worker's spans nest under it (the stored one with tracing off).
          traceparent: (p.span ? p.span.traceparent : p.job.options.traceparent) ?? '',
          attempt: p.job.attempt,
          steps: state.steps,
          childrenAdded: state.childrenAdded,
          childrenResults: state.childrenResults ?? {},
          childrenResultsLoaded: state.childrenResults !== undefined,
        };
        p.span?.assigned(session.workerId);
        // A LeaseJobs call that stopped waiting while the state was read: back to waiting.
        if (!session.deliver(assignment)) this.settle(lease, (a) => a.reject(new LeaseLostError(`unary worker ${session.workerId} stopped waiting`)));
      },
      (err: Error) => {
        this.opts.logger.warn({ queue: p.queue, jobId: p.job.id, err: err.message }, 'could not read the saved steps of a job for its worker; it goes back to waiting');
        if (this.leases.holds(lease)) this.settle(lease, (a) => a.reject(new LeaseLostError(`could not read the job's saved steps: ${err.message}`)));
      },
    );
  }

  /** Ends a current lease and settles its attempt with `how`. */
  private settle(lease: RemoteLease, how: (a: Assigned) => void): void {
    if (this.leases.end(lease)) this.ended(lease, how);
  }

  /** After a lease ended (settled or lapsed): frees its session's slot and settles the attempt. */
  private ended(lease: RemoteLease, how: (a: Assigned) => void): void {
    const s = lease.value.session;
    s.leases.delete(lease.token);
    how(lease.value);
    if (!this.sessions.has(s.id)) return;
    if (s.kind === 'unary') {
      // The worker called about this lease: it is still there.
      s.idleUntil = Math.max(s.idleUntil, this.clock.now() + this.opts.leaseTtlMs);
      this.capacityChanged(s);
    }
    // A slot under max_in_flight is free again: jobs waiting for this worker's credit may go.
    this.pump(s);
  }

  /** The lease for `token`, if `session` (when given) holds it; else StaleLeaseError. */
  lease(queue: string, jobId: string, token: string, session?: Session): RemoteLease {
    const lease = this.leases.get(token);
    const a = lease?.value;
    if (!lease || a!.job.id !== jobId || a!.queue !== queue || (session && a!.session !== session)) {
      this.refused++;
      throw new StaleLeaseError(queue, jobId);
    }
    return lease;
  }

  /**
   * Takes a job's lease away from its worker, as an expired lease would: the job goes back to
   * waiting and the worker's later verdict for it is refused. For operators and conformance checks.
   */
  revoke(queue: string, jobId: string): boolean {
    for (const lease of this.leases.values()) {
      if (lease.value.queue === queue && lease.value.job.id === jobId) {
        this.settle(lease, (a) => a.reject(new LeaseLostError('lease revoked')));
        return true;
      }
    }
    return false;
  }

  extend(queue: string, jobId: string, token: string, session?: Session): Date {
    const lease = this.lease(queue, jobId, token, session);
    return new Date(this.leases.extend(lease)!);
  }

  /** Extends every named lease the session holds; unknown tokens are ignored (they are stale). */
  heartbeat(session: Session, tokens: string[]): void {
    for (const t of tokens) {
      const lease = session.leases.has(t) ? this.leases.get(t) : undefined;
      if (lease) this.leases.extend(lease);
    }
  }

  complete(c: pb.Complete, session?: Session): void {
    validateJsonSize(c.result ?? null, this.maxPayloadBytes, 'complete.result');
    const lease = this.lease(c.queue, c.jobId, c.leaseToken, session);
    this.settle(lease, (a) => {
      reportSpan(a, c.span);
      a.resolve(c.result ?? null);
    });
  }

  /**
   * Settles a failed attempt (throws StaleLeaseError at once when the lease is not current), and
   * resolves with what became of the job once the runner knows, or with FAIL_OUTCOME_UNSPECIFIED
   * after `waitMs` (Redis slow, or the move failed).
   */
  fail(f: pb.Fail, session: Session | undefined, waitMs: number): Promise<FailResult> {
    const cancelled = this.cancelledLeases.get(f.leaseToken);
    if (cancelled && cancelled.queue === f.queue && cancelled.jobId === f.jobId && (!session || cancelled.session === session)) {
      // The job was cancelled while the worker held it; the Fail changes nothing, and says so.
      this.cancelledLeases.delete(f.leaseToken);
      return within(cancelled.outcome, waitMs, { outcome: pb.FailOutcome.FAIL_OUTCOME_UNSPECIFIED });
    }
    const lease = this.lease(f.queue, f.jobId, f.leaseToken, session);
    const { job } = lease.value;
    // Cut, not refused: a Fail refused would leave the job leased until its lease lapsed.
    f = { ...f, message: shorten(f.message, MAX_FAILURE_MESSAGE_LENGTH), errorName: shorten(f.errorName, 200), stacktrace: f.stacktrace.slice(0, MAX_STACK_LINES).map((l) => shorten(l, MAX_STACK_LINE_LENGTH)) };
    const result = new Promise<FailResult>((resolve) => {
      const timer = setTimeout(() => this.reportOutcome(job, { outcome: pb.FailOutcome.FAIL_OUTCOME_UNSPECIFIED }), waitMs);
      this.outcomes.set(job, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
    this.settle(lease, (a) => {
      reportSpan(a, f.span, f.message || 'failed');
      a.reject(failureOf(f));
    });
    return result;
  }

  /** The runner tells what became of a job a remote Fail settled; the first report counts. */
  reportOutcome(job: RunningJob, r: FailResult): void {
    const done = this.outcomes.get(job);
    if (!done) return;
    this.outcomes.delete(job);
    done(r);
  }

  /** After a failed attempt was recorded; a Map lookup for jobs no remote Fail settled. */
  afterFailed(job: RunningJob, attempt: FailedAttempt): void {
    if (!this.outcomes.has(job)) return;
    if (attempt.final) this.reportOutcome(job, { outcome: pb.FailOutcome.FAIL_OUTCOME_FAILED });
    else this.reportOutcome(job, { outcome: pb.FailOutcome.FAIL_OUTCOME_RETRY_SCHEDULED, retryAt: attempt.retryAt });
  }

  /** Stores a step's result for a leased job (SaveStep). It also extends the lease. */
  async saveStep(m: pb.SaveStep, session?: Session): Promise<void> {
    if (!m.name) throw new InvalidArgumentError('save_step.name', 'is required: the step name, unique within the job');
    validateLength(m.name, 200, 'save_step.name');
    validateJsonSize(m.value ?? null, this.maxPayloadBytes, 'save_step.value');
    const lease = this.lease(m.queue, m.jobId, m.leaseToken, session);
    this.leases.extend(lease);
    await lease.value.ctx.saveStep(m.name, m.value ?? null);
  }

  /**
   * Adds a leased job's children (AddChildren). When the job now waits for them, its lease ends
   * here: the attempt is over without failing, and the job is assigned again once they completed.
   */
  async addChildren(m: pb.AddChildren, session?: Session): Promise<ChildrenResult> {
    if (!m.name) throw new InvalidArgumentError('add_children.name', 'is required: a name for this call site, unique within the job');
    validateLength(m.name, 200, 'add_children.name');
    if (m.children.length > MAX_CHILDREN) throw new InvalidArgumentError('add_children.children', `holds ${m.children.length} children; at most ${MAX_CHILDREN} per call`);
    m.children.forEach((c, i) => validateJsonSize(c.data ?? {}, this.maxPayloadBytes, `add_children.children[${i}].data`));
    const lease = this.lease(m.queue, m.jobId, m.leaseToken, session);
    this.leases.extend(lease);
    const specs = m.children.map((c) => ({
      queue: c.queue || undefined,
      name: c.name,
      data: c.data ?? {},
      jobId: c.jobId || undefined,
      attempts: c.attempts || undefined,
    }));
    const { ctx } = lease.value;
    const added = await ctx.addChildren(m.name, specs, 'add_children.children');
    if (added.waiting) {
      this.settle(lease, (a) => a.reject(new JobSetAside('waiting-children', 'the job waits for its children')));
      return { waiting: true, children: added.children, childrenResults: {} };
    }
    return { waiting: false, children: added.children, childrenResults: await ctx.childrenResults() };
  }

  /** The results of a leased job's completed children (GetChildrenResults). */
  async childrenResults(m: pb.GetChildrenResults, session?: Session): Promise<Record<string, unknown>> {
    const lease = this.lease(m.queue, m.jobId, m.leaseToken, session);
    return lease.value.ctx.childrenResults();
  }

  async progress(p: pb.Progress, session?: Session): Promise<void> {
    validateJsonSize(p.progress ?? null, MAX_PROGRESS_BYTES, 'progress.progress');
    const lease = this.lease(p.queue, p.jobId, p.leaseToken, session);
    this.leases.extend(lease);
    await lease.value.job.progress(p.progress ?? null);
  }

  /** Attaches a log line to a leased job: the job's log and a LOG event. */
  async log(l: pb.Log, session?: Session): Promise<void> {
    validateLength(l.message, MAX_LOG_LINE_LENGTH, 'log.message');
    const lease = this.lease(l.queue, l.jobId, l.leaseToken, session);
    await lease.value.job.log(l.message);
  }

  /** After a drain: ends every session and its stream, so shutdown need not wait for workers to hang up. */
  endAll(why: string): void {
    for (const s of [...this.sessions.values()]) {
      this.close(s, why);
      if (s.kind === 'stream') s.end();
    }
  }

  /** Stops assigning; every stream is told to finish what it holds within `graceMs`. */
  drain(graceMs: number): void {
    this.draining = true;
    for (const s of this.sessions.values()) {
      s.draining = true;
      if (s.kind === 'stream') s.send({ drain: { grace: pb.msToDuration(graceMs) } });
    }
    // Jobs fetched but not yet assigned go back to waiting now, for another replica.
    this.releaseOrphans(this.pending.queues(), 'the worker-pool is shutting down');
  }
}

/** Records a worker's own timing (Complete/Fail.span) under the attempt's span; ignored without both times. */
function reportSpan(a: PendingJob, s: pb.WorkerSpan | undefined, failed?: string): void {
  if (!a.span || !s?.startTime || !s.endTime) return;
  a.span.reported({ name: s.name, start: s.startTime, end: s.endTime, attributes: s.attributes }, failed);
}

/** The error a remote Fail stands for, as the runner understands it. */
/** `p`, or `otherwise` if `p` has not settled within `ms`. */
function within<T>(p: Promise<T>, ms: number, otherwise: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((resolve) => (timer = setTimeout(() => resolve(otherwise), ms)))]).finally(() => clearTimeout(timer));
}

export function failureOf(f: pb.Fail): Error {
  let err: Error;
  if (f.kind === pb.FailureKind.FAILURE_KIND_UNRECOVERABLE) err = new UnrecoverableError(f.message);
  else if (f.kind === pb.FailureKind.FAILURE_KIND_RATE_LIMITED) {
    // Default 1 s, at most 1 h (the contract); an invalid Duration takes the default.
    const after = durationToMs(f.retryAfter) ?? 1000;
    err = new RateLimitError(Number.isFinite(after) && after >= 0 ? Math.min(after, 3_600_000) : 1000, f.message || undefined);
  }
  else {
    err = new Error(f.message || 'remote worker failed the job');
    if (f.errorName) Object.defineProperty(err, 'name', { value: f.errorName });
  }
  if (f.stacktrace.length) err.stack = f.stacktrace.join('\n');
  return err;
}
