// processors.modules and processors.builtins of jobmesh.config.yaml, read by a worker-pool started
// with JOBMESH_CONFIG: module paths are relative to the config file, not to the working directory.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import * as pb from '@jobmesh/contracts';
import type { RunningWorkerPool } from '../src';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

const S = pb.JobState;
const run = promisify(execFile);
let h: PoolHarness;
let dir: string;

beforeAll(async () => {
  h = await startPoolHarness();
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-config-modules-'));
});
afterAll(async () => {
  await h?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A CommonJS processor module for `queue`, requiring the SDK by absolute path as code outside the repo would. */
function processorModule(queue: string): string {
  return `const { defineProcessor } = require(${JSON.stringify(require.resolve('@jobmesh/sdk'))});
module.exports = {
  greet: defineProcessor({
    queue: ${JSON.stringify(queue)},
    name: 'greet',
    process: async (job) => ({ greeting: 'hello ' + job.data.name }),
  }),
};
`;
}

/** Writes `yaml` as jobmesh.config.yaml in a fresh sub-directory of the temp dir; returns its path. */
function writeConfig(name: string, yaml: string, files: Record<string, string> = {}): string {
  const base = join(dir, name);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(base, path, '..'), { recursive: true });
    writeFileSync(join(base, path), text);
  }
  mkdirSync(base, { recursive: true });
  const config = join(base, 'jobmesh.config.yaml');
  writeFileSync(config, yaml);
  return config;
}

async function finished(queue: string, id: string): Promise<pb.Job> {
  return eventually(
    async () => {
      const j = await h.client.getJob(queue, id);
      return (j.state === S.JOB_STATE_COMPLETED || j.state === S.JOB_STATE_FAILED) && j;
    },
    10_000,
    `job ${queue}/${id} to finish`,
  );
}

describe('a worker-pool configured by jobmesh.config.yaml', () => {
  const queue = uniqueQueue('config-modules');
  let pool: RunningWorkerPool;

  beforeAll(async () => {
    // processor_wait 0: a job whose processor is turned off fails at once instead of waiting for one.
    await h.client.createQueue({ queue: { name: queue, processorWait: { seconds: 0, nanos: 0 } } });
    const config = writeConfig(
      'valid',
      ['processors:', '  modules:', '    - ./processors/greet.js', '  builtins:', '    http.request: false', ''].join('\n'),
      { 'processors/greet.js': processorModule(queue) },
    );
    // The working directory is elsewhere: only a path resolved against the config file finds the module.
    expect(process.cwd()).not.toBe(join(dir, 'valid'));
    pool = await h.startPool([], { JOBMESH_CONFIG: config });
  });

  it('keeps the built-ins the file does not turn off', () => {
    expect(pool.worker.processors.names('*')).toEqual(['email.send']);
    expect(pool.worker.processors.names(queue).sort()).toEqual(['email.send', 'greet']);
  });

  it('runs a job with a processor from a module listed by a path relative to the config file', async () => {
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'greet', data: { name: 'Ada' } } });
    const done = await finished(queue, job!.id);
    expect(pb.jobStateToJSON(done.state)).toBe('JOB_STATE_COMPLETED');
    expect(done.result).toEqual({ greeting: 'hello Ada' });
  });

  it('fails an http.request job as PROCESSOR_NOT_FOUND when the built-in is turned off', async () => {
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'http.request', data: { url: 'http://127.0.0.1:1/' }, options: { attempts: 3 } } });
    const done = await finished(queue, job!.id);
    expect(pb.jobStateToJSON(done.state)).toBe('JOB_STATE_FAILED');
    expect(done.failureReason).toMatch(/^PROCESSOR_NOT_FOUND: no processor for job "http\.request"/);
    expect(done.attemptsMade).toBe(1);
  });
});

describe('a processor module that does not exist', () => {
  // As its own process, the way it runs in production: startWorkerPool() in this process would
  // leave the Redis connections it opened before failing behind (see the report).
  it('makes worker-pool start-up fail with exit code 1 and a message naming the resolved path', async () => {
    const main = resolve(__dirname, '../dist/main.js');
    if (!existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` first (npm test does)`);
    const config = writeConfig('missing', ['processors:', '  modules:', '    - ./processors/nope.js', ''].join('\n'));
    const expected = join(dir, 'missing', 'processors', 'nope.js');
    const started = run(process.execPath, [main], {
      cwd: dir,
      // The timeout only turns a hang into a failure; a clean exit takes about a second.
      timeout: 20_000,
      env: {
        PATH: process.env.PATH ?? '',
        REDIS_URL: h.redis.url,
        JOBMESH_REDIS_PREFIX: h.prefix,
        JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
        JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
        JOBMESH_CONFIG: config,
        LOG_LEVEL: 'warn',
      },
    });
    await expect(started).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining(`worker-pool: cannot load processor module ${expected}`) });
  });
});
