// The web dashboard in a real Chromium (Debian's, driven by playwright-core), against a real
// scheduler, worker-pool, dead-letter service and monitor on one Redis: the overview with its
// charts, find-by-id, pausing a queue and replaying a dead letter with a data patch, each effect
// checked through gRPC; and the JSON API's search, actions on a filter and read-only mode.
// Screenshots go to test-artifacts/dashboard/ (the overview one is docs/images/dashboard-overview.png).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as pb from '@jobmesh/contracts';
import { type DeadLetterClient, defineProcessor, RemoteWorker } from '@jobmesh/sdk';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';
import { eventually, type MonitorClient, type MonitorHarness, startMonitorHarness } from '../src/testing';

const ARTIFACTS = join(__dirname, '..', '..', '..', 'test-artifacts', 'dashboard');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

let h: MonitorHarness;
let dead: DeadLetterClient;
let monitor: MonitorClient;
let base: string;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  h = await startMonitorHarness({ deadLetters: true });
  dead = (await h.startDeadLetter()).client;
  const m = await h.startMonitor({ JOBMESH_TRACE_UI_URL: 'http://127.0.0.1:16686/trace/{trace_id}' });
  base = `http://127.0.0.1:${m.service.httpPort}`;
  monitor = m.client;
  // No sandbox: CI runs as root. /tmp rather than a small /dev/shm for shared memory.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
});
afterAll(async () => {
  await browser?.close();
  await h?.stop();
});
beforeEach(async () => {
  page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
});
afterEach(async () => {
  await page?.close();
});

/** Playwright's own waiting (no sleeps): the element is shown within 10 s. */
const visible = (l: Locator): Promise<void> => l.first().waitFor({ state: 'visible', timeout: 10_000 });
/** The element's text comes to contain (or, with `exact`, be) `text` within 10 s. */
const shows = (l: Locator, text: string, exact = false): Promise<unknown> =>
  eventually(async () => {
    const t = ((await l.first().textContent()) ?? '').trim();
    return exact ? t === text : t.includes(text);
  }, 10_000, `"${text}" in ${l.toString()}`);

const shot = (name: string): Promise<Buffer> => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

/** Enqueues `n` jobs of the harness's `fatal` processor that complete (data `fixed: true`). */
const completing = (queue: string, n: number) => h.client.enqueueJobs({ queue, jobs: Array.from({ length: n }, (_, i) => ({ name: 'fatal', data: { fixed: true, i } })) });

async function deadLetterOf(queue: string): Promise<pb.DeadLetter> {
  return eventually(async () => (await dead.list({ filter: { queue } })).deadLetters[0], 15_000, `a dead letter on ${queue}`);
}

it('shows every queue on the overview with counts, live throughput and backlog charts', async () => {
  const busy = await h.newQueue('dash-orders');
  const held = await h.newQueue('dash-emails');
  const failing = await h.newQueue('dash-reports');
  await h.client.pauseQueue(held);
  await h.client.enqueueJobs({ queue: held, jobs: Array.from({ length: 40 }, (_, i) => ({ name: 'send', data: { to: `user${i}@example.com` } })) });
  await completing(busy, 60);
  await h.client.enqueueJobs({ queue: failing, jobs: Array.from({ length: 3 }, (_, i) => ({ name: 'fatal', data: { report: i } })) });
  await eventually(async () => ((await dead.stats(failing)).total >= 3 ? true : undefined), 15_000, 'three dead letters');

  // Wide enough for every column of the queue table (this picture is the README's).
  await page.setViewportSize({ width: 1600, height: 900 });
  await page.goto(base);
  const row = (q: string) => page.locator(`tr[data-queue="${q}"]`);
  await visible(row(held).getByText('paused', { exact: true }));
  await shows(row(held).locator('td').first(), '40', true);
  await visible(page.getByRole('heading', { name: /Overview/ }).getByText('live', { exact: true }));
  // Two uPlot charts, each filled from the live figures (SSE from WatchQueueStats) as they come.
  await eventually(async () => Number(await page.locator('section[data-samples]').getAttribute('data-samples')) >= 3, 20_000, 'three live samples');
  expect(await page.locator('.chart .uplot canvas').count()).toBe(2);
  // The worker-pool writes its counts every 2 s: completed jobs reach the overview as they do.
  await eventually(async () => (await row(busy).locator('td:nth-child(7)').textContent()) === '60', 20_000, `60 completed on ${busy}`);
  await shot('overview');
  // What the page shows is what MonitorService says.
  const stats = await monitor.getQueueStats(held);
  expect(stats).toMatchObject({ paused: true, counts: { waiting: 40 } });
  expect((await monitor.getQueueStats(busy)).counts?.completed).toBe(60);
});

it('finds a job by id from the header and shows its data, options and trace link', async () => {
  const queue = await h.newQueue('dash-find');
  await h.client.pauseQueue(queue);
  const id = `invoice-${Date.now()}`;
  // The enqueue continues the caller's trace, so the job carries its trace id even with tracing off here.
  const traceId = 'a3c1f0e2b4d6a8c0e2f4a6b8c0d2e4f6';
  await h.client.enqueueJob({ queue, job: { name: 'render', data: { invoice: 4711, customer: 'ACME' }, options: { jobId: id, attempts: 5 } } }, { metadata: { traceparent: `00-${traceId}-b7ad6b7169203331-01` } });

  await page.goto(base);
  await page.getByRole('textbox', { name: 'Job id' }).fill(id);
  await page.getByRole('button', { name: 'Find', exact: true }).click();
  await visible(page.getByRole('heading', { name: `Job ${id}` }));
  const job = await h.client.getJob(queue, id);
  expect(job.name).toBe('render');
  await shows(page.locator('table.fields'), 'render');
  await shows(page.locator('pre.json').first(), '"customer": "ACME"');
  await shows(page.locator('table.fields'), `0 of ${job.options?.attempts}`);
  expect(job.traceId).toBe(traceId);
  expect(await page.locator('a.trace').getAttribute('href')).toBe(`http://127.0.0.1:16686/trace/${traceId}`);
  expect(page.url()).toContain(`#/queues/${queue}/jobs/${id}`);
  await shot('job');
});

it("shows a flow parent's children on its job page, each a link, as GetJob reports them", async () => {
  const queue = await h.newQueue('dash-flow');
  const flow = await h.client.enqueueFlow({
    root: { queue, job: { name: 'fatal', data: { fixed: true } }, children: [{ queue, job: { name: 'fatal', data: { fixed: true, c: 1 } } }, { queue, job: { name: 'fatal', data: { fixed: true, c: 2 } } }] },
  });
  const root = flow.flow!.job!;
  await eventually(async () => (await h.client.getJob(queue, root.id)).state === pb.JobState.JOB_STATE_COMPLETED, 15_000, 'the flow to complete');
  const details = await h.client.getJobDetails(queue, root.id);
  expect(details.children).toHaveLength(2);
  await page.goto(`${base}/#/queues/${queue}/jobs/${root.id}`);
  await visible(page.getByRole('heading', { name: `Job ${root.id}` }));
  for (const c of details.children) await visible(page.getByRole('link', { name: `${c.queue}/${c.id}` }));
  await page.getByRole('link', { name: `${details.children[0]!.queue}/${details.children[0]!.id}` }).click();
  await visible(page.getByRole('heading', { name: `Job ${details.children[0]!.id}` }));
});

it('pauses and resumes a queue from its page, as SchedulerService then reports', async () => {
  const queue = await h.newQueue('dash-pause');
  expect((await h.client.getQueue(queue)).paused).toBe(false);
  await page.goto(`${base}/#/queues/${queue}`);
  await page.getByRole('button', { name: 'Pause queue' }).click();
  await visible(page.getByRole('heading', { name: queue }).getByText('paused', { exact: true }));
  expect((await h.client.getQueue(queue)).paused).toBe(true);
  await shot('queue-paused');
  await page.getByRole('button', { name: 'Resume queue' }).click();
  await visible(page.getByRole('heading', { name: queue }).getByText('running', { exact: true }));
  expect((await h.client.getQueue(queue)).paused).toBe(false);
  // A pause from elsewhere reaches the open page through the live figures.
  await h.client.pauseQueue(queue);
  await visible(page.getByRole('heading', { name: queue }).getByText('paused', { exact: true }));
});

it('replays a dead letter with a data patch from the dead letters page; the replayed job runs with the patched data', async () => {
  const queue = await h.newQueue('dash-replay');
  await h.client.enqueueJob({ queue, job: { name: 'fatal', data: { order: 17 }, options: { attempts: 3 } } });
  const letter = await deadLetterOf(queue);
  expect(letter.replays).toHaveLength(0);

  await page.goto(`${base}/#/dead-letters?queue=${queue}`);
  await page.getByRole('checkbox', { name: `Select ${letter.id}` }).check();
  await page.getByRole('textbox', { name: /Data patch/ }).fill('{"fixed": true}');
  await page.getByRole('group', { name: 'Selected', exact: true }).getByRole('button', { name: 'Replay' }).click();
  await shows(page.getByRole('status'), '1 replayed');
  await shot('dead-letter-replayed');

  // Through DeadLetterService: the replay is recorded; through SchedulerService: its job ran with the patch.
  const replayed = await eventually(async () => (await dead.get(letter.id)).replays[0], 5000, 'the recorded replay');
  const job = await eventually(
    async () => {
      const j = await h.client.getJob(replayed.job!.queue, replayed.job!.id);
      return j.state === pb.JobState.JOB_STATE_COMPLETED ? j : undefined;
    },
    15_000,
    'the replayed job to complete',
  );
  expect(job.data).toEqual({ order: 17, fixed: true });
  expect(job.result).toEqual({ fixed: true });
  expect(job.options?.replayOf).toBe(letter.id);
});

it('retries the selected failed jobs from the queue page, and only those', async () => {
  // Capture off, so failed jobs stay failed (and retryable) rather than becoming dead letters.
  const queue = await h.newQueue('dash-retry', { deadLetter: { disabled: true } });
  const { jobs } = await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 3 }, (_, i) => ({ name: 'fail', data: { i }, options: { attempts: 1 } })) });
  const ids = jobs.map((j) => j.id);
  await eventually(async () => (await h.client.listJobs({ queue, states: [pb.JobState.JOB_STATE_FAILED] })).jobs.length === 3, 15_000, 'three failed jobs');
  // Paused, so the retried jobs wait where the check can see them.
  await h.client.pauseQueue(queue);

  await page.goto(`${base}/#/queues/${queue}?state=failed`);
  await page.getByRole('checkbox', { name: `Select ${ids[0]}` }).check();
  await page.getByRole('checkbox', { name: `Select ${ids[2]}` }).check();
  await page.getByRole('group', { name: 'Selected (2)' }).getByRole('button', { name: 'Retry' }).click();
  await shows(page.getByRole('status'), '2 job(s) retried');
  await shot('queue-retried');
  const state = async (id: string) => (await h.client.getJob(queue, id)).state;
  expect(await state(ids[0]!)).toBe(pb.JobState.JOB_STATE_WAITING);
  expect(await state(ids[1]!)).toBe(pb.JobState.JOB_STATE_FAILED);
  expect(await state(ids[2]!)).toBe(pb.JobState.JOB_STATE_WAITING);
});

it('filters dead letters by queue and category, and by time', async () => {
  const queue = await h.newQueue('dash-dlfilter');
  await h.client.enqueueJob({ queue, job: { name: 'fatal', data: {}, options: { attempts: 1 } } });
  const letter = await deadLetterOf(queue);
  await page.goto(`${base}/#/dead-letters?queue=${queue}&category=${letter.category}`);
  await visible(page.locator(`tr[data-dead-letter="${letter.id}"]`));
  await page.goto(`${base}/#/dead-letters?queue=${queue}&category=NO_SUCH_CATEGORY`);
  await visible(page.getByText('No dead letters.'));
  const after = new Date(letter.deadLetteredAt!.getTime() + 1000).toISOString();
  await page.goto(`${base}/#/dead-letters?queue=${queue}&since=${after}`);
  await visible(page.getByText('No dead letters.'));
  await page.goto(`${base}/#/dead-letters?queue=${queue}&until=${after}`);
  await visible(page.locator(`tr[data-dead-letter="${letter.id}"]`));
  // Opening a row shows every attempt's error with its stack.
  await page.getByRole('button', { name: letter.id }).click();
  await visible(page.getByText(`Attempt 1: ${letter.errors[0]!.errorName}`));
});

// ---- the JSON API beneath the pages ----

const api = async (path: string, init?: { method?: string; body?: unknown; base?: string; headers?: Record<string, string> }) => {
  const res = await fetch(`${init?.base ?? base}/api/${path}`, {
    method: init?.method ?? 'GET',
    headers: { ...(init?.body === undefined ? {} : { 'content-type': 'application/json' }), ...init?.headers },
    body: init?.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & { jobs?: Array<{ id: string }> } };
};

it('searches a queue by a substring of job name or data, and pages', async () => {
  const queue = await h.newQueue('dash-search');
  await h.client.pauseQueue(queue);
  await h.client.enqueueJobs({
    queue,
    jobs: [
      ...Array.from({ length: 30 }, (_, i) => ({ name: 'resize', data: { file: `photo-${i}.jpg` } })),
      { name: 'resize', data: { file: 'needle-in-data.png' } },
      { name: 'needle-name', data: {} },
    ],
  });
  const found = await api(`queues/${queue}/jobs?search=NEEDLE`);
  expect(found.status).toBe(200);
  expect(found.body.jobs).toHaveLength(2);
  const first = await api(`queues/${queue}/jobs?state=waiting&pageSize=20`);
  expect(first.body.jobs).toHaveLength(20);
  const second = await api(`queues/${queue}/jobs?state=waiting&pageSize=20&pageToken=${encodeURIComponent(String(first.body.nextPageToken))}`);
  expect(second.body.jobs).toHaveLength(12);
  expect((await api(`queues/${queue}/jobs?state=bogus`)).status).toBe(400);
  expect((await api(`queues/no-such-queue-${Date.now()}`)).status).toBe(404);
});

it('cancels every job a filter selects and promotes a selected delayed job, reporting each', async () => {
  const queue = await h.newQueue('dash-bulk');
  await h.client.pauseQueue(queue);
  await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 5 }, (_, i) => ({ name: 'mail', data: { batch: 'b1', i } })) });
  await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 3 }, (_, i) => ({ name: 'mail', data: { batch: 'b2', i } })) });
  const cancelled = await api(`queues/${queue}/jobs/actions`, { method: 'POST', body: { action: 'cancel', filter: { state: 'waiting', search: '"b1"' } } });
  expect(cancelled.body).toMatchObject({ ok: 5, failed: 0 });
  const left = await h.client.listJobs({ queue, states: [pb.JobState.JOB_STATE_WAITING] });
  expect(left.jobs.map((j) => j.data?.batch)).toEqual(['b2', 'b2', 'b2']);

  const { job } = await h.client.enqueueJob({ queue, job: { name: 'later', data: {}, options: { delay: { seconds: 3600, nanos: 0 } } } });
  const promoted = await api(`queues/${queue}/jobs/actions`, { method: 'POST', body: { action: 'promote', ids: [job!.id, left.jobs[0]!.id] } });
  expect(promoted.body).toMatchObject({ ok: 1, failed: 1 });
  expect((await h.client.getJob(queue, job!.id)).state).toBe(pb.JobState.JOB_STATE_WAITING);
});

it('quarantines, releases and purges dead letters through DeadLetterService', async () => {
  const queue = await h.newQueue('dash-quarantine');
  await h.client.enqueueJob({ queue, job: { name: 'fatal', data: {}, options: { attempts: 1 } } });
  const letter = await deadLetterOf(queue);
  const q = await api('dead-letters/quarantine', { method: 'POST', body: { filter: { queue }, quarantined: true, reason: 'poison' } });
  expect(q.body).toEqual({ updated: 1 });
  expect(await dead.get(letter.id)).toMatchObject({ quarantined: true, quarantineReason: 'poison' });
  expect((await api('dead-letters/quarantine', { method: 'POST', body: { ids: [letter.id], quarantined: false } })).body).toEqual({ updated: 1 });
  expect((await dead.get(letter.id)).quarantined).toBe(false);
  expect((await api('dead-letters/purge', { method: 'POST', body: { ids: [letter.id] } })).body).toEqual({ purged: 1 });
  expect((await dead.list({ filter: { queue } })).deadLetters).toHaveLength(0);
});

it('lists remote and in-process workers on the workers page, as WorkerService does', async () => {
  const queue = await h.newQueue('dash-workers');
  const pool = await h.startPool([], { JOBMESH_WORKER_QUEUES: queue });
  const worker = new RemoteWorker({
    address: `127.0.0.1:${pool.grpcPort}`,
    workerId: `dash-remote-${Date.now()}`,
    labels: { team: 'billing' },
    processors: [defineProcessor({ queue, name: 'remote', process: async () => 1 })],
  });
  await worker.start();
  try {
    const m = await h.startMonitor({ JOBMESH_WORKER_POOL_ADDRESS: `127.0.0.1:${pool.grpcPort}` });
    const mBase = `http://127.0.0.1:${m.service.httpPort}`;
    type W = { workerId: string; kind: string; replica: string; queues: string[] };
    const listed = await eventually(
      async () => {
        const list = (await api('workers', { base: mBase })).body.workers as W[];
        return list.some((w) => w.workerId === worker.workerId) && list.filter((w) => w.kind === 'WORKER_KIND_IN_PROCESS').length >= 2 ? list : undefined;
      },
      15_000,
      'the remote worker and both replicas in ListWorkers',
    );
    expect(listed.find((w) => w.workerId === worker.workerId)).toMatchObject({ kind: 'WORKER_KIND_STREAM', queues: [queue] });
    await page.goto(`${mBase}/#/workers`);
    const row = page.locator('tr', { hasText: worker.workerId });
    await visible(row);
    await shows(row, 'remote (stream)');
    await shows(row, 'team=billing');
    expect(await page.locator('table.workers').nth(1).locator('tbody tr').count()).toBe(listed.filter((w) => w.kind === 'WORKER_KIND_IN_PROCESS').length);
    await shot('workers');
  } finally {
    await worker.stop({ graceMs: 1000 });
  }
});

it('in read-only mode hides every action and answers the action endpoints with 403', async () => {
  const queue = await h.newQueue('dash-readonly');
  const ro = await h.startMonitor({ JOBMESH_DASHBOARD_READ_ONLY: 'true' });
  const roBase = `http://127.0.0.1:${ro.service.httpPort}`;
  const refused = await api(`queues/${queue}/pause`, { method: 'POST', body: {}, base: roBase });
  expect(refused.status).toBe(403);
  expect((await h.client.getQueue(queue)).paused).toBe(false);
  await page.goto(`${roBase}/#/queues/${queue}`);
  await visible(page.getByText('read-only', { exact: true }));
  await visible(page.getByRole('heading', { name: queue }));
  expect(await page.getByRole('button', { name: /Pause|Resume|Retry|Promote|Cancel/ }).count()).toBe(0);
  await page.goto(`${roBase}/#/dead-letters`);
  await visible(page.getByRole('heading', { name: 'Dead letters' }));
  expect(await page.getByRole('button', { name: /Replay|Quarantine|Purge/ }).count()).toBe(0);
});

it("refuses an action sent from another site's page, or without a JSON body", async () => {
  const queue = await h.newQueue('dash-csrf');
  const evil = await api(`queues/${queue}/pause`, { method: 'POST', body: {}, headers: { origin: 'http://evil.example' } });
  expect(evil.status).toBe(403);
  const form = await fetch(`${base}/api/queues/${queue}/pause`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'x=1' });
  expect(form.status).toBe(415);
  expect((await h.client.getQueue(queue)).paused).toBe(false);
  const own = await api(`queues/${queue}/pause`, { method: 'POST', body: {}, headers: { origin: base } });
  expect(own.status).toBe(200);
  expect((await h.client.getQueue(queue)).paused).toBe(true);
});
