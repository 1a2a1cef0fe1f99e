// `npm start` and the operator commands as a newcomer uses them: separate OS processes.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const CLI = resolve(__dirname, '../../cli/bin/jobmesh.js');
const run = promisify(execFile);

interface Up {
  child: ChildProcess;
  address: string;
  output: () => string;
}

async function startUp(cwd: string, env: NodeJS.ProcessEnv): Promise<Up> {
  const child = spawn(process.execPath, [CLI, 'up'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const address = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`jobmesh up did not start within 20 s:\n${output}`)), 20_000);
    const check = (): void => {
      const m = /gRPC\s+(\S+)/.exec(output);
      if (m && output.includes('Stop:')) {
        clearTimeout(timer);
        res(m[1]!);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`jobmesh up exited with ${code}:\n${output}`));
    });
  });
  return { child, address, output: () => output };
}

describe('jobmesh up and the CLI', () => {
  let dir: string;
  let up: Up;
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, JOBMESH_GRPC_ADDRESS: '127.0.0.1:0', JOBMESH_HTTP_ADDRESS: '127.0.0.1:0', LOG_LEVEL: 'warn' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jobmesh-up-'));
    up = await startUp(dir, env);
  });

  afterAll(async () => {
    if (up?.child.exitCode === null) {
      const exited = new Promise((r) => up.child.once('exit', r));
      up.child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const jobmesh = (...args: string[]) => run(process.execPath, [CLI, '--address', up.address, ...args], { env });

  it('prints where it listens and starts its own Redis with AOF under .jobmesh/', () => {
    expect(up.output()).toMatch(/gRPC\s+127\.0\.0\.1:\d+/);
    expect(up.output()).toMatch(/HTTP\s+http:\/\/127\.0\.0\.1:\d+/);
    expect(up.output()).toContain(`AOF on, data in ${join(dir, '.jobmesh', 'redis')}`);
  });

  it('creates a queue, enqueues a job and gets it back, as text and as JSON', async () => {
    await expect(jobmesh('queues', 'create', 'emails')).resolves.toMatchObject({ stdout: expect.stringContaining('created queue emails') });
    // Paused, so the in-process worker-pool leaves the job waiting (it has no 'welcome' processor).
    await expect(jobmesh('queues', 'pause', 'emails')).resolves.toMatchObject({ stdout: 'queue emails paused\n' });
    const enq = await jobmesh('--json', 'enqueue', 'emails', 'welcome', '--data', '{"to":"ada@example.com"}');
    const id = (JSON.parse(enq.stdout) as { job: { id: string } }).job.id;
    const text = await jobmesh('get', 'emails', id);
    expect(text.stdout).toMatch(/state\s+waiting/);
    expect(text.stdout).toContain('{"to":"ada@example.com"}');
    const json = JSON.parse((await jobmesh('--json', 'get', 'emails', id)).stdout) as { state: string; data: unknown };
    expect(json).toMatchObject({ state: 'JOB_STATE_WAITING', data: { to: 'ada@example.com' } });
  });

  it('runs a job with a built-in processor of the in-process worker-pool', async () => {
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      await jobmesh('queues', 'create', 'hooks');
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const enq = await jobmesh('--json', 'enqueue', 'hooks', 'http.request', '--data', JSON.stringify({ url }));
      const id = (JSON.parse(enq.stdout) as { job: { id: string } }).job.id;
      const watched = await jobmesh('watch', 'hooks', id);
      expect(watched.stdout).toMatch(/completed\s+\{"status":200/);
    } finally {
      server.close();
    }
  });

  it('reports an unknown queue as NOT_FOUND with exit code 1', async () => {
    await expect(jobmesh('enqueue', 'nope', 'x')).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('NOT_FOUND: queue "nope" does not exist') });
  });

  it('reports a usage mistake with exit code 2', async () => {
    await expect(jobmesh('enqueue', 'emails')).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('usage: jobmesh enqueue') });
  });

  it('stops its Redis and exits 0 on SIGTERM', async () => {
    const exited = new Promise<number | null>((r) => up.child.once('exit', (code) => r(code)));
    up.child.kill('SIGTERM');
    await expect(exited).resolves.toBe(0);
    const port = Number(/Redis\s+redis:\/\/127\.0\.0\.1:(\d+)/.exec(up.output())![1]);
    const refused = await new Promise<boolean>((r) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), r(false)));
      socket.once('error', () => r(true));
    });
    expect(refused).toBe(true);
  });
});

describe('jobmesh up without Redis', () => {
  it('says in one paragraph what to install, and exits 1', async () => {
    // A PATH with node but no redis-server.
    const bin = mkdtempSync(join(tmpdir(), 'jobmesh-nopath-'));
    mkdirSync(join(bin, 'bin'));
    symlinkSync(process.execPath, join(bin, 'bin', 'node'));
    try {
      const res = run(process.execPath, [CLI, 'up'], { env: { PATH: join(bin, 'bin'), JOBMESH_GRPC_ADDRESS: '127.0.0.1:0', JOBMESH_HTTP_ADDRESS: '127.0.0.1:0' } });
      await expect(res).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/REDIS_URL is not set and there is no redis-server.*apt-get install redis-server/s) });
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});
