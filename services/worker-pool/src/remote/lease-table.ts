/** Time and timers, injectable so that lease expiry can be tested without waiting. */
export interface Clock {
  now(): number;
  /** Calls `fn` once, `ms` from now; the handle is for clearTimer. */
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

/** Wall-clock time and Node's timers (unref'd: a lease alone keeps no process alive). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** One assignment of a job to a worker, current until it ends or expires. */
export interface Lease<V> {
  /** What the worker holds: `<lock token>.<n>`, naming this one assignment. */
  readonly token: string;
  /** The lock token the job is held with (BullMQ's; the runner knows the job by it). */
  readonly lockToken: string;
  readonly value: V;
  /** When it lapses without an extension (ms). */
  expiresAt: number;
}

interface Entry<V> extends Lease<V> {
  timer: unknown;
}

/**
 * The leases of remote workers: each names one assignment, lapses `ttlMs` after it was issued or
 * last extended, and is refused once it ended (fencing). A lock token is handed on to the next
 * job a slot fetches, the same job included (a lost lease puts it back, and the slot may fetch it
 * again), so the lock token alone would let a stale worker's verdict pass for a new lease: each
 * issue adds its own number.
 */
export class LeaseTable<V> {
  private readonly byToken = new Map<string, Entry<V>>();
  private readonly byLock = new Map<string, Entry<V>>();
  /** Leases issued so far: numbers each token. */
  private issued = 0;

  constructor(
    readonly ttlMs: number,
    /** Called when a lease lapsed (it is no longer current by then). */
    private readonly onExpire: (lease: Lease<V>) => void,
    private readonly clock: Clock = systemClock,
  ) {}

  get size(): number {
    return this.byToken.size;
  }

  /** A new lease on the job held with `lockToken`, for `ttlMs`. */
  issue(lockToken: string, value: V): Lease<V> {
    const token = `${lockToken}.${(this.issued += 1).toString(36)}`;
    const lease: Entry<V> = { token, lockToken, value, expiresAt: this.clock.now() + this.ttlMs, timer: undefined };
    lease.timer = this.clock.setTimer(() => this.lapse(lease), this.ttlMs);
    this.byToken.set(token, lease);
    this.byLock.set(lockToken, lease);
    return lease;
  }

  /** The current lease named `token`; undefined for one that ended, lapsed or never was. */
  get(token: string): Lease<V> | undefined {
    return this.byToken.get(token);
  }

  /** The current lease on the job held with `lockToken`. */
  ofLock(lockToken: string): Lease<V> | undefined {
    return this.byLock.get(lockToken);
  }

  /** Whether `lease` is still current. */
  holds(lease: Lease<V>): boolean {
    return this.byToken.get(lease.token) === lease;
  }

  /**
   * Moves the expiry of a current lease to `ttlMs` from now; returns it, or undefined when the
   * lease is not current. Costs no timer: the one armed at issue looks again when it fires.
   */
  extend(lease: Lease<V>): number | undefined {
    if (!this.holds(lease)) return undefined;
    lease.expiresAt = this.clock.now() + this.ttlMs;
    return lease.expiresAt;
  }

  /** Ends a lease; false when it was not current (ended, lapsed) already. */
  end(lease: Lease<V>): boolean {
    if (!this.holds(lease)) return false;
    this.remove(lease as Entry<V>);
    return true;
  }

  /** Every current lease. */
  values(): IterableIterator<Lease<V>> {
    return this.byToken.values();
  }

  private remove(lease: Entry<V>): void {
    this.clock.clearTimer(lease.timer);
    this.byToken.delete(lease.token);
    if (this.byLock.get(lease.lockToken) === lease) this.byLock.delete(lease.lockToken);
  }

  private lapse(lease: Entry<V>): void {
    if (!this.holds(lease)) return;
    const left = lease.expiresAt - this.clock.now();
    if (left > 0) {
      lease.timer = this.clock.setTimer(() => this.lapse(lease), left);
      return;
    }
    this.remove(lease);
    this.onExpire(lease);
  }
}
