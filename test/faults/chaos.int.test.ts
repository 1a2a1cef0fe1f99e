// Chaos (issue 16, point 1): Redis killed with SIGKILL and started again from its append-only
// file, three times; then each service killed with SIGKILL and started again; all while producers
// enqueue every kind of job and the services run them. The rig and the ledger (what it must show,
// and how it is printed) are in fixtures/chaos.ts, shared with network-chaos.int.test.ts.
import { setTimeout as sleep } from 'node:timers/promises';
import { type RedisHandle, startRedis } from '@jobmesh/testing';
import { type ServiceKind, stopService } from '../system/fixtures/services';
import { type ChaosRig, type Fault, chaos, startRig } from './fixtures/chaos';

/** When Redis is killed, ms from the start of the load. */
const KILLS_AT_MS = [1_500, 4_500, 7_500];
/** How long a part stays down each time: the fault, not a synchronisation. */
const DOWN_MS = 500;

let redis: RedisHandle;
let rig: ChaosRig;

beforeAll(async () => {
  // Every write Redis answered must survive kill -9: fsync before each answer, as Jobmesh ships it.
  redis = await startRedis({ own: true, appendonly: true, appendfsync: 'always' });
  rig = await startRig(redis);
}, 60_000);

afterAll(async () => {
  await rig?.stop();
  await redis?.stop();
});

it('keeps every acknowledged job through three Redis kills: each completes or is dead-lettered, and everything recovers by itself', async () => {
  const redisKill = (at: number): Fault => ({
    at,
    what: 'redis kill -9',
    async inject() {
      await redis.kill();
      await sleep(DOWN_MS);
      await redis.restart();
    },
  });
  await chaos(rig, 'redis-kill', KILLS_AT_MS.map(redisKill), { recovery: 'any' });
}, 150_000);

it('keeps every acknowledged job through a SIGKILL of each service, restarted where it was', async () => {
  const serviceKill = (at: number, kind: ServiceKind): Fault => ({
    at,
    what: `${kind} kill -9`,
    async inject() {
      await stopService(rig.svc[kind]!, 'SIGKILL');
      await sleep(DOWN_MS);
      await rig.start(kind);
      // The monitor answers again, and sees the other services.
      if (kind === 'monitor') expect((await rig.monitor.systemHealth()).services.length).toBeGreaterThan(0);
    },
  });
  // The last one early enough that jobs still come after it, even when a restart takes 3 s.
  await chaos(rig, 'service-kill', [serviceKill(1_000, 'scheduler'), serviceKill(3_500, 'worker-pool'), serviceKill(6_000, 'dead-letter'), serviceKill(7_500, 'monitor')], { recovery: 'any' });
}, 150_000);
