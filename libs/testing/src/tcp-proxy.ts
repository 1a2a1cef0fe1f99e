import { createServer, type Server, type Socket, connect } from 'node:net';

/**
 * A TCP proxy for network faults a test cannot get from a real network on loopback: a blackhole
 * (packets dropped, sockets left open, as a dead route or a firewall DROP does) and a delay.
 */
export interface TcpProxy {
  /** `127.0.0.1:<port>` of the proxy. */
  address: string;
  port: number;
  /**
   * From now on nothing passes, either way, on open connections or new ones; no socket is closed,
   * so neither end hears of it except by a timeout of its own.
   */
  blackhole(): void;
  /** Delays every chunk by `ms` from now on (0: none). */
  delay(ms: number): void;
  /** Passes traffic again, and what was held back by a delay; what a blackhole dropped is gone. */
  heal(): void;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

/** Starts a proxy on a free port of 127.0.0.1 that forwards to `target` (`host:port`). */
export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const i = target.lastIndexOf(':');
  const host = target.slice(0, i);
  const port = Number(target.slice(i + 1));
  let holed = false;
  let delayMs = 0;
  let accepted = 0;
  const sockets = new Set<Socket>();
  const pipe = (from: Socket, to: Socket): void => {
    from.on('data', (chunk: Buffer) => {
      if (holed) return;
      if (delayMs > 0) setTimeout(() => !holed && !to.destroyed && to.write(chunk), delayMs);
      else if (!to.destroyed) to.write(chunk);
    });
  };
  const server: Server = createServer((client) => {
    accepted += 1;
    const upstream = connect(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      // A reset from either side ends the pair; in a blackhole nothing is passed on, closes included.
      s.on('error', () => undefined);
    }
    pipe(client, upstream);
    pipe(upstream, client);
    client.on('close', () => !holed && upstream.destroy());
    upstream.on('close', () => !holed && client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const bound = (server.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${bound}`,
    port: bound,
    blackhole: () => void (holed = true),
    delay: (ms) => void (delayMs = ms),
    heal: () => {
      holed = false;
      delayMs = 0;
    },
    accepted: () => accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
