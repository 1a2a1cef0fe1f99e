// Child jobs added to a parent that already exists (a running job's ctx.runChildren).
import { createHash } from 'node:crypto';
import { FailedPreconditionError } from '@jobmesh/core';
import { FlowProducer, type JobsOptions } from 'bullmq';
import type { RedisClient } from './connection';
import type { Keys } from './keys';

/** One child to add: its queue, name, data and BullMQ options (without `parent`). */
export interface NewChildJob {
  queue: string;
  name: string;
  data: Record<string, unknown>;
  opts: JobsOptions;
}

/** One FlowProducer per connection: it holds no connection of its own (the shared one is used). */
const producers = new WeakMap<RedisClient, FlowProducer>();

/**
 * Adds child jobs to an existing parent, all or none: one BullMQ flow call, which is a single
 * MULTI across every queue involved. `parent.queue` is the parent's qualified queue name
 * ("<queue prefix>:<queue>"), `parentQueue` its plain name. Resolves with the children's ids, in
 * order. On a Redis Cluster that MULTI must stay in the parent's queue's slot: children on
 * another queue are refused (FailedPreconditionError), nothing added.
 */
export async function addChildJobs(redis: RedisClient, keys: Keys, parent: { id: string; queue: string }, parentQueue: string, children: NewChildJob[]): Promise<string[]> {
  if (!children.length) return [];
  const other = keys.cluster ? children.find((c) => c.queue !== parentQueue) : undefined;
  if (other) {
    throw new FailedPreconditionError(
      `children on queue "${other.queue}" cannot be added to a job of queue "${parentQueue}" on a Redis Cluster: each queue's keys are in a hash slot of their own, and a parent and its children are written in one transaction, which Redis Cluster runs only within one slot. Add the children to the parent's own queue`,
    );
  }
  let flows = producers.get(redis);
  if (!flows) {
    flows = new FlowProducer({ connection: redis, prefix: keys.prefix, skipWaitingForReady: true });
    producers.set(redis, flows);
  }
  const nodes = await flows.addBulk(children.map((c) => ({ name: c.name, queueName: c.queue, data: c.data, prefix: keys.queuePrefix(c.queue), opts: { ...c.opts, parent } })));
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
