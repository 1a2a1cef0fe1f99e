// `jobmesh stats`, `jobmesh health` and `jobmesh top` as an operator runs them: the built CLI
// (npx tsc -b cli) as its own process, against a scheduler, a worker-pool, a dead-letter service and
// a monitor in this process; `top` also in a real terminal (tmux), where it must show a queue's
// waiting count change and quit on `q`.
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { loadDeadLetterEnv, type RunningDeadLetter, startDeadLetter } from '@jobmesh/dead-letter';
import { type MonitorHarness, startMonitorHarness, waitFor } from '@jobmesh/monitor/testing';
import { defineProcessor } from '@jobmesh/sdk';
import { silentLogger } from '@jobmesh/telemetry';
import { serviceEnv } from '@jobmesh/testing';

const CLI = resolve(__dirname, '../../cli/dist/main.js');
const run = promisify(execFile);

let h: MonitorHarness;
let deadLetter: RunningDeadLetter;
let monitorAddress: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  h = await startMonitorHarness();
  const pool = await h.startPool([defineProcessor({ queue: '*', name: 'ok', process: async () => ({ ok: true }) })]);
  deadLetter = await startDeadLetter(
    loadDeadLetterEnv(serviceEnv(h.redis, h.prefix, { JOBMESH_SCHEDULER_ADDRESS: h.address })),
    { logger: silentLogger() },
  );
  // A monitor apart from the scheduler, as in a deployment: the CLI finds it by JOBMESH_MONITOR_ADDRESS.
  const m = await h.startMonitor({ JOBMESH_WORKER_POOL_ADDRESS: `127.0.0.1:${pool.grpcPort}`, JOBMESH_DEAD_LETTER_ADDRESS: `127.0.0.1:${deadLetter.grpcPort}` });
  monitorAddress = m.address;
  env = { PATH: process.env.PATH, HOME: process.env.HOME, JOBMESH_ADDRESS: h.address, JOBMESH_MONITOR_ADDRESS: monitorAddress };
});
afterAll(async () => {
  await deadLetter?.stop();
  await h?.stop();
});

const jobmesh = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) => run(process.execPath, [CLI, ...args], { env: { ...env, ...extraEnv } });
/** Runs a command and resolves with its exit code and output, whatever the code. */
const jobmeshExit = (args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> =>
  jobmesh(args, extraEnv).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
/** Runs a command with --json; its output must be exactly one JSON line. */
async function jobmeshJson<T>(...args: string[]): Promise<T> {
  const { stdout } = await jobmesh(['--json', ...args]);
  expect(stdout.indexOf('\n')).toBe(stdout.length - 1);
  return JSON.parse(stdout) as T;
}

type StatsJson = { queue: string; counts?: Record<string, number>; paused?: boolean; workers?: number; observedAt?: string; oldestWaitingAge?: { seconds?: number; nanos?: number } };
type HealthJson = { status: string; services: { service: string; address: string; status: string; error?: string; figures?: Record<string, string> }[] };

/** A paused queue holding `n` waiting jobs: its counts stay put until the test changes them. */
async function pausedQueue(label: string, n: number): Promise<string> {
  const queue = await h.newQueue(label);
  await h.client.pauseQueue(queue);
  await h.client.enqueueJobs({ queue, jobs: Array.from({ length: n }, () => ({ name: 'ok', data: {} })) });
  return queue;
}

describe('jobmesh stats', () => {
  it('prints one queue as a table, and as the QueueStats in proto JSON with --json', async () => {
    const queue = await pausedQueue('cli-stats', 4);
    const text = (await jobmesh(['stats', queue])).stdout;
    const [header, row] = text.trimEnd().split('\n');
    expect(header).toMatch(/^QUEUE\s+WAITING\s+ACTIVE\s+DELAYED\s+WAITING-FOR-PROCESSOR\s+FAILED\s+DEAD-LETTERED\s+COMPLETED\/S\s+FAILED\/S\s+OLDEST AGE\s+P50\/P95\s+WORKERS\s+PAUSED$/);
    // waiting 4, active/delayed/for-processor/failed/dead-lettered 0, no rates, an oldest age, no processing times, one worker, paused.
    expect(row).toMatch(new RegExp(`^${queue}\\s+4\\s+0\\s+0\\s+0\\s+0\\s+0\\s+0\\s+0\\s+\\d+(ms|s)\\s+1\\s+yes$`));

    const json = await jobmeshJson<StatsJson>('stats', queue);
    expect(json).toMatchObject({ queue, paused: true, workers: 1 });
    // Zero counts are left out, as proto JSON leaves out every zero value.
    expect(json.counts).toEqual({ waiting: 4 });
    expect(json.observedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(json.oldestWaitingAge).toBeDefined();
  });

  it('prints every queue without a name: an array with --json', async () => {
    const a = await pausedQueue('cli-stats-all', 2);
    const b = await pausedQueue('cli-stats-all', 3);
    const all = await jobmeshJson<StatsJson[]>('stats');
    const by = Object.fromEntries(all.map((s) => [s.queue, s]));
    expect(by[a]?.counts?.waiting).toBe(2);
    expect(by[b]?.counts?.waiting).toBe(3);
    const text = (await jobmesh(['stats'])).stdout;
    expect(text).toMatch(new RegExp(`^${a}\\s+2\\s`, 'm'));
    expect(text).toMatch(new RegExp(`^${b}\\s+3\\s`, 'm'));
  });

  it('reports an unknown queue as NOT_FOUND and exits 1, as the other commands do', async () => {
    const r = await jobmeshExit(['stats', `no-such-queue-${randomUUID().slice(0, 8)}`]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^jobmesh: NOT_FOUND: .*no-such-queue-/);
  });

  it('reports a monitor that cannot be reached as UNAVAILABLE and exits 1', async () => {
    const r = await jobmeshExit(['stats', '--timeout', '1s', '--monitor-address', '127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^jobmesh: (UNAVAILABLE|DEADLINE_EXCEEDED): /);
  });
});

describe('jobmesh health', () => {
  it('prints every service as serving and exits 0 when the whole system is', async () => {
    const json = await jobmeshJson<HealthJson>('health');
    expect(json.status).toBe('SERVING_STATUS_SERVING');
    const by = Object.fromEntries(json.services.map((s) => [s.service, s]));
    expect(by['jobmesh.v1.SchedulerService']).toMatchObject({ status: 'SERVING_STATUS_SERVING', address: h.address });
    expect(by['jobmesh.v1.DeadLetterService']).toMatchObject({ status: 'SERVING_STATUS_SERVING', address: `127.0.0.1:${deadLetter.grpcPort}` });
    expect(by['jobmesh.v1.WorkerService']?.figures?.replicas).toBe('1');
    expect(by.redis?.status).toBe('SERVING_STATUS_SERVING');

    const text = await jobmeshExit(['health']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^system: serving$/m);
    expect(text.stdout).toMatch(/^SERVICE\s+STATUS\s+ADDRESS\s+ERROR\s+FIGURES$/m);
    expect(text.stdout).toMatch(/^jobmesh\.v1\.WorkerService\s+serving\s+127\.0\.0\.1:\d+\s+.*replicas=1/m);
  });

  it('exits 1 when a service is not serving, saying which and why', async () => {
    // A second monitor that looks for the dead-letter service where nothing listens.
    const m = await h.startMonitor({ JOBMESH_DEAD_LETTER_ADDRESS: '127.0.0.1:1', JOBMESH_HEALTH_TIMEOUT: '1s' });
    try {
      const json = await jobmeshExit(['--json', 'health', '--monitor-address', m.address]);
      expect(json.code).toBe(1);
      const health = JSON.parse(json.stdout) as HealthJson;
      expect(health.status).toBe('SERVING_STATUS_NOT_SERVING');
      const dl = health.services.find((s) => s.service === 'jobmesh.v1.DeadLetterService');
      expect(dl).toMatchObject({ address: '127.0.0.1:1' });
      expect(dl?.status).toBeUndefined(); // UNSPECIFIED, the zero value, is left out of proto JSON
      expect(dl?.error).toBeTruthy();

      const text = await jobmeshExit(['health', '--monitor-address', m.address]);
      expect(text.code).toBe(1);
      expect(text.stdout).toMatch(/^system: not-serving$/m);
      expect(text.stdout).toMatch(/^jobmesh\.v1\.DeadLetterService\s+unknown\s+127\.0\.0\.1:1\s+\S/m);
    } finally {
      await m.service.stop();
    }
  });
});

describe('jobmesh top --json', () => {
  it('streams one JSON line per round, following the counts, without a terminal', async () => {
    const queue = await pausedQueue('cli-top-json', 1);
    const child = spawn(process.execPath, [CLI, '--json', 'top', queue, '--interval', '1s'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const rounds = (): { stats: StatsJson[] }[] =>
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { stats: StatsJson[] });
    try {
      await waitFor('a first round showing 1 waiting', () => rounds().some((r) => r.stats[0]?.queue === queue && r.stats[0]?.counts?.waiting === 1), 10_000);
      await h.client.enqueueJobs({ queue, jobs: [{ name: 'ok', data: {} }, { name: 'ok', data: {} }] });
      await waitFor('a later round showing 3 waiting', () => rounds().some((r) => r.stats[0]?.counts?.waiting === 3), 10_000);
      expect(rounds().every((r) => r.stats.length === 1)).toBe(true);
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  });

  it('says when the monitor goes away and watches again until it is back', async () => {
    const queue = await pausedQueue('cli-top-retry', 1);
    const m = await h.startMonitor();
    const child = spawn(process.execPath, [CLI, '--json', 'top', queue, '--interval', '1s', '--monitor-address', m.address], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    try {
      await waitFor('a first round', () => out.includes(queue), 10_000);
      await m.service.stop();
      await waitFor('the lost stream on stderr', () => /^jobmesh: .*; watching again in \d+s$/m.test(err), 10_000);
      expect(child.exitCode).toBeNull();
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  });

  it('exits with the error for an unknown queue instead of watching again', async () => {
    const r = await jobmeshExit(['--json', 'top', `no-such-queue-${randomUUID().slice(0, 8)}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^jobmesh: NOT_FOUND: /);
  });
});

describe('jobmesh top in a terminal', () => {
  // A tmux server of its own (-S, a socket in a folder of the test's), so nothing of the machine's
  // tmux is touched; -f /dev/null: no user config.
  const dir = mkdtempSync(join(tmpdir(), 'jobmesh-top-'));
  const tmux = (...args: string[]) => run('tmux', ['-S', join(dir, 'tmux.sock'), '-f', '/dev/null', ...args], { env });
  const screen = async (session: string): Promise<string> => (await tmux('capture-pane', '-p', '-t', session)).stdout;
  afterAll(async () => {
    await tmux('kill-server').catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Runs `jobmesh top …` in a new 200×50 tmux session. The shell then prints top's exit status and
   * waits (cat reads the terminal until kill-server): a pane whose process has exited may lose
   * its last output, and what top left on the screen is what the test reads.
   */
  async function startTop(session: string, ...args: string[]): Promise<void> {
    const top = [process.execPath, CLI, 'top', '--address', h.address, '--monitor-address', monitorAddress, ...args].map((a) => `'${a}'`).join(' ');
    await tmux('new-session', '-d', '-s', session, '-x', '200', '-y', '50', `${top}; echo "top exited with $?"; exec cat`);
  }

  /** Waits for top to exit; resolves with the screen it left. */
  const exited = (session: string): Promise<string> =>
    waitFor(`top in ${session} to exit`, async () => {
      const s = await screen(session);
      return /^top exited with \d+$/m.test(s) && s;
    }, 10_000);

  it("shows a queue's waiting count change as jobs are enqueued, and quits on q, giving the screen back", async () => {
    const queue = await pausedQueue('cli-top-tty', 3);
    await startTop('top-q', '--interval', '1s');
    const row = (waiting: number) => new RegExp(`^${queue}\\s+${waiting}\\s+0\\s+0\\s+0\\s`, 'm');

    const first = await waitFor('top to show 3 waiting', async () => {
      const s = await screen('top-q');
      return row(3).test(s) && s;
    }, 15_000);
    expect(first).toMatch(/^jobmesh top {3}\d\d:\d\d:\d\d UTC {3}\d+ queues? {3}every 1s {3}(health: \S+ {3})?q: quit$/m);
    expect(first).toMatch(/^QUEUE\s+WAITING\s+ACTIVE\s+DELAYED\s+WAITING-FOR-PROCESSOR/m);

    await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 5 }, () => ({ name: 'ok', data: {} })) });
    await waitFor('top to show 8 waiting', async () => row(8).test(await screen('top-q')), 15_000);

    await tmux('send-keys', '-t', 'top-q', 'q');
    const after = await exited('top-q');
    expect(after).toMatch(/^top exited with 0$/m);
    // It left the alternate screen: the table is gone from the terminal.
    expect(after).not.toContain('jobmesh top');
    expect(after).not.toContain(queue);
  });

  it('quits on Ctrl-C too, giving the screen back', async () => {
    const queue = await pausedQueue('cli-top-ctrl-c', 1);
    await startTop('top-c', queue);
    await waitFor('top to show the queue', async () => new RegExp(`^${queue}\\s+1\\s`, 'm').test(await screen('top-c')), 15_000);
    await tmux('send-keys', '-t', 'top-c', 'C-c');
    const after = await exited('top-c');
    expect(after).toMatch(/^top exited with 0$/m);
    expect(after).not.toContain('jobmesh top');
  });
});
