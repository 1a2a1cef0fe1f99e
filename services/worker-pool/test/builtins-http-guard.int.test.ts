// http.request with the guard production mode turns on: destinations that resolve to internal
// addresses are refused before a connection is opened, on every redirect too, unless the queue's
// allow-list opens them. Real HTTP servers on 127.0.0.1; names resolve through a stub that falls
// back to the system resolver (so `localhost` comes from the hosts file).
import { lookup } from 'node:dns/promises';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '@jobmesh/config';
import * as pb from '@jobmesh/contracts';
import { httpRequestProcessor, type Resolver } from '../src/builtins';
import type { RunningWorkerPool } from '../src';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

type Route = (req: IncomingMessage, res: ServerResponse) => void;

/** A server on 127.0.0.1:0 that records the paths it was asked for and answers by route. */
async function startServer(routes: Map<string, Route>): Promise<{ server: Server; port: number; seen: string[] }> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.url ?? '/');
    const route = routes.get(req.url ?? '/');
    if (route) route(req, res);
    else res.writeHead(200, { 'content-type': 'text/plain' }).end('a secret');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, seen };
}

let h: PoolHarness;
let pool: RunningWorkerPool;
let dir: string;
/** The allowed server: queues named `open-*` may reach it (127.0.0.1 on its port only). */
let open: Awaited<ReturnType<typeof startServer>>;
/** Stands for an internal service nobody may reach: it must see no request at all. */
let inside: Awaited<ReturnType<typeof startServer>>;
const openRoutes = new Map<string, Route>();
/** What the stub resolver answers per name (a list per call, the last one repeating); others go to the system. */
const names = new Map<string, string[][]>();
const resolved: string[] = [];

const resolve: Resolver = async (hostname) => {
  resolved.push(hostname);
  const answers = names.get(hostname);
  if (!answers) return lookup(hostname, { all: true });
  const next = answers.length > 1 ? answers.shift()! : answers[0]!;
  return next.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
};

beforeAll(async () => {
  open = await startServer(openRoutes);
  inside = await startServer(new Map());
  names.set('internal.test', [['10.0.0.1']]);
  names.set('metadata.test', [['169.254.169.254']]);
  names.set('loopback.test', [['127.0.0.1']]);
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-http-guard-'));
  // The built-in (unguarded: this pool runs in development mode) is off; the guarded one below
  // takes its place, with the allow-list as the config file gives it.
  const config = join(dir, 'jobmesh.config.yaml');
  writeFileSync(config, 'processors:\n  builtins: { http.request: false }\n');
  const { processors } = parseConfig(
    `processors:
  http_request:
    max_redirects: 2
    max_response_bytes: 100000
    allow:
      - queues: ["open-*"]
        to: ["127.0.0.1:${open.port}"]
`,
  );
  h = await startPoolHarness();
  pool = await h.startPool([httpRequestProcessor({ guard: true, config: processors.http_request, resolve })], { JOBMESH_CONFIG: config });
});
afterAll(async () => {
  await h.stop();
  for (const s of [open, inside]) {
    s.server.closeAllConnections();
    s.server.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

async function queue(label: string): Promise<string> {
  const name = uniqueQueue(label);
  await h.client.createQueue({ queue: { name } });
  await eventually(() => pool.worker.pool.status().some((s) => s.queue === name), 10_000, `the pool to serve ${name}`);
  return name;
}

/** Runs one http.request job (3 attempts allowed) and returns it once it completed or failed. */
async function run(q: string, data: Record<string, unknown>): Promise<pb.Job> {
  const { job } = await h.client.enqueueJob({
    queue: q,
    job: { name: 'http.request', data, options: { attempts: 3, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: { seconds: 0, nanos: 50_000_000 } } } },
  });
  return eventually(
    async () => {
      const j = await h.client.getJob(q, job!.id);
      const final = j.state === pb.JobState.JOB_STATE_COMPLETED || j.state === pb.JobState.JOB_STATE_FAILED;
      return final && j.finishedAt !== undefined && j;
    },
    15_000,
    `job ${job!.id} to finish`,
  );
}

/** Expects the job to have failed for good on its first attempt with `reason`, and `inside` to have seen nothing. */
function expectRefused(job: pb.Job, reason: string | RegExp): void {
  expect(job.state).toBe(pb.JobState.JOB_STATE_FAILED);
  expect(job.attemptsMade).toBe(1);
  if (typeof reason === 'string') expect(job.failureReason).toBe(reason);
  else expect(job.failureReason).toMatch(reason);
  expect(inside.seen).toEqual([]);
}

describe('in production mode', () => {
  it('refuses 127.0.0.1 before connecting, unrecoverably, saying why and how to permit it', async () => {
    const q = await queue('guard-literal');
    const url = `http://127.0.0.1:${inside.port}/metrics`;

    const job = await run(q, { url });

    expectRefused(job, `http.request: GET ${url} refused: 127.0.0.1 is loopback; add "127.0.0.1:${inside.port}" to processors.http_request.allow to permit it`);
  });

  it('refuses localhost, which the hosts file resolves to loopback', async () => {
    const q = await queue('guard-localhost');
    const url = `http://localhost:${inside.port}/secret`;

    const job = await run(q, { url });

    expectRefused(job, new RegExp(`^http\\.request: GET ${url} refused: localhost resolves to (127\\.0\\.0\\.1|::1), which is loopback; add "localhost:${inside.port}"`));
    expect(resolved).toContain('localhost');
  });

  it('refuses a name a resolver maps to loopback', async () => {
    const q = await queue('guard-name');
    const url = `http://loopback.test:${inside.port}/secret`;

    const job = await run(q, { url });

    expectRefused(job, `http.request: GET ${url} refused: loopback.test resolves to 127.0.0.1, which is loopback; add "loopback.test:${inside.port}" to processors.http_request.allow to permit it`);
  });

  it.each(['2130706433', '127.1', '0x7f.1', '0177.0.0.1', '[::ffff:127.0.0.1]'])('refuses the numeric host %s, which is loopback', async (host) => {
    const q = await queue('guard-numeric');

    const job = await run(q, { url: `http://${host}:${inside.port}/secret` });

    expectRefused(job, /refused: (127\.0\.0\.1|::ffff:7f00:1) is loopback/);
  });

  it('refuses a name that resolves to a private address before connecting to it', async () => {
    const q = await queue('guard-private');
    const url = 'http://internal.test:8080/admin';

    const started = Date.now();
    const job = await run(q, { url, timeout_ms: 60_000 });

    // 10.0.0.1 does not answer here: a connection attempt would time out, not fail at once.
    expectRefused(job, `http.request: GET ${url} refused: internal.test resolves to 10.0.0.1, which is private (RFC 1918); add "internal.test:8080" to processors.http_request.allow to permit it`);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('refuses link-local and cloud metadata addresses, by number and by name', async () => {
    const q = await queue('guard-link-local');

    const literal = await run(q, { url: 'http://169.254.10.20/latest' });
    const metadata = await run(q, { url: 'http://metadata.test/computeMetadata/v1/' });
    const v6 = await run(q, { url: 'http://[fe80::1]:8080/' });

    expectRefused(literal, /refused: 169\.254\.10\.20 is link-local; add "169\.254\.10\.20:80"/);
    expectRefused(metadata, /refused: metadata\.test resolves to 169\.254\.169\.254, which is a cloud metadata address/);
    expectRefused(v6, /refused: fe80::1 is link-local; add "\[fe80::1\]:8080"/);
  });

  it('lets a queue its allow-list opens reach exactly that address and port', async () => {
    openRoutes.set('/hello', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"hello":"inside"}'));
    const allowed = await queue('open-allowed');
    const other = await queue('guard-not-listed');

    const done = await run(allowed, { url: `http://127.0.0.1:${open.port}/hello` });
    const otherPort = await run(allowed, { url: `http://127.0.0.1:${inside.port}/hello` });
    const otherQueue = await run(other, { url: `http://127.0.0.1:${open.port}/hello` });

    expect(done.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expect(done.result).toMatchObject({ status: 200, body: { hello: 'inside' } });
    expectRefused(otherPort, /refused: 127\.0\.0\.1 is loopback/);
    expect(otherQueue.state).toBe(pb.JobState.JOB_STATE_FAILED);
    expect(otherQueue.failureReason).toMatch(/refused: 127\.0\.0\.1 is loopback/);
  });

  it('refuses a redirect to a refused address, even from an allowed one', async () => {
    const target = `http://127.0.0.1:${inside.port}/secret`;
    openRoutes.set('/to-inside', (_req, res) => res.writeHead(302, { location: target }).end());
    openRoutes.set('/to-inside-by-name', (_req, res) => res.writeHead(307, { location: `http://loopback.test:${inside.port}/secret` }).end());
    const q = await queue('open-redirect');
    const url = `http://127.0.0.1:${open.port}/to-inside`;

    const job = await run(q, { url });
    const byName = await run(q, { url: `http://127.0.0.1:${open.port}/to-inside-by-name`, method: 'POST', body: 'x' });

    expectRefused(job, `http.request: GET ${target} (redirected from ${url}) refused: 127.0.0.1 is loopback; add "127.0.0.1:${inside.port}" to processors.http_request.allow to permit it`);
    expectRefused(byName, /^http\.request: POST http:\/\/loopback\.test:\d+\/secret \(redirected from .*\) refused: loopback\.test resolves to 127\.0\.0\.1/);
  });

  it('checks each new connection again: a name that resolved to an allowed address and now resolves to a private one is refused', async () => {
    // The server closes every connection, so the second job needs a new one (and a new lookup).
    openRoutes.set('/flip', (_req, res) => res.writeHead(200, { connection: 'close', 'content-type': 'text/plain' }).end('ok'));
    names.set('flip.test', [['127.0.0.1'], ['10.0.0.1']]);
    const q = await queue('open-rebind');
    const url = `http://flip.test:${open.port}/flip`;

    const first = await run(q, { url });
    const second = await run(q, { url });

    expect(first.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectRefused(second, /refused: flip\.test resolves to 10\.0\.0\.1, which is private \(RFC 1918\)/);
  });

  it('follows redirects up to max_redirects and fails past it', async () => {
    openRoutes.set('/hop1', (_req, res) => res.writeHead(303, { location: '/hop2' }).end());
    openRoutes.set('/hop2', (_req, res) => res.writeHead(301, { location: '/landed' }).end());
    openRoutes.set('/landed', (req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(`${req.method} landed`));
    openRoutes.set('/loop', (_req, res) => res.writeHead(302, { location: '/loop' }).end());
    const q = await queue('open-redirects');
    const before = open.seen.length;

    const twoHops = await run(q, { url: `http://127.0.0.1:${open.port}/hop1`, method: 'POST', body: { a: 1 } });
    const loop = await run(q, { url: `http://127.0.0.1:${open.port}/loop` });

    expect(twoHops.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    // 303 turns the POST into a GET.
    expect(twoHops.result).toMatchObject({ status: 200, body: 'GET landed' });
    expect(loop.state).toBe(pb.JobState.JOB_STATE_FAILED);
    expect(loop.attemptsMade).toBe(1);
    expect(loop.failureReason).toBe(`http.request: GET http://127.0.0.1:${open.port}/loop (redirected from http://127.0.0.1:${open.port}/loop) was redirected more than 2 times (processors.http_request.max_redirects)`);
    // hop1, hop2, landed; then the first request to /loop and its 2 redirects.
    expect(open.seen.slice(before)).toEqual(['/hop1', '/hop2', '/landed', '/loop', '/loop', '/loop']);
  });

  it('fails a response whose body is larger than max_response_bytes, declared or streamed', async () => {
    openRoutes.set('/declared', (_req, res) => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 200_000 }).end('y'.repeat(200_000)));
    openRoutes.set('/streamed', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      // Chunked, no Content-Length: only reading tells the size. 40 × 10 kB = 400 kB.
      for (let i = 0; i < 40; i++) res.write('z'.repeat(10_000));
      res.end();
    });
    openRoutes.set('/fits', (_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('f'.repeat(90_000)));
    const q = await queue('open-body');

    const declared = await run(q, { url: `http://127.0.0.1:${open.port}/declared` });
    const streamed = await run(q, { url: `http://127.0.0.1:${open.port}/streamed` });
    const fits = await run(q, { url: `http://127.0.0.1:${open.port}/fits` });

    expect(declared.attemptsMade).toBe(1);
    expect(declared.failureReason).toBe(
      `http.request: GET http://127.0.0.1:${open.port}/declared returned a body of 200000 bytes (Content-Length); the limit is 100000 bytes (processors.http_request.max_response_bytes)`,
    );
    expect(streamed.attemptsMade).toBe(1);
    expect(streamed.failureReason).toBe(
      `http.request: GET http://127.0.0.1:${open.port}/streamed returned a body of more than 100000 bytes; the limit is 100000 bytes (processors.http_request.max_response_bytes)`,
    );
    // Under the limit but over what a result keeps (64 KiB): completed, cut, marked truncated.
    expect(fits.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expect(fits.result).toMatchObject({ status: 200, body: 'f'.repeat(64 * 1024), truncated: true });
  });
});
