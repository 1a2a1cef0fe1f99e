import { randomUUID } from 'node:crypto';
import * as pb from '@jobmesh/contracts';
import { InvalidArgumentError, RateLimitError, StaleLeaseError, UnrecoverableError } from '@jobmesh/core';
import { durationToMs, toProtoJob, jobmeshOpts } from '@jobmesh/queue';
import type { Logger } from '@jobmesh/telemetry';
import type { Job as BullJob } from 'bullmq';
import type { BullJobContext } from '../context';

/** A connected remote worker: a Connect stream, or the leases of a unary (LeaseJobs) worker. */
export interface Session {
  id: string;
  workerId: string;
  kind: 'stream' | 'unary';
  queues: Set<string>;
  /** Job names it takes; empty: all. */
  names: Set<string>;
  maxInFlight: number;
  credit: number;
  labels: Record<string, string>;
  sdk: string;
  connectedAt: Date;
  leases: Map<string, Lease>;
  draining: boolean;
  /** Stream sessions: sends a server message. */
  send?: (msg: pb.ConnectResponse) => void;
  /** Stream sessions: ends the stream (OK) from the server side. */
  end?: () => void;
  /** Unary sessions: receives assignments while a LeaseJobs call waits. */
  collect?: (a: pb.Assignment) => void;
}

export interface Lease {
  /**
   * The lease token the worker holds: the BullMQ lock token plus this assignment's own number.
   * BullMQ hands a slot's lock token on to the next job it fetches, the same job included (a lost
   * lease puts it back, and the slot may fetch it again), so the lock token alone would let a
   * stale worker's verdict pass for the new lease.
   */
  token: string;
  /** The BullMQ lock token the runner holds the job with. */
  lockToken: string;
  queue: string;
  job: BullJob;
  /** The attempt's context, made by the runner: it carries out SaveStep and AddChildren. */
  ctx: BullJobContext;
  session: Session;
  expiresAt: number;
  timer: NodeJS.Timeout;
  resolve(result: unknown): void;
  reject(err: Error): void;
}

interface Pending {
  queue: string;
  job: BullJob;
  token: string;
  attempt: number;
  ctx: BullJobContext;
  resolve(result: unknown): void;
  reject(err: Error): void;
}

/** The lease was lost without a verdict (stream closed, heartbeats stopped): the job goes back to waiting. */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError';
}

/**
 * The attempt ended because the job now waits for its children (a remote AddChildren). Named as
 * BullMQ's WaitingChildrenError, which the runner and BullMQ recognise by name: the job was
 * already moved, so nothing else happens to it.
 */
class ChildrenPendingError extends Error {
  override readonly name = 'WaitingChildrenError';
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

export interface DispatcherOptions {
  leaseTtlMs: number;
  logger: Logger;
  /** Called when the remote capacity for a queue changes, so the runner can fetch more. */
  onCapacity(queue: string): void;
  /** Publishes a job's log line as a LOG event (WatchJob), as in-process ctx.log does. */
  logEvent(queue: string, jobId: string, message: string): Promise<unknown>;
}

/**
 * Hands jobs fetched by this replica's runners to remote workers connected to it, within their
 * credit and max_in_flight, and settles them when the workers answer. A lease is the lock the
 * runner holds the job with, and its token names the one assignment, so a verdict with any other
 * token is stale.
 */
export class RemoteDispatcher {
  readonly sessions = new Map<string, Session>();
  /** By lease token, and by the lock token the runner knows the job by. */
  private readonly leases = new Map<string, Lease>();
  private readonly byLock = new Map<string, Lease>();
  /** Assignments made so far: numbers each lease token. */
  private assigned = 0;
  private readonly pending = new Map<string, Pending[]>();
  /** Jobs a remote Fail settled whose outcome the runner has not reported yet. */
  private readonly outcomes = new Map<BullJob, (r: FailResult) => void>();
  private draining = false;

  constructor(private readonly opts: DispatcherOptions) {}

  get leaseTtlMs(): number {
    return this.opts.leaseTtlMs;
  }

  /** Whether some connected worker takes jobs named `name` on `queue`. */
  canServe(queue: string, name: string): boolean {
    if (this.draining) return false;
    for (const s of this.sessions.values()) if (this.takesMore(s) && s.queues.has(queue) && (s.names.size === 0 || s.names.has(name))) return true;
    return false;
  }

  /** Whether a session may be assigned more jobs, now or once it grants credit. */
  private takesMore(s: Session): boolean {
    return !s.draining && (s.kind === 'stream' || !!s.collect);
  }

  /** A unary session whose LeaseJobs call is over: jobs fetched for it go back to waiting. */
  releaseIdle(session: Session): void {
    session.collect = undefined;
    session.credit = 0;
    this.releaseOrphans(session.queues, `unary worker ${session.workerId} stopped waiting`);
  }

  /** Jobs this replica's remote workers can hold at once on `queue`. */
  capacity(queue: string): number {
    let n = 0;
    for (const s of this.sessions.values()) if (!s.draining && s.queues.has(queue)) n += s.maxInFlight;
    return n;
  }

  /**
   * (queue, name) pairs served here, '*' for every name: published for other replicas. Exactly
   * the sessions canServe counts, or other replicas would hand jobs here that this one refuses.
   */
  served(): { queue: string; name: string }[] {
    const out: { queue: string; name: string }[] = [];
    for (const s of this.sessions.values()) {
      if (this.draining || !this.takesMore(s)) continue;
      for (const q of s.queues) for (const n of s.names.size ? s.names : ['*']) out.push({ queue: q, name: n });
    }
    return out;
  }

  open(session: Omit<Session, 'id' | 'leases' | 'draining' | 'connectedAt'>): Session {
    const s: Session = { ...session, id: randomUUID(), leases: new Map(), draining: this.draining, connectedAt: new Date() };
    this.sessions.set(s.id, s);
    for (const q of s.queues) this.opts.onCapacity(q);
    this.pump(s);
    return s;
  }

  /** Ends a session: its leased jobs go back to waiting at once. */
  close(session: Session, why: string): void {
    if (!this.sessions.delete(session.id)) return;
    for (const lease of [...session.leases.values()]) this.settle(lease, (l) => l.reject(new LeaseLostError(`worker ${session.workerId}: ${why}`)));
    this.releaseOrphans(session.queues, `worker ${session.workerId}: ${why}`);
    for (const q of session.queues) this.opts.onCapacity(q);
  }

  /**
   * Jobs fetched for remote workers that no connected worker can take any more (it left or is
   * draining) go back to waiting at once rather than sit in this replica.
   */
  private releaseOrphans(queues: Iterable<string>, why: string): void {
    for (const q of queues) {
      const list = this.pending.get(q);
      if (!list) continue;
      const keep = list.filter((p) => this.canServe(q, p.job.name));
      const orphans = list.filter((p) => !keep.includes(p));
      if (keep.length) this.pending.set(q, keep);
      else this.pending.delete(q);
      for (const p of orphans) p.reject(new LeaseLostError(why));
    }
  }

  /**
   * Runs a job on a remote worker: resolves with its result, rejects with its failure, or with
   * LeaseLostError when the lease ends without a verdict.
   */
  delegate(queue: string, job: BullJob, token: string, attempt: number, ctx: BullJobContext): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const p: Pending = { queue, job, token, attempt, ctx, resolve, reject };
      const list = this.pending.get(queue) ?? [];
      list.push(p);
      this.pending.set(queue, list);
      this.pumpQueue(queue);
    });
  }

  /** Withdraws a job (cancelled, timed out, shutting down): the worker holding it gets Cancel. */
  withdraw(lockToken: string, reason: string): void {
    for (const [queue, list] of this.pending) {
      const i = list.findIndex((p) => p.token === lockToken);
      if (i >= 0) {
        list.splice(i, 1);
        if (!list.length) this.pending.delete(queue);
        return;
      }
    }
    const lease = this.byLock.get(lockToken);
    if (!lease) return;
    this.settle(lease, () => undefined);
    lease.session.send?.({ cancel: { queue: lease.queue, jobId: lease.job.id!, reason } });
  }

  addCredit(session: Session, n: number): void {
    session.credit += n;
    this.pump(session);
  }

  private pump(session: Session): void {
    for (const q of session.queues) this.pumpQueue(q);
  }

  private pumpQueue(queue: string): void {
    const list = this.pending.get(queue);
    if (!list) return;
    for (let i = 0; i < list.length; ) {
      const p = list[i]!;
      const session = this.pick(queue, p.job.name);
      if (!session) {
        i++;
        continue;
      }
      list.splice(i, 1);
      this.assign(session, p);
    }
    if (!list.length) this.pending.delete(queue);
  }

  /** The session with credit that takes this job and holds the fewest leases. */
  private pick(queue: string, name: string): Session | undefined {
    let best: Session | undefined;
    for (const s of this.sessions.values()) {
      if (s.draining || s.credit <= 0 || s.leases.size >= s.maxInFlight || !s.queues.has(queue)) continue;
      if (s.names.size && !s.names.has(name)) continue;
      if (!best || s.leases.size < best.leases.size) best = s;
    }
    return best;
  }

  private assign(session: Session, p: Pending): void {
    session.credit -= 1;
    const token = `${p.token}.${(this.assigned += 1).toString(36)}`;
    const lease: Lease = {
      token,
      lockToken: p.token,
      queue: p.queue,
      job: p.job,
      ctx: p.ctx,
      session,
      expiresAt: 0,
      timer: undefined as unknown as NodeJS.Timeout,
      resolve: p.resolve,
      reject: p.reject,
    };
    this.arm(lease);
    session.leases.set(token, lease);
    this.leases.set(token, lease);
    this.byLock.set(p.token, lease);
    // What earlier runs saved (steps, children); a job's first run reads nothing (see resumeState).
    p.ctx.resumeState().then(
      (state) => {
        // Withdrawn or lost while the state was read: the worker must not get it.
        if (this.leases.get(token) !== lease) return;
        const assignment: pb.Assignment = {
          job: toProtoJob(p.job, p.queue, 'active'),
          leaseToken: token,
          leaseExpiresAt: new Date(lease.expiresAt),
          traceparent: jobmeshOpts(p.job).traceparent ?? '',
          attempt: p.attempt,
          steps: state.steps,
          childrenAdded: state.childrenAdded,
          childrenResults: state.childrenResults ?? {},
          childrenResultsLoaded: state.childrenResults !== undefined,
        };
        if (session.send) session.send({ assignment });
        else if (session.collect) session.collect(assignment);
        // A LeaseJobs call that stopped waiting while the state was read: back to waiting.
        else this.settle(lease, (l) => l.reject(new LeaseLostError(`unary worker ${session.workerId} stopped waiting`)));
      },
      (err: Error) => {
        this.opts.logger.warn({ queue: p.queue, jobId: p.job.id, err: err.message }, 'could not read the saved steps of a job for its worker; it goes back to waiting');
        if (this.leases.get(token) === lease) this.settle(lease, (l) => l.reject(new LeaseLostError(`could not read the job's saved steps: ${err.message}`)));
      },
    );
  }

  private arm(lease: Lease): void {
    clearTimeout(lease.timer);
    lease.expiresAt = Date.now() + this.opts.leaseTtlMs;
    lease.timer = setTimeout(() => {
      this.opts.logger.warn({ queue: lease.queue, jobId: lease.job.id, worker: lease.session.workerId }, 'lease expired: no heartbeat within the lease TTL');
      this.settle(lease, (l) => l.reject(new LeaseLostError(`lease expired after ${this.opts.leaseTtlMs} ms without a heartbeat`)));
    }, this.opts.leaseTtlMs);
  }

  private settle(lease: Lease, how: (l: Lease) => void): void {
    clearTimeout(lease.timer);
    this.leases.delete(lease.token);
    if (this.byLock.get(lease.lockToken) === lease) this.byLock.delete(lease.lockToken);
    lease.session.leases.delete(lease.token);
    how(lease);
    const s = lease.session;
    // A unary worker that holds nothing and is not waiting in LeaseJobs is gone (expected back
    // within a lease TTL, like a stream that ended).
    if (s.kind === 'unary' && s.leases.size === 0 && !s.collect) this.close(s, 'holds no lease');
    else if (this.sessions.has(s.id)) {
      // A slot under max_in_flight is free again: jobs waiting for this worker's credit may go.
      this.pump(s);
    }
  }

  /** The lease for `token`, if `session` (when given) holds it; else StaleLeaseError. */
  lease(queue: string, jobId: string, token: string, session?: Session): Lease {
    const lease = this.leases.get(token);
    if (!lease || lease.job.id !== jobId || lease.queue !== queue || (session && lease.session !== session)) {
      this.refused++;
      throw new StaleLeaseError(queue, jobId);
    }
    return lease;
  }

  /** Verdicts refused as stale (Nack code 9 / FAILED_PRECONDITION) since start. */
  refused = 0;

  /**
   * Takes a job's lease away from its worker, as an expired lease would: the job goes back to
   * waiting and the worker's later verdict for it is refused. For operators and conformance checks.
   */
  revoke(queue: string, jobId: string): boolean {
    for (const lease of this.leases.values()) {
      if (lease.queue === queue && lease.job.id === jobId) {
        this.settle(lease, (l) => l.reject(new LeaseLostError('lease revoked')));
        return true;
      }
    }
    return false;
  }

  extend(queue: string, jobId: string, token: string, session?: Session): Date {
    const lease = this.lease(queue, jobId, token, session);
    this.arm(lease);
    return new Date(lease.expiresAt);
  }

  /** Extends every named lease the session holds; unknown tokens are ignored (they are stale). */
  heartbeat(session: Session, tokens: string[]): void {
    for (const t of tokens) {
      const lease = session.leases.get(t);
      if (lease) this.arm(lease);
    }
  }

  complete(c: pb.Complete, session?: Session): void {
    const lease = this.lease(c.queue, c.jobId, c.leaseToken, session);
    this.settle(lease, (l) => l.resolve(c.result ?? null));
  }

  /**
   * Settles a failed attempt (throws StaleLeaseError at once when the lease is not current), and
   * resolves with what became of the job once the runner knows, or with FAIL_OUTCOME_UNSPECIFIED
   * after `waitMs` (Redis slow, or the move failed).
   */
  fail(f: pb.Fail, session: Session | undefined, waitMs: number): Promise<FailResult> {
    const lease = this.lease(f.queue, f.jobId, f.leaseToken, session);
    const job = lease.job;
    const result = new Promise<FailResult>((resolve) => {
      const timer = setTimeout(() => this.reportOutcome(job, { outcome: pb.FailOutcome.FAIL_OUTCOME_UNSPECIFIED }), waitMs);
      this.outcomes.set(job, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
    // moveToFailed sets job.delay to the retry delay only when it schedules one with a delay, and
    // finishedOn only when the job failed for good: from these blanks afterFailed tells which.
    job.delay = 0;
    job.finishedOn = undefined;
    this.settle(lease, (l) => l.reject(failureOf(f)));
    return result;
  }

  /** The runner tells what became of a job a remote Fail settled; the first report counts. */
  reportOutcome(job: BullJob, r: FailResult): void {
    const done = this.outcomes.get(job);
    if (!done) return;
    this.outcomes.delete(job);
    done(r);
  }

  /**
   * BullMQ's 'failed' event, after moveToFailed: `finishedOn` is set when the job failed for good,
   * else it was scheduled again after `job.delay`. A Map lookup for jobs no remote Fail settled.
   */
  afterFailed(job: BullJob): void {
    if (!this.outcomes.has(job)) return;
    if (job.finishedOn) this.reportOutcome(job, { outcome: pb.FailOutcome.FAIL_OUTCOME_FAILED });
    else this.reportOutcome(job, { outcome: pb.FailOutcome.FAIL_OUTCOME_RETRY_SCHEDULED, retryAt: new Date(Date.now() + (job.delay || 0)) });
  }

  /** Stores a step's result for a leased job (SaveStep). It also extends the lease. */
  async saveStep(m: pb.SaveStep, session?: Session): Promise<void> {
    if (!m.name) throw new InvalidArgumentError('save_step.name', 'is required: the step name, unique within the job');
    const lease = this.lease(m.queue, m.jobId, m.leaseToken, session);
    this.arm(lease);
    await lease.ctx.saveStep(m.name, m.value ?? null);
  }

  /**
   * Adds a leased job's children (AddChildren). When the job now waits for them, its lease ends
   * here: the attempt is over without failing, and the job is assigned again once they completed.
   */
  async addChildren(m: pb.AddChildren, session?: Session): Promise<ChildrenResult> {
    if (!m.name) throw new InvalidArgumentError('add_children.name', 'is required: a name for this call site, unique within the job');
    const lease = this.lease(m.queue, m.jobId, m.leaseToken, session);
    this.arm(lease);
    const specs = m.children.map((c) => ({
      queue: c.queue || undefined,
      name: c.name,
      data: c.data ?? {},
      jobId: c.jobId || undefined,
      attempts: c.attempts || undefined,
    }));
    const added = await lease.ctx.addChildren(m.name, specs, 'add_children.children');
    if (added.waiting) {
      if (this.leases.get(lease.token) === lease) this.settle(lease, (l) => l.reject(new ChildrenPendingError('the job waits for its children')));
      return { waiting: true, children: added.children, childrenResults: {} };
    }
    return { waiting: false, children: added.children, childrenResults: await lease.ctx.childrenResults() };
  }

  /** The results of a leased job's completed children (GetChildrenResults). */
  async childrenResults(m: pb.GetChildrenResults, session?: Session): Promise<Record<string, unknown>> {
    const lease = this.lease(m.queue, m.jobId, m.leaseToken, session);
    return lease.ctx.childrenResults();
  }

  async progress(p: pb.Progress, session?: Session): Promise<void> {
    const lease = this.lease(p.queue, p.jobId, p.leaseToken, session);
    this.arm(lease);
    await lease.job.updateProgress((p.progress ?? null) as number);
  }

  /** After a drain: ends every session and its stream, so shutdown need not wait for workers to hang up. */
  endAll(why: string): void {
    for (const s of [...this.sessions.values()]) {
      this.close(s, why);
      s.end?.();
    }
  }

  /** Attaches a log line to a leased job: the job's log and a LOG event. */
  async log(l: pb.Log, session?: Session): Promise<void> {
    const lease = this.lease(l.queue, l.jobId, l.leaseToken, session);
    await Promise.all([lease.job.log(l.message), this.opts.logEvent(l.queue, l.jobId, l.message)]);
  }

  /** Stops assigning; every stream is told to finish what it holds within `graceMs`. */
  drain(graceMs: number): void {
    this.draining = true;
    for (const s of this.sessions.values()) {
      s.draining = true;
      s.send?.({ drain: { grace: pb.msToDuration(graceMs) } });
    }
    // Jobs fetched but not yet assigned go back to waiting now, for another replica.
    this.releaseOrphans([...this.pending.keys()], 'the worker-pool is shutting down');
  }
}

/** The error a remote Fail stands for, as the runner and BullMQ understand it. */
export function failureOf(f: pb.Fail): Error {
  let err: Error;
  if (f.kind === pb.FailureKind.FAILURE_KIND_UNRECOVERABLE) err = new UnrecoverableError(f.message);
  else if (f.kind === pb.FailureKind.FAILURE_KIND_RATE_LIMITED) err = new RateLimitError(durationToMs(f.retryAfter) ?? 1000, f.message || undefined);
  else {
    err = new Error(f.message || 'remote worker failed the job');
    if (f.errorName) Object.defineProperty(err, 'name', { value: f.errorName });
  }
  if (f.stacktrace.length) err.stack = f.stacktrace.join('\n');
  return err;
}
