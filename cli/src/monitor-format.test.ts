import * as pb from '@jobmesh/contracts';
import { QUEUE_STATS_COLUMNS, age, queueStatsRow, rate, serviceHealthRow, servingName, table } from './format';

const stats = (over: Partial<pb.QueueStats> = {}): pb.QueueStats =>
  pb.QueueStats.fromPartial({
    queue: 'emails',
    counts: { waiting: 12, active: 3, delayed: 4, waitingForProcessor: 1, failed: 2, deadLettered: 5, completed: 100 },
    completedPerSecond: 1 / 3,
    failedPerSecond: 0,
    oldestWaitingAge: pb.msToDuration(185_000),
    processingP50: pb.msToDuration(20),
    processingP95: pb.msToDuration(1500),
    workers: 3,
    remoteWorkers: 2,
    ...over,
  });

describe('age', () => {
  it('reads at a glance from milliseconds to days', () => {
    expect([0, 850, 1000, 42_400, 185_000, 3_600_000 * 2 + 7 * 60_000, 86_400_000 * 4 + 3 * 3_600_000].map(age)).toEqual(['0ms', '850ms', '1s', '42s', '3m05s', '2h07m', '4d03h']);
  });
});

describe('rate', () => {
  it('keeps two decimals below 10 per second, one below 100, none above', () => {
    expect([0, 1 / 3, 9.99, 9.999, 12.54, 99.97, 340.4].map(rate)).toEqual(['0', '0.33', '9.99', '10.0', '12.5', '100', '340']);
  });
});

describe('queueStatsRow', () => {
  it('gives every column of the stats table', () => {
    expect(queueStatsRow(stats())).toEqual({
      queue: 'emails',
      waiting: '12',
      active: '3',
      delayed: '4',
      'waiting-for-processor': '1',
      failed: '2',
      'dead-lettered': '5',
      'completed/s': '0.33',
      'failed/s': '0',
      'oldest age': '3m05s',
      'p50/p95': '20ms/1s',
      workers: '3 (2 remote)',
      paused: '',
    });
    expect(Object.keys(queueStatsRow(stats()))).toEqual(QUEUE_STATS_COLUMNS);
  });

  it('leaves the age and processing times blank when there are none, and marks a paused queue', () => {
    const row = queueStatsRow(stats({ oldestWaitingAge: undefined, processingP50: undefined, processingP95: undefined, remoteWorkers: 0, workers: 0, paused: true, counts: undefined }));
    expect(row).toMatchObject({ waiting: '0', 'oldest age': '', 'p50/p95': '', workers: '0', paused: 'yes' });
  });

  it('lines up as a table under upper-case headers', () => {
    const text = table([queueStatsRow(stats())], QUEUE_STATS_COLUMNS);
    expect(text.split('\n')[0]).toMatch(/^QUEUE\s+WAITING\s+ACTIVE\s+DELAYED\s+WAITING-FOR-PROCESSOR\s+FAILED\s+DEAD-LETTERED\s+COMPLETED\/S\s+FAILED\/S\s+OLDEST AGE\s+P50\/P95\s+WORKERS\s+PAUSED$/);
    expect(text.split('\n')[1]).toMatch(/^emails\s+12\s+3\s+4\s+1\s+2\s+5\s+0\.33\s+0\s+3m05s\s+20ms\/1s\s+3 \(2 remote\)$/);
  });
});

describe('service health', () => {
  it('names each status, and shows a service with its error and its figures in name order', () => {
    expect([pb.ServingStatus.SERVING_STATUS_SERVING, pb.ServingStatus.SERVING_STATUS_NOT_SERVING, pb.ServingStatus.SERVING_STATUS_UNSPECIFIED].map(servingName)).toEqual([
      'serving',
      'not-serving',
      'unknown',
    ]);
    const row = serviceHealthRow(
      pb.ServiceHealth.fromPartial({ service: 'jobmesh.v1.WorkerService', address: '127.0.0.1:7', status: pb.ServingStatus.SERVING_STATUS_UNSPECIFIED, error: 'no answer within 500 ms', figures: { replicas: '2', connected_workers: '3' } }),
    );
    expect(row).toEqual({ service: 'jobmesh.v1.WorkerService', status: 'unknown', address: '127.0.0.1:7', error: 'no answer within 500 ms', figures: 'connected_workers=3 replicas=2' });
  });
});
