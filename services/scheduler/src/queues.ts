import { compileMessagePattern } from '@jobmesh/config';
import type * as pb from '@jobmesh/contracts';
import { InvalidArgumentError, type QueueSpec, validateQueueName, validateQueueSpec, FailedPreconditionError } from '@jobmesh/core';
import { type JobAdmin, type QueueRegistry, queueSpecFromProto } from '@jobmesh/queue';

/** Fields UpdateQueue may change, by their proto names. */
const MUTABLE: Record<string, keyof QueueSpec> = {
  concurrency: 'concurrency',
  rate_limit: 'rateLimit',
  default_job_options: 'defaultJobOptions',
  paused: 'paused',
  dead_letter: 'deadLetter',
  labels: 'labels',
  processor_wait: 'processorWaitMs',
};
const CAMEL: Record<string, string> = { rateLimit: 'rate_limit', defaultJobOptions: 'default_job_options', deadLetter: 'dead_letter', processorWait: 'processor_wait' };

/** The queue registry operations, with their validation. */
export class Queues {
  constructor(
    private readonly registry: QueueRegistry,
    private readonly admin: JobAdmin,
  ) {}

  async create(q: pb.QueueConfig | undefined): Promise<QueueSpec> {
    if (!q) throw new InvalidArgumentError('queue', 'is required');
    const spec = queueSpecFromProto(q);
    validateQueueSpec(spec, compileMessagePattern);
    return this.registry.create(spec);
  }

  async update(q: pb.QueueConfig | undefined, mask: string[] | undefined): Promise<QueueSpec> {
    if (!q) throw new InvalidArgumentError('queue', 'is required');
    const current = await this.registry.get(validateQueueName(q.name, 'queue.name'));
    const given = queueSpecFromProto(q);
    const next: QueueSpec = { ...current };
    const paths = mask?.length ? mask : Object.keys(MUTABLE).filter((p) => p !== 'paused');
    for (const raw of paths) {
      const path = CAMEL[raw] ?? raw;
      const field = MUTABLE[path];
      if (!field) throw new InvalidArgumentError('update_mask', `"${raw}" is not a field UpdateQueue can change; use one of ${Object.keys(MUTABLE).join(', ')}`);
      (next as unknown as Record<string, unknown>)[field] = given[field];
    }
    validateQueueSpec(next, compileMessagePattern);
    return this.registry.update(next);
  }

  async get(name: string): Promise<QueueSpec> {
    return this.registry.get(validateQueueName(name, 'name'));
  }

  async list(pageSize: number, pageToken: string): Promise<{ queues: QueueSpec[]; next: string }> {
    if (pageSize > 1000) throw new InvalidArgumentError('page_size', `must be at most 1000, got ${pageSize}`);
    const size = pageSize || 100;
    const all = await this.registry.list();
    // The token is the last name of the previous page, so paging survives inserts.
    const rest = pageToken ? all.filter((q) => q.name > pageToken) : all;
    const page = rest.slice(0, size);
    return { queues: page, next: rest.length > size ? page[page.length - 1]!.name : '' };
  }

  async delete(name: string, force: boolean): Promise<void> {
    validateQueueName(name, 'name');
    await this.registry.get(name);
    if (!force) {
      const open = await this.admin.unfinishedCount(name);
      if (open > 0) throw new FailedPreconditionError(`queue "${name}" has ${open} unfinished jobs; pass force to delete it anyway`);
    }
    await this.registry.delete(name);
  }

  async setPaused(name: string, paused: boolean): Promise<QueueSpec> {
    const current = await this.registry.get(validateQueueName(name, 'name'));
    if (current.paused === paused) return current;
    return this.registry.update({ ...current, paused });
  }
}
