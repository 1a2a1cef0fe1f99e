import { JobmeshClient } from '@jobmesh/sdk';
import { type FeatureScenario, JOB_NAME, type JobmeshContext, type Scenario, inFlight, jobData } from '../scenario';
import { singleEnqueue } from './single-enqueue';

/** As single-enqueue: a producer with this many requests open at once. */
const IN_FLIGHT = 64;

/** `enqueueJob` calls, each an EnqueueJob call of its own (coalescing off), with `client`. */
async function unaryEnqueues(client: JobmeshClient, queue: string, jobs: number): Promise<number> {
  let acked = 0;
  await inFlight(jobs, IN_FLIGHT, async (i) => {
    const res = await client.enqueueJob({ queue, job: { name: JOB_NAME, data: jobData(i) } });
    if (res.job?.id) acked++;
  });
  return acked;
}

async function withUnaryClient<T>(address: string, fn: (client: JobmeshClient) => Promise<T>): Promise<T> {
  const client = new JobmeshClient({ address, coalesce: false });
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** Plain unary EnqueueJob, one call a job (the SDK's coalescing off), against `queue.add`. */
export const unaryEnqueue: Scenario = {
  name: 'unary-enqueue',
  title: `unary EnqueueJob, ${IN_FLIGHT} in flight (coalescing off)`,
  defaultJobs: 10_000,
  raw: singleEnqueue.raw,
  jobmesh: ({ env, queue, jobs }) => withUnaryClient(env.schedulerAddress, (client) => unaryEnqueues(client, queue, jobs)),
};

/** A producer on its own EnqueueStream, awaiting `ready()` before each job, against `queue.add`. */
export const streamEnqueue: Scenario = {
  name: 'stream-enqueue',
  title: `EnqueueStream (1,000 in flight) vs queue.add ${IN_FLIGHT} in flight`,
  defaultJobs: 20_000,
  raw: singleEnqueue.raw,
  async jobmesh({ client, queue, jobs }) {
    const stream = client.openEnqueueStream({ maxInFlight: 1000 });
    let acked = 0;
    let failed: unknown;
    for (let i = 0; i < jobs && failed === undefined; i++) {
      await stream.ready();
      stream.enqueue({ queue, job: { name: JOB_NAME, data: jobData(i) } }).then(
        (res) => void (res.job?.id && acked++),
        (err: unknown) => (failed ??= err),
      );
    }
    await stream.close();
    if (failed !== undefined) throw failed;
    return acked;
  },
};

/**
 * The transport's limit: unary EnqueueJob through the scheduler over the same calls to a bare
 * grpc-js server that answers at once (echo-server-main.ts), both as processes of their own.
 */
export const transportEcho: FeatureScenario = {
  kind: 'feature',
  name: 'transport-echo',
  title: `unary EnqueueJob over a bare gRPC echo, ${IN_FLIGHT} in flight`,
  defaultJobs: 10_000,
  labels: { off: 'bare grpc-js echo', on: 'EnqueueJob' },
  async off({ env, queue, jobs, startClock }: JobmeshContext) {
    const echo = await env.spawnEcho();
    try {
      return await withUnaryClient(`127.0.0.1:${echo.port}`, async (client) => {
        // The channel connects before the clock starts, as the scheduler's has on the other side.
        await client.enqueueJob({ queue, job: { name: JOB_NAME, data: jobData(-1) } });
        startClock();
        return unaryEnqueues(client, queue, jobs);
      });
    } finally {
      await echo.stop();
    }
  },
  async on({ env, queue, jobs, startClock }: JobmeshContext) {
    return withUnaryClient(env.schedulerAddress, async (client) => {
      await client.getQueue(queue);
      startClock();
      return unaryEnqueues(client, queue, jobs);
    });
  },
};
