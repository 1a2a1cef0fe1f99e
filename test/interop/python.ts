// Shared by the Python interop tests: Debian's interpreter, the jobmesh.v1 stubs generated once per
// test file with examples/python-worker/gen_stubs.sh (protoc + grpc_python_plugin), and a way to
// run a command without blocking the event loop. Missing tools fail the test (never skip it):
// `.ci/run` installs them on a fresh machine.
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';

export const ROOT = resolve(__dirname, '../..');
/**
 * Debian's interpreter, not whatever `python3` is first on PATH (pyenv, a venv): python3-grpcio
 * is installed for this one.
 */
export const PYTHON = '/usr/bin/python3';
const GEN = join(ROOT, 'examples/python-worker/gen_stubs.sh');
/** Where the google/protobuf well-known types (Duration, Struct, Timestamp) are; gen_stubs.sh's default. */
const WKT_INCLUDE = process.env.WKT_INCLUDE || '/usr/include';
const APT = 'apt-get install protobuf-compiler libprotobuf-dev protobuf-compiler-grpc python3-grpcio (or run .ci/run)';

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** After this long the process group is killed (SIGKILL). Default 60 s. */
  timeoutMs?: number;
  /** Called with the child once spawned, e.g. to kill its group in afterAll. */
  onSpawn?: (child: ChildProcess) => void;
}

/** Sends `sig` to the process group of `child` (spawned with `detached: true`), if it still runs. */
export function killGroup(child: ChildProcess, sig: NodeJS.Signals = 'SIGTERM'): void {
  if (!child.pid || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    // already gone
  }
}

/**
 * Runs a command in its own process group without blocking the event loop: the servers under test
 * answer from this same process, so a spawnSync of their client would never get a reply. The whole
 * group is killed after `timeoutMs`, so nothing it started outlives it.
 */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, detached: true });
    opts.onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), opts.timeoutMs ?? 60_000);
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', (err) => {
      clearTimeout(timer);
      fail(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

/** Runs a Python script with Debian's interpreter. */
export function runPython(script: string, args: string[], opts: RunOptions = {}): Promise<Run> {
  return run(PYTHON, [script, ...args], opts);
}

/**
 * The JSON object a checking script printed as its last stdout line; throws with its whole output
 * when there is none.
 */
export function lastJsonLine(res: Run, script: string): Record<string, unknown> {
  const line = res.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`${script} printed no JSON line (exit ${res.code}).\nstdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
  }
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

/** Throws one error naming every missing tool and the Debian packages that provide them. */
async function requireTools(): Promise<void> {
  const missing: string[] = [];
  if (!onPath('protoc')) missing.push('`protoc` is not on PATH (Debian package protobuf-compiler)');
  // Debian's protoc ships without the well-known types; they come with libprotobuf-dev.
  if (!existsSync(join(WKT_INCLUDE, 'google/protobuf/struct.proto'))) {
    missing.push(`${WKT_INCLUDE}/google/protobuf/*.proto (Debian package libprotobuf-dev)`);
  }
  if (!onPath('grpc_python_plugin')) missing.push('`grpc_python_plugin` is not on PATH (Debian package protobuf-compiler-grpc)');
  const py = await run(PYTHON, ['-c', 'import grpc, google.protobuf'], { timeoutMs: 30_000 }).catch((err: Error) => ({ code: null, stdout: '', stderr: err.message }));
  if (py.code !== 0) {
    missing.push(`${PYTHON} cannot import grpc and google.protobuf (Debian package python3-grpcio, which brings python3-protobuf): ${py.stderr.trim().split('\n').pop()}`);
  }
  if (missing.length) throw new Error(`Python interop tests need tools this machine lacks:\n- ${missing.join('\n- ')}\nInstall: ${APT}`);
}

let stubs: Promise<string> | undefined;
let stubDir: string | undefined;

/**
 * The directory of the jobmesh.v1 Python stubs (put it on sys.path or PYTHONPATH). The first call
 * checks the tools and generates them into a temp dir; later calls in the same test file share it.
 * Call cleanupPythonStubs() in afterAll.
 */
export function pythonStubs(): Promise<string> {
  stubs ??= (async () => {
    await requireTools();
    stubDir = await mkdtemp(join(tmpdir(), 'jobmesh-pystubs-'));
    const gen = await run('sh', [GEN, stubDir], { env: { ...process.env, WKT_INCLUDE }, timeoutMs: 60_000 });
    if (gen.code !== 0) throw new Error(`gen_stubs.sh failed (exit ${gen.code}):\n${gen.stderr}`);
    return stubDir;
  })();
  return stubs;
}

/** Removes the stubs pythonStubs() generated, if any. */
export async function cleanupPythonStubs(): Promise<void> {
  const dir = stubDir;
  stubs = undefined;
  stubDir = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
}
