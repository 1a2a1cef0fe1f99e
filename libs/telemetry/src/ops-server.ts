import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface OpsServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  registry: Registry;
  /**
   * Readiness: true (or `{ ok: true }`) when the backend (Redis) answers; `{ ok: false, reason }`
   * says why not. /livez never calls it.
   */
  ready?: () => Promise<boolean | { ok: boolean; reason?: string }>;
  /**
   * Extra routes, e.g. the monitor's dashboard, tried after the ops paths. `req` gives the method,
   * the query string and the body. Return false to fall through to 404.
   */
  routes?: OpsRoutes;
  /** HTTPS with this certificate and key instead of HTTP; `onChange` hands over a new pair for new connections. */
  tls?: OpsTls;
}

/** The certificate the ops server serves HTTPS with, and how it learns of a new one. */
export interface OpsTls {
  cert: Buffer;
  key: Buffer;
  onChange?(listener: (pair: { cert: Buffer; key: Buffer }) => void): void;
}

/** Serves a request the ops paths did not; false when `path` is not one of its own. */
export type OpsRoutes = (path: string, res: ServerResponse, req: IncomingMessage) => boolean | Promise<boolean>;

export interface OpsServer {
  /** An https.Server (a subclass with the same request API) when `tls` was given. */
  server: Server;
  /** The bound address, e.g. "127.0.0.1:9464". */
  address: string;
  /** 'https' with `tls`, else 'http'. */
  scheme: 'http' | 'https';
  port: number;
  close(): Promise<void>;
}

/** HTTP for operators: /metrics (Prometheus), /livez (process up), /readyz (backend reachable). */
export async function startOpsServer(opts: OpsServerOptions): Promise<OpsServer> {
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    void handle(path, res, req).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`internal error: ${err.message}\n`);
    });
  };
  const tls = opts.tls;
  let server: Server;
  if (tls) {
    const https = createHttpsServer({ cert: tls.cert, key: tls.key }, onRequest);
    tls.onChange?.((pair) => https.setSecureContext(pair));
    server = https as unknown as Server;
  } else {
    server = createServer(onRequest);
  }

  async function handle(path: string, res: ServerResponse, req: IncomingMessage): Promise<void> {
    if (path === '/metrics') {
      const body = await opts.registry.metrics();
      res.writeHead(200, { 'content-type': opts.registry.contentType });
      res.end(body);
      return;
    }
    if (path === '/livez' || path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    if (path === '/readyz') {
      // A ready() that throws, at once or later, means not ready: a probe gets 503, never 500.
      const ready = opts.ready;
      const answer = ready ? await Promise.resolve().then(ready).catch(() => false) : true;
      const { ok, reason = 'Redis is not reachable' } = typeof answer === 'boolean' ? { ok: answer } : answer;
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ok ? 'ready\n' : `not ready: ${reason}\n`);
      return;
    }
    if (opts.routes && (await opts.routes(path, res, req))) return;
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    scheme: tls ? 'https' : 'http',
    address: `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
