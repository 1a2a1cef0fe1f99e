// The jobmesh_grpc_* series every service exports (grpc-kit's RpcKit), as Prometheus scrapes them.
import { uniqueQueue, useSchedulerHarness } from '../src/testing';

const h = useSchedulerHarness();

async function scrape(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${h.scheduler.httpPort}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The value of `name{labels}` (labels as written, in order), 0 when the series is not there yet. */
function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

it('counts calls by method and status code and times them by method', async () => {
  const queue = uniqueQueue('grpc-metrics');
  const ok = 'jobmesh_grpc_requests_total{method="/jobmesh.v1.SchedulerService/CreateQueue",code="OK"}';
  const exists = 'jobmesh_grpc_requests_total{method="/jobmesh.v1.SchedulerService/CreateQueue",code="ALREADY_EXISTS"}';
  const timed = 'jobmesh_grpc_request_duration_seconds_count{method="/jobmesh.v1.SchedulerService/CreateQueue"}';
  const before = await scrape();
  await h.client.createQueue({ queue: { name: queue } });
  for (let i = 0; i < 3; i++) await expect(h.client.createQueue({ queue: { name: queue } })).rejects.toThrow(/exists/);
  const after = await scrape();
  expect(value(after, ok) - value(before, ok)).toBe(1);
  expect(value(after, exists) - value(before, exists)).toBe(3);
  expect(value(after, timed) - value(before, timed)).toBe(4);
});
