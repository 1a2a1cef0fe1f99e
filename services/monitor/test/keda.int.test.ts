// KEDA's external scaler, called through a client generated from KEDA's own externalscaler.proto
// (proto/third_party/keda), against a real Redis and a real monitor: each RPC, each metadata key,
// a paused queue, jobNames, both value fields, and StreamIsActive's transitions.
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { keda } from '@jobmesh/contracts';
import { defineProcessor } from '@jobmesh/sdk';
import { type MonitorClient, type MonitorHarness, startMonitorHarness, waitFor } from '../src/testing';

let h: MonitorHarness;
let scaler: keda.ExternalScalerClient;
let monitor: MonitorClient;

beforeAll(async () => {
  h = await startMonitorHarness();
  const m = await h.startMonitor();
  monitor = m.client;
  scaler = new keda.ExternalScalerClient(m.address, credentials.createInsecure());
});
afterAll(async () => {
  scaler?.close();
  await h?.stop();
});

const ref = (scalerMetadata: Record<string, string>): keda.ScaledObjectRef => ({ name: 'workers', namespace: 'default', scalerMetadata });

function unary<Req, Res>(method: 'isActive' | 'getMetricSpec' | 'getMetrics', req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = scaler[method] as unknown as (r: Req, md: Metadata, cb: (err: ServiceError | null, res: Res) => void) => void;
    fn.call(scaler, req, new Metadata(), (err, res) => (err ? reject(err) : resolve(res)));
  });
}
const isActive = async (md: Record<string, string>): Promise<boolean> => (await unary<keda.ScaledObjectRef, keda.IsActiveResponse>('isActive', ref(md))).result;
const metrics = (md: Record<string, string>, metricName = ''): Promise<keda.GetMetricsResponse> => unary('getMetrics', { scaledObjectRef: ref(md), metricName });
const spec = (md: Record<string, string>): Promise<keda.GetMetricSpecResponse> => unary('getMetricSpec', ref(md));
/** True once the queue has 4 jobs waiting for a processor and 1 active, as the monitor reads it. */
async function settled(queue: string): Promise<boolean> {
  const c = (await monitor.getQueueStats(queue)).counts;
  return c?.waitingForProcessor === 4 && c.active === 1;
}
const failure = (p: Promise<unknown>): Promise<ServiceError | undefined> => p.then(() => undefined, (e: ServiceError) => e);

it('reports the backlog: prioritized and waiting for a processor, plus active unless told not to', async () => {
  const queue = await h.newQueue('keda-backlog', { concurrency: 2 });
  expect(await isActive({ queue })).toBe(false);
  expect((await metrics({ queue })).metricValues).toEqual([{ metricName: `jobmesh-${queue.toLowerCase()}`, metricValue: 0, metricValueFloat: 0 }]);

  // Nothing serves "blocked": the jobs wait for a processor. Two of them are prioritized.
  await h.client.enqueueJobs({ queue, jobs: [{ name: 'blocked' }, { name: 'blocked' }, { name: 'blocked', options: { priority: 5 } }, { name: 'blocked', options: { priority: 5 } }] });
  // And one held by a running job, active.
  const release = { fn: (): void => undefined };
  const held = new Promise<void>((r) => (release.fn = r));
  await h.startPool([defineProcessor({ queue, name: 'hold', process: () => held })]);
  await h.client.enqueueJob({ queue, job: { name: 'hold' } });
  await waitFor('4 jobs waiting for a processor and 1 active', () => settled(queue), 10_000);
  expect((await metrics({ queue })).metricValues[0]).toMatchObject({ metricValue: 5, metricValueFloat: 5 });
  expect((await metrics({ queue, includeActive: 'false' })).metricValues[0]).toMatchObject({ metricValue: 4, metricValueFloat: 4 });
  expect(await isActive({ queue })).toBe(true);
  // Active only above activationBacklog.
  expect(await isActive({ queue, activationBacklog: '5' })).toBe(false);
  expect(await isActive({ queue, activationBacklog: '4' })).toBe(true);
  release.fn();
  await waitFor('the held job to complete', async () => (await metrics({ queue })).metricValues[0]?.metricValue === 4, 10_000);
});

it('counts only the named jobs with jobNames, and gives them a metric of their own', async () => {
  const queue = await h.newQueue('keda-names');
  await h.client.enqueueJobs({ queue, jobs: [...Array.from({ length: 3 }, () => ({ name: 'py.resize' })), ...Array.from({ length: 5 }, () => ({ name: 'ts.mail' }))] });
  await waitFor('all 8 jobs counted', async () => (await metrics({ queue })).metricValues[0]?.metricValue === 8, 10_000);
  const py = await metrics({ queue, jobNames: 'py.resize' });
  expect(py.metricValues[0]).toMatchObject({ metricValue: 3, metricValueFloat: 3 });
  expect((await metrics({ queue, jobNames: ' py.resize , ts.mail ' })).metricValues[0]?.metricValue).toBe(8);
  const names = (await spec({ queue, jobNames: 'py.resize' })).metricSpecs[0]!.metricName;
  expect(names).toMatch(/^[a-z0-9-]+$/);
  expect(names).not.toBe((await spec({ queue })).metricSpecs[0]!.metricName);
});

it('reports a paused queue as 0 and inactive', async () => {
  const queue = await h.newQueue('keda-paused');
  await h.client.enqueueJobs({ queue, jobs: [{ name: 'blocked' }, { name: 'blocked' }] });
  await waitFor('the backlog', () => isActive({ queue }), 10_000);
  await h.client.pauseQueue(queue);
  expect(await isActive({ queue })).toBe(false);
  expect((await metrics({ queue })).metricValues[0]).toMatchObject({ metricValue: 0, metricValueFloat: 0 });
  await h.client.resumeQueue(queue);
  expect(await isActive({ queue })).toBe(true);
});

it('gives the metric spec with the target in both fields and a lowercase name', async () => {
  const queue = await h.newQueue('KEDA_Spec.q');
  expect(await spec({ queue })).toEqual({ metricSpecs: [{ metricName: `jobmesh-${queue.toLowerCase().replace(/[._]/g, '-')}`, targetSize: 10, targetSizeFloat: 10 }] });
  expect((await spec({ queue, targetBacklog: '2.5' })).metricSpecs[0]).toMatchObject({ targetSize: 3, targetSizeFloat: 2.5 });
});

it('refuses bad metadata with INVALID_ARGUMENT naming the key, and an unknown queue with NOT_FOUND', async () => {
  const queue = await h.newQueue('keda-bad');
  const cases: Array<[Record<string, string>, string]> = [
    [{}, 'scalerMetadata.queue: is required'],
    [{ queue: 'bad name!' }, 'scalerMetadata.queue:'],
    [{ queue, targetBacklog: '0' }, 'scalerMetadata.targetBacklog: must be a number above 0; got "0"'],
    [{ queue, targetBacklog: 'ten' }, 'scalerMetadata.targetBacklog:'],
    [{ queue, activationBacklog: '-1' }, 'scalerMetadata.activationBacklog: must be a number at least 0; got "-1"'],
    [{ queue, includeActive: 'yes' }, 'scalerMetadata.includeActive: must be "true" or "false"; got "yes"'],
    [{ queue, jobNames: 'ok,bad name!' }, 'scalerMetadata.jobNames[1]:'],
    [{ queue, queueName: queue }, 'scalerMetadata.queueName: is not a Jobmesh scaler key'],
  ];
  for (const [md, message] of cases) {
    for (const call of [isActive(md), metrics(md), spec(md)]) {
      const err = await failure(call);
      expect({ md, code: err?.code, starts: err?.details.startsWith(message) }).toEqual({ md, code: status.INVALID_ARGUMENT, starts: true });
    }
  }
  expect((await failure(isActive({ queue: 'no-such-queue' })))?.code).toBe(status.NOT_FOUND);
  expect((await failure(metrics({ queue: 'no-such-queue' })))?.code).toBe(status.NOT_FOUND);
});

it('StreamIsActive sends the state when opened, then only on transitions', async () => {
  const queue = await h.newQueue('keda-stream');
  const call = scaler.streamIsActive(ref({ queue }), new Metadata());
  const got: boolean[] = [];
  call.on('data', (r: keda.IsActiveResponse) => got.push(r.result));
  call.on('error', () => undefined); // CANCELLED when the test ends it
  await waitFor('the first message', () => got.length === 1, 5000);
  expect(got).toEqual([false]);
  await h.client.enqueueJob({ queue, job: { name: 'blocked' } });
  await waitFor('the transition to active', () => got.length === 2, 10_000);
  expect(got).toEqual([false, true]);
  // More backlog is no transition.
  await h.client.enqueueJob({ queue, job: { name: 'blocked' } });
  await h.client.pauseQueue(queue);
  await waitFor('the transition to inactive', () => got.length === 3, 10_000);
  expect(got).toEqual([false, true, false]);
  call.cancel();
});
