// node bench/dist/monitor-cost.js [--queues 100] [--rounds 30]: what the monitor costs with many
// queues. It starts a redis-server, a TCP proxy in front of it that counts round trips, and the
// scheduler and monitor as separate processes (the monitor reaches Redis through the proxy), creates
// the queues with a few jobs each, then times, alternately, one ListQueueStats call and one scrape
// of the monitor's /metrics (which reads the same figures), and counts the Redis round trips each
// made. It prints medians and ranges. Not a test: the figures depend on the machine.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { JobmeshClient, MonitorClient } from '@jobmesh/sdk';
import { startRedis, startRedisProxy } from '@jobmesh/testing';

const ROOT = resolve(__dirname, '../..');
const say = (line: string): void => void process.stdout.write(`${line}\n`);

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

/** Spawns a service's main.js; resolves with its gRPC and HTTP addresses once it logs that it listens. */
function start(kind: 'scheduler' | 'monitor', env: Record<string, string>, cwd: string): Promise<{ grpc: string; http: string; child: ChildProcess }> {
  const main = resolve(ROOT, 'services', kind, 'dist', 'main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` first`);
  const child = spawn(process.execPath, [main], {
    cwd,
    env: { PATH: process.env.PATH ?? '', JOBMESH_GRPC_ADDRESS: '127.0.0.1:0', JOBMESH_HTTP_ADDRESS: '127.0.0.1:0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  return new Promise((done, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`${kind} did not start:\n${out}`)), 20_000);
    child.on('exit', (code) => fail(new Error(`${kind} exited with ${code}:\n${out}`)));
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      for (const line of out.split('\n')) {
        if (!line.includes(`"${kind} listening"`)) continue;
        const l = JSON.parse(line) as { grpc: string; http: string };
        clearTimeout(timer);
        done({ grpc: l.grpc, http: l.http, child });
      }
    });
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (xs: number[], unit: string, digits = 1): string => `${median(xs).toFixed(digits)} ${unit} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { queues: { type: 'string', default: '100' }, rounds: { type: 'string', default: '30' } } });
  const queues = Number(values.queues);
  const rounds = Number(values.rounds);
  const redis = await startRedis({ own: true });
  const proxy = await startRedisProxy({ port: redis.port });
  const dir = mkdtempSync(join(tmpdir(), 'jobmesh-monitor-cost-'));
  const prefix = 'monitor-cost';
  try {
    const scheduler = await start('scheduler', { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix }, dir);
    const monitor = await start('monitor', { REDIS_URL: proxy.url, JOBMESH_REDIS_PREFIX: prefix, JOBMESH_SCHEDULER_ADDRESS: scheduler.grpc }, dir);
    const client = new JobmeshClient({ address: scheduler.grpc });
    const stats = MonitorClient.connect(monitor.grpc);
    for (let i = 0; i < queues; i++) {
      const name = `q-${String(i).padStart(4, '0')}`;
      await client.createQueue({ queue: { name } });
      await client.pauseQueue(name);
      await client.enqueueJobs({ queue: name, jobs: Array.from({ length: 10 }, () => ({ name: 'job', data: { i } })) });
    }
    // Warm: connections, scripts, the registry cache.
    for (let i = 0; i < 3; i++) {
      await stats.listQueueStats();
      await (await fetch(`http://${monitor.http}/metrics`)).text();
    }
    const list = { ms: [] as number[], trips: [] as number[] };
    const scrape = { ms: [] as number[], trips: [] as number[], bytes: 0 };
    for (let r = 0; r < rounds; r++) {
      let t = process.hrtime.bigint();
      list.trips.push(await proxy.roundTripsDuring(() => stats.listQueueStats()));
      list.ms.push(Number(process.hrtime.bigint() - t) / 1e6);
      t = process.hrtime.bigint();
      scrape.trips.push(
        await proxy.roundTripsDuring(async () => {
          scrape.bytes = (await (await fetch(`http://${monitor.http}/metrics`)).text()).length;
        }),
      );
      scrape.ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    say(`monitor cost, ${queues} queues (10 jobs each), ${rounds} alternating rounds; median (min–max)`);
    say(`  ListQueueStats   ${fmt(list.ms, 'ms')}   Redis round trips ${fmt(list.trips, '', 0)}`);
    say(`  GET /metrics     ${fmt(scrape.ms, 'ms')}   Redis round trips ${fmt(scrape.trips, '', 0)}   ${(scrape.bytes / 1024).toFixed(0)} KiB`);
    client.close();
    stats.close();
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await proxy.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`monitor-cost: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
