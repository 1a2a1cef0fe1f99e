import { JOB_NAME, type Scenario, inFlight, jobData } from '../scenario';

/** A producer with many requests open at once, as a busy web tier would be. */
const IN_FLIGHT = 64;

/**
 * One job a call: `queue.add` against the SDK's `enqueueJob`, whose calls made together share an
 * EnqueueStream message (coalescing, on by default).
 */
export const singleEnqueue: Scenario = {
  name: 'single-enqueue',
  title: `single enqueue, ${IN_FLIGHT} in flight (enqueueJob, coalesced)`,
  defaultJobs: 20_000,

  async raw({ queue, jobs }) {
    let acked = 0;
    await inFlight(jobs, IN_FLIGHT, async (i) => {
      const job = await queue.add(JOB_NAME, jobData(i));
      if (job.id) acked++;
    });
    return acked;
  },

  async jobmesh({ client, queue, jobs }) {
    let acked = 0;
    await inFlight(jobs, IN_FLIGHT, async (i) => {
      const res = await client.enqueueJob({ queue, job: { name: JOB_NAME, data: jobData(i) } });
      if (res.job?.id) acked++;
    });
    return acked;
  },
};
