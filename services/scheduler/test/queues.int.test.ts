import { status } from '@grpc/grpc-js';
import { type SchedulerHarness, startSchedulerHarness, uniqueQueue } from './harness';

let h: SchedulerHarness;
beforeAll(async () => {
  h = await startSchedulerHarness();
});
afterAll(async () => {
  await h.stop();
});

describe('queue registry', () => {
  it('creates a queue with defaults and reads it back', async () => {
    const name = uniqueQueue();
    const created = await h.client.createQueue({ queue: { name } });
    expect(created).toMatchObject({ name, concurrency: 10, paused: false });
    await expect(h.client.getQueue(name)).resolves.toMatchObject({ name, concurrency: 10 });
  });

  it('rejects a second create of the same name with ALREADY_EXISTS', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name } });
    await expect(h.client.createQueue({ queue: { name } })).rejects.toMatchObject({ code: status.ALREADY_EXISTS });
  });

  it('rejects a bad queue name with INVALID_ARGUMENT naming the field', async () => {
    await expect(h.client.createQueue({ queue: { name: 'has space' } })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('queue.name'),
    });
  });
});
