import { createServer, type Server, type Socket, connect } from 'node:net';

/**
 * A TCP proxy for network faults a test cannot get from a real network on loopback: a blackhole
 * (nothing gets through and the sockets stay open, as with a dead route or a firewall DROP) and a
 * delay.
 */
export interface TcpProxy {
  /** `127.0.0.1:<port>` of the proxy. */
  address: string;
  port: number;
  /**
   * From now on nothing passes, either way, on open connections or new ones; no socket is closed,
   * so neither end hears of it except by a timeout of its own. What is sent meanwhile is held, as
   * TCP would retransmit it, and delivered by heal() on the connections still open.
   */
  blackhole(): void;
  /** Delays every chunk by `ms` from now on (0: none). */
  delay(ms: number): void;
  /** Passes traffic again, what the blackhole held first. */
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
  /** Each socket's other end, to pass on a close held back by the blackhole. */
  const peers = new Map<Socket, Socket>();
  /** What the blackhole held, in order: delivered by heal(). */
  let held: Array<{ to: Socket; chunk: Buffer }> = [];
  const deliver = (to: Socket, chunk: Buffer): void => {
    if (holed) held.push({ to, chunk });
    else if (!to.destroyed) to.write(chunk);
  };
  const pipe = (from: Socket, to: Socket): void => {
    from.on('data', (chunk: Buffer) => {
      if (delayMs > 0 && !holed) setTimeout(() => deliver(to, chunk), delayMs);
      else deliver(to, chunk);
    });
  };
  const server: Server = createServer((client) => {
    accepted += 1;
    const upstream = connect(port, host);
    peers.set(client, upstream).set(upstream, client);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => {
        sockets.delete(s);
        peers.delete(s);
      });
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
      const backlog = held;
      held = [];
      for (const { to, chunk } of backlog) deliver(to, chunk);
      // A close the blackhole held back reaches the other end now.
      for (const [s, peer] of peers) if (peer.destroyed) s.destroy();
    },
    accepted: () => accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
