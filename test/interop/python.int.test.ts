// The jobmesh.v1 contract as a Python team would use it: stubs generated from proto/ with protoc and
// grpc_python_plugin, called with Debian's python3-grpcio, against a scheduler started in-process.
// Missing tools fail the test (never skip it): `.ci/run` installs them on a fresh machine.
import { join } from 'node:path';
import { type SchedulerHarness, startSchedulerHarness, uniqueQueue } from '@jobmesh/scheduler/testing';
import { cleanupPythonStubs, lastJsonLine, pythonStubs, runPython } from './python';

const CLIENT = join(__dirname, 'python_client.py');

let h: SchedulerHarness | undefined;
let stubDir: string | undefined;

beforeAll(async () => {
  stubDir = await pythonStubs();
  // ownRedis: a redis-server of this test's own, even when REDIS_URL points at a shared one.
  h = await startSchedulerHarness({ ownRedis: true });
});

afterAll(async () => {
  await h?.stop();
  await cleanupPythonStubs();
});

describe('Python interop', () => {
  it('creates a queue, enqueues and reads back a job, and gets NOT_FOUND for an unknown queue from Python grpcio', async () => {
    const queue = uniqueQueue('py');
    const res = await runPython(CLIENT, [h!.address, queue, stubDir!], { timeoutMs: 30_000 });
    const out = lastJsonLine(res, 'python_client.py');
    // Whole result first: on a failure, jest's diff shows every check and any error at once.
    expect(out).toMatchObject({
      ok: true,
      created_queue: queue,
      job: { id: out.enqueued_id, queue, name: 'py.hello', data: { hello: 'world' }, state: 'JOB_STATE_WAITING' },
      unknown_queue: { code: 'NOT_FOUND' },
      checks: {
        queue_created: true,
        enqueue_returned_id: true,
        id: true,
        name: true,
        data: true,
        state_waiting: true,
        unknown_queue_not_found: true,
      },
    });
    expect(out).not.toHaveProperty('error');
    expect(res.code).toBe(0);
  });
});
