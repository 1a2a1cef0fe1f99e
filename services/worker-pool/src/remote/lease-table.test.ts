// The lease table on a manual clock: expiry, extension and fencing without waiting.
import { ManualClock } from '../../test/manual-clock';
import { type Lease, LeaseTable } from './lease-table';

function table(ttlMs = 1000) {
  const clock = new ManualClock();
  const expired: Lease<string>[] = [];
  const leases = new LeaseTable<string>(ttlMs, (l) => expired.push(l), clock);
  return { clock, expired, leases };
}

describe('expiry', () => {
  it('lapses a lease exactly one TTL after it was issued, and then no longer knows its token', () => {
    const { clock, expired, leases } = table();
    const lease = leases.issue('lock', 'job-1');
    expect(lease.expiresAt).toBe(clock.now() + 1000);
    clock.advance(999);
    expect(expired).toEqual([]);
    expect(leases.get(lease.token)).toBe(lease);
    clock.advance(1);
    expect(expired).toEqual([lease]);
    expect(leases.get(lease.token)).toBeUndefined();
    expect(leases.ofLock('lock')).toBeUndefined();
    expect(leases.size).toBe(0);
  });

  it('does not call back for a lease that ended before its expiry, and leaves no timer behind', () => {
    const { clock, expired, leases } = table();
    const lease = leases.issue('lock', 'job-1');
    expect(leases.end(lease)).toBe(true);
    expect(clock.pending).toBe(0);
    clock.advance(5000);
    expect(expired).toEqual([]);
  });
});

describe('extension', () => {
  it('moves the expiry to one TTL after the extension', () => {
    const { clock, expired, leases } = table();
    const lease = leases.issue('lock', 'job-1');
    clock.advance(800);
    expect(leases.extend(lease)).toBe(clock.now() + 1000);
    // The original expiry passes without effect...
    clock.advance(999);
    expect(expired).toEqual([]);
    // ...and the new one takes it.
    clock.advance(1);
    expect(expired).toEqual([lease]);
  });

  it('keeps one timer per lease however often it is extended', () => {
    const { clock, leases } = table();
    const lease = leases.issue('lock', 'job-1');
    for (let i = 0; i < 100; i++) {
      clock.advance(5);
      leases.extend(lease);
    }
    expect(clock.pending).toBe(1);
  });

  it('refuses to extend a lease that lapsed or ended', () => {
    const { clock, leases } = table();
    const lapsed = leases.issue('a', 'job-1');
    clock.advance(1000);
    expect(leases.extend(lapsed)).toBeUndefined();
    const ended = leases.issue('b', 'job-2');
    leases.end(ended);
    expect(leases.extend(ended)).toBeUndefined();
    expect(leases.get(ended.token)).toBeUndefined();
  });
});

describe('fencing', () => {
  it('names each assignment under one lock token with a token of its own: <lock token>.<n>', () => {
    const { leases } = table();
    const first = leases.issue('lock-1', 'job-1');
    leases.end(first);
    const second = leases.issue('lock-1', 'job-1');
    expect(first.token).toMatch(/^lock-1\.[0-9a-z]+$/);
    expect(second.token).toMatch(/^lock-1\.[0-9a-z]+$/);
    expect(second.token).not.toBe(first.token);
    // The earlier assignment's token is stale; the lock token finds the current lease.
    expect(leases.get(first.token)).toBeUndefined();
    expect(leases.get(second.token)).toBe(second);
    expect(leases.ofLock('lock-1')).toBe(second);
  });

  it('ends a lease once: a second end (a late verdict) is refused', () => {
    const { leases } = table();
    const lease = leases.issue('lock', 'job-1');
    expect(leases.end(lease)).toBe(true);
    expect(leases.end(lease)).toBe(false);
  });

  it('leaves the lock token on the newer lease when an older one under it ends late', () => {
    const { clock, leases } = table();
    const old = leases.issue('lock', 'job-1');
    clock.advance(1000);
    const current = leases.issue('lock', 'job-1');
    expect(leases.end(old)).toBe(false);
    expect(leases.ofLock('lock')).toBe(current);
    expect(leases.holds(current)).toBe(true);
  });
});
