import { type ClientDuplexStream, credentials, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import type { AnyProcessorDefinition } from '@jobmesh/sdk';
import { useHarness } from '@jobmesh/testing';
import { eventually, type PoolHarness, startPoolHarness } from '../src/testing';

/** A raw Connect stream, with every server message collected in order, and how it ended. */
export interface RawStream {
  stream: ClientDuplexStream<pb.ConnectRequest, pb.ConnectResponse>;
  /** Every server message, a batch's one by one. */
  got: pb.ConnectResponse[];
  /** What the server wrote, as written: a batch is one. */
  frames: pb.ConnectResponse[];
  client: pb.WorkerServiceClient;
  /** Set once the stream ended: the error (status) or null for OK. */
  ended?: { code: number; details: string } | null;
  assignments(): pb.Assignment[];
  hello(h: Partial<pb.Hello>): Promise<pb.Welcome>;
  /** Heartbeats every assignment's token every 300 ms (on by default); off: leases lapse. */
  heartbeats(on: boolean): void;
  close(): void;
}

export function connect(address: string): RawStream {
  const client = new pb.WorkerServiceClient(address, credentials.createInsecure());
  const stream = client.connect();
  const got: pb.ConnectResponse[] = [];
  const frames: pb.ConnectResponse[] = [];
  const raw: RawStream = {
    stream,
    got,
    frames,
    client,
    assignments: () => got.filter((m) => m.assignment).map((m) => m.assignment!),
    hello: async (h) => {
      stream.write({ hello: { workerId: 'w', queues: [], maxInFlight: 1, labels: {}, sdk: 'test', jobNames: [], acceptsBatches: false, ...h } });
      return eventually(() => got.find((m) => m.welcome)?.welcome, 5000, 'Welcome');
    },
    heartbeats: (on) => {
      clearInterval(beat);
      if (on) {
        beat = setInterval(() => {
          const tokens = raw.assignments().map((a) => a.leaseToken);
          if (tokens.length && raw.ended === undefined) stream.write({ heartbeat: { leaseTokens: tokens } });
        }, 300);
        beat.unref();
      }
    },
    close: () => {
      clearInterval(beat);
      stream.cancel();
      client.close();
    },
  };
  let beat: NodeJS.Timeout | undefined;
  raw.heartbeats(true);
  stream.on('data', (m: pb.ConnectResponse) => {
    frames.push(m);
    if (m.batch) got.push(...m.batch.messages);
    else got.push(m);
  });
  stream.on('error', (e: ServiceError) => {
    raw.ended ??= { code: e.code, details: e.details };
  });
  stream.on('status', (s: { code: number; details: string }) => {
    raw.ended ??= s.code === 0 ? null : { code: s.code, details: s.details };
  });
  return raw;
}

export function unaryClient(address: string): pb.WorkerServiceClient {
  return new pb.WorkerServiceClient(address, credentials.createInsecure());
}

/** Calls a unary method of a grpc-js client as a promise. */
export function call<Req, Res>(client: pb.WorkerServiceClient, method: string, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (r: Req, cb: (e: ServiceError | null, r: Res) => void) => void>)[method]!.call(client, req, (e, r) => (e ? reject(e) : resolve(r)));
  });
}

/** A scheduler and one worker-pool replica that remote workers connect to, for a test file. */
export interface RemotePool extends PoolHarness {
  /** The replica's gRPC address. */
  address: string;
  /** A raw Connect stream to the replica, closed when the harness stops. */
  stream(): RawStream;
}

/**
 * useHarness for remote-worker tests: the replica runs `processors` (none by default: only the
 * built-ins) with `env` (e.g. a short JOBMESH_LEASE_TTL).
 */
export function useRemotePool(env: Record<string, string> = {}, processors: AnyProcessorDefinition[] = []): RemotePool {
  return useHarness('remote pool', async () => {
    const h = await startPoolHarness();
    const pool = await h.startPool(processors, env);
    const address = `127.0.0.1:${pool.grpcPort}`;
    const open: RawStream[] = [];
    return {
      ...h,
      address,
      stream: () => {
        const s = connect(address);
        open.push(s);
        return s;
      },
      stop: async () => {
        for (const s of open) s.close();
        await h.stop();
      },
    };
  });
}
