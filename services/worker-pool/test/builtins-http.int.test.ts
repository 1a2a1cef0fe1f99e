import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as pb from '@jobmesh/contracts';
import type { DeepPartial } from '@jobmesh/sdk';
import type { RunningWorkerPool } from '../src';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

/** What the test server saw: one entry per request. */
interface Seen {
  path: string;
  method: string;
  headers: IncomingMessage['headers'];
  body: string;
  at: number;
}

type Route = (req: IncomingMessage, res: ServerResponse, nth: number) => void;

let h: PoolHarness;
let pool: RunningWorkerPool;
let server: Server;
let base: string;
const routes = new Map<string, Route>();
const seen: Seen[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      seen.push({ path, method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks).toString(), at: Date.now() });
      const route = routes.get(path);
      if (route) route(req, res, seen.filter((s) => s.path === path).length);
      else res.writeHead(500).end('no route');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  h = await startPoolHarness();
  // No processors of its own: the pool gets http.request from the built-ins, as a deployment does.
  pool = await h.startPool([]);
});
afterAll(async () => {
  await h.stop();
  server.closeAllConnections();
  server.close();
});

/** A fresh queue that the pool already serves, and a path on the test server that only this test uses. */
async function setUp(label: string, route: Route, queueConfig: DeepPartial<pb.QueueConfig> = {}): Promise<{ queue: string; path: string; url: string }> {
  const queue = uniqueQueue(`http-${label}`);
  const path = `/${queue}`;
  routes.set(path, route);
  await h.client.createQueue({ queue: { name: queue, ...queueConfig } });
  await eventually(() => pool.worker.pool.status().some((s) => s.queue === queue), 10_000, `the pool to serve ${queue}`);
  return { queue, path, url: `${base}${path}` };
}

/**
 * The job once it completed or failed. GetJob reads the job and its state in two steps, so a job
 * that finishes in between shows the new state with the old fields; `finishedAt` tells them apart.
 */
async function finished(queue: string, id: string, timeoutMs = 15_000): Promise<pb.Job> {
  return eventually(
    async () => {
      const j = await h.client.getJob(queue, id);
      const final = j.state === pb.JobState.JOB_STATE_COMPLETED || j.state === pb.JobState.JOB_STATE_FAILED;
      return final && j.finishedAt !== undefined && j;
    },
    timeoutMs,
    `job ${id} to finish`,
  );
}

const fixedBackoff100ms = { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: { seconds: 0, nanos: 100_000_000 } };

it('completes a 2xx request with its status, headers and JSON body, sending an object body as JSON', async () => {
  const { queue, path, url } = await setUp('ok', (req, res) => {
    res.writeHead(201, { 'content-type': 'application/json; charset=utf-8', 'x-reply': 'yes' }).end(JSON.stringify({ created: true, echo: req.headers['x-token'] }));
  });
  const { job } = await h.client.enqueueJob({
    queue,
    job: { name: 'http.request', data: { url, method: 'put', headers: { 'x-token': 'abc' }, body: { widget: 42 } } },
  });

  const done = await finished(queue, job!.id);

  expect(done.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
  expect(done.result).toEqual({
    status: 201,
    headers: expect.objectContaining({ 'content-type': 'application/json; charset=utf-8', 'x-reply': 'yes' }),
    body: { created: true, echo: 'abc' },
  });
  const request = seen.find((s) => s.path === path)!;
  expect(request.method).toBe('PUT');
  expect(request.headers['content-type']).toBe('application/json');
  expect(JSON.parse(request.body)).toEqual({ widget: 42 });
});

it('stores a text body as text, cut at 64 KiB and marked truncated', async () => {
  const { queue, url } = await setUp('big', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('x'.repeat(100 * 1024));
  });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'http.request', data: { url } } });

  const done = await finished(queue, job!.id);

  expect(done.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
  const result = done.result as { body: string; truncated?: boolean };
  expect(result.body).toBe('x'.repeat(64 * 1024));
  expect(result.truncated).toBe(true);
});

it('retries a 500 and completes on the second attempt', async () => {
  const { queue, path, url } = await setUp('500', (_req, res, nth) => {
    if (nth === 1) res.writeHead(500).end('boom');
    else res.writeHead(200, { 'content-type': 'text/plain' }).end('fine now');
  });
  const { job } = await h.client.enqueueJob({
    queue,
    job: { name: 'http.request', data: { url }, options: { attempts: 3, backoff: fixedBackoff100ms } },
  });

  const done = await finished(queue, job!.id);

  expect(done.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
  expect(done.attemptsMade).toBe(2);
  expect(done.result).toMatchObject({ status: 200, body: 'fine now' });
  expect(seen.filter((s) => s.path === path)).toHaveLength(2);
});

it('fails a 404 at once, without retries, with the status and a body excerpt as the reason', async () => {
  const { queue, path, url } = await setUp('404', (_req, res) => {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('no such widget\n');
  });
  const { job } = await h.client.enqueueJob({
    queue,
    job: { name: 'http.request', data: { url }, options: { attempts: 3, backoff: fixedBackoff100ms } },
  });

  const failed = await finished(queue, job!.id);

  expect(failed.state).toBe(pb.JobState.JOB_STATE_FAILED);
  expect(failed.attemptsMade).toBe(1);
  expect(failed.failureReason).toBe(`http.request: GET ${url} returned 404 Not Found: no such widget`);
  expect(seen.filter((s) => s.path === path)).toHaveLength(1);
});

it('backs off for the Retry-After of a 429 and runs the job again without using up an attempt', async () => {
  const { queue, path, url } = await setUp('429', (_req, res, nth) => {
    if (nth === 1) res.writeHead(429, { 'retry-after': '1' }).end('slow down');
    else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
 });
  // One attempt only: if the 429 used it up, the job would fail instead of completing.
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'http.request', data: { url }, options: { attempts: 1 } } });

  const done = await finished(queue, job!.id);

  expect(done.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
  expect(done.attemptsMade).toBe(1);
  expect(done.result).toMatchObject({ status: 200, body: { ok: true } });
  const requests = seen.filter((s) => s.path === path);
  expect(requests).toHaveLength(2);
  const gap = requests[1]!.at - requests[0]!.at;
  expect(gap).toBeGreaterThanOrEqual(900);
  expect(gap).toBeLessThan(5_000);
});

it('treats a 503 with a Retry-After date like a 429: backs off until then without using up an attempt', async () => {
  let retryAt = 0;
  const { queue, path, url } = await setUp('503', (_req, res, nth) => {
    if (nth === 1) {
      // HTTP dates have whole seconds: this one is 2 to 3 s ahead.
      const date = new Date(Date.now() + 3000).toUTCString();
      retryAt = Date.parse(date);
      res.writeHead(503, { 'retry-after': date }).end();
    } else res.writeHead(204).end();
 });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'http.request', data: { url }, options: { attempts: 1 } } });

  const done = await finished(queue, job!.id);

  expect(done.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
  expect(done.attemptsMade).toBe(1);
  expect(done.result).toMatchObject({ status: 204, body: '' });
  const requests = seen.filter((s) => s.path === path);
  expect(requests).toHaveLength(2);
  // Not before the date the server named (give or take Redis's and this clock's rounding).
  expect(requests[1]!.at).toBeGreaterThanOrEqual(retryAt - 100);
});

it('retries a request whose connection is refused, and fails with the cause once attempts run out', async () => {
  const closed = createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const port = (closed.address() as AddressInfo).port;
  closed.close();
  await once(closed, 'close');
  const { queue } = await setUp('refused', () => undefined);
  const url = `http://127.0.0.1:${port}/nothing-listens-here`;
  const { job } = await h.client.enqueueJob({
    queue,
    job: { name: 'http.request', data: { url }, options: { attempts: 2, backoff: fixedBackoff100ms } },
  });

  const failed = await finished(queue, job!.id);

  expect(failed.state).toBe(pb.JobState.JOB_STATE_FAILED);
  expect(failed.attemptsMade).toBe(2);
  expect(failed.failureReason).toMatch(new RegExp(`^http\\.request: GET ${url} failed: fetch failed: .*ECONNREFUSED`));
});

it('fails an attempt that takes longer than timeout_ms, saying it timed out', async () => {
  const { queue, path, url } = await setUp('slow', () => undefined); // never answers
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'http.request', data: { url, timeout_ms: 200 }, options: { attempts: 1 } } });

  const failed = await finished(queue, job!.id);

  expect(failed.state).toBe(pb.JobState.JOB_STATE_FAILED);
  expect(failed.failureReason).toBe(`http.request: GET ${url} timed out after 200 ms`);
  expect(seen.filter((s) => s.path === path)).toHaveLength(1);
});

it('fails a job whose url is not http(s) at once, naming the field', async () => {
  const { queue } = await setUp('bad-url', () => undefined);
  const { job } = await h.client.enqueueJob({
    queue,
    job: { name: 'http.request', data: { url: 'ftp://example.test/file', headers: { a: 1 } }, options: { attempts: 3 } },
  });

  const failed = await finished(queue, job!.id);

  expect(failed.state).toBe(pb.JobState.JOB_STATE_FAILED);
  expect(failed.attemptsMade).toBe(1);
  expect(failed.failureReason).toMatch(/^http\.request: invalid job data: url: must be an absolute http:\/\/ or https:\/\/ URL; headers\.a: /);
});

it('follows redirects (to loopback too, outside production mode), at most 5, and fails past that at once; credentials stay with their origin', async () => {
  const { queue, path, url } = await setUp('redirects', (req, res) => res.writeHead(302, { location: req.url! }).end());
  const { path: landedPath, url: landed } = await setUp('landed', (_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('landed'));
  const { queue: hopQueue, url: hop } = await setUp('hop', (_req, res) => res.writeHead(307, { location: landed.replace('127.0.0.1', 'localhost') }).end());

  // The 307 goes to localhost: another origin than 127.0.0.1, so the authorization header stays behind.
  const followed = await h.client.enqueueJob({ queue: hopQueue, job: { name: 'http.request', data: { url: hop, headers: { authorization: 'Bearer first-origin-only', 'x-trace': 't1' } } } });
  const looping = await h.client.enqueueJob({ queue, job: { name: 'http.request', data: { url }, options: { attempts: 3 } } });

  const done = await finished(hopQueue, followed.job!.id);
  const failed = await finished(queue, looping.job!.id);
  expect(done.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
  expect(done.result).toMatchObject({ status: 200, body: 'landed' });
  const landedRequest = seen.find((s) => s.path === landedPath)!;
  expect(landedRequest.headers['x-trace']).toBe('t1');
  expect(landedRequest.headers.authorization).toBeUndefined();
  expect(failed.state).toBe(pb.JobState.JOB_STATE_FAILED);
  expect(failed.attemptsMade).toBe(1);
  expect(failed.failureReason).toBe(`http.request: GET ${url} (redirected from ${url}) was redirected more than 5 times (processors.http_request.max_redirects)`);
  // The request and the 5 redirects followed.
  expect(seen.filter((s) => s.path === path)).toHaveLength(6);
});

it('fails a response body over 1 MiB at once, outside production mode too', async () => {
  const { queue, url } = await setUp('huge', (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    // Chunked: no Content-Length says the size in advance. 2 MiB in 64 KiB chunks.
    const chunk = Buffer.alloc(64 * 1024, 1);
    for (let i = 0; i < 32; i++) res.write(chunk);
    res.end();
  });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'http.request', data: { url }, options: { attempts: 3 } } });

  const failed = await finished(queue, job!.id);

  expect(failed.state).toBe(pb.JobState.JOB_STATE_FAILED);
  expect(failed.attemptsMade).toBe(1);
  expect(failed.failureReason).toBe(`http.request: GET ${url} returned a body of more than 1048576 bytes; the limit is 1048576 bytes (processors.http_request.max_response_bytes)`);
});
