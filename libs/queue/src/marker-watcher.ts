// One blocking connection for every queue a process fetches from: BullMQ gives each Worker a
// blocking connection of its own, for its BZPOPMIN on the queue's marker, so a replica serving
// 1,000 queues held 1,000 of them (and 1,000 more for their commands). The watcher waits for all
// of those markers in one BZPOPMIN, which takes many keys.
import type { Redis } from 'ioredis';

/** A marker BZPOPMIN took: its member and score, as BullMQ's waitForJob returns them. */
export interface Marker {
  member: string;
  score: number;
}

interface Waiter {
  resolve(m: Marker | null): void;
  /** ms */
  deadline: number;
}

/**
 * The longest one BZPOPMIN blocks, s. After a reconnect, ioredis sends the BZPOPMIN it had in
 * flight again, on a connection whose id the watcher has not read yet, so it cannot unblock it
 * for a new wait: that wait is covered once it returns, within this.
 */
const MAX_BLOCK_S = 2;
/** A BZPOPMIN not answered this long after its timeout is taken as lost (BullMQ's watchdog does the same, for ioredis re-sending a blocking command after a reconnect that never returns). */
const STUCK_MS = 2000;
/** The longest pause between two tries to unblock a BZPOPMIN that was not blocking yet, ms. */
const UNBLOCK_RETRY_MAX_MS = 20;

/**
 * Waits on many BullMQ marker keys with one blocking connection. A wait ends with the marker its
 * key got, or null at its deadline (BullMQ's worker then looks at the queue itself, as after its
 * own BZPOPMIN timed out). A new wait unblocks the running BZPOPMIN (CLIENT UNBLOCK from
 * `commands`) so the next one covers it; a cancelled one stays in it until it returns. A marker
 * taken for a wait that ended meanwhile is put back, so no other waiter of that queue misses it.
 */
export class MarkerWatcher {
  private readonly waiters = new Map<string, Waiter>();
  /** The keys the BZPOPMIN in flight covers. */
  private blockedOn = new Set<string>();
  private clientId: number | undefined;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private unblocking = false;
  /** A wait started that the BZPOPMIN in flight does not cover. */
  private uncovered = false;
  /** How many BZPOPMINs were sent: tells the one in flight from the next. */
  private sent = 0;
  private closed = false;

  constructor(
    private readonly blocking: Redis,
    private readonly commands: Redis,
    private readonly onError: (err: Error) => void,
  ) {
    let connectedBefore = false;
    blocking.on('ready', () => {
      // A reconnect gives the connection a new id; the next BZPOPMIN asks for it again.
      this.clientId = undefined;
      // And a marker Redis popped for the BZPOPMIN the old connection had in flight is lost with
      // its answer: every wait ends, so that each runner looks at its queue itself.
      if (connectedBefore) this.endAll();
      connectedBefore = true;
    });
  }

  /** Waits for `key`'s marker for at most `timeoutS` seconds; null when the time is up or on cancel(). */
  wait(key: string, timeoutS: number): Promise<Marker | null> {
    if (this.closed) return Promise.resolve(null);
    this.cancel(key);
    return new Promise((resolve) => {
      this.waiters.set(key, { resolve, deadline: Date.now() + timeoutS * 1000 });
      this.changed(key);
      this.loop ??= this.run().finally(() => (this.loop = undefined));
    });
  }

  /** Ends `key`'s wait, if any, with null. */
  cancel(key: string): void {
    const w = this.waiters.get(key);
    if (!w) return;
    this.waiters.delete(key);
    w.resolve(null);
  }

  /**
   * Ends every wait. The loop ends once its command in flight is answered: the caller then
   * disconnects the blocking connection, which answers it also when Redis is gone. Resolves when
   * the loop ended.
   */
  stop(): Promise<void> {
    this.closed = true;
    this.endAll();
    this.changed();
    return this.loop ?? Promise.resolve();
  }

  /** The set of keys waited on changed: wake the loop, or unblock its BZPOPMIN. */
  private changed(key?: string): void {
    if (this.wake) {
      const wake = this.wake;
      this.wake = undefined;
      wake();
      return;
    }
    if (key !== undefined && this.blockedOn.has(key)) return;
    if (this.blockedOn.size === 0) return;
    this.uncovered = true;
    if (this.unblocking) return;
    this.unblocking = true;
    // Coalesced: every change of this turn is covered by the one unblock.
    setImmediate(() => {
      this.unblock()
        .catch((err: Error) => this.onError(err))
        .finally(() => (this.unblocking = false));
    });
  }

  /**
   * Unblocks the BZPOPMIN in flight, so that the next one covers the waits it does not. The
   * BZPOPMIN and CLIENT UNBLOCK go over two connections, so the unblock can reach Redis first,
   * when the BZPOPMIN is not blocking yet: then it unblocks nothing (0), and the waits it left out
   * would wait out its whole block. So it tries again, shortly, until it unblocked the BZPOPMIN or
   * another one was sent (which covers every wait there was when it was).
   */
  private async unblock(): Promise<void> {
    for (let tries = 0; !this.closed; tries++) {
      const sent = this.sent;
      if (!this.uncovered || this.blockedOn.size === 0 || this.clientId === undefined) return;
      const unblocked = Number(await this.commands.client('UNBLOCK', this.clientId));
      if (unblocked === 1 || sent !== this.sent) return;
      await new Promise((r) => setTimeout(r, Math.min(2 ** tries, UNBLOCK_RETRY_MAX_MS)));
    }
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      this.expire();
      if (!this.waiters.size) {
        await new Promise<void>((r) => (this.wake = r));
        continue;
      }
      let reply: [string, string, string] | null = null;
      try {
        // Read before the keys are: a wait that starts meanwhile is then in this BZPOPMIN.
        this.clientId ??= Number(await this.blocking.client('ID'));
        this.expire();
        if (!this.waiters.size) continue;
        const keys = [...this.waiters.keys()];
        const soonest = Math.min(...keys.map((k) => this.waiters.get(k)!.deadline));
        const timeoutS = Math.min(MAX_BLOCK_S, Math.max(0.01, (soonest - Date.now()) / 1000));
        this.blockedOn = new Set(keys);
        this.uncovered = false;
        this.sent += 1;
        const pop = this.blocking.bzpopmin(...keys, timeoutS.toFixed(3)) as Promise<[string, string, string] | null>;
        let timer: NodeJS.Timeout | undefined;
        const stuck = new Promise<'stuck'>((r) => (timer = setTimeout(() => r('stuck'), timeoutS * 1000 + STUCK_MS)));
        const got = await Promise.race([pop, stuck]).finally(() => clearTimeout(timer));
        if (got === 'stuck') {
          // Its late answer, if any, is dropped: a job whose marker it took is fetched at its queue's next timeout.
          pop.catch(() => undefined);
          this.blocking.disconnect(true);
          this.clientId = undefined;
          continue;
        }
        reply = got;
      } catch (err) {
        if (this.closed) return;
        this.onError(err as Error);
        // The connection retries by itself; do not spin meanwhile.
        await new Promise((r) => setTimeout(r, 200));
      } finally {
        this.blockedOn = new Set();
      }
      if (!reply) continue;
      const [key, member, score] = reply;
      const w = this.waiters.get(key);
      if (w) {
        this.waiters.delete(key);
        w.resolve({ member, score: Number(score) });
      } else {
        // Its wait ended meanwhile: leave the marker for whoever waits next on that queue.
        await this.commands.zadd(key, Number(score), member).catch((err: Error) => this.onError(err));
      }
    }
  }

  /** Ends every wait with null. */
  private endAll(): void {
    for (const key of [...this.waiters.keys()]) this.cancel(key);
  }

  /** Ends the waits whose time is up, with null. */
  private expire(): void {
    const now = Date.now();
    for (const [key, w] of this.waiters) {
      if (w.deadline <= now) {
        this.waiters.delete(key);
        w.resolve(null);
      }
    }
  }
}
