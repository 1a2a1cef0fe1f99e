import { createServer, type Server, type Socket, connect } from 'node:net';

/**
 * A TCP proxy between the scheduler and Redis, for what a real Redis cannot be asked to do: count
 * round trips, and lose a connection at a chosen moment (after Redis applied a request but before
 * its reply reached the scheduler, or before the request reached Redis).
 */
export interface RedisProxy {
  /** `redis://127.0.0.1:<port>` of the proxy. */
  url: string;
  /**
   * Round trips so far, over every connection: a round trip starts when the client sends data
   * after Redis last answered on that connection (or after it opened). A pipeline or a MULTI
   * block written at once is one round trip however many commands it holds.
   */
  roundTrips(): number;
  /** The round trips made while `fn` ran (by anyone using the proxy). */
  roundTripsDuring(fn: () => Promise<unknown>): Promise<number>;
  /**
   * Arms a fault for the next request (the next round trip on any connection) whose first bytes
   * contain `match`, in any case (any request when unset; e.g. 'MULTI' for a transaction): `'reply'` lets it
   * reach Redis, waits for Redis's answer and then cuts the connection instead of passing the
   * answer on, so the write happened and the client never hears of it; `'request'` cuts the
   * connection before the request reaches Redis; `'midway'` passes on the first piece of the
   * request (the first chunk read; a large request arrives in several) and then cuts.
   * Resolves when the fault has fired.
   */
  cutNext(where: Where, match?: string): Promise<void>;
  close(): Promise<void>;
}

type Where = 'reply' | 'request' | 'midway';

interface Pair {
  client: Socket;
  server: Socket;
  /** Redis has answered since the client last sent: the next client data starts a round trip. */
  idle: boolean;
}

export async function startRedisProxy(target: { port: number; host?: string }): Promise<RedisProxy> {
  const pairs = new Set<Pair>();
  let trips = 0;
  let armed: { where: Where; match?: string; fired: () => void; pair?: Pair } | undefined;

  const cut = (p: Pair): void => {
    p.client.destroy();
    p.server.destroy();
  };

  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host ?? '127.0.0.1');
    // As Redis and ioredis do: without it, a reply written in pieces waits on delayed ACKs (~40 ms).
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const pair: Pair = { client, server: upstream, idle: true };
    pairs.add(pair);
    const drop = (): void => {
      pairs.delete(pair);
      cut(pair);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.on('data', (chunk: Buffer) => {
      if (pair.idle) {
        trips += 1;
        pair.idle = false;
        if (armed && !armed.pair && (!armed.match || chunk.toString('latin1').toLowerCase().includes(armed.match.toLowerCase()))) {
          if (armed.where !== 'reply') {
            const { fired, where } = armed;
            armed = undefined;
            const cutNow = (): void => {
              drop();
              fired();
            };
            if (where === 'midway') upstream.write(chunk, cutNow);
            else cutNow();
            return;
          }
          armed.pair = pair;
        }
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      pair.idle = true;
      if (armed?.pair === pair) {
        const { fired } = armed;
        armed = undefined;
        drop();
        fired();
        return;
      }
      client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `redis://127.0.0.1:${port}`,
    roundTrips: () => trips,
    roundTripsDuring: async (fn) => {
      const before = trips;
      await fn();
      return trips - before;
    },
    cutNext: (where, match) => new Promise<void>((fired) => (armed = { where, match, fired })),
    close: () =>
      new Promise<void>((resolve) => {
        for (const p of pairs) cut(p);
        server.close(() => resolve());
      }),
  };
}
