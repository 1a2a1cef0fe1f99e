// Raw BullMQ's side of the processing scenarios, as a process of its own like the worker-pool: a
// plain BullMQ Worker (no options beyond concurrency) on the queue the bench filled. The bench
// counts its completions with QueueEvents in its own process, as it does the worker-pool's, so
// neither side shares an event loop with the bench's instruments.
//
// Environment: REDIS_URL, RAW_QUEUE, RAW_PREFIX, RAW_CONCURRENCY, and RAW_JOBS=noop (each job
// returns null) or fail (each job fails for good with an UnrecoverableError).
import { UnrecoverableError, Worker } from 'bullmq';

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const { hostname, port } = new URL(required('REDIS_URL'));
const fail = required('RAW_JOBS') === 'fail';
const worker = new Worker(required('RAW_QUEUE'), fail ? () => Promise.reject(new UnrecoverableError('bench failure')) : async () => null, {
  connection: { host: hostname, port: Number(port), maxRetriesPerRequest: null },
  prefix: required('RAW_PREFIX'),
  concurrency: Number(required('RAW_CONCURRENCY')),
});
worker.on('error', (err) => console.error(`raw worker: ${err.message}`));
void worker.waitUntilReady().then(() => {
  // The line spawnService waits for, in the services' log format (no gRPC server: port 0).
  process.stdout.write(`${JSON.stringify({ grpc: '', http: '', msg: 'raw worker running' })}\n`);
});
process.once('SIGTERM', () => {
  void worker.close().then(() => process.exit(0));
});
