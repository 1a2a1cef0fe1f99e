import type { PendingJob } from './pending';
import { PendingAssignments } from './pending';

const job = (queue: string, id: string): PendingJob => ({ queue, job: { id, lockToken: `lock-${id}` }, resolve: () => undefined, reject: () => undefined }) as unknown as PendingJob;
const ids = (p: PendingAssignments, queue: string): string[] => {
  const out: string[] = [];
  p.offer(queue, (j) => {
    out.push(j.job.id);
    return false;
  });
  return out;
};

describe('PendingAssignments.offer', () => {
  it('stops offering once `more` says nothing more fits, keeping the rest in order', () => {
    const p = new PendingAssignments();
    for (const id of ['a', 'b', 'c', 'd', 'e']) p.add(job('q', id));
    let room = 2;
    const offered: string[] = [];
    // b is refused (say, no worker takes its name); a and c take the two places.
    p.offer(
      'q',
      (j) => {
        offered.push(j.job.id);
        return j.job.id !== 'b' && room-- > 0;
      },
      () => room > 0,
    );
    expect(offered).toEqual(['a', 'b', 'c']);
    expect(ids(p, 'q')).toEqual(['b', 'd', 'e']);
  });

  it('offers none when there is no room, and leaves the queue as it was', () => {
    const p = new PendingAssignments();
    for (const id of ['a', 'b']) p.add(job('q', id));
    const place = jest.fn(() => true);
    p.offer('q', place, () => false);
    expect(place).not.toHaveBeenCalled();
    expect(ids(p, 'q')).toEqual(['a', 'b']);
  });

  it('drops the queue once every job was placed', () => {
    const p = new PendingAssignments();
    p.add(job('q', 'a'));
    p.offer('q', () => true);
    expect(p.queues()).toEqual([]);
  });
});
