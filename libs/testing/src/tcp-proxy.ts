import { createServer, type Server, type Socket, connect } from 'node:net';

/**
 * A TCP proxy for network faults a test cannot get from a real network on loopback: a blackhole
 * (nothing gets through and the sockets stay open, as with a dead route or a firewall DROP), a
 * drop (every connection reset, as by a firewall REJECT or a peer's restart) and a delay.
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
  /**
   * Resets every open connection, both ends (a TCP RST: each end sees ECONNRESET), and from now
   * on resets every new connection as soon as it is accepted, until heal(). What was still held
   * or delayed is lost with the connections.
   */
  drop(): void;
  /** Delays every chunk by `ms` from now on (0: none); each direction keeps its order. */
  delay(ms: number): void;
  /** Passes traffic again, what the blackhole held first, in order; ends a drop and a delay. */
  heal(): void;
  /** Connections accepted so far. */
  accepted(): number;
  /** Connections reset so far by drop() (open ones and new ones refused while dropping). */
  resets(): number;
  /** Connections open now (client side). */
  open(): number;
  close(): Promise<void>;
}

/** One direction of one connection: chunks waiting to be written to `to`, in order. */
interface Lane {
  to: Socket;
  queue: Array<{ chunk: Buffer; due: number }>;
  timer?: NodeJS.Timeout;
}

/** Starts a proxy on a free port of 127.0.0.1 that forwards to `target` (`host:port`). */
export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const i = target.lastIndexOf(':');
  const host = target.slice(0, i);
  const port = Number(target.slice(i + 1));
  let holed = false;
  let dropping = false;
  let delayMs = 0;
  let accepted = 0;
  let resets = 0;
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();
  /** Each socket's other end, to pass on a close held back by the blackhole. */
  const peers = new Map<Socket, Socket>();
  const lanes = new Set<Lane>();

  /** Writes what is due on `lane`, in order; waits for the rest (and for the end of a blackhole). */
  const pump = (lane: Lane): void => {
    clearTimeout(lane.timer);
    lane.timer = undefined;
    while (!holed && lane.queue.length) {
      const wait = lane.queue[0]!.due - Date.now();
      if (wait > 0) {
        lane.timer = setTimeout(() => pump(lane), wait);
        return;
      }
      const { chunk } = lane.queue.shift()!;
      if (!lane.to.destroyed) lane.to.write(chunk);
    }
  };
  const pipe = (from: Socket, to: Socket): void => {
    const lane: Lane = { to, queue: [] };
    lanes.add(lane);
    from.on('data', (chunk: Buffer) => {
      lane.queue.push({ chunk, due: Date.now() + delayMs });
      if (!lane.timer) pump(lane);
    });
    from.on('close', () => {
      clearTimeout(lane.timer);
      lanes.delete(lane);
    });
  };
  const reset = (s: Socket): void => {
    if (!s.destroyed) s.resetAndDestroy();
  };
  const server: Server = createServer((client) => {
    accepted += 1;
    client.on('error', () => undefined);
    if (dropping) {
      resets += 1;
      reset(client);
      return;
    }
    const upstream = connect(port, host);
    clients.add(client);
    peers.set(client, upstream).set(upstream, client);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => {
        sockets.delete(s);
        clients.delete(s);
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
    drop: () => {
      dropping = true;
      holed = false;
      resets += clients.size;
      for (const s of [...sockets]) reset(s);
    },
    delay: (ms) => void (delayMs = ms),
    heal: () => {
      holed = false;
      dropping = false;
      delayMs = 0;
      // What the blackhole held (and what is still delayed) goes now, each lane in its order.
      for (const lane of lanes) {
        for (const item of lane.queue) item.due = 0;
        pump(lane);
      }
      // A close the blackhole held back reaches the other end now.
      for (const [s, peer] of peers) if (peer.destroyed) s.destroy();
    },
    accepted: () => accepted,
    resets: () => resets,
    open: () => clients.size,
    close: async () => {
      for (const lane of lanes) clearTimeout(lane.timer);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
