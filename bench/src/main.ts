import { availableParallelism } from 'node:os';
import { rawJobOptions, startEnvironment } from './environment';
import { USAGE, UsageError, parseBenchOptions } from './options';
import { formatJson, formatTable } from './report';
import { type ScenarioResult, runScenario } from './runner';
import { scenarios } from './scenarios';

/** Time the process may take to exit by itself after clean-up before it is made to. */
const EXIT_GRACE_MS = 2_000;

async function main(): Promise<number> {
  let options;
  try {
    options = parseBenchOptions(process.argv.slice(2), process.env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (options === 'help') {
    console.log(USAGE);
    return 0;
  }
  const unknown = options.only.filter((name) => !scenarios.some((s) => s.name === name));
  if (unknown.length) {
    console.error(`unknown scenario ${unknown.join(', ')}; there are: ${scenarios.map((s) => s.name).join(', ')}`);
    return 2;
  }
  const selected = options.only.length ? scenarios.filter((s) => options.only.includes(s.name)) : scenarios;

  const log = (line: string): void => void process.stderr.write(`bench: ${line}\n`);
  const env = await startEnvironment({ rawOptions: options.rawOptions, rawWorker: options.rawWorker });
  log(`redis-server ${env.redisVersion} at ${env.redisUrl}, scheduler as its own process; ${options.rounds} rounds a scenario`);
  log(`raw BullMQ's jobs: ${options.rawOptions === 'jobmesh' ? `a Jobmesh job's BullMQ options, ${JSON.stringify(rawJobOptions('jobmesh'))}` : 'no options (--raw-options bare)'}`);
  log(`raw BullMQ's Worker: ${options.rawWorker === 'process' ? 'a process of its own' : "in the bench's process (--raw-worker bench)"}`);
  const results: ScenarioResult[] = [];
  let failure: unknown;
  try {
    for (const scenario of selected) results.push(await runScenario(scenario, env, { jobs: options.jobs, warmup: options.warmup, rounds: options.rounds, log }));
  } catch (err) {
    failure = err;
  }
  // Redis and the scheduler go in every case; what was measured before a failure is still printed.
  await env.stop().catch((err: unknown) => (failure ??= err));
  if (results.length) {
    console.log(`\n${formatTable(results)}\n`);
    console.log(formatJson(results, { node: process.version, redis: env.redisVersion, cpus: availableParallelism(), rawOptions: options.rawOptions, rawWorker: options.rawWorker }));
  }
  if (failure !== undefined) throw failure;
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    // Everything is closed by now; a handle that still holds the process is a leak to report, not to wait on.
    setTimeout(() => {
      console.error(`bench: something still held the process ${EXIT_GRACE_MS} ms after clean-up; exiting anyway`);
      process.exit(code);
    }, EXIT_GRACE_MS).unref();
  },
  (err: unknown) => {
    console.error('bench failed:', err);
    process.exit(1);
  },
);
