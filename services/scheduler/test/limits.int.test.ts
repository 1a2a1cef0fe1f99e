import { status } from '@grpc/grpc-js';
import { keyspace, useSchedulerHarness, waitFor } from '../src/testing';

// Limits come from the environment: a scheduler started with small ones.
const h = useSchedulerHarness({ env: { JOBMESH_MAX_PAYLOAD_BYTES: '1024', JOBMESH_IDEMPOTENCY_TTL: '300ms' } });

describe('configured limits', () => {
  it('rejects a 2 KiB payload when JOBMESH_MAX_PAYLOAD_BYTES is 1024, writing nothing', async () => {
    const queue = await h.newQueue();
    const redis = h.redisClient();
    const before = await keyspace(redis, h.prefix);
    await expect(h.client.enqueueJob({ queue, job: { name: 'x', data: { blob: 'x'.repeat(2048) } } })).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      details: expect.stringMatching(/job\.data.*1024/),
    });
    expect(await keyspace(redis, h.prefix)).toEqual(before);
    await expect(h.client.enqueueJob({ queue, job: { name: 'x', data: { small: true } } })).resolves.toMatchObject({ deduplicated: false });
  });

  it('applies the payload limit to schedule templates too', async () => {
    const queue = await h.newQueue();
    await expect(
      h.client.upsertSchedule({ id: 's', queue, every: { seconds: 60, nanos: 0 }, template: { name: 'x', data: { blob: 'x'.repeat(2048) } } }),
    ).rejects.toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining('schedule.template.data') });
  });

  it('forgets an idempotency key after JOBMESH_IDEMPOTENCY_TTL', async () => {
    const queue = await h.newQueue();
    const first = await h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'short-lived' } } });
    const later = await waitFor('the idempotency key to expire', async () => {
      const r = await h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'short-lived' } } });
      return r.deduplicated ? undefined : r;
    });
    expect(later.job!.id).not.toBe(first.job!.id);
  });
});
