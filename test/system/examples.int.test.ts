// The example processors of examples/processors, compiled to dist/ by `npm run build`, loaded into
// a worker-pool through JOBMESH_PROCESSORS as the README tells a newcomer to do, and run end to end.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import * as pb from '@jobmesh/contracts';
import { eventually, type PoolHarness, startPoolHarness } from '@jobmesh/worker-pool/testing';

const DIST = resolve(__dirname, '../../examples/processors/dist');
const MODULES = ['data-pipeline.js', 'bulk-email.js'].map((f) => resolve(DIST, f));

const S = pb.JobState;
/** Three attempts 10 ms apart: a job that was retried would show attemptsMade 3 within the poll. */
const RETRYABLE = { attempts: 3, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: { seconds: 0, nanos: 10_000_000 } } };
let h: PoolHarness;
const reports: string[] = [];

beforeAll(async () => {
  const missing = MODULES.filter((m) => !existsSync(m));
  if (missing.length) throw new Error(`${missing.join(', ')} missing: run \`npm run build\` first (npm test does)`);
  h = await startPoolHarness();
  // The queues the examples' processors are defined for; the harness's prefix keeps them apart.
  await h.client.createQueue({ queue: { name: 'data-pipeline' } });
  await h.client.createQueue({ queue: { name: 'bulk-email' } });
  await h.startPool([], { JOBMESH_PROCESSORS: MODULES.join(',') });
});
afterAll(async () => {
  await h?.stop();
  for (const r of reports) rmSync(r, { force: true });
});

/** Polls the job until it is completed or failed. */
async function finished(queue: string, id: string): Promise<pb.Job> {
  return eventually(
    async () => {
      const j = await h.client.getJob(queue, id);
      return (j.state === S.JOB_STATE_COMPLETED || j.state === S.JOB_STATE_FAILED) && j;
    },
    15_000,
    `job ${queue}/${id} to finish`,
  );
}

describe('data-pipeline / import', () => {
  it('turns a small inline CSV into a per-region report, completes at progress 100 and writes the report file', async () => {
    const dataset = `test-${randomUUID().slice(0, 8)}`;
    const csv = 'region,product,quantity,unit_price\nnorth,widget,3,2.50\nsouth,gadget,1,10\nnorth,gadget,2,10\n';
    const { job } = await h.client.enqueueJob({ queue: 'data-pipeline', job: { name: 'import', data: { dataset, csv } } });
    const done = await finished('data-pipeline', job!.id);

    expect(pb.jobStateToJSON(done.state)).toBe('JOB_STATE_COMPLETED');
    const result = done.result as { dataset: string; rows: number; regions: unknown[]; storedAt: string };
    expect(result).toEqual({
      dataset,
      rows: 3,
      // Largest revenue first: north 3×2.50 + 2×10 = 27.50, south 10.
      regions: [
        { region: 'north', orders: 2, units: 5, revenue: 27.5 },
        { region: 'south', orders: 1, units: 1, revenue: 10 },
      ],
      storedAt: expect.stringMatching(new RegExp(`jobmesh-data-pipeline[/\\\\]${dataset}\\.json$`)),
    });
    reports.push(result.storedAt);
    expect(done.progress).toBe(100);
    expect(done.attemptsMade).toBe(1);
    expect(JSON.parse(readFileSync(result.storedAt, 'utf8'))).toEqual({ dataset, jobId: job!.id, regions: result.regions });
  });

  it('fails a CSV with a bad row at once, without retries, naming the line and the problem', async () => {
    const csv = 'region,product,quantity,unit_price\nnorth,widget,-3,2.50';
    const { job } = await h.client.enqueueJob({
      queue: 'data-pipeline',
      job: { name: 'import', data: { dataset: 'bad', csv }, options: RETRYABLE },
    });
    const done = await finished('data-pipeline', job!.id);

    expect(pb.jobStateToJSON(done.state)).toBe('JOB_STATE_FAILED');
    expect(done.attemptsMade).toBe(1);
    expect(done.failureReason).toContain('1 invalid row: line 2: quantity "-3" is not a whole number above 0');
  });

  it('fails job data without a dataset name at once, without retries', async () => {
    const { job } = await h.client.enqueueJob({ queue: 'data-pipeline', job: { name: 'import', data: { csv: 'x' }, options: RETRYABLE } });
    const done = await finished('data-pipeline', job!.id);
    expect(pb.jobStateToJSON(done.state)).toBe('JOB_STATE_FAILED');
    expect(done.attemptsMade).toBe(1);
    expect(done.failureReason).toContain('data.dataset must be');
  });
});

describe('bulk-email / newsletter', () => {
  it('completes a batch with some undeliverable recipients, listing them as failed with the reason', async () => {
    const recipients = [
      { email: 'ada@example.com', name: 'Ada' },
      { email: 'bob@nowhere.invalid' },
      { email: 'grace@example.org' },
      { email: 'carol@mail.invalid', name: 'Carol' },
      { email: 'nope' },
    ];
    const { job } = await h.client.enqueueJob({
      queue: 'bulk-email',
      job: { name: 'newsletter', data: { campaign: 'launch', subject: 'Hi {{name}}', body: 'We launched.', recipients }, options: RETRYABLE },
    });
    const done = await finished('bulk-email', job!.id);

    expect(pb.jobStateToJSON(done.state)).toBe('JOB_STATE_COMPLETED');
    expect(done.attemptsMade).toBe(1);
    const result = done.result as { campaign: string; total: number; sent: number; failed: { email: string; error: string }[] };
    expect(result).toMatchObject({ campaign: 'launch', total: 5, sent: 2 });
    expect([...result.failed].sort((a, b) => a.email.localeCompare(b.email))).toEqual([
      { email: 'bob@nowhere.invalid', error: expect.stringContaining('550 mailbox unavailable: bob@nowhere.invalid') },
      { email: 'carol@mail.invalid', error: expect.stringContaining('550 mailbox unavailable: carol@mail.invalid') },
      { email: 'nope', error: expect.stringContaining('not an email address') },
    ]);
  });

  it('fails a newsletter without recipients at once, without retries', async () => {
    const { job } = await h.client.enqueueJob({
      queue: 'bulk-email',
      job: { name: 'newsletter', data: { campaign: 'empty', subject: 's', body: 'b', recipients: [] }, options: RETRYABLE },
    });
    const done = await finished('bulk-email', job!.id);
    expect(pb.jobStateToJSON(done.state)).toBe('JOB_STATE_FAILED');
    expect(done.attemptsMade).toBe(1);
    expect(done.failureReason).toContain('data.recipients must be a non-empty list');
  });
});
