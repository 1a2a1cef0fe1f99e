import * as pb from '@jobmesh/contracts';
import { topScreen } from './top';

const queue = (name: string, waiting: number): pb.QueueStats => pb.QueueStats.fromPartial({ queue: name, counts: { waiting }, workers: 1 });
const at = new Date('2026-12-01T14:20:31.500Z');

describe('topScreen', () => {
  it('starts with a header of the time, the queue count, the interval, the health and how to quit, then the table', () => {
    const lines = topScreen({ stats: [queue('emails', 7), queue('reports', 0)], at, intervalMs: 2000, health: pb.ServingStatus.SERVING_STATUS_SERVING }, { columns: 200, rows: 50 });
    expect(lines[0]).toBe('jobmesh top   14:20:31 UTC   2 queues   every 2s   health: serving   q: quit');
    expect(lines[1]).toBe('');
    expect(lines[2]).toMatch(/^QUEUE\s+WAITING\s+ACTIVE/);
    expect(lines[3]).toMatch(/^emails\s+7\s+0\s/);
    expect(lines[4]).toMatch(/^reports\s+0\s+0\s/);
    expect(lines).toHaveLength(5);
  });

  it('says it is connecting before the first round, and shows a problem under the header', () => {
    expect(topScreen({ intervalMs: 1000 }, { columns: 200, rows: 50 })).toEqual(['jobmesh top   connecting…   every 1s   q: quit', '']);
    const lines = topScreen({ stats: [queue('emails', 7)], at, intervalMs: 1000, problem: 'UNAVAILABLE: No connection established; watching again in 2s' }, { columns: 200, rows: 50 });
    expect(lines[1]).toBe('! UNAVAILABLE: No connection established; watching again in 2s');
    expect(lines[4]).toMatch(/^emails\s+7/);
  });

  it('fits the terminal: long lines are cut, and queues that do not fit are counted', () => {
    const many = Array.from({ length: 30 }, (_, i) => queue(`q${String(i).padStart(2, '0')}`, i));
    const lines = topScreen({ stats: many, at, intervalMs: 2000 }, { columns: 40, rows: 10 });
    expect(lines).toHaveLength(10);
    expect(lines.every((l) => l.length <= 40)).toBe(true);
    expect(lines[0]).toBe('jobmesh top   14:20:31 UTC   30 queues …');
    expect(lines[3]).toMatch(/^q00\s+0\s+0/);
    // Header, blank line, table header, 6 queues, and the rest counted.
    expect(lines[9]).toMatch(/^… 24 more/);
  });
});
