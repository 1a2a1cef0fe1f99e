// The jobmesh.v1 contract as a Python team would use it: stubs generated from proto/ with protoc and
// grpc_python_plugin, called with Debian's python3-grpcio, against a scheduler started in-process.
// Missing tools fail the test (never skip it): `.ci/run` installs them on a fresh machine.
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { type SchedulerHarness, startSchedulerHarness, uniqueQueue } from '../../services/scheduler/test/harness';

const ROOT = resolve(__dirname, '../..');
const PROTO_DIR = join(ROOT, 'proto');
const CLIENT = join(__dirname, 'python_client.py');
// Debian's interpreter, not whatever `python3` is first on PATH (pyenv, a venv): python3-grpcio is
// installed for this one.
const PYTHON = '/usr/bin/python3';
/** Where the google/protobuf well-known types (Duration, Struct, Timestamp) are. */
const WKT_INCLUDE = '/usr/include';
const APT = 'apt-get install protobuf-compiler libprotobuf-dev protobuf-compiler-grpc python3-grpcio (or run .ci/run)';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command without blocking the event loop: the scheduler under test answers from this same
 * process, so a spawnSync of its client would never get a reply.
 */
function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Throws one error naming every missing tool and how to install it. */
async function requireTools(): Promise<{ protoc: string; plugin: string }> {
  const missing: string[] = [];
  const protoc = onPath('protoc');
  if (!protoc) missing.push('`protoc` is not on PATH (Debian package protobuf-compiler)');
  // Debian's protoc ships without the well-known types; they come with libprotobuf-dev.
  if (!existsSync(join(WKT_INCLUDE, 'google/protobuf/struct.proto'))) {
    missing.push(`${WKT_INCLUDE}/google/protobuf/*.proto (Debian package libprotobuf-dev)`);
  }
  const plugin = onPath('grpc_python_plugin');
  if (!plugin) missing.push('`grpc_python_plugin` is not on PATH (Debian package protobuf-compiler-grpc)');
  const py = await run(PYTHON, ['-c', 'import grpc, google.protobuf']).catch((err: Error) => ({ code: null, stdout: '', stderr: err.message }));
  if (py.code !== 0) missing.push(`${PYTHON} cannot import grpc (Debian package python3-grpcio): ${py.stderr.trim().split('\n').pop()}`);
  if (missing.length) throw new Error(`Python interop test needs tools this machine lacks:\n- ${missing.join('\n- ')}\nInstall: ${APT}`);
  return { protoc: protoc!, plugin: plugin! };
}

async function generateStubs(protoc: string, plugin: string, out: string): Promise<void> {
  const dir = join(PROTO_DIR, 'jobmesh', 'v1');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.proto'))
    .map((f) => join(dir, f));
  const gen = await run(protoc, [
    `-I${PROTO_DIR}`,
    `-I${WKT_INCLUDE}`,
    `--plugin=protoc-gen-grpc_python=${plugin}`,
    `--python_out=${out}`,
    `--grpc_python_out=${out}`,
    ...files,
  ]);
  if (gen.code !== 0) throw new Error(`protoc failed (exit ${gen.code}):\n${gen.stderr}`);
}

let h: SchedulerHarness | undefined;
let stubDir: string | undefined;

beforeAll(async () => {
  const { protoc, plugin } = await requireTools();
  stubDir = await mkdtemp(join(tmpdir(), 'jobmesh-pystubs-'));
  await generateStubs(protoc, plugin, stubDir);
  // ownRedis: a redis-server of this test's own, even when REDIS_URL points at a shared one.
  h = await startSchedulerHarness({ ownRedis: true });
});

afterAll(async () => {
  await h?.stop();
  if (stubDir) await rm(stubDir, { recursive: true, force: true });
});

describe('Python interop', () => {
  it('creates a queue, enqueues and reads back a job, and gets NOT_FOUND for an unknown queue from Python grpcio', async () => {
    const queue = uniqueQueue('py');
    const res = await run(PYTHON, [CLIENT, h!.address, queue, stubDir!]);
    const line = res.stdout.trim().split('\n').pop() ?? '';
    let out: Record<string, unknown>;
    try {
      out = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new Error(`python_client.py printed no JSON line (exit ${res.code}).\nstdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
    }
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
