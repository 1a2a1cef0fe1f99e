// How RemoteWorker grants credit, seen from a real gRPC server standing in for the worker-pool:
// the credits freed by jobs that end in one turn of the event loop go out as one Credit message
// (before, each job's end sent a Credit of 1: a message a job).
import type { ServerDuplexStream } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { defineProcessor, RemoteWorker } from '@jobmesh/sdk';
import { eventually, startGrpcServer } from '@jobmesh/testing';

it('sends one Credit for the jobs that ended together, not one a job', async () => {
  const credits: number[] = [];
  const completed: string[] = [];
  let assigned = 0;
  const server = await startGrpcServer(pb.WorkerServiceService, {
    connect: (call: ServerDuplexStream<pb.ConnectRequest, pb.ConnectResponse>) => {
      call.on('data', (m: pb.ConnectRequest) => {
        if (m.hello) call.write({ welcome: pb.Welcome.fromPartial({ sessionId: 's1', heartbeatInterval: { seconds: 10, nanos: 0 } }) });
        if (m.complete) completed.push(m.complete.jobId);
        if (!m.credit) return;
        credits.push(m.credit.n);
        // The first grant is answered with five Assignments written together, as the
        // worker-pool does when it has that many jobs waiting.
        if (credits.length > 1) return;
        for (let i = 0; i < m.credit.n; i++) {
          const id = String(++assigned);
          call.write({ assignment: pb.Assignment.fromPartial({ job: { id, queue: 'q', name: 'j', data: {} }, leaseToken: `t${id}`, attempt: 1 }) });
        }
      });
      call.on('end', () => call.end());
    },
  });
  // Each job ends once all five have started, so that the five end in one turn whichever reads
  // of the socket their Assignments came in.
  let started = 0;
  let release!: () => void;
  const allStarted = new Promise<void>((r) => (release = r));
  const run = async (): Promise<string> => {
    if (++started === 5) release();
    await allStarted;
    return 'ok';
  };
  const w = new RemoteWorker({ address: server.address, workerId: 'credits', concurrency: 5, processors: [defineProcessor({ queue: 'q', name: 'j', process: run })] });
  try {
    await w.start();
    await eventually(() => completed.length === 5 && credits.length >= 2, 10_000, 'five completions and a second grant');
    // The five ended in one turn: one Credit gives back all five.
    expect(credits).toEqual([5, 5]);
    expect(completed).toEqual(['1', '2', '3', '4', '5']);
  } finally {
    await w.stop({ graceMs: 0 });
    await server.stop();
  }
});
