// The dispatcher's fencing and its unary sessions, as pure units: no Redis, a stand-in job and
// attempt context, a manual clock.
import type * as pb from '@jobmesh/contracts';
import { StaleLeaseError } from '@jobmesh/core';
import type { RunningJob } from '@jobmesh/queue';
import { silentLogger } from '@jobmesh/telemetry';
import type { AttemptContext } from '../context';
import { RemoteDispatcher } from './dispatcher';
import { ManualClock } from '../../test/manual-clock';

/** A job held with `lockToken`, as far as the dispatcher looks at it. */
function heldJob(lockToken: string, id = '7'): RunningJob {
  return { id, name: 'x', lockToken, attempt: 1, options: {}, snapshot: () => ({ id, queue: 'q', name: 'x' }) } as unknown as RunningJob;
}
const ctx = { resumeState: async () => ({ steps: {}, childrenAdded: [] }) } as unknown as AttemptContext;
const spec = (workerId: string, queue: string) => ({ workerId, queues: new Set([queue]), names: new Set<string>(), labels: {}, sdk: '' });

function setUp(clock = new ManualClock()) {
  const served: number[] = [];
  const dispatcher = new RemoteDispatcher({ leaseTtlMs: 60_000, logger: silentLogger(), onCapacity: () => undefined, onServedChange: () => served.push(1), clock });
  const got: pb.Assignment[] = [];
  const s = dispatcher.openStream(spec('w', 'q'), 5, (m) => void (m.assignment && got.push(m.assignment)), () => undefined);
  dispatcher.addCredit(s, 5);
  return { dispatcher, got, clock, served };
}

const until = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setImmediate(r));
  if (!check()) throw new Error('condition not met');
};

it('gives each assignment a lease token of its own, also for the same job under the same lock token', async () => {
  const { dispatcher, got } = setUp();
  // BullMQ hands a slot's lock token on to what it fetches next: here, the same job again.
  const first = dispatcher.delegate('q', heldJob('lock-1'), ctx);
  await until(() => got.length === 1);
  dispatcher.revoke('q', '7');
  await expect(first).rejects.toMatchObject({ name: 'LeaseLostError' });
  const second = dispatcher.delegate('q', heldJob('lock-1'), ctx);
  await until(() => got.length === 2);
  const [a, b] = got;
  expect(a!.leaseToken).not.toBe(b!.leaseToken);
  // The first worker's late answer is refused; the second's is taken.
  expect(() => dispatcher.complete({ queue: 'q', jobId: '7', leaseToken: a!.leaseToken, result: 'late' })).toThrow(StaleLeaseError);
  dispatcher.complete({ queue: 'q', jobId: '7', leaseToken: b!.leaseToken, result: 'on time' });
  await expect(second).resolves.toBe('on time');
});

it('withdraws a leased job by the lock token the runner knows it by', async () => {
  const { dispatcher, got } = setUp();
  const sent: pb.ConnectResponse[] = [];
  const s = dispatcher.openStream(spec('w2', 'r'), 1, (m) => void sent.push(m), () => undefined);
  dispatcher.addCredit(s, 1);
  void dispatcher.delegate('r', heldJob('lock-9'), ctx);
  await until(() => sent.some((m) => m.assignment));
  dispatcher.withdraw('lock-9', 'cancelled by request');
  expect(sent.find((m) => m.cancel)?.cancel).toEqual({ queue: 'r', jobId: '7', reason: 'cancelled by request' });
  const token = sent.find((m) => m.assignment)!.assignment!.leaseToken;
  expect(() => dispatcher.complete({ queue: 'r', jobId: '7', leaseToken: token, result: null })).toThrow(StaleLeaseError);
  expect(got).toHaveLength(0);
});

it('returns a job to waiting when its lease lapses without a heartbeat, and refuses the late verdict', async () => {
  const { dispatcher, got, clock } = setUp();
  const attempt = dispatcher.delegate('q', heldJob('lock-2'), ctx);
  await until(() => got.length === 1);
  clock.advance(60_000);
  await expect(attempt).rejects.toMatchObject({ name: 'LeaseLostError', message: expect.stringContaining('without a heartbeat') });
  expect(() => dispatcher.complete({ queue: 'q', jobId: '7', leaseToken: got[0]!.leaseToken, result: 'late' })).toThrow(StaleLeaseError);
});

describe('a unary worker', () => {
  const poll = (dispatcher: RemoteDispatcher, max = 1) => dispatcher.startPoll({ ...spec('u', 'q'), max }, () => undefined);

  it('keeps one session across its polls, so a poll publishes nothing', () => {
    const { dispatcher, served } = setUp();
    const before = served.length;
    const first = poll(dispatcher);
    dispatcher.endPoll(first.session, first.got);
    const second = poll(dispatcher);
    dispatcher.endPoll(second.session, second.got);
    expect(second.session).toBe(first.session);
    // Opened once: one change to what this replica serves.
    expect(served.length - before).toBe(1);
    expect(dispatcher.canServe('q', 'x')).toBe(true);
  });

  it('lapses a lease TTL after its last call when it holds nothing', () => {
    const { dispatcher, clock } = setUp();
    const p = poll(dispatcher);
    dispatcher.endPoll(p.session, p.got);
    clock.advance(59_999);
    expect(dispatcher.sessions.has(p.session.id)).toBe(true);
    clock.advance(1);
    expect(dispatcher.sessions.has(p.session.id)).toBe(false);
  });

  it('hands a job fetched between its polls to its next poll', async () => {
    const clock = new ManualClock();
    const dispatcher = new RemoteDispatcher({ leaseTtlMs: 60_000, logger: silentLogger(), onCapacity: () => undefined, onServedChange: () => undefined, clock });
    const first = poll(dispatcher);
    dispatcher.endPoll(first.session, first.got);
    void dispatcher.delegate('q', heldJob('lock-3'), ctx);
    const second = poll(dispatcher);
    await until(() => second.got.length === 1);
    expect(second.got[0]!.leaseToken).toMatch(/^lock-3\./);
  });
});
