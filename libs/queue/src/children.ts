// Child jobs added to a parent that already exists (a running job's ctx.runChildren).
import { createHash } from 'node:crypto';
import { FlowProducer, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';

/** One child to add: its queue, name, data and BullMQ options (without `parent`). */
export interface NewChildJob {
  queue: string;
  name: string;
  data: Record<string, unknown>;
  opts: JobsOptions;
}

/** One FlowProducer per connection: it holds no connection of its own (the shared one is used). */
const producers = new WeakMap<Redis, FlowProducer>();

/**
 * Adds child jobs to an existing parent, all or none: one BullMQ flow call, which is a single
 * MULTI across every queue involved. `parent.queue` is the parent's qualified queue name
 * ("<prefix>:<queue>"). Resolves with the children's ids, in order.
 */
export async function addChildJobs(redis: Redis, prefix: string, parent: { id: string; queue: string }, children: NewChildJob[]): Promise<string[]> {
  if (!children.length) return [];
  let flows = producers.get(redis);
  if (!flows) {
    flows = new FlowProducer({ connection: redis, prefix, skipWaitingForReady: true });
    producers.set(redis, flows);
  }
  const nodes = await flows.addBulk(children.map((c) => ({ name: c.name, queueName: c.queue, data: c.data, prefix, opts: { ...c.opts, parent } })));
  return nodes.map((n, i) => n.job.id ?? children[i]!.opts.jobId ?? '');
}

/**
 * The id of the `index`-th child a parent adds under `name` when the caller chose none: the same
 * on every attempt, so adding the children again (after a crash between adding them and
 * recording that they were added) adds nothing. A valid Jobmesh job id: letters, digits, '.',
 * '-', never a plain integer, at most 200 characters.
 */
export function childJobId(parentQueue: string, parentId: string, name: string, index: number): string {
  const digest = createHash('sha256').update(`${parentQueue}\n${parentId}\n${name}`).digest('hex').slice(0, 12);
  const readable = /^[A-Za-z0-9._/-]{1,120}$/.test(parentId) ? parentId : createHash('sha256').update(parentId).digest('hex').slice(0, 16);
  return `${readable}.c${digest}.${index}`;
}
