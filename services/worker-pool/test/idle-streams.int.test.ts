import { Client, connectivityState, credentials, Metadata, status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { eventually } from '../src/testing';
import { useRemotePool } from './remote-helpers';

// Streams that never send must not hold the server: a Connect stream that sends no Hello is
// ended after JOBMESH_HELLO_TIMEOUT, and while many are open, other clients are served.

/** A Connect stream on a connection of its own that sends nothing; resolves with its status. */
function silentConnect(address: string): { client: Client; ended: Promise<{ code: number; details: string }> } {
  // A local subchannel pool: each client gets its own TCP connection, as separate processes would.
  const client = new Client(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const call = client.makeBidiStreamRequest('/jobmesh.v1.WorkerService/Connect', (b: Buffer) => b, (b: Buffer) => b, new Metadata(), {});
  call.on('data', () => undefined);
  call.on('error', () => undefined);
  const ended = new Promise<{ code: number; details: string }>((resolve) => call.on('status', resolve));
  return { client, ended };
}

describe('one silent stream', () => {
  const h = useRemotePool({ JOBMESH_HELLO_TIMEOUT: '4s' });

  it('ends a Connect stream that sends no Hello with INVALID_ARGUMENT after the Hello timeout', async () => {
    const started = Date.now();
    const { client, ended } = silentConnect(h.address);
    try {
      await expect(ended).resolves.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('hello: was not sent within 4000 ms') });
      expect(Date.now() - started).toBeGreaterThanOrEqual(3900);
    } finally {
      client.close();
    }
  });
});

// Connecting 1,000 clients takes a few seconds on a loaded machine; the Hello timeout here is
// long enough that they are all open, and still open, when the other client is answered.
describe('1,000 silent streams', () => {
  const h = useRemotePool({ JOBMESH_HELLO_TIMEOUT: '12s' });

  it('serves other clients while 1,000 connections hold silent Connect streams, and ends them all', async () => {
    const queue = await h.newQueue('busy');
    const silent = Array.from({ length: 1000 }, () => silentConnect(h.address));
    let endedEarly = 0;
    for (const s of silent) void s.ended.then(() => (endedEarly += 1));
    try {
      // Every one of them connected (its stream is open on the server) within the Hello timeout.
      await eventually(() => silent.every((s) => s.client.getChannel().getConnectivityState(false) === connectivityState.READY), 10_000, '1,000 connections');
      // Another client, on its own connection, is answered promptly meanwhile.
      const other = new pb.WorkerServiceClient(h.address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
      try {
        const started = Date.now();
        const workers = await new Promise<pb.ListWorkersResponse>((resolve, reject) =>
          other.listWorkers({ queue }, new Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res))),
        );
        // The pool itself only: a stream that said no Hello is no worker.
        expect(workers.workers.map((w) => w.sdk)).toEqual(['jobmesh-worker-pool']);
        expect(Date.now() - started).toBeLessThan(2000);
        // ...while every silent stream was still open.
        expect(endedEarly).toBe(0);
      } finally {
        other.close();
      }
      const ends = await eventually(async () => {
        const settled = await Promise.all(silent.map((s) => Promise.race([s.ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), 10))])));
        return settled.every((e) => e !== undefined) && settled;
      }, 30_000, 'every silent stream to be ended');
      expect(new Set(ends.map((e) => e.code))).toEqual(new Set([status.INVALID_ARGUMENT]));
    } finally {
      for (const s of silent) s.client.close();
    }
  });
});
