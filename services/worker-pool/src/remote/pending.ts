import type { RunningJob } from '@jobmesh/queue';
import type { AttemptContext } from '../context';
import type { AttemptSpan } from '@jobmesh/telemetry';

/** A job the runner fetched for remote workers, and how its attempt ends. */
export interface PendingJob {
  queue: string;
  job: RunningJob;
  /** The attempt's context, made by the runner: it carries out SaveStep and AddChildren. */
  ctx: AttemptContext;
  /** The attempt's span: its traceparent goes in the Assignment, and it records the worker. */
  span?: AttemptSpan;
  resolve(result: unknown): void;
  reject(err: Error): void;
}

/**
 * Jobs fetched for remote workers and not assigned yet, per queue in fetch order: they wait here
 * (active, locked by the runner) for a worker with credit.
 */
export class PendingAssignments {
  private readonly byQueue = new Map<string, PendingJob[]>();

  add(p: PendingJob): void {
    const list = this.byQueue.get(p.queue);
    if (list) list.push(p);
    else this.byQueue.set(p.queue, [p]);
  }

  /** Queues with jobs waiting. */
  queues(): string[] {
    return [...this.byQueue.keys()];
  }

  /**
   * Offers each waiting job of `queue`, in order, to `place`; those it placed (true) leave. With
   * `more`, the offers stop as soon as it says nothing more can be placed: a credit of one then
   * costs one offer, not one per waiting job.
   */
  offer(queue: string, place: (p: PendingJob) => boolean, more: () => boolean = () => true): void {
    const list = this.byQueue.get(queue);
    if (!list) return;
    let kept = 0;
    let i = 0;
    for (; i < list.length && more(); i++) if (!place(list[i]!)) list[kept++] = list[i]!;
    if (kept === i) return; // nothing placed: the list is as it was
    list.copyWithin(kept, i);
    list.length -= i - kept;
    if (!list.length) this.byQueue.delete(queue);
  }

  /** Takes the job held with `lockToken` out; false when it is not waiting here. */
  withdraw(lockToken: string): boolean {
    for (const [queue, list] of this.byQueue) {
      const i = list.findIndex((p) => p.job.lockToken === lockToken);
      if (i >= 0) {
        list.splice(i, 1);
        if (!list.length) this.byQueue.delete(queue);
        return true;
      }
    }
    return false;
  }

  /** Takes out and returns the jobs of `queues` that `keep` does not keep. */
  release(queues: Iterable<string>, keep: (p: PendingJob) => boolean): PendingJob[] {
    const out: PendingJob[] = [];
    for (const q of queues) this.offer(q, (p) => !keep(p) && out.push(p) > 0);
    return out;
  }
}
