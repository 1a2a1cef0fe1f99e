// The operators' HTTP endpoints as a Kubernetes probe and a Prometheus scraper call them, on port 0.
import { createRegistry, counter, type OpsServer, startOpsServer } from '../src';

const servers: OpsServer[] = [];

/** An ops server on 127.0.0.1:0 whose readiness is `ready`. */
async function start(ready?: () => Promise<boolean>): Promise<{ url: (path: string) => string; server: OpsServer }> {
  const registry = createRegistry();
  counter(registry, 'jobmesh_test_requests_total', 'requests seen by the test').inc(3);
  const server = await startOpsServer({ host: '127.0.0.1', port: 0, registry, ready });
  servers.push(server);
  return { server, url: (path) => `http://${server.address}${path}` };
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('startOpsServer', () => {
  it('binds a free port when asked for port 0 and reports it in address', async () => {
    const { server } = await start();
    expect(server.port).toBeGreaterThan(0);
    expect(server.address).toBe(`127.0.0.1:${server.port}`);
  });

  it('answers /livez with 200 without calling ready(), even when the backend is down', async () => {
    let calls = 0;
    const { url } = await start(async () => (calls++, false));
    const res = await fetch(url('/livez'));
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok\n');
    expect(calls).toBe(0);
  });

  it('answers /readyz with 200 when ready() resolves true', async () => {
    const { url } = await start(async () => true);
    const res = await fetch(url('/readyz'));
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ready\n');
  });

  it('answers /readyz with 503 when ready() resolves false', async () => {
    const { url } = await start(async () => false);
    const res = await fetch(url('/readyz'));
    expect(res.status).toBe(503);
    expect(await res.text()).toMatch(/^not ready/);
  });

  it('answers /readyz with 503 when ready() throws', async () => {
    const { url } = await start(async () => {
      throw new Error('connect ECONNREFUSED 127.0.0.1:1');
    });
    const res = await fetch(url('/readyz'));
    expect(res.status).toBe(503);
    expect(await res.text()).toMatch(/^not ready/);
  });

  it('answers /readyz with 503 when ready() throws before returning a promise', async () => {
    const { url } = await start(() => {
      throw new Error('client is closed');
    });
    const res = await fetch(url('/readyz'));
    expect(res.status).toBe(503);
    expect(await res.text()).toMatch(/^not ready/);
  });

  it('asks ready() again on every /readyz, so readiness follows the backend', async () => {
    let up = false;
    const { url } = await start(async () => up);
    expect((await fetch(url('/readyz'))).status).toBe(503);
    up = true;
    expect((await fetch(url('/readyz'))).status).toBe(200);
  });

  it('answers /readyz with 200 when no ready() is given', async () => {
    const { url } = await start();
    expect((await fetch(url('/readyz'))).status).toBe(200);
  });

  it('serves /metrics in the Prometheus text format with jobmesh_ metrics', async () => {
    const { url } = await start();
    const res = await fetch(url('/metrics'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const body = await res.text();
    expect(body).toMatch(/^jobmesh_test_requests_total 3$/m);
    // Node's default metrics carry the jobmesh_ prefix too.
    expect(body).toMatch(/^jobmesh_process_cpu_user_seconds_total /m);
  });

  it('ignores the query string when routing', async () => {
    const { url } = await start(async () => true);
    expect((await fetch(url('/readyz?verbose=1'))).status).toBe(200);
  });

  it('answers an unknown path with 404', async () => {
    const { url } = await start();
    const res = await fetch(url('/nope'));
    expect(res.status).toBe(404);
    expect(await res.text()).toBe('not found\n');
  });

  it('serves extra routes before the 404', async () => {
    const registry = createRegistry({ defaultMetrics: false });
    const server = await startOpsServer({
      host: '127.0.0.1',
      port: 0,
      registry,
      routes: (path, res) => {
        if (path !== '/dashboard') return false;
        res.writeHead(200, { 'content-type': 'text/html' }).end('<h1>jobs</h1>');
        return true;
      },
    });
    servers.push(server);
    const page = await fetch(`http://${server.address}/dashboard`);
    expect(page.status).toBe(200);
    expect(await page.text()).toBe('<h1>jobs</h1>');
    expect((await fetch(`http://${server.address}/other`)).status).toBe(404);
  });

  it('gives extra routes the request: its method, query string and body', async () => {
    const registry = createRegistry({ defaultMetrics: false });
    const server = await startOpsServer({
      host: '127.0.0.1',
      port: 0,
      registry,
      routes: async (path, res, req) => {
        if (path !== '/echo') return false;
        let body = '';
        for await (const chunk of req) body += String(chunk);
        res.writeHead(200, { 'content-type': 'text/plain' }).end(`${req.method} ${req.url} ${body}`);
        return true;
      },
    });
    servers.push(server);
    const res = await fetch(`http://${server.address}/echo?x=1`, { method: 'POST', body: 'hello' });
    expect(await res.text()).toBe('POST /echo?x=1 hello');
  });

  it('stops accepting connections after close()', async () => {
    const { url, server } = await start();
    expect((await fetch(url('/livez'))).status).toBe(200);
    await server.close();
    await expect(fetch(url('/livez'))).rejects.toThrow();
  });
});
