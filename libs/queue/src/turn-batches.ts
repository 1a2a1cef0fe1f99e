/**
 * Items gathered per key during one turn of the event loop and handed to `flush` together at the
 * end of it (setImmediate), or as soon as `max` of them are gathered. AtomicAdder and PlainAdder
 * send each queue's adds of a turn this way.
 */
export class TurnBatches<K, T> {
  private readonly open = new Map<K, { items: T[]; timer: NodeJS.Immediate }>();

  constructor(
    private readonly flush: (key: K, items: T[]) => void,
    private readonly max = Number.POSITIVE_INFINITY,
  ) {}

  push(key: K, item: T): void {
    let batch = this.open.get(key);
    if (!batch) {
      batch = { items: [], timer: setImmediate(() => this.take(key)) };
      this.open.set(key, batch);
    }
    batch.items.push(item);
    if (batch.items.length >= this.max) this.take(key);
  }

  private take(key: K): void {
    const batch = this.open.get(key);
    if (!batch) return;
    this.open.delete(key);
    clearImmediate(batch.timer);
    this.flush(key, batch.items);
  }
}
