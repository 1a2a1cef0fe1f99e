// node bench/dist/trace-picture.js: the pictures of the README's Tracing section, from spans the
// services really exported. It starts a redis-server, an OTLP receiver (@jobmesh/testing's, which
// decodes the exporters' real requests) and the scheduler, worker-pool and dead-letter services as
// separate processes exporting to it; then
//   1. enqueues a job that fails twice and completes on its third attempt: docs/images/trace.svg;
//   2. enqueues one that fails both its attempts, is dead-lettered, and is replayed with a data
//      patch that lets it complete: docs/images/trace-dead-letter.svg (the job's trace, with the
//      capture) and docs/images/trace-replay.svg (the replay's own trace, linked to the capture).
// The services are stopped with SIGTERM, which exports every span not yet sent, before the
// pictures are drawn. The decoded spans go to trace.json and trace-dead-letter.json beside them,
// with each resource cut to its service.* and telemetry.sdk.* attributes (the rest names the host;
// the worker-pool's replica id is set for the same reason).
//
//   node bench/dist/trace-picture.js [--out <dir>]   run the services, write the pictures
//   node bench/dist/trace-picture.js --render-only   redraw the pictures from the JSON files
//
// It exits 1 when a span it expected did not arrive (the pictures are written all the same).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { JobmeshClient } from '@jobmesh/sdk';
import { type DecodedSpan, type OtlpReceiver, type RedisHandle, renderWaterfall, startOtlpReceiver, startRedis } from '@jobmesh/testing';

const ROOT = resolve(__dirname, '../..');
const PROCESSOR = resolve(ROOT, 'bench/fixtures/flaky-processor.js');
const QUEUE = 'emails';
const JOB_NAME = 'send-welcome-email';

// jobmesh.v1 enum values (bench does not depend on @jobmesh/contracts for two numbers).
const BACKOFF_KIND_FIXED = 1;
const JOB_STATE_COMPLETED = 6;
const JOB_STATE_FAILED = 7;
const JOB_STATE_DEAD_LETTERED = 8;

const say = (line: string): void => void process.stdout.write(`trace-picture: ${line}\n`);

// ---- the services, as separate processes ----

type Kind = 'scheduler' | 'worker-pool' | 'dead-letter';
const READY: Record<Kind, string> = { scheduler: 'scheduler listening', 'worker-pool': 'worker-pool running', 'dead-letter': 'dead-letter listening' };
const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 15_000;

interface Service {
  kind: Kind;
  child: ChildProcess;
  /** "127.0.0.1:port" of its gRPC server. */
  grpcAddress: string;
  logs(): Record<string, unknown>[];
  output(): string;
  /** SIGTERM (SIGKILL after 15 s), resolved once it exited. */
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();
const running = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;
// The last resort if the script dies: no service outlives it.
process.once('exit', () => {
  for (const c of children) if (running(c)) c.kill('SIGKILL');
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/** Spawns `node services/<kind>/dist/main.js` with only PATH and `env`; resolves once it logs that it is ready. */
async function startService(kind: Kind, env: Record<string, string>, cwd: string): Promise<Service> {
  const main = resolve(ROOT, 'services', kind, 'dist', 'main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: run \`npx tsc -b\` first`);
  const child = spawn(process.execPath, [main], {
    cwd,
    env: { PATH: process.env.PATH ?? '', JOBMESH_GRPC_ADDRESS: '127.0.0.1:0', JOBMESH_HTTP_ADDRESS: '127.0.0.1:0', LOG_LEVEL: 'info', JOBMESH_SHUTDOWN_GRACE: '5s', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const logs = (): Record<string, unknown>[] =>
    output.split('\n').flatMap((line) => {
      try {
        const v = JSON.parse(line) as unknown;
        return v && typeof v === 'object' ? [v as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
  const stop = async (): Promise<void> => {
    if (running(child)) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };
  const ready = await waitFor(`${kind} to log "${READY[kind]}"`, STARTUP_TIMEOUT_MS, () => {
    if (!running(child)) throw new Error(`${kind} exited (code ${child.exitCode}, signal ${child.signalCode}) before it was ready`);
    return logs().find((l) => l.msg === READY[kind]);
  }).catch(async (err: unknown) => {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`${(err as Error).message}\n--- ${kind} output ---\n${output}`);
  });
  // scheduler and dead-letter log grpc as "host:port", worker-pool as the port number.
  const grpc = String(ready.grpc);
  return { kind, child, grpcAddress: grpc.includes(':') ? grpc : `127.0.0.1:${grpc}`, logs, output: () => output, stop };
}

/** Polls `probe` every 50 ms until it returns something other than undefined or false. */
async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined | false | Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

// ---- what the pictures should show ----

interface Expected {
  name: string;
  service: string;
  count?: number;
  errors?: number;
}

const ENQUEUE_RPC = 'jobmesh.v1.SchedulerService/EnqueueJob';
const RETRIED: Expected[] = [
  { name: ENQUEUE_RPC, service: 'scheduler' },
  { name: `send ${QUEUE}`, service: 'scheduler' },
  { name: `process ${QUEUE}`, service: 'worker-pool', count: 3, errors: 2 },
  { name: 'render template', service: 'worker-pool', count: 3, errors: 0 },
  { name: 'smtp send', service: 'worker-pool', count: 3, errors: 2 },
];
const DEAD_LETTERED: Expected[] = [
  { name: ENQUEUE_RPC, service: 'scheduler' },
  { name: `send ${QUEUE}`, service: 'scheduler' },
  { name: `process ${QUEUE}`, service: 'worker-pool', count: 2, errors: 2 },
  { name: 'smtp send', service: 'worker-pool', count: 2, errors: 2 },
  { name: `dead_letter ${QUEUE}`, service: 'dead-letter' },
];
const REPLAYED: Expected[] = [
  { name: `replay ${QUEUE}`, service: 'dead-letter' },
  { name: ENQUEUE_RPC, service: 'scheduler' },
  { name: `send ${QUEUE}`, service: 'scheduler' },
  { name: `process ${QUEUE}`, service: 'worker-pool', count: 1, errors: 0 },
  { name: 'smtp send', service: 'worker-pool', count: 1, errors: 0 },
];

/** What of `expected` is not among `spans`, one line each; [] when everything is there. */
function missing(spans: DecodedSpan[], expected: Expected[]): string[] {
  return expected.flatMap((e) => {
    const found = spans.filter((s) => s.name === e.name && s.serviceName === e.service);
    const out: string[] = [];
    if (found.length < (e.count ?? 1)) out.push(`${e.service} "${e.name}": ${found.length} of ${e.count ?? 1}`);
    const errors = found.filter((s) => s.status.code === 'ERROR').length;
    if (e.errors !== undefined && errors !== e.errors) out.push(`${e.service} "${e.name}": ${errors} with status ERROR, expected ${e.errors}`);
    return out;
  });
}

/** `traceId` (a job's own, from GetJob); without one, the trace of a span that names job `jobId`. */
function traceOf(spans: DecodedSpan[], traceId: string, jobId: string): string {
  if (traceId) return traceId;
  return spans.find((s) => s.attributes['messaging.message.id'] === jobId)?.traceId ?? '';
}

// ---- JSON: the decoded spans, bigints as strings ----

function toJson(spans: DecodedSpan[]): string {
  const kept = spans.map((s) => ({ ...s, resource: Object.fromEntries(Object.entries(s.resource).filter(([k]) => k.startsWith('service.') || k.startsWith('telemetry.sdk.'))) }));
  return `${JSON.stringify(kept, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`;
}

function fromJson(text: string): DecodedSpan[] {
  type Stored = Omit<DecodedSpan, 'startTimeUnixNano' | 'endTimeUnixNano' | 'events'> & {
    startTimeUnixNano: string;
    endTimeUnixNano: string;
    events: (Omit<DecodedSpan['events'][number], 'timeUnixNano'> & { timeUnixNano: string })[];
  };
  return (JSON.parse(text) as Stored[]).map((s) => ({
    ...s,
    startTimeUnixNano: BigInt(s.startTimeUnixNano),
    endTimeUnixNano: BigInt(s.endTimeUnixNano),
    events: s.events.map((e) => ({ ...e, timeUnixNano: BigInt(e.timeUnixNano) })),
  }));
}

// ---- the pictures ----

interface Traces {
  retried: string;
  deadLettered: string;
  replayed: string;
}

/** Writes the three pictures from `spans` (every span received) and returns what was missing. */
function draw(out: string, spans: DecodedSpan[], traces: Traces): string[] {
  mkdirSync(out, { recursive: true });
  const of = (id: string): DecodedSpan[] => (id ? spans.filter((s) => s.traceId === id) : []);
  const pictures = [
    { file: 'trace.svg', id: traces.retried, expected: RETRIED, title: `A job retried twice: ${JOB_NAME} on ${QUEUE}` },
    { file: 'trace-dead-letter.svg', id: traces.deadLettered, expected: DEAD_LETTERED, title: `A job dead-lettered after two failed attempts: ${JOB_NAME} on ${QUEUE}` },
    { file: 'trace-replay.svg', id: traces.replayed, expected: REPLAYED, title: `Its replay, in a trace of its own linked to the dead letter` },
  ];
  const problems: string[] = [];
  for (const p of pictures) {
    const mine = of(p.id);
    // Every span goes in, so that links to and from the other traces are named; traceId picks what is drawn.
    writeFileSync(join(out, p.file), renderWaterfall(spans, { traceId: p.id || 'none', title: p.title }));
    const services = [...new Set(mine.map((s) => s.serviceName ?? '?'))].join(', ');
    say(`${relative(process.cwd(), join(out, p.file))}: trace ${p.id || '(none)'}, ${mine.length} spans (${services || 'none'})`);
    for (const m of missing(mine, p.expected)) problems.push(`${p.file}: ${m}`);
  }
  return problems;
}

/** The ids of the three traces, from the spans themselves, for --render-only. */
function tracesIn(spans: DecodedSpan[]): Traces {
  const replay = spans.find((s) => s.name === `replay ${QUEUE}`);
  const capture = spans.find((s) => s.name === `dead_letter ${QUEUE}`);
  const retried = spans.find((s) => s.name === `process ${QUEUE}` && s.attributes['jobmesh.job.attempt'] === 3);
  return { retried: retried?.traceId ?? '', deadLettered: capture?.traceId ?? '', replayed: replay?.traceId ?? '' };
}

// ---- the run ----

async function run(out: string): Promise<string[]> {
  const cleanups: (() => Promise<unknown>)[] = [];
  const services: Service[] = [];
  try {
    say('starting redis-server and an OTLP receiver');
    const redis: RedisHandle = await startRedis({ own: true });
    cleanups.push(() => redis.stop());
    const receiver: OtlpReceiver = await startOtlpReceiver();
    cleanups.push(() => receiver.close());
    const dir = mkdtempSync(join(tmpdir(), 'jobmesh-trace-picture-'));
    tempDirs.add(dir);
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));

    const env = (service: string): Record<string, string> => ({
      REDIS_URL: redis.url,
      JOBMESH_REDIS_PREFIX: 'trace-picture',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.httpUrl,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_SERVICE_NAME: service,
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    say('starting scheduler, worker-pool and dead-letter');
    const scheduler = await startService('scheduler', env('scheduler'), dir);
    services.push(scheduler);
    const pool = await startService('worker-pool', { ...env('worker-pool'), JOBMESH_PROCESSORS: PROCESSOR, JOBMESH_REPLICA_ID: 'worker-pool-1' }, dir);
    services.push(pool);
    const deadLetter = await startService('dead-letter', { ...env('dead-letter'), JOBMESH_SCHEDULER_ADDRESS: scheduler.grpcAddress, JOBMESH_DLQ_SWEEP_INTERVAL: '500ms' }, dir);
    services.push(deadLetter);

    const client = new JobmeshClient({ address: scheduler.grpcAddress, deadLetterAddress: deadLetter.grpcAddress });
    cleanups.push(async () => client.close());
    await client.createQueue({ queue: { name: QUEUE, concurrency: 1 } });
    await waitFor(`the worker-pool to serve ${QUEUE}`, 10_000, () => pool.logs().some((l) => l.msg === 'serving queue' && l.queue === QUEUE));

    const backoff = { kind: BACKOFF_KIND_FIXED, delay: { seconds: 0, nanos: 150_000_000 } };
    const settled = (id: string, states: number[], what: string): Promise<{ traceId: string }> =>
      waitFor(what, 30_000, async () => {
        const job = await client.getJob(QUEUE, id);
        return states.includes(job.state) ? job : undefined;
      });

    // 1. Fails twice, completes on the third attempt. No traceparent: the scheduler starts the trace.
    say('enqueueing a job that fails twice, then completes');
    const retried = (await client.enqueueJob({ queue: QUEUE, job: { name: JOB_NAME, data: { to: 'ada@example.com', failAttempts: 2 }, options: { attempts: 3, backoff } } })).job!;
    const retriedDone = await settled(retried.id, [JOB_STATE_COMPLETED], `job ${retried.id} to complete`);

    // 2. Fails both attempts, is dead-lettered, and is replayed with a patch that lets it complete.
    say('enqueueing a job that is dead-lettered, then replaying it');
    const doomed = (await client.enqueueJob({ queue: QUEUE, job: { name: JOB_NAME, data: { to: 'grace@example.com', failAttempts: 99 }, options: { attempts: 2, backoff } } })).job!;
    const doomedDone = await settled(doomed.id, [JOB_STATE_FAILED, JOB_STATE_DEAD_LETTERED], `job ${doomed.id} to fail for good`);
    const dl = await waitFor(`the dead letter of job ${doomed.id}`, 10_000, async () => (await client.deadLetters.list({ filter: { queue: QUEUE } })).deadLetters.find((d) => d.job?.id === doomed.id));
    const { replayed } = await client.deadLetters.replay({ ids: [dl.id], dataPatch: { failAttempts: 0 } });
    const again = replayed[0]?.job;
    if (!again) throw new Error(`the replay of ${dl.id} enqueued no job`);
    const againDone = await settled(again.id, [JOB_STATE_COMPLETED], `replayed job ${again.id} to complete`);

    // Let the batch processors export (100 ms), then stop the services: SIGTERM flushes what is left.
    await receiver.waitForSpans((spans) => missing(spans, RETRIED).length === 0, 3_000).catch(() => undefined);
    say('stopping the services (they flush their spans)');
    await Promise.all(services.splice(0).map((s) => s.stop()));

    const spans = receiver.spans();
    const traces: Traces = {
      retried: traceOf(spans, retriedDone.traceId, retried.id),
      deadLettered: traceOf(spans, doomedDone.traceId, doomed.id),
      replayed: traceOf(spans, againDone.traceId, again.id),
    };
    say(`received ${spans.length} spans in ${receiver.requests} export requests`);
    const problems = draw(out, spans, traces);
    writeFileSync(join(out, 'trace.json'), toJson(spans.filter((s) => s.traceId === traces.retried)));
    writeFileSync(join(out, 'trace-dead-letter.json'), toJson(spans.filter((s) => s.traceId === traces.deadLettered || s.traceId === traces.replayed)));
    return problems;
  } finally {
    // Whatever failed, nothing started here stays behind: services first, then the rest, newest first.
    await Promise.all(services.map((s) => s.stop()));
    for (const clean of cleanups.reverse()) await clean().catch((err: unknown) => process.stderr.write(`trace-picture: clean-up: ${String(err)}\n`));
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const at = args.indexOf('--out');
  const out = at >= 0 && args[at + 1] ? resolve(args[at + 1]!) : resolve(ROOT, 'docs/images');
  let problems: string[];
  if (args.includes('--render-only')) {
    const spans = [...fromJson(readFileSync(join(out, 'trace.json'), 'utf8')), ...fromJson(readFileSync(join(out, 'trace-dead-letter.json'), 'utf8'))];
    problems = draw(out, spans, tracesIn(spans));
  } else {
    problems = await run(out);
  }
  if (problems.length) {
    process.stderr.write(`trace-picture: spans expected but not received:\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
    process.exitCode = 1;
  } else say('every expected span is in the pictures');
}

// Ctrl-C: the exit hook above kills the services and removes the temp dir; startRedis's own, redis-server.
process.once('SIGINT', () => process.exit(130));

main().catch((err: unknown) => {
  process.stderr.write(`trace-picture: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
