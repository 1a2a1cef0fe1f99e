// processors.modules and processors.builtins of jobmesh.config.yaml, read by a worker-pool started
// with JOBMESH_CONFIG: module paths are relative to the config file, not to the working directory.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '@jobmesh/contracts';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from './harness';

const S = pb.JobState;
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

  beforeAll(async () => {
    await h.client.createQueue({ queue: { name: queue } });
    const config = writeConfig(
      'valid',
      ['processors:', '  modules:', '    - ./processors/greet.js', '  builtins:', '    http.request: false', ''].join('\n'),
      { 'processors/greet.js': processorModule(queue) },
    );
    // The working directory is elsewhere: only a path resolved against the config file finds the module.
    expect(process.cwd()).not.toBe(join(dir, 'valid'));
    await h.startPool([], { JOBMESH_CONFIG: config });
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
  it('makes start-up fail with a message naming the resolved path', async () => {
    const config = writeConfig('missing', ['processors:', '  modules:', '    - ./processors/nope.js', ''].join('\n'));
    const expected = join(dir, 'missing', 'processors', 'nope.js');
    await expect(h.startPool([], { JOBMESH_CONFIG: config })).rejects.toThrow(`cannot load processor module ${expected}`);
  });
});
