import type { Clock } from '../src/remote/lease-table';

/** A Clock that moves only when told to: advance() runs the timers that fall due, in time order. */
export class ManualClock implements Clock {
  private at = 1_000_000;
  private next = 0;
  private readonly timers = new Map<number, { due: number; fn: () => void }>();

  now(): number {
    return this.at;
  }

  setTimer(fn: () => void, ms: number): unknown {
    const id = (this.next += 1);
    this.timers.set(id, { due: this.at + ms, fn });
    return id;
  }

  clearTimer(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  advance(ms: number): void {
    const end = this.at + ms;
    for (;;) {
      let first: [number, { due: number; fn: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].due <= end && (!first || entry[1].due < first[1].due)) first = entry;
      if (!first) break;
      this.timers.delete(first[0]);
      this.at = first[1].due;
      first[1].fn();
    }
    this.at = end;
  }
}
