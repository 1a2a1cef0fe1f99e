import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as pb from '@jobmesh/contracts';
import { Keys } from '@jobmesh/queue';
import type { RunningDeadLetter } from '../src';
import { type DeadLetterHarness, enqueueFailures, startDeadLetterHarness, uniqueQueue, waitFor } from '../src/testing';

let h: DeadLetterHarness;

/** Jobmesh's Redis keys under the harness's prefix. */
const keys = (): Keys => new Keys(h.prefix);

beforeAll(async () => {
  h = await startDeadLetterHarness();
});
afterAll(async () => {
  await h.stop();
});

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  body: { dead_letter: Record<string, unknown>; severity: string; queue: string; category: string; id: string };
}

/** A real HTTP server recording every request; `status(path, n)` answers the n-th request (from 1) to `path`. */
async function webhookServer(status: (path: string, n: number) => number = () => 204) {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (raw += c));
    req.on('end', () => {
      const path = req.url ?? '';
      received.push({ path, headers: req.headers, raw, body: JSON.parse(raw) as Received['body'] });
      res.writeHead(status(path, received.filter((r) => r.path === path).length)).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    received,
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const SECRET = 'whsec-test';
const FAST_RETRIES = { JOBMESH_DLQ_WEBHOOK_BACKOFF: '50ms', JOBMESH_DLQ_WEBHOOK_SECRET: SECRET };

/** Where a dead letter's alert is: 'pending', 'done', 'failed', or undefined when none was queued. */
const alertState = (service: RunningDeadLetter, deadLetterId: string) => service.alerts!.state(deadLetterId);

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The value of the sample `name{labels…}` in a Prometheus text exposition (labels in any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...m[2]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.keys(got).length === Object.keys(labels).length && Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

it('posts a critical dead letter to the critical webhook, signed, and a warning one to the warning webhook', async () => {
  const hooks = await webhookServer();
  const { service, client } = await h.startDeadLetter({
    ...FAST_RETRIES,
    JOBMESH_DLQ_WEBHOOK_CRITICAL: hooks.url('/critical'),
    JOBMESH_DLQ_WEBHOOK_WARNING: hooks.url('/warning'),
  });
  try {
    const queue = uniqueQueue('dlq-alert');
    await h.client.createQueue({ queue: { name: queue } });
    await enqueueFailures(h, queue, { ghost: 1, fail: 1 });
    await waitFor('two webhook requests', () => hooks.received.length === 2, 20_000);

    const critical = hooks.received.find((r) => r.path === '/critical')!;
    const warning = hooks.received.find((r) => r.path === '/warning')!;
    expect(critical.headers).toMatchObject({ 'content-type': 'application/json', 'user-agent': 'jobmesh-dead-letter' });
    expect(critical.headers['x-jobmesh-signature']).toBe(`sha256=${createHmac('sha256', SECRET).update(critical.raw).digest('hex')}`);
    expect(warning.headers['x-jobmesh-signature']).toBe(`sha256=${createHmac('sha256', SECRET).update(warning.raw).digest('hex')}`);

    const stored = await client.get(critical.body.id);
    expect(critical.body).toEqual({ dead_letter: pb.DeadLetter.toJSON(stored), severity: 'critical', queue, category: 'PROCESSOR_NOT_FOUND', id: stored.id });
    expect(stored.job).toMatchObject({ queue, name: 'ghost' });
    expect(warning.body).toMatchObject({ severity: 'warning', queue, category: 'EXHAUSTED_RETRIES', dead_letter: { id: warning.body.id, category: 'EXHAUSTED_RETRIES' } });

    await waitFor('both alerts completed', async () => (await alertState(service, critical.body.id)) === 'done' && (await alertState(service, warning.body.id)) === 'done');
    const metrics = await scrape(service.httpPort);
    expect(sample(metrics, 'jobmesh_dead_letter_webhooks_total', { severity: 'critical', outcome: 'delivered' })).toBe(1);
    expect(sample(metrics, 'jobmesh_dead_letter_webhooks_total', { severity: 'warning', outcome: 'delivered' })).toBe(1);
  } finally {
    await service.stop();
    await hooks.close();
  }
});

it('retries a 500 with backoff and delivers exactly once', async () => {
  const hooks = await webhookServer((_path, n) => (n <= 2 ? 500 : 200));
  const { service } = await h.startDeadLetter({ ...FAST_RETRIES, JOBMESH_DLQ_WEBHOOK_CRITICAL: hooks.url('/critical') });
  try {
    const queue = uniqueQueue('dlq-alert-retry');
    await h.client.createQueue({ queue: { name: queue } });
    await enqueueFailures(h, queue, { ghost: 1 });
    await waitFor('a first request', () => hooks.received.length > 0, 20_000);
    const id = hooks.received[0]!.body.id;
    await waitFor('the alert completed', async () => (await alertState(service, id)) === 'done', 20_000);
    expect(hooks.received.map((r) => [r.path, r.body.id])).toEqual([
      ['/critical', id],
      ['/critical', id],
      ['/critical', id],
    ]);
    const metrics = await scrape(service.httpPort);
    expect(sample(metrics, 'jobmesh_dead_letter_webhooks_total', { severity: 'critical', outcome: 'retried' })).toBe(2);
    expect(sample(metrics, 'jobmesh_dead_letter_webhooks_total', { severity: 'critical', outcome: 'delivered' })).toBe(1);
    expect(sample(metrics, 'jobmesh_dead_letter_webhooks_total', { severity: 'critical', outcome: 'failed' })).toBeUndefined();
  } finally {
    await service.stop();
    await hooks.close();
  }
});

it('keeps a pending retry across a restart of the service', async () => {
  const hooks = await webhookServer((_path, n) => (n === 1 ? 503 : 200));
  // A 2 s backoff: the retry is still pending when the first instance stops.
  const env = { JOBMESH_DLQ_WEBHOOK_BACKOFF: '2s', JOBMESH_DLQ_WEBHOOK_CRITICAL: hooks.url('/critical') };
  const first = await h.startDeadLetter(env);
  let second: Awaited<ReturnType<DeadLetterHarness['startDeadLetter']>> | undefined;
  try {
    const queue = uniqueQueue('dlq-alert-restart');
    await h.client.createQueue({ queue: { name: queue } });
    await enqueueFailures(h, queue, { ghost: 1 });
    await waitFor('a first request', () => hooks.received.length > 0, 20_000);
    const id = hooks.received[0]!.body.id;
    await first.service.stop();
    expect(hooks.received).toHaveLength(1); // the retry is still pending, in Redis
    second = await h.startDeadLetter(env);
    const { service } = second;
    await waitFor('the alert completed', async () => (await alertState(service, id)) === 'done', 20_000);
    expect(hooks.received.map((r) => r.body.id)).toEqual([id, id]);
  } finally {
    await first.service.stop();
    await second?.service.stop();
    await hooks.close();
  }
});

it('gives up at once on a 400, and queues no alert for a severity without a webhook', async () => {
  const hooks = await webhookServer(() => 400);
  const { service, client } = await h.startDeadLetter({ ...FAST_RETRIES, JOBMESH_DLQ_WEBHOOK_WARNING: hooks.url('/warning') });
  try {
    const queue = uniqueQueue('dlq-alert-400');
    await h.client.createQueue({ queue: { name: queue } });
    await enqueueFailures(h, queue, { fail: 1, ghost: 1 });
    await waitFor('two dead letters', async () => (await client.stats(queue)).total === 2, 20_000);
    const { deadLetters } = await client.list({ filter: { queue } });
    const warning = deadLetters.find((d) => d.category === 'EXHAUSTED_RETRIES')!;
    const critical = deadLetters.find((d) => d.category === 'PROCESSOR_NOT_FOUND')!;
    await waitFor('the warning alert failed', async () => (await alertState(service, warning.id)) === 'failed', 20_000);
    expect(hooks.received.map((r) => [r.path, r.body.id])).toEqual([['/warning', warning.id]]);
    expect(await alertState(service, critical.id)).toBeUndefined(); // no critical webhook: no alert at all
    expect(await service.alerts!.failure(warning.id)).toBe('webhook answered 400');
    const metrics = await scrape(service.httpPort);
    expect(sample(metrics, 'jobmesh_dead_letter_webhooks_total', { severity: 'warning', outcome: 'failed' })).toBe(1);
    expect(sample(metrics, 'jobmesh_dead_letter_webhooks_total', { severity: 'warning', outcome: 'retried' })).toBeUndefined();
  } finally {
    await service.stop();
    await hooks.close();
  }
});

it('alerts each dead letter once across two service instances', async () => {
  const hooks = await webhookServer();
  const env = { ...FAST_RETRIES, JOBMESH_DLQ_WEBHOOK_CRITICAL: hooks.url('/critical') };
  const a = await h.startDeadLetter(env);
  const b = await h.startDeadLetter(env);
  try {
    const queue = uniqueQueue('dlq-alert-twice');
    await h.client.createQueue({ queue: { name: queue } });
    await enqueueFailures(h, queue, { ghost: 10 });
    await waitFor('10 dead letters', async () => (await a.client.stats(queue)).total === 10, 20_000);
    await Promise.all([a.service.sweep(), b.service.sweep(), a.service.sweep(), b.service.sweep()]);
    const { deadLetters } = await a.client.list({ filter: { queue } });
    const states = async (): Promise<boolean> => (await Promise.all(deadLetters.map((d) => alertState(a.service, d.id)))).every((s) => s === 'done');
    await waitFor('10 alerts completed', states, 20_000);
    expect(hooks.received.map((r) => r.body.id).sort()).toEqual(deadLetters.map((d) => d.id).sort());

    // Each replica counts what it captured; together, each dead letter once.
    const captured = async (port: number): Promise<number> => sample(await scrape(port), 'jobmesh_dead_letters_total', { queue, category: 'PROCESSOR_NOT_FOUND' }) ?? 0;
    expect((await captured(a.service.httpPort)) + (await captured(b.service.httpPort))).toBe(10);
  } finally {
    await Promise.all([a.service.stop(), b.service.stop()]);
    await hooks.close();
  }
});

it('exports captured and stored dead letters by queue and category; the gauge follows purges', async () => {
  const { service, client } = await h.startDeadLetter();
  try {
    const queue = uniqueQueue('dlq-metrics');
    await h.client.createQueue({ queue: { name: queue } });
    await enqueueFailures(h, queue, { fail: 2, ghost: 1 });
    await waitFor('three dead letters', async () => (await client.stats(queue)).total === 3, 20_000);

    let metrics = await scrape(service.httpPort);
    expect(metrics).toMatch(/^# HELP jobmesh_dead_letters_total Dead letters captured by this replica/m);
    expect(metrics).toMatch(/^# HELP jobmesh_dead_letters Dead letters stored now/m);
    const exhausted = { queue, category: 'EXHAUSTED_RETRIES' };
    const notFound = { queue, category: 'PROCESSOR_NOT_FOUND' };
    expect(sample(metrics, 'jobmesh_dead_letters_total', exhausted)).toBe(2);
    expect(sample(metrics, 'jobmesh_dead_letters_total', notFound)).toBe(1);
    expect(sample(metrics, 'jobmesh_dead_letters', exhausted)).toBe(2);
    expect(sample(metrics, 'jobmesh_dead_letters', notFound)).toBe(1);

    const { deadLetters } = await client.list({ filter: { queue, category: 'EXHAUSTED_RETRIES' } });
    expect((await client.purge({ ids: [deadLetters[0]!.id] })).purged).toBe(1);
    expect((await client.purge({ filter: { queue, category: 'PROCESSOR_NOT_FOUND' } })).purged).toBe(1);
    metrics = await scrape(service.httpPort);
    expect(sample(metrics, 'jobmesh_dead_letters', exhausted)).toBe(1);
    expect(sample(metrics, 'jobmesh_dead_letters', notFound)).toBeUndefined(); // purged to zero: gone
    // The counter counts captures; purges do not take them back.
    expect(sample(metrics, 'jobmesh_dead_letters_total', exhausted)).toBe(2);
    expect(sample(metrics, 'jobmesh_dead_letters_total', notFound)).toBe(1);
  } finally {
    await service.stop();
  }
});

it('alerts a dead letter whose replica died between capture and alert, on the next sweep', async () => {
  // The first instance has no webhook: it captures, and its follow-up sends nothing.
  const first = await h.startDeadLetter();
  const queue = uniqueQueue('dlq-outbox');
  await h.client.createQueue({ queue: { name: queue } });
  await enqueueFailures(h, queue, { ghost: 1 });
  await waitFor('a dead letter', async () => (await first.client.stats(queue)).total === 1, 20_000);
  const [d] = (await first.client.list({ filter: { queue } })).deadLetters;
  await first.service.stop();
  const redis = h.redisClient();
  // What a replica that died right after the capture script leaves behind: an old outbox entry.
  await redis.zadd(keys().deadLetterOutbox, 1, d!.id);

  const hooks = await webhookServer();
  const second = await h.startDeadLetter({ ...FAST_RETRIES, JOBMESH_DLQ_WEBHOOK_CRITICAL: hooks.url('/critical') });
  try {
    await waitFor('the stranded alert', () => hooks.received.length === 1, 20_000);
    expect(hooks.received[0]!.body).toMatchObject({ id: d!.id, severity: 'critical', category: 'PROCESSOR_NOT_FOUND' });
    await waitFor('the outbox emptied', async () => (await redis.zscore(keys().deadLetterOutbox, d!.id)) === null);
  } finally {
    await second.service.stop();
    await hooks.close();
  }
});
