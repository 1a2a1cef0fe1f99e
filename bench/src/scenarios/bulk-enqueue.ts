import { JOB_NAME, type Scenario, jobData } from '../scenario';

const BATCH = 100;

/** The jobs [start, start+BATCH) of a run of `jobs`. */
function batch(start: number, jobs: number): { name: string; data: Record<string, unknown> }[] {
  const n = Math.min(BATCH, jobs - start);
  return Array.from({ length: n }, (_, k) => ({ name: JOB_NAME, data: jobData(start + k) }));
}

/** Batches sent one after another: `queue.addBulk` against `EnqueueJobs` over gRPC. */
export const bulkEnqueue: Scenario = {
  name: 'bulk-enqueue',
  title: `bulk enqueue, batches of ${BATCH}`,
  defaultJobs: 50_000,

  async raw({ queue, jobs }) {
    let acked = 0;
    for (let start = 0; start < jobs; start += BATCH) acked += (await queue.addBulk(batch(start, jobs))).length;
    return acked;
  },

  async jobmesh({ client, queue, jobs }) {
    let acked = 0;
    for (let start = 0; start < jobs; start += BATCH) {
      const res = await client.enqueueJobs({ queue, jobs: batch(start, jobs) });
      acked += res.jobs.filter((j) => j.id && !j.deduplicated).length;
    }
    return acked;
  },
};
