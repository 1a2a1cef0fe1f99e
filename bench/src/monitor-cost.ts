// node bench/dist/monitor-cost.js [--queues 100] [--rounds 30]: what the monitor costs with many
// queues. It starts a redis-server, a TCP proxy in front of it that counts round trips, and the
// scheduler and monitor as separate processes (the bench's spawnService) (the monitor reaches Redis through the proxy), creates
// the queues with a few jobs each, then times, alternately, one ListQueueStats call and one scrape
// of the monitor's /metrics (which reads the same figures), and counts the Redis round trips each
// made. It prints medians and ranges. Not a test: the figures depend on the machine.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { JobmeshClient, MonitorClient } from '@jobmesh/sdk';
import { startRedis, startRedisProxy } from '@jobmesh/testing';
import { type ServiceProcess, spawnService } from './environment';

const ROOT = resolve(__dirname, '../..');
const say = (line: string): void => void process.stdout.write(`${line}\n`);

const SCHEDULER = resolve(ROOT, 'services/scheduler/dist/main.js');
const MONITOR = resolve(ROOT, 'services/monitor/dist/main.js');

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
  const services: ServiceProcess[] = [];
  try {
    const scheduler = await spawnService(SCHEDULER, 'scheduler listening', redis.url);
    services.push(scheduler);
    const schedulerAddress = `127.0.0.1:${scheduler.port}`;
    const monitor = await spawnService(MONITOR, 'monitor listening', proxy.url, { JOBMESH_SCHEDULER_ADDRESS: schedulerAddress });
    services.push(monitor);
    const client = new JobmeshClient({ address: schedulerAddress });
    const stats = MonitorClient.connect(`127.0.0.1:${monitor.port}`);
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
    await Promise.all(services.map((svc) => svc.stop()));
    await proxy.close();
    await redis.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`monitor-cost: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
