// GetJob with include_logs and include_children: a job's log lines as its processor wrote them, the
// newest when cut, and a flow parent's children, done and pending.
import { status, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { defineProcessor } from '@jobmesh/sdk';
import { eventually, type PoolHarness, startPoolHarness } from '../src/testing';

let h: PoolHarness;

beforeAll(async () => {
  h = await startPoolHarness();
  await h.startPool([
    defineProcessor<{ lines: number }>({
      queue: '*',
      name: 'chatty',
      async process(job, ctx) {
        for (let i = 1; i <= job.data.lines; i++) await ctx.log(`line ${i}`);
        return 'ok';
      },
    }),
    defineProcessor({ queue: '*', name: 'child', process: async () => 'child done' }),
  ]);
});
afterAll(async () => {
  await h?.stop();
});

it('returns the log lines a processor wrote, oldest first, the newest max_logs of them', async () => {
  const queue = await h.newQueue('details-logs');
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'chatty', data: { lines: 5 } } });
  await eventually(async () => (await h.client.getJob(queue, job!.id)).state === pb.JobState.JOB_STATE_COMPLETED, 10_000, 'the job to complete');
  const all = await h.client.getJobDetails(queue, job!.id);
  expect(all).toMatchObject({ logs: ['line 1', 'line 2', 'line 3', 'line 4', 'line 5'], logsTotal: 5, children: [] });
  expect(all.job?.id).toBe(job!.id);
  const cut = await h.client.getJobDetails(queue, job!.id, { maxLogs: 2 });
  expect(cut).toMatchObject({ logs: ['line 4', 'line 5'], logsTotal: 5 });
  // Without the flags, GetJob reads neither.
  const plain = await new Promise<pb.GetJobResponse>((resolve, reject) =>
    h.client.scheduler.getJob(pb.GetJobRequest.fromPartial({ queue, id: job!.id }), (err: ServiceError | null, r: pb.GetJobResponse) => (err ? reject(err) : resolve(r))),
  );
  expect(plain).toMatchObject({ logs: [], logsTotal: 0, children: [] });
});

it('returns a flow parent’s children, and refuses a max_logs over 10000', async () => {
  const queue = await h.newQueue('details-flow');
  const other = await h.newQueue('details-flow-b');
  const flow = await h.client.enqueueFlow({
    root: {
      queue,
      job: { name: 'chatty', data: { lines: 1 } },
      children: [{ queue, job: { name: 'child' } }, { queue: other, job: { name: 'child' } }],
    },
  });
  const root = flow.flow!.job!;
  await eventually(async () => (await h.client.getJob(queue, root.id)).state === pb.JobState.JOB_STATE_COMPLETED, 10_000, 'the flow to complete');
  const d = await h.client.getJobDetails(queue, root.id);
  const ids = flow.flow!.children.map((c) => ({ queue: c.job!.queue, id: c.job!.id }));
  expect(d.children).toEqual([...ids].sort((a, b) => (a.queue < b.queue ? -1 : a.queue > b.queue ? 1 : a.id < b.id ? -1 : 1)));
  const err = await h.client.getJobDetails(queue, root.id, { maxLogs: 10_001 }).then(() => undefined, (e: ServiceError) => e);
  expect(err?.code).toBe(status.INVALID_ARGUMENT);
  expect(err?.details).toBe('max_logs: is at most 10000; got 10001');
});
