import { Keys } from './keys';

/** The hash tag Redis Cluster slots a key by: the first {…} with something in it, else the whole key. */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

/** Every key of one queue that Keys names. */
function queueKeys(k: Keys, q: string): string[] {
  return [
    k.events(q),
    k.idempotency(q, 'a'),
    k.deduplication(q, 'a'),
    k.cancelled(q, '1'),
    k.cancelledIndex(q),
    k.cancelRequest(q, '1'),
    k.steps(q, '1'),
    k.served(q),
    k.statsSlot(q, 7),
    k.parkedNames(q),
    k.parked(q, 'n'),
    k.handoff(q, 'n'),
    `${k.queuePrefix(q)}:${q}:wait`,
  ];
}

/** Every global key Keys names. */
function globalKeys(k: Keys): string[] {
  return [k.registry, k.workers, k.deadLetter('q:1:1'), k.deadLetterIndex, k.deadLetterQueueIndex('q'), k.deadLetterCategoryIndex('C'), k.deadLetterCounts, k.deadLetterJobs, k.deadLetterOutbox];
}

describe('Keys', () => {
  it('keeps the one-server layout as it was', () => {
    const k = new Keys('jm');
    expect(k.queuePrefix('orders')).toBe('jm');
    expect(queueKeys(k, 'orders')).toEqual([
      'jm:orders:events',
      'jm:_idem:orders:a',
      'jm:orders:de:a',
      'jm:_cancelled:orders:1',
      'jm:_cancelled-index:orders',
      'jm:_cancel:orders:1',
      'jm:_steps:orders:1',
      'jm:_served:orders',
      'jm:_stats:orders:7',
      'jm:_parked:orders',
      'jm:_parked:orders:n',
      'jm:_handoff:orders:n',
      'jm:orders:wait',
    ]);
    expect(globalKeys(k)).toEqual(['jm:_registry', 'jm:_workers', 'jm:_dlq:r:q:1:1', 'jm:_dlq:all', 'jm:_dlq:q:q', 'jm:_dlq:c:C', 'jm:_dlq:counts', 'jm:_dlq:jobs', 'jm:_dlq:outbox']);
  });

  it("puts every key of a queue in that queue's slot on a cluster, and every global key in one other slot", () => {
    const k = new Keys('jm', true);
    for (const q of ['orders', 'mail']) expect(new Set(queueKeys(k, q).map(hashTag))).toEqual(new Set([`jm:${q}`]));
    expect(new Set(globalKeys(k).map(hashTag))).toEqual(new Set(['jm']));
    // The rest of each key is as on one server.
    expect(k.idempotency('orders', 'a')).toBe('{jm:orders}:_idem:orders:a');
    expect(k.registry).toBe('{jm}:_registry');
  });

  it('reads the queue and job id out of a BullMQ job key in both layouts', () => {
    expect(new Keys('jm').jobOfKey('jm:orders:42')).toEqual({ queue: 'orders', id: '42' });
    expect(new Keys('jm', true).jobOfKey('{jm:orders}:orders:c.1')).toEqual({ queue: 'orders', id: 'c.1' });
  });

  it('refuses a prefix with its own hash tag on a cluster', () => {
    expect(() => new Keys('{jm}', true)).toThrow(/must not hold "\{" or "\}" with REDIS_CLUSTER_NODES/);
    expect(new Keys('{jm}').registry).toBe('{jm}:_registry');
  });
});
