// The transport's limit on this machine: a bare grpc-js server, as a process of its own like the
// scheduler, that answers EnqueueJob at once with a job made from the request (no Redis, no
// validation), with the same messages, serialisation and channel options as the real call. The
// `transport-echo` scenario divides EnqueueJob's rate by this one's.
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';

function enqueueJob(call: ServerUnaryCall<pb.EnqueueJobRequest, pb.EnqueueJobResponse>, callback: sendUnaryData<pb.EnqueueJobResponse>): void {
  const { queue, job } = call.request;
  const now = new Date();
  callback(null, {
    job: pb.Job.fromPartial({ id: 'echo', queue, name: job?.name, state: pb.JobState.JOB_STATE_WAITING, options: job?.options, createdAt: now }),
    deduplicated: false,
  });
}

const server = new Server();
// Only EnqueueJob: any other method answers UNIMPLEMENTED.
server.addService(pb.SchedulerServiceService, { enqueueJob });
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  // The line spawnService waits for, in the services' log format.
  process.stdout.write(`${JSON.stringify({ grpc: `127.0.0.1:${port}`, http: '', msg: 'echo listening' })}\n`);
});
process.once('SIGTERM', () => {
  server.forceShutdown();
  process.exit(0);
});
