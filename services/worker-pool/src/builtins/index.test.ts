import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type LoadedConfigFile, parseConfig } from '@jobmesh/config';
import type { JobContext, JobInfo } from '@jobmesh/sdk';
import { builtinProcessors, parseRetryAfter } from '.';

const config = (builtins: Partial<Record<'http.request' | 'email.send', boolean>> = {}): LoadedConfigFile => ({
  queues: [],
  processors: { modules: [], builtins: { 'http.request': true, 'email.send': true, ...builtins } },
});

describe('builtinProcessors', () => {
  it('returns http.request and email.send for every queue by default', () => {
    expect(builtinProcessors({ config: config() }).map((p) => [p.queue, p.name])).toEqual([
      ['*', 'http.request'],
      ['*', 'email.send'],
    ]);
  });

  it('leaves out the built-ins the config file turns off', () => {
    expect(builtinProcessors({ config: config({ 'email.send': false }) }).map((p) => p.name)).toEqual(['http.request']);
    expect(builtinProcessors({ config: config({ 'http.request': false }) }).map((p) => p.name)).toEqual(['email.send']);
    expect(builtinProcessors({ config: config({ 'http.request': false, 'email.send': false }) })).toEqual([]);
  });

  it('includes email.send without SMTP settings, so start-up does not depend on them', () => {
    expect(builtinProcessors({ config: config(), smtpUrl: undefined }).map((p) => p.name)).toContain('email.send');
  });
});

describe('builtinProcessors: http.request and JOBMESH_MODE', () => {
  const job = (queue: string, url: string): JobInfo => ({ id: '1', queue, name: 'http.request', data: { url }, attempt: 1, maxAttempts: 1, createdAt: new Date() });
  const ctx = { signal: new AbortController().signal } as JobContext;
  const httpRequest = (mode: 'development' | 'production', yaml = ''): ((queue: string, url: string) => Promise<unknown>) => {
    const def = builtinProcessors({ config: parseConfig(yaml), mode }).find((p) => p.name === 'http.request')!;
    return async (queue, url) => def.process(job(queue, url), ctx);
  };
  // A port just closed: a request that gets through fails with ECONNREFUSED instead.
  let port: number;
  let url: string;
  beforeAll(async () => {
    const server = createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
    url = `http://127.0.0.1:${port}/`;
    server.close();
    await once(server, 'close');
  });

  it('refuses a loopback destination in production mode, as an unrecoverable failure', async () => {
    await expect(httpRequest('production')('q', url)).rejects.toMatchObject({
      name: 'UnrecoverableError',
      message: `http.request: GET ${url} refused: 127.0.0.1 is loopback; add "127.0.0.1:${port}" to processors.http_request.allow to permit it`,
    });
  });

  it('lets the queues of the config file\'s allow-list through in production mode, and only them', async () => {
    const run = httpRequest('production', 'processors:\n  http_request:\n    allow: [{ queues: ["hooks-*"], to: ["127.0.0.0/8"] }]\n');
    await expect(run('hooks-eu', url)).rejects.toMatchObject({ name: 'Error', message: expect.stringMatching(/failed: fetch failed: .*ECONNREFUSED/) });
    await expect(run('billing', url)).rejects.toMatchObject({ name: 'UnrecoverableError', message: expect.stringContaining('refused: 127.0.0.1 is loopback') });
  });

  it('does not refuse internal destinations in development mode', async () => {
    await expect(httpRequest('development')('q', url)).rejects.toMatchObject({ name: 'Error', message: expect.stringMatching(/ECONNREFUSED/) });
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');

  it('reads delay-seconds as milliseconds', () => {
    expect(parseRetryAfter('1', now)).toBe(1000);
    expect(parseRetryAfter(' 120 ', now)).toBe(120_000);
    expect(parseRetryAfter('0', now)).toBe(0);
  });

  it('reads an HTTP date as the time left until it, and a past date as 0', () => {
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:59:00 GMT', now)).toBe(0);
  });

  it('returns undefined when the header is absent or unreadable', () => {
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('-5', now)).toBeUndefined();
  });
});
