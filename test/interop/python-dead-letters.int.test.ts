// DeadLetterService as a Python team would use it: stubs generated from proto/ with protoc and
// grpc_python_plugin, called with Debian's python3-grpcio, against a scheduler, a worker-pool and
// a dead-letter service started in-process. A `fatal` job is dead-lettered, quarantined, refused a
// replay, released, replayed with a data patch that fixes it, and completes.
// Missing tools fail the test (never skip it): `.ci/run` installs them on a fresh machine.
import { join } from 'node:path';
import { type DeadLetterHarness, startDeadLetterHarness, uniqueQueue } from '@jobmesh/dead-letter/testing';
import { cleanupPythonStubs, lastJsonLine, pythonStubs, runPython } from './python';

const SCRIPT = join(__dirname, 'python_dead_letters.py');

let h: DeadLetterHarness | undefined;
let stubDir: string | undefined;
let dlqAddress: string | undefined;

beforeAll(async () => {
  stubDir = await pythonStubs();
  h = await startDeadLetterHarness();
  const { service } = await h.startDeadLetter();
  dlqAddress = `127.0.0.1:${service.grpcPort}`;
});

afterAll(async () => {
  await h?.stop();
  await cleanupPythonStubs();
});

describe('Python interop: dead letters', () => {
  it('captures, quarantines, refuses, releases and replays a dead letter with a data patch from Python grpcio', async () => {
    const queue = uniqueQueue('pydlq');
    const res = await runPython(SCRIPT, [h!.address, dlqAddress!, queue, stubDir!], { timeoutMs: 50_000 });
    const out = lastJsonLine(res, 'python_dead_letters.py');
    const dlId = out.dead_letter_id;
    const newId = (out.replayed as Array<{ id?: unknown }> | undefined)?.[0]?.id;
    // Whole result first: on a failure, jest's diff shows every check and any error at once.
    expect(out).toMatchObject({
      ok: true,
      dead_letter: {
        id: dlId,
        job: { id: out.original_id, queue, name: 'fatal', data: { order: 7 } },
        category: 'UNRECOVERABLE',
        severity: 'SEVERITY_WARNING',
        errors: [{ attempt: 1, error_name: 'UnrecoverableError' }],
        quarantined: false,
        replays: 0,
      },
      original_state: 'JOB_STATE_DEAD_LETTERED',
      quarantine_updated: 1,
      quarantined_replay: { code: 'FAILED_PRECONDITION' },
      release_updated: 1,
      replayed: [{ dead_letter_id: dlId, queue, id: newId }],
      new_job: { id: newId, name: 'fatal', state: 'JOB_STATE_COMPLETED', data: { order: 7, fixed: true }, replay_of: dlId, result: { fixed: true } },
      replays: [{ queue, id: newId }],
      stats: { total: 1, counts: [{ queue, category: 'UNRECOVERABLE', count: 1 }] },
      checks: {
        queue_created: true,
        enqueue_returned_id: true,
        listed_once: true,
        dead_letter_job: true,
        category_unrecoverable: true,
        severity_warning: true,
        one_unrecoverable_error: true,
        original_dead_lettered: true,
        quarantined: true,
        quarantined_replay_refused: true,
        released: true,
        replayed_one: true,
        new_job_completed: true,
        new_job_data_patched: true,
        new_job_replay_of: true,
        replay_recorded: true,
        stats_total_one: true,
      },
    });
    expect(out).not.toHaveProperty('error');
    expect(typeof dlId).toBe('string');
    expect(dlId).toMatch(new RegExp(`^${queue}:${String(out.original_id)}:1`));
    expect(res.code).toBe(0);
  });
});
