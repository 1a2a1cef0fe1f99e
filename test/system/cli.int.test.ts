// `npm start` and the operator commands as a newcomer uses them: separate OS processes.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { JobmeshClient } from '@jobmesh/sdk';
import { connectRedis, eventually } from '@jobmesh/testing';

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
  /** Runs a command with --json and parses its output, which must be exactly one JSON line. */
  const jobmeshJson = async <T = Record<string, unknown>>(...args: string[]): Promise<T> => {
    const { stdout } = await jobmesh('--json', ...args);
    expect(stdout.endsWith('\n') && stdout.indexOf('\n') === stdout.length - 1).toBe(true);
    return JSON.parse(stdout) as T;
  };
  type JobJson = { id: string; name: string; state: string };

  it('prints where it listens and starts its own Redis with AOF under .jobmesh/, fsynced before each answer', async () => {
    expect(up.output()).toMatch(/gRPC\s+127\.0\.0\.1:\d+/);
    expect(up.output()).toMatch(/HTTP\s+http:\/\/127\.0\.0\.1:\d+/);
    expect(up.output()).toContain(`AOF fsynced on every write, data in ${join(dir, '.jobmesh', 'redis')}`);
    const url = /Redis\s+(redis:\/\/\S+)/.exec(up.output())?.[1];
    expect(url).toBeDefined();
    const redis = connectRedis(url!);
    try {
      expect(await redis.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      expect(await redis.config('GET', 'appendfsync')).toEqual(['appendfsync', 'always']);
    } finally {
      redis.disconnect();
    }
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

  it("links a job's trace when JOBMESH_TRACE_UI_URL is set, and refuses a link without {trace_id}", async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const client = new JobmeshClient({ address: up.address });
    let id: string;
    try {
      await client.createQueue({ queue: { name: 'traced', paused: true } });
      const { job } = await client.enqueueJob({ queue: 'traced', job: { name: 'x' } }, { metadata: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
      id = job!.id;
    } finally {
      client.close();
    }
    const ui = { ...env, JOBMESH_TRACE_UI_URL: 'http://localhost:16686/trace/{trace_id}' };
    const shown = await run(process.execPath, [CLI, '--address', up.address, 'get', 'traced', id], { env: ui });
    expect(shown.stdout).toMatch(new RegExp(`^trace +http://localhost:16686/trace/${traceId}$`, 'm'));
    // Without the variable, no link.
    expect((await jobmesh('get', 'traced', id)).stdout).not.toMatch(/^trace +http/m);
    const bad = { ...env, JOBMESH_TRACE_UI_URL: 'http://localhost:16686/trace/' };
    await expect(run(process.execPath, [CLI, '--address', up.address, 'get', 'traced', id], { env: bad })).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/JOBMESH_TRACE_UI_URL.*must contain \{trace_id\}/),
    });
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

  it('lists the jobs of a queue in one state with list --state, as a table and as JSON', async () => {
    await jobmesh('queues', 'create', 'reports');
    await jobmesh('queues', 'pause', 'reports'); // keeps the waiting job waiting
    const waiting = (await jobmeshJson<{ job: JobJson }>('enqueue', 'reports', 'monthly', '--data', '{"month":"2026-01"}')).job;
    const delayed = (await jobmeshJson<{ job: JobJson }>('enqueue', 'reports', 'yearly', '--delay', '1h')).job;

    const listed = await jobmeshJson<{ jobs?: JobJson[]; nextPageToken?: string }>('list', 'reports', '--state', 'waiting');
    expect(listed.jobs).toEqual([expect.objectContaining({ id: waiting.id, name: 'monthly', state: 'JOB_STATE_WAITING' })]);
    expect(listed.nextPageToken).toBeUndefined();
    const both = await jobmeshJson<{ jobs?: JobJson[] }>('list', 'reports', '--state', 'waiting,delayed');
    expect(both.jobs?.map((j) => [j.id, j.state]).sort()).toEqual(
      [
        [waiting.id, 'JOB_STATE_WAITING'],
        [delayed.id, 'JOB_STATE_DELAYED'],
      ].sort(),
    );

    const text = (await jobmesh('list', 'reports', '--state', 'waiting')).stdout;
    expect(text).toMatch(/^ID\s+NAME\s+STATE\s+ATTEMPTS\s+CREATED$/m);
    expect(text).toMatch(new RegExp(`^${waiting.id}\\s+monthly\\s+waiting\\s+0\\s`, 'm'));
    expect(text).not.toContain('yearly');
  });

  it('sets processor_wait with queues create and update, and shows a job that waits for a processor', async () => {
    await expect(jobmesh('queues', 'create', 'images', '--processor-wait', '2h')).resolves.toMatchObject({ stdout: expect.stringContaining('created queue images') });
    expect((await jobmeshJson<{ processorWait: unknown }>('queues', 'get', 'images')).processorWait).toEqual({ seconds: 7200 });
    await jobmesh('queues', 'update', 'images', '--processor-wait', '10m');
    const row = (await jobmesh('queues', 'list')).stdout.split('\n').find((l) => l.startsWith('images'));
    expect(row).toMatch(/\b10m$/);
    // Nothing serves 'resize' in `jobmesh up`: the job waits for a processor, WAITING.
    const { id } = (await jobmeshJson<{ job: JobJson }>('enqueue', 'images', 'resize')).job;
    const shown = await eventually(
      async () => {
        const out = (await jobmesh('get', 'images', id)).stdout;
        return out.includes('for a processor') && out;
      },
      10_000,
      '`jobmesh get` to show the job waiting for a processor',
    );
    expect(shown).toMatch(/^state\s+waiting for a processor of "resize" \(until \d{4}-\d\d-\d\dT/m);
    expect((await jobmesh('list', 'images', '--state', 'waiting')).stdout).toMatch(new RegExp(`^${id}\\s+resize\\s+waiting \\(no processor\\)`, 'm'));
    await expect(jobmesh('queues', 'update', 'images', '--processor-wait', 'soon')).rejects.toMatchObject({ code: 2 });
  });

  it('rejects an unknown --state for list with exit code 2', async () => {
    await expect(jobmesh('list', 'reports', '--state', 'sleeping')).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('unknown state "sleeping"') });
  });

  it('cancels a delayed job, after which get shows it cancelled', async () => {
    await jobmesh('queues', 'create', 'reminders');
    const { job } = await jobmeshJson<{ job: JobJson }>('enqueue', 'reminders', 'nudge', '--delay', '1h');
    expect(job.state).toBe('JOB_STATE_DELAYED');

    const cancelled = await jobmeshJson<{ job: JobJson & { failureReason?: string }; pending?: boolean }>('cancel', 'reminders', job.id, '--reason', 'plans changed');
    expect(cancelled.job).toMatchObject({ id: job.id, state: 'JOB_STATE_CANCELLED' });
    expect(cancelled.pending).toBeUndefined(); // false: it was not running, so it is cancelled already

    expect((await jobmesh('get', 'reminders', job.id)).stdout).toMatch(/state\s+cancelled/);
    await expect(jobmeshJson('get', 'reminders', job.id)).resolves.toMatchObject({ id: job.id, state: 'JOB_STATE_CANCELLED' });
    const listed = await jobmeshJson<{ jobs?: JobJson[] }>('list', 'reminders', '--state', 'cancelled');
    expect(listed.jobs?.map((j) => j.id)).toEqual([job.id]);

    const again = (await jobmesh('enqueue', 'reminders', 'nudge', '--delay', '1h')).stdout;
    const id = /enqueued job (\S+)/.exec(again)![1]!;
    await expect(jobmesh('cancel', 'reminders', id)).resolves.toMatchObject({ stdout: `job ${id} cancelled\n` });
  });

  it('creates, lists, gets and deletes an every-30s schedule with the schedules commands', async () => {
    await jobmesh('queues', 'create', 'digests');
    await jobmesh('queues', 'pause', 'digests'); // the jobs it fires stay waiting

    const upserted = await jobmeshJson('schedules', 'upsert', 'digests', 'half-minutely', '--every', '30s', '--name', 'x', '--data', '{"kind":"digest"}');
    expect(upserted).toMatchObject({ id: 'half-minutely', queue: 'digests', every: { seconds: 30 }, template: { name: 'x', data: { kind: 'digest' } } });
    expect(Date.parse(String(upserted.nextRunAt))).not.toBeNaN();
    const text = (await jobmesh('schedules', 'upsert', 'digests', 'half-minutely', '--every', '30s', '--name', 'x')).stdout;
    expect(text).toMatch(/^schedule half-minutely on digests: next run \d{4}-\d\d-\d\dT/);

    const listed = await jobmeshJson<{ schedules?: { id: string; every?: { seconds: number }; template?: { name: string } }[] }>('schedules', 'list', 'digests');
    expect(listed.schedules).toEqual([expect.objectContaining({ id: 'half-minutely', every: { seconds: 30 }, template: expect.objectContaining({ name: 'x' }) })]);
    expect((await jobmesh('schedules', 'list', 'digests')).stdout).toMatch(/^half-minutely\s+every 30s\s+x\s/m);
    await expect(jobmeshJson('schedules', 'get', 'digests', 'half-minutely')).resolves.toMatchObject({ id: 'half-minutely', every: { seconds: 30 } });

    await expect(jobmeshJson('schedules', 'delete', 'digests', 'half-minutely')).resolves.toEqual({ deleted: 'half-minutely' });
    const after = await jobmeshJson<{ schedules?: unknown[] }>('schedules', 'list', 'digests');
    expect(after.schedules ?? []).toEqual([]);
    expect((await jobmesh('schedules', 'list', 'digests')).stdout).toBe('(none)\n');
    await expect(jobmesh('schedules', 'get', 'digests', 'half-minutely')).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('NOT_FOUND') });
  });

  it('asks for --name and a trigger on schedules upsert, with exit code 2', async () => {
    await expect(jobmesh('schedules', 'upsert', 'digests', 'no-trigger', '--name', 'x')).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('usage: jobmesh schedules upsert'),
    });
  });

  it('resumes a paused queue with queues resume, after which its waiting job runs', async () => {
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      await jobmesh('queues', 'create', 'webhooks');
      await expect(jobmeshJson('queues', 'pause', 'webhooks')).resolves.toMatchObject({ name: 'webhooks', paused: true });
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const { job } = await jobmeshJson<{ job: JobJson }>('enqueue', 'webhooks', 'http.request', '--data', JSON.stringify({ url }));
      expect((await jobmeshJson<JobJson>('get', 'webhooks', job.id)).state).toBe('JOB_STATE_WAITING');

      const resumed = await jobmeshJson<{ name: string; paused?: boolean }>('queues', 'resume', 'webhooks');
      expect(resumed.name).toBe('webhooks');
      expect(resumed.paused).toBeUndefined(); // false is left out of proto JSON
      await expect(jobmeshJson('queues', 'get', 'webhooks')).resolves.not.toHaveProperty('paused');
      const watched = await jobmesh('watch', 'webhooks', job.id);
      expect(watched.stdout).toMatch(/completed\s+\{"status":200/);
      await expect(jobmesh('queues', 'resume', 'webhooks')).resolves.toMatchObject({ stdout: 'queue webhooks resumed\n' });
    } finally {
      server.close();
    }
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

describe('jobmesh up with a processor module that cannot be loaded', () => {
  it('names the module, closes what it opened and exits 1 instead of hanging', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jobmesh-badmodule-'));
    try {
      const env = { PATH: process.env.PATH, HOME: process.env.HOME, JOBMESH_GRPC_ADDRESS: '127.0.0.1:0', JOBMESH_HTTP_ADDRESS: '127.0.0.1:0', LOG_LEVEL: 'warn' };
      // The timeout only turns a hang into a failure; a clean exit takes about a second.
      const res = run(process.execPath, [CLI, 'up'], { cwd: dir, timeout: 20_000, env: { ...env, JOBMESH_PROCESSORS: join(dir, 'missing.js') } });
      await expect(res).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining(`cannot load processor module ${join(dir, 'missing.js')}`) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
