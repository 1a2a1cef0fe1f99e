import type { JobContext } from './processor';

/** One named step of {@link runSteps}: gets the previous step's output, returns its own. */
export interface Step<In = unknown, Out = unknown> {
  name: string;
  run(input: In, ctx: JobContext): Out | Promise<Out>;
}

/**
 * Runs named steps in order, each fed the previous one's output. Each step's output is persisted
 * (ctx.step), so a retry resumes at the step that failed with the data it had. Progress is reported
 * after each step.
 */
export async function runSteps<T = unknown>(ctx: JobContext, initial: unknown, steps: Step<any, any>[]): Promise<T> {
  let value: unknown = initial;
  for (const [i, s] of steps.entries()) {
    const input = value;
    value = await ctx.step(s.name, () => s.run(input, ctx));
    await ctx.progress(Math.round(((i + 1) / steps.length) * 100));
  }
  return value as T;
}

export interface BatchItemFailure {
  index: number;
  error: string;
}

export interface BatchResult<R> {
  total: number;
  succeeded: number;
  failed: BatchItemFailure[];
  /** Per item, in order; undefined where the item failed. */
  results: (R | undefined)[];
}

export interface BatchOptions {
  /** Items per chunk. @default 100 */
  chunkSize?: number;
  /** Items of one chunk processed at once. @default 1 */
  concurrency?: number;
}

/**
 * Processes `items` in chunks. A failing item is recorded in the result and does not fail the job.
 * Each finished chunk is persisted as a step, so a retry skips chunks already done; progress
 * (percent of items) is reported after each chunk. Aborts between items when ctx.signal fires; an
 * item that throws because of the abort is not recorded as failed, and its chunk runs again on retry.
 */
export async function processInBatches<T, R>(
  ctx: JobContext,
  items: readonly T[],
  fn: (item: T, index: number) => R | Promise<R>,
  opts: BatchOptions = {},
): Promise<BatchResult<R>> {
  const chunkSize = Math.max(1, opts.chunkSize ?? 100);
  const concurrency = Math.max(1, opts.concurrency ?? 1);
  const results: (R | undefined)[] = new Array(items.length);
  const failed: BatchItemFailure[] = [];
  for (let start = 0; start < items.length; start += chunkSize) {
    const end = Math.min(start + chunkSize, items.length);
    const chunk = await ctx.step(`batch:${start}-${end}`, async () => {
      const out: { results: (R | undefined)[]; failed: BatchItemFailure[] } = { results: new Array(end - start), failed: [] };
      let next = start;
      const lane = async (): Promise<void> => {
        while (next < end) {
          ctx.signal.throwIfAborted();
          const index = next++;
          try {
            out.results[index - start] = await fn(items[index]!, index);
          } catch (err) {
            // An item cut short because the attempt ended has not failed, and its chunk is not done.
            if (ctx.signal.aborted) throw ctx.signal.reason;
            out.failed.push({ index, error: err instanceof Error ? err.message : String(err) });
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, end - start) }, lane));
      out.failed.sort((a, b) => a.index - b.index);
      return out;
    });
    chunk.results.forEach((r, i) => (results[start + i] = r ?? undefined));
    failed.push(...chunk.failed);
    await ctx.progress(Math.round((end / items.length) * 100));
  }
  return { total: items.length, succeeded: items.length - failed.length, failed, results };
}
