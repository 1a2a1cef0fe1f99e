// The dispatcher's fencing, as a pure unit: no Redis, a stand-in job and attempt context.
import type * as pb from '@jobmesh/contracts';
import { StaleLeaseError } from '@jobmesh/core';
import { silentLogger } from '@jobmesh/telemetry';
import type { Job as BullJob } from 'bullmq';
import type { BullJobContext } from '../context';
import { RemoteDispatcher } from './dispatcher';

const job = { id: '7', name: 'x', data: {}, opts: {}, timestamp: Date.now(), attemptsMade: 0, attemptsStarted: 1 } as unknown as BullJob;
const ctx = { resumeState: async () => ({ steps: {}, childrenAdded: [] }) } as unknown as BullJobContext;

function setUp(): { dispatcher: RemoteDispatcher; got: pb.Assignment[] } {
  const dispatcher = new RemoteDispatcher({ leaseTtlMs: 60_000, logger: silentLogger(), onCapacity: () => undefined, logEvent: async () => undefined });
  const got: pb.Assignment[] = [];
  dispatcher.open({ workerId: 'w', kind: 'stream', queues: new Set(['q']), names: new Set(), maxInFlight: 5, credit: 5, labels: {}, sdk: '', send: (m) => m.assignment && got.push(m.assignment) });
  return { dispatcher, got };
}

const until = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setImmediate(r));
  if (!check()) throw new Error('condition not met');
};

it('gives each assignment a lease token of its own, also for the same job under the same lock token', async () => {
  const { dispatcher, got } = setUp();
  // BullMQ hands a slot's lock token on to what it fetches next: here, the same job again.
  const first = dispatcher.delegate('q', job, 'lock-1', 1, ctx);
  await until(() => got.length === 1);
  dispatcher.revoke('q', '7');
  await expect(first).rejects.toMatchObject({ name: 'LeaseLostError' });
  const second = dispatcher.delegate('q', job, 'lock-1', 1, ctx);
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
  dispatcher.open({ workerId: 'w2', kind: 'stream', queues: new Set(['r']), names: new Set(), maxInFlight: 1, credit: 1, labels: {}, sdk: '', send: (m) => sent.push(m) });
  void dispatcher.delegate('r', job, 'lock-9', 1, ctx);
  await until(() => sent.some((m) => m.assignment));
  dispatcher.withdraw('lock-9', 'cancelled by request');
  expect(sent.find((m) => m.cancel)?.cancel).toEqual({ queue: 'r', jobId: '7', reason: 'cancelled by request' });
  const token = sent.find((m) => m.assignment)!.assignment!.leaseToken;
  expect(() => dispatcher.complete({ queue: 'r', jobId: '7', leaseToken: token, result: null })).toThrow(StaleLeaseError);
  expect(got).toHaveLength(0);
});
