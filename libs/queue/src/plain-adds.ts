// Plain jobs (no idempotency key, id, delay, priority or parent) added many to one Redis command:
// BullMQ's own add script, run once per job inside one script call.
import { dirname, join } from 'node:path';
import type { JobsOptions, Queue } from 'bullmq';
import type { RedisClient } from './connection';
import { type JobData, SerializedJob } from './job-data';
import { LuaScript } from './scripts';
import { TurnBatches } from './turn-batches';

/** One plain job for {@link PlainAdder}. */
export interface PlainJob {
  name: string;
  data: JobData;
  opts: JobsOptions;
}

/** True when BullMQ adds a job with `opts` through its standard add script (the waiting list). */
export function isPlain(opts: JobsOptions): boolean {
  return !opts.jobId && !opts.deduplication && !opts.parent && !(typeof opts.delay === 'number' && opts.delay > 0) && !opts.priority;
}

/**
 * A turn's adds to one queue go to Redis as soon as this many are ready, not only at the end of
 * the turn, so Redis runs the first ones while the rest are prepared. With 64 enqueues in flight
 * (the single-enqueue benchmark), 32 a call gave 0.54-0.67 of queue.add against 0.42-0.50 with
 * the whole turn in one call (A/B, 3 rounds each, twice); a stream of 1,000 in flight was the same
 * either way (0.87-1.02).
 */
const CHUNK = 32;
/** BullMQ's add script takes 9 keys, then its packed arguments, the data and the packed options. */
const KEYS = 9;
const ARGS = 3;

/**
 * In a script call, a job's packed arguments or packed options that are the very ones of the job
 * before it (PlainAdder's reuse, see ArgumentsMemo) go as this empty string, which no msgpack
 * encoding is: the script takes the job before's. A batch of equal jobs then sends each one's data
 * and two empty strings, not the same 190 bytes of packed name and options again (Jobmesh's default
 * options: 46 and 147 bytes, against 88 of the bench's data), for ioredis to encode
 * and Redis to read.
 */
const SAME = '';

/**
 * BullMQ's `addStandardJob` script, as BullMQ ships it, made the body of a function that the
 * script runs once per job: KEYS are the queue's (the same for every job), ARGV three per job,
 * where an empty packed arguments or packed options (SAME) stands for the job before's.
 * Answers each job's id (or BullMQ's negative error code) in order.
 */
function addStandardJobs(): string {
  const file = join(dirname(require.resolve('bullmq')), 'scripts', 'addStandardJob-9.js');
  const shipped = (require(file) as { addStandardJob?: { content?: unknown; keys?: unknown } }).addStandardJob;
  if (typeof shipped?.content !== 'string' || shipped.keys !== KEYS) {
    throw new Error(`${file} is not BullMQ's addStandardJob script with ${KEYS} keys: this BullMQ version is not one libs/queue knows`);
  }
  return [
    'local function addStandardJob(KEYS, ARGV)',
    shipped.content,
    'end',
    'local ids = {}',
    'local packedArgs, packedOpts',
    `for i = 1, #ARGV, ${ARGS} do`,
    `  if ARGV[i] ~= '${SAME}' then packedArgs = ARGV[i] end`,
    `  if ARGV[i + 2] ~= '${SAME}' then packedOpts = ARGV[i + 2] end`,
    '  ids[#ids + 1] = addStandardJob(KEYS, { packedArgs, ARGV[i + 1], packedOpts })',
    'end',
    'return ids',
  ].join('\n');
}

const script = new LuaScript<string[], (string | Buffer)[]>('add-standard-jobs-9', addStandardJobs);

type Captured = { command: string; args: (string | Buffer)[] };

/**
 * The arguments BullMQ's add would send for `job`, made by BullMQ itself (its backend's
 * addJobToTransaction, handed a stand-in for the connection that keeps what it is given).
 */
function argumentsOf(queue: Queue, job: SerializedJob): Captured {
  let captured: Captured | undefined;
  const stand = {
    runCommand(command: string, args: (string | Buffer)[]): Promise<string> {
      captured = { command, args };
      return Promise.resolve('0');
    },
  };
  const backend = queue.backend as unknown as { addJobToTransaction(client: unknown, json: unknown, id: undefined, parent: object): Promise<unknown> };
  void backend.addJobToTransaction(stand, job.checkedJSON(), undefined, {});
  if (!captured || !captured.command.startsWith('addStandardJob:') || captured.args.length !== KEYS + ARGS) {
    throw new Error(`BullMQ did not add job "${job.name}" with its standard add script (${captured?.command ?? 'no command'}); only plain jobs may be added together`);
  }
  return captured;
}

/**
 * Whether two option values (JSON-like: objects, arrays, primitives) are equal, key by key.
 * node:util's isDeepStrictEqual took 1.7–2.5 µs on Jobmesh's default options, this 0.5.
 */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const keys = Object.keys(left);
  if (keys.length !== Object.keys(right).length) return false;
  for (const key of keys) if (!(key in right) || !sameValue(left[key], right[key])) return false;
  return true;
}

/**
 * BullMQ's arguments for a plain job are its queue's keys, its name and timestamp packed (with
 * nulls for what a plain job lacks), its data, and its options packed. Jobs of one queue and name,
 * with equal options, made in the same millisecond (most of a batch, and of a turn's adds) differ
 * in their data alone: the first one's arguments are BullMQ's (argumentsOf), the ones after it
 * reuse them with their own data, and skip BullMQ's encoding and option checks, which read nothing
 * else. A job with a sizeLimit always goes through BullMQ, whose check of it reads the data. The
 * encoding was 5 of the 7 µs a plain job cost the scheduler here, out of about 30 in all.
 */
class ArgumentsMemo {
  private last?: { queue: Queue; name: string; timestamp: number; opts: JobsOptions; args: Captured['args'] };

  of(queue: Queue, job: SerializedJob): Captured['args'] {
    const last = this.last;
    if (last && last.queue === queue && last.name === job.name && last.timestamp === job.timestamp && job.json !== undefined && sameValue(last.opts, job.opts)) {
      const args = last.args.slice();
      args[KEYS + 1] = job.json;
      return args;
    }
    const { args } = argumentsOf(queue, job);
    this.last = job.opts.sizeLimit || job.json === undefined ? undefined : { queue, name: job.name, timestamp: job.timestamp, opts: job.opts, args };
    return args;
  }
}

interface Pending {
  job: SerializedJob;
  args: Captured['args'];
  resolve: (job: SerializedJob) => void;
  reject: (err: unknown) => void;
}

/**
 * Adds plain jobs to a queue many to a Redis command. Each is stored exactly as BullMQ's
 * `queue.add` stores it: the arguments are BullMQ's, and so is the script that writes it.
 * - {@link add} adds one job; the jobs added in one turn of the event loop to one queue go in one
 *   script call (CHUNK at most), each answered on its own. One socket write and one
 *   command for all of them, instead of one each: the command's encoding and its write were
 *   a third of the scheduler's time in the enqueue benchmarks.
 * - {@link addAll} adds jobs in one script call: Redis runs a script whole, so all of them are
 *   added or, when Redis refuses the call, none.
 * A job BullMQ refuses (its option checks) is refused before anything is sent.
 */
export class PlainAdder {
  private readonly waiting = new TurnBatches<Queue, Pending>((_, batch) => this.send(batch), CHUNK);
  private readonly argumentsOf = new ArgumentsMemo();

  constructor(private readonly redis: RedisClient) {}

  add(queue: Queue, spec: PlainJob): Promise<SerializedJob> {
    const job = new SerializedJob(queue, spec.name, spec.data, spec.opts);
    let args: Captured['args'];
    try {
      args = this.argumentsOf.of(queue, job);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => this.waiting.push(queue, { job, args, resolve, reject }));
  }

  async addAll(queue: Queue, specs: PlainJob[]): Promise<SerializedJob[]> {
    if (specs.length === 0) return [];
    const jobs = specs.map((s) => new SerializedJob(queue, s.name, s.data, s.opts));
    const args = jobs.map((j) => this.argumentsOf.of(queue, j));
    const ids = await this.run(args[0]!.slice(0, KEYS), args);
    return jobs.map((job, i) => withId(job, ids[i]));
  }

  /** Sends one turn's adds to a queue (CHUNK at most) in one script call, answering each. */
  private send(batch: Pending[]): void {
    this.run(
      batch[0]!.args.slice(0, KEYS),
      batch.map((p) => p.args),
    ).then(
      (ids) =>
        batch.forEach((p, i) => {
          try {
            p.resolve(withId(p.job, ids[i]));
          } catch (err) {
            p.reject(err);
          }
        }),
      (err: unknown) => batch.forEach((p) => p.reject(err)),
    );
  }

  private async run(keys: Captured['args'], perJob: Captured['args'][]): Promise<unknown[]> {
    const argv: Captured['args'] = [];
    let before: Captured['args'] | undefined;
    for (const a of perJob) {
      // The same Buffer as the job before's (ArgumentsMemo reused it): sent as SAME.
      argv.push(a[KEYS] === before?.[KEYS] ? SAME : a[KEYS]!, a[KEYS + 1]!, a[KEYS + 2] === before?.[KEYS + 2] ? SAME : a[KEYS + 2]!);
      before = a;
    }
    const ids = await script.run(this.redis, keys as string[], argv);
    if (!Array.isArray(ids) || ids.length !== perJob.length) throw new Error(`add-standard-jobs answered ${Array.isArray(ids) ? ids.length : typeof ids} ids for ${perJob.length} jobs`);
    return ids;
  }
}

/** The job with the id the script answered for it; BullMQ's negative codes are its refusals. */
function withId(job: SerializedJob, id: unknown): SerializedJob {
  if (typeof id === 'number' && id < 0) throw new Error(`BullMQ refused to add job "${job.name}" (code ${id})`);
  job.id = String(id);
  return job;
}
