// `jobmesh dlq …` as an operator runs it: the built CLI (npx tsc -b cli) as its own process, against
// a scheduler, a worker-pool with failing processors and a dead-letter service in this process.
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import {
  type DeadLetterClient,
  type DeadLetterHarness,
  enqueueFailures,
  failedCount,
  startDeadLetterHarness,
  uniqueQueue,
  waitFor,
} from '@jobmesh/dead-letter/testing';

const CLI = resolve(__dirname, '../../cli/dist/main.js');
const run = promisify(execFile);

let h: DeadLetterHarness;
let dl: DeadLetterClient;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  h = await startDeadLetterHarness();
  const started = await h.startDeadLetter();
  dl = started.client;
  env = { PATH: process.env.PATH, HOME: process.env.HOME, JOBMESH_ADDRESS: h.address, JOBMESH_DLQ_ADDRESS: `127.0.0.1:${started.service.grpcPort}` };
});
afterAll(async () => {
  await h?.stop();
});

const jobmesh = (...args: string[]) => run(process.execPath, [CLI, ...args], { env });
/** Runs a command with --json; its output must be exactly one JSON line. */
async function jobmeshJson<T = Record<string, unknown>>(...args: string[]): Promise<T> {
  const { stdout } = await jobmesh('--json', ...args);
  expect(stdout.indexOf('\n')).toBe(stdout.length - 1);
  return JSON.parse(stdout) as T;
}

/** Makes the failures on a new `queue` and waits until every one is dead-lettered. */
async function deadLetters(n: { fail?: number; fatal?: number; ghost?: number }, label = 'dlq-cli'): Promise<string> {
  const queue = uniqueQueue(label);
  await h.client.createQueue({ queue: { name: queue } });
  await enqueueFailures(h, queue, n);
  const total = (n.fail ?? 0) + (n.fatal ?? 0) + (n.ghost ?? 0);
  await waitFor(`${total} dead letters on ${queue}`, async () => (await dl.stats(queue)).total === total, 30_000);
  return queue;
}

/** A paused queue, so replayed jobs stay waiting there. */
async function pausedQueue(): Promise<string> {
  const name = uniqueQueue('dlq-target');
  await h.client.createQueue({ queue: { name, paused: true } });
  return name;
}

const idsOf = async (queue: string, name?: string): Promise<string[]> =>
  (await dl.list({ filter: { queue, jobName: name }, pageSize: 1000 })).deadLetters.map((d) => d.id);

type ListJson = { deadLetters?: { id: string; category: string; severity: string; quarantined?: boolean; job: { queue: string; name: string } }[]; nextPageToken?: string };
type ReplayJson = { replayed?: { deadLetterId: string; job: { queue: string; id: string }; deduplicated?: boolean }[]; skippedQuarantined?: number; skippedReplayed?: number };

it('lists dead letters as a table and as JSON, filtered by queue, name, category and time, a page at a time', async () => {
  const queue = await deadLetters({ fail: 2, fatal: 1 });

  const text = (await jobmesh('dlq', 'list', '--queue', queue)).stdout;
  expect(text).toMatch(/^ID\s+QUEUE\s+JOB\s+CATEGORY\s+SEVERITY\s+DEAD-LETTERED\s+ATTEMPTS\s+QUARANTINED\s+ERROR$/m);
  const q = queue.replace(/-/g, '\\-');
  expect(text.match(new RegExp(`^${q}:\\S+:2\\s+${q}\\s+fail\\s+EXHAUSTED_RETRIES\\s+warning\\s+\\d{4}-\\d\\d-\\d\\dT\\S+\\s+2\\s+boom$`, 'gm'))).toHaveLength(2);
  expect(text).toMatch(new RegExp(`^${q}:\\S+:1\\s+${q}\\s+fatal\\s+UNRECOVERABLE\\s+warning\\s+\\S+\\s+1\\s+bad input$`, 'm'));
  expect(text).not.toContain('more:');

  const json = await jobmeshJson<ListJson>('dlq', 'list', '--queue', queue);
  expect(json.deadLetters).toHaveLength(3);
  expect(json.deadLetters!.every((d) => d.job.queue === queue && d.severity === 'SEVERITY_WARNING')).toBe(true);
  expect(json.nextPageToken).toBeUndefined();

  const count = async (...filter: string[]) => (await jobmeshJson<ListJson>('dlq', 'list', '--queue', queue, ...filter)).deadLetters?.length ?? 0;
  expect(await count('--category', 'UNRECOVERABLE')).toBe(1);
  expect(await count('--name', 'fail')).toBe(2);
  expect(await count('--since', '1h')).toBe(3);
  expect(await count('--until', '1h')).toBe(0);
  expect(await count('--since', new Date(Date.now() + 3_600_000).toISOString())).toBe(0);
  expect(await count('--until', new Date(Date.now() + 3_600_000).toISOString())).toBe(3);
  expect((await jobmesh('dlq', 'list', '--queue', queue, '--name', 'nobody')).stdout).toBe('(none)\n');

  const first = (await jobmesh('dlq', 'list', '--queue', queue, '--limit', '2')).stdout;
  const token = /^more: --page-token (\S+)$/m.exec(first)?.[1];
  expect(token).toBeDefined();
  const second = await jobmeshJson<ListJson>('dlq', 'list', '--queue', queue, '--limit', '2', '--page-token', token!);
  expect(second.deadLetters).toHaveLength(1);
  expect(first).not.toContain(second.deadLetters![0]!.id);
});

it('shows one dead letter in full, and NOT_FOUND with exit code 1 for an unknown id', async () => {
  const queue = await deadLetters({ fail: 1 });
  const [id] = await idsOf(queue);

  const text = (await jobmesh('dlq', 'show', id!)).stdout;
  expect(text).toMatch(new RegExp(`^id\\s+${id}$`, 'm'));
  expect(text).toMatch(/^category\s+EXHAUSTED_RETRIES$/m);
  expect(text).toMatch(/^severity\s+warning$/m);
  expect(text).toMatch(/^dead-lettered\s+\d{4}-\d\d-\d\dT/m);
  expect(text).toMatch(/^trace id/m);
  expect(text).toMatch(/^quarantined\s+no$/m);
  expect(text).toMatch(/^ {2}name\s+fail$/m); // the job snapshot
  expect(text).toMatch(/^ {2}data\s+\{"i":0\}$/m);
  // Both attempts, each with its error and stack frames.
  expect(text).toMatch(/^ {2}attempt 1.*: Error: boom\n {6}at /m);
  expect(text).toMatch(/^ {2}attempt 2.*: Error: boom\n {6}at /m);
  expect(text).toMatch(/^replays\n {2}\(none\)$/m);

  const json = await jobmeshJson<{ deadLetter: { id: string; category: string; job: { data: unknown }; errors: { attempt: number; message: string; stacktrace: string[] }[] } }>(
    'dlq',
    'show',
    id!,
  );
  expect(json.deadLetter).toMatchObject({ id, category: 'EXHAUSTED_RETRIES', job: { data: { i: 0 } } });
  expect(json.deadLetter.errors.map((e) => [e.attempt, e.message])).toEqual([
    [1, 'boom'],
    [2, 'boom'],
  ]);
  expect(json.deadLetter.errors[0]!.stacktrace.length).toBeGreaterThan(1);

  await expect(jobmesh('dlq', 'show', `${queue}:nope:1`)).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining(`NOT_FOUND: dead letter "${queue}:nope:1" not found`) });
});

it('replays by id onto another queue with a data patch; the new job exists and the replay is recorded', async () => {
  const queue = await deadLetters({ fatal: 1 });
  const [id] = await idsOf(queue);
  const target = await pausedQueue();

  const text = (await jobmesh('dlq', 'replay', id!, '--to', target, '--patch', '{"fixed":true}')).stdout;
  const m = new RegExp(`^${id} → ${target}/(\\S+)\nreplayed 1, skipped 0 quarantined, 0 already replayed\n$`).exec(text);
  expect(m).not.toBeNull();
  const job = await h.client.getJob(target, m![1]!);
  expect(job).toMatchObject({ name: 'fatal', queue: target, data: { i: 0, fixed: true } });
  expect((await jobmesh('dlq', 'show', id!)).stdout).toMatch(new RegExp(`^replays\\n {2}\\S+ {2}→ ${target}/${m![1]}$`, 'm'));

  // Replayed again onto the same queue: the dead letter's idempotency key gives the same job back.
  const again = await jobmeshJson<ReplayJson>('dlq', 'replay', id!, '--to', target, '--rate', '50');
  expect(again.replayed).toEqual([{ deadLetterId: id, job: { queue: target, id: m![1] }, deduplicated: true }]);
  expect((await jobmesh('dlq', 'replay', id!, '--to', target)).stdout).toBe(`${id} → ${target}/${m![1]} (enqueued by an earlier replay)\nreplayed 1, skipped 0 quarantined, 0 already replayed\n`);
  expect((await h.client.listJobs({ queue: target })).jobs).toHaveLength(1);
});

it('refuses to replay a quarantined dead letter by id, skips it by filter, and replays it once released', async () => {
  const queue = await deadLetters({ fatal: 3 });
  const [id, ...others] = await idsOf(queue);
  const target = await pausedQueue();

  await expect(jobmesh('dlq', 'quarantine', id!, '--reason', 'poison pill')).resolves.toMatchObject({ stdout: 'quarantined 1 of 1\n' });
  expect((await jobmesh('dlq', 'show', id!)).stdout).toMatch(/^quarantined\s+yes \(poison pill\)$/m);
  expect((await jobmesh('dlq', 'list', '--queue', queue)).stdout).toMatch(new RegExp(`^${id}\\s.*\\syes\\s+bad input$`, 'm'));

  await expect(jobmesh('dlq', 'replay', id!, '--to', target)).rejects.toMatchObject({
    code: 1,
    stderr: expect.stringContaining(`FAILED_PRECONDITION: dead letter "${id}" is quarantined`),
  });

  const byFilter = await jobmeshJson<ReplayJson>('dlq', 'replay', '--queue', queue, '--to', target);
  expect(byFilter.skippedQuarantined).toBe(1);
  expect(byFilter.replayed?.map((r) => r.deadLetterId).sort()).toEqual([...others].sort());
  // Run again, the two replayed are skipped; --include-replayed asks for them (the same jobs come back).
  expect((await jobmesh('dlq', 'replay', '--queue', queue, '--name', 'fatal', '--to', target)).stdout).toBe(
    'replayed 0, skipped 1 quarantined, 2 already replayed (--include-replayed replays those too)\n',
  );
  const included = await jobmeshJson<ReplayJson>('dlq', 'replay', '--queue', queue, '--to', target, '--include-replayed');
  expect(included.replayed?.map((r) => [r.deadLetterId, r.deduplicated]).sort()).toEqual([...others].sort().map((o) => [o, true]));

  await expect(jobmeshJson('dlq', 'release', id!)).resolves.toEqual({ updated: 1 });
  await expect(jobmesh('dlq', 'release', id!)).resolves.toMatchObject({ stdout: 'released 0 of 1\n' }); // already released
  const replayed = await jobmeshJson<ReplayJson>('dlq', 'replay', id!, '--to', target);
  await expect(h.client.getJob(target, replayed.replayed![0]!.job.id)).resolves.toMatchObject({ name: 'fatal' });

  await expect(jobmesh('dlq', 'quarantine', `${queue}:nope:1`)).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('NOT_FOUND') });
});

it('purges by id, by age and by filter, and prints how many', async () => {
  // keep_failed 0: once captured, BullMQ's copies go, so no later sweep can capture a purged
  // dead letter again (with BullMQ's copy still there, it would; see the report).
  const queue = uniqueQueue('dlq-purge');
  await h.client.createQueue({ queue: { name: queue } });
  await h.client.enqueueJobs({ queue, jobs: [0, 1, 2, 3].map((i) => ({ name: 'fatal', data: { i }, options: { attempts: 1, keepFailed: { count: 0 } } })) });
  const redis = h.redisClient();
  await waitFor('4 dead letters, and no job left in the failed set', async () => (await dl.stats(queue)).total === 4 && (await failedCount(redis, h.prefix, queue)) === 0, 30_000);
  const [one, ...rest] = await idsOf(queue);

  await expect(jobmesh('dlq', 'purge', one!)).resolves.toMatchObject({ stdout: 'purged 1 dead letter\n' });
  // All or nothing: a purged (unknown) id among the ids purges none of them.
  await expect(jobmesh('dlq', 'purge', rest[0]!, one!)).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining(`NOT_FOUND: dead letter "${one}" not found`) });
  // All of them failed moments ago: none is an hour old, all are older than a millisecond.
  await expect(jobmesh('dlq', 'purge', '--queue', queue, '--older-than', '1h')).resolves.toMatchObject({ stdout: 'purged 0 dead letters\n' });
  await expect(jobmesh('dlq', 'purge', '--queue', queue, '--until', '1h')).resolves.toMatchObject({ stdout: 'purged 0 dead letters\n' });
  await expect(jobmeshJson('dlq', 'purge', rest[0]!, '--older-than', '1ms')).resolves.toEqual({ purged: 1 });
  await expect(jobmeshJson('dlq', 'purge', '--queue', queue, '--older-than', '1ms')).resolves.toEqual({ purged: 2 });
  expect((await dl.stats(queue)).total).toBe(0);
});

it('counts dead letters per queue and category, with the total', async () => {
  const queue = await deadLetters({ fail: 2, fatal: 1, ghost: 1 });
  const q = queue.replace(/-/g, '\\-');

  const text = (await jobmesh('dlq', 'stats', '--queue', queue)).stdout;
  expect(text).toMatch(/^QUEUE\s+CATEGORY\s+COUNT$/m);
  expect(text).toMatch(new RegExp(`^${q}\\s+EXHAUSTED_RETRIES\\s+2$`, 'm'));
  expect(text).toMatch(new RegExp(`^${q}\\s+PROCESSOR_NOT_FOUND\\s+1$`, 'm'));
  expect(text).toMatch(new RegExp(`^${q}\\s+UNRECOVERABLE\\s+1$`, 'm'));
  expect(text.endsWith('\ntotal 4\n')).toBe(true);

  await expect(jobmeshJson('dlq', 'stats', '--queue', queue)).resolves.toEqual({
    counts: [
      { queue, category: 'EXHAUSTED_RETRIES', count: 2 },
      { queue, category: 'PROCESSOR_NOT_FOUND', count: 1 },
      { queue, category: 'UNRECOVERABLE', count: 1 },
    ],
    total: 4,
  });
  const all = await jobmeshJson<{ total: number }>('dlq', 'stats');
  expect(all.total).toBe((await dl.stats('')).total);
  expect(all.total).toBeGreaterThanOrEqual(4);
});

it('replays every dead letter only with --all', async () => {
  await deadLetters({ fatal: 1 });
  const target = await pausedQueue();
  // Every dead letter of this file's earlier tests too, except the quarantined ones (none left)
  // and those replayed already.
  const all = (await dl.list({ pageSize: 1000 })).deadLetters.filter((d) => !d.quarantined);
  const fresh = all.filter((d) => !d.replays.length).map((d) => d.id);
  const res = await jobmeshJson<ReplayJson>('dlq', 'replay', '--all', '--to', target, '--rate', '1000');
  expect(res.replayed?.map((r) => r.deadLetterId).sort()).toEqual(fresh.sort());
  expect(res.skippedReplayed).toBe(all.length - fresh.length);
  expect(res.skippedReplayed).toBeGreaterThan(0);
  expect(res.replayed!.every((r) => r.job.queue === target)).toBe(true);
});

/** How many jobs on `queue` replay each dead letter (by `options.replay_of`). */
async function jobsPerDeadLetter(queue: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let pageToken = '';
  do {
    const page = await h.client.listJobs({ queue, pageSize: 1000, pageToken });
    for (const j of page.jobs) counts.set(j.options!.replayOf!, (counts.get(j.options!.replayOf!) ?? 0) + 1);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return counts;
}

/** Spawns the CLI, collecting stdout lines with when each arrived. */
function spawnCli(args: string[]) {
  const child = spawn(process.execPath, [CLI, ...args], { env });
  const lines: Array<{ at: number; text: string }> = [];
  let partial = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    for (const text of parts) lines.push({ at: Date.now(), text });
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'exit').then(([code]) => ({ code: code as number | null, at: Date.now(), stderr }));
  return { child, lines, exited };
}

it('prints each replay as it happens, a progress bar on a terminal, and one JSON line with --json', async () => {
  const queue = await deadLetters({ fatal: 30 }, 'dlq-cli-progress');
  const ids = (await idsOf(queue)).reverse(); // oldest first, the order of a replay
  const target = await pausedQueue();

  // Not a terminal: plain lines, each printed when its dead letter is replayed, not at the end.
  // At 15 a second the 30 take 2 s; the first line comes long before the exit.
  const plain = spawnCli(['dlq', 'replay', '--queue', queue, '--to', target, '--rate', '15']);
  const done = await plain.exited;
  expect(done.code).toBe(0);
  expect(done.stderr).toBe('');
  expect(plain.lines.map((l) => l.text.replace(/\/\S+$/, ''))).toEqual([...ids.map((id) => `${id} → ${target}`), 'replayed 30, skipped 0 quarantined, 0 already replayed']);
  expect(done.at - plain.lines[0]!.at).toBeGreaterThan(1000);

  // On a terminal (script(1) gives the command a pseudo-terminal): a bar, redrawn in place on
  // stderr, with the count so far and the total.
  const second = await pausedQueue();
  const cmd = [process.execPath, CLI, 'dlq', 'replay', '--queue', queue, '--to', second, '--rate', '15', '--include-replayed'].map((a) => `'${a}'`).join(' ');
  const tty = await run('script', ['-qfec', cmd, '/dev/null'], { env: { ...env, COLUMNS: '120' } });
  const screen = tty.stdout;
  const bars = [...screen.matchAll(/\r\x1b\[Kreplaying \[([#.]{30})\] (\d+)\/30 (\d+)%/g)].map((b) => ({ bar: b[1]!, examined: Number(b[2]), percent: Number(b[3]) }));
  expect(bars.length).toBeGreaterThan(2);
  expect(bars.some((b) => b.examined > 0 && b.examined < 30 && b.bar.includes('#') && b.bar.includes('.'))).toBe(true);
  expect(bars.map((b) => b.examined)).toEqual([...bars.map((b) => b.examined)].sort((a, b) => a - b));
  expect(screen).toContain(`${ids[0]} → ${second}/`);
  expect(screen).toMatch(/replayed 30, skipped 0 quarantined, 0 already replayed\r?\n$/);

  // --json: nothing but one line at the end.
  const third = await pausedQueue();
  const json = await jobmeshJson<ReplayJson>('dlq', 'replay', '--queue', queue, '--to', third, '--include-replayed', '--rate', '1000');
  expect(json.replayed?.map((r) => r.deadLetterId)).toEqual(ids);
});

it('stops a replay on Ctrl-C, says how far it got, and the same command again goes on without replaying any dead letter twice', async () => {
  const queue = await deadLetters({ fatal: 150 }, 'dlq-cli-interrupt');
  const ids = await idsOf(queue);
  const target = await pausedQueue();
  const args = ['dlq', 'replay', '--queue', queue, '--to', target, '--rate', '50'];

  const first = spawnCli(args);
  await waitFor('20 replays printed', () => first.lines.length >= 20, 30_000);
  first.child.kill('SIGINT');
  const stopped = await first.exited;
  expect(stopped.code).toBe(1);
  const n = Number(/^jobmesh: CANCELLED: interrupted after (\d+) replayed; they are recorded, and the same command again goes on from there without replaying them twice\n$/.exec(stopped.stderr)?.[1]);
  expect(n).toBeGreaterThanOrEqual(20);
  expect(n).toBeLessThan(150);
  expect(first.lines.some((l) => l.text.startsWith('replayed '))).toBe(false);

  const second = spawnCli(args);
  const finished = await second.exited;
  expect(finished.code).toBe(0);
  const summary = /^replayed (\d+), skipped 0 quarantined, (\d+) already replayed/.exec(second.lines[second.lines.length - 1]!.text);
  expect(Number(summary![1]) + Number(summary![2])).toBe(150);
  // The server may finish the replay it was making when the cancel came; the second run then
  // finds it recorded (already replayed) or, if it was not recorded yet, its job (deduplicated).
  expect(Number(summary![2])).toBeGreaterThanOrEqual(n);

  const perDeadLetter = await jobsPerDeadLetter(target);
  expect(new Set(perDeadLetter.keys())).toEqual(new Set(ids));
  expect([...perDeadLetter.values()].every((count) => count === 1)).toBe(true);
}, 60_000);

it('reports usage mistakes with exit code 2, naming the flag', async () => {
  const cases: [string[], string][] = [
    [['replay', 'q:1:1', '--patch', '{not json'], '--patch must be a JSON object'],
    [['replay', 'q:1:1', '--patch', '[1,2]'], '--patch must be a JSON object'],
    [['replay'], 'dlq replay needs ids, a filter (--queue, --name, --category, --since, --until) or --all'],
    [['replay', '--to', 'somewhere'], 'dlq replay needs ids, a filter'],
    [['purge'], 'dlq purge needs ids, a filter'],
    [['replay', 'q:1:1', '--queue', 'q'], 'give ids or filter flags (or --all), not both'],
    [['list', '--since', 'yesterday'], '--since must be an ISO time'],
    [['purge', '--older-than', 'a week'], '--older-than: "a week" is not a duration'],
    [['show'], 'usage: jobmesh dlq show <id>'],
    [['quarantine'], 'usage: jobmesh dlq quarantine <id>'],
    [['list', '--bogus'], "Unknown option '--bogus'"],
    [['redo'], 'unknown command "dlq redo"'],
  ];
  // Independent processes, so run them side by side.
  await Promise.all(cases.map(([args, message]) => expect(jobmesh('dlq', ...args)).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining(message) })));
});

it('finds DeadLetterService at --dlq-address or JOBMESH_DLQ_ADDRESS, else at the Jobmesh address', async () => {
  const dlqAddress = env.JOBMESH_DLQ_ADDRESS!;
  const total = (await dl.stats('')).total;
  const withoutDlqEnv = { ...env, JOBMESH_DLQ_ADDRESS: undefined };
  const stats = (...args: string[]) => run(process.execPath, [CLI, '--json', ...args, 'dlq', 'stats'], { env: withoutDlqEnv });
  expect(JSON.parse((await stats('--dlq-address', dlqAddress)).stdout)).toMatchObject({ total });
  // This harness's scheduler serves no DeadLetterService (`jobmesh up` serves both on one address).
  await expect(stats()).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('UNIMPLEMENTED') });
});

it('watches new dead letters matching a filter, one JSON value a line, until interrupted', async () => {
  const queue = uniqueQueue('dlq-cli-watch');
  await h.client.createQueue({ queue: { name: queue } });
  const child = spawn(process.execPath, [CLI, '--json', 'dlq', 'watch', '--queue', queue, '--category', 'UNRECOVERABLE'], { env });
  const lines: string[] = [];
  let partial = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  try {
    // The stream is live once it printed something; until then, each round adds failures of both
    // kinds (the watch only ever shows the UNRECOVERABLE ones).
    let rounds = 0;
    const deadline = Date.now() + 30_000;
    while (lines.length === 0 && Date.now() < deadline) {
      rounds++;
      await enqueueFailures(h, queue, { fatal: 1, ghost: 1 });
      await waitFor('this round to be dead-lettered', async () => (await dl.stats(queue)).total === 2 * rounds, 30_000);
    }
    expect(lines.length).toBeGreaterThan(0);
    const seen = lines.length;
    await enqueueFailures(h, queue, { fatal: 2, ghost: 1 });
    await waitFor('2 more watched dead letters', () => lines.length >= seen + 2, 30_000);
    const watched = lines.map((l) => JSON.parse(l) as { id: string; category: string; job: { queue: string; name: string } });
    expect(watched.every((d) => d.category === 'UNRECOVERABLE' && d.job.queue === queue && d.job.name === 'fatal')).toBe(true);
    expect(new Set(watched.map((d) => d.id)).size).toBe(watched.length);
  } finally {
    child.kill('SIGINT');
    await once(child, 'exit');
  }
  await expect(jobmesh('dlq', 'watch', '--since', '1h')).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('dlq watch takes') });
});
