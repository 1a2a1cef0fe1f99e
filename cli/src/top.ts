import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { StatusError } from '@jobmesh/sdk';
import { type Handler, UsageError, durationMs, flags } from './commands';
import { QUEUE_STATS_COLUMNS, age, queueStatsRow, servingName, table } from './format';

/** What one frame of `jobmesh top` shows. */
export interface TopView {
  /** The last round of figures; undefined before the first one arrived. */
  stats?: pb.QueueStats[];
  /** When that round arrived. */
  at?: Date;
  intervalMs: number;
  /** The system's health, when it has been asked. */
  health?: pb.ServingStatus;
  /** What went wrong with the stream, shown until the next round arrives. */
  problem?: string;
}

/**
 * A frame of `jobmesh top` as lines that fit `columns` × `rows`: a header (time, queue count,
 * interval, health, the key to quit), a problem line when there is one, then the queue table.
 * Queues that do not fit are counted on the last line.
 */
export function topScreen(v: TopView, size: { columns: number; rows: number }): string[] {
  const clock = v.at ? `${v.at.toISOString().slice(11, 19)} UTC` : 'connecting…';
  const parts = [
    'jobmesh top',
    clock,
    v.stats ? `${v.stats.length} ${v.stats.length === 1 ? 'queue' : 'queues'}` : '',
    `every ${age(v.intervalMs)}`,
    v.health === undefined ? '' : `health: ${servingName(v.health)}`,
    'q: quit',
  ].filter(Boolean);
  const lines = [parts.join('   ')];
  if (v.problem) lines.push(`! ${v.problem}`);
  lines.push('');
  if (v.stats) {
    const rows = table(v.stats.map(queueStatsRow), QUEUE_STATS_COLUMNS).split('\n');
    const room = Math.max(2, size.rows - lines.length);
    if (rows.length > room) {
      const shown = rows.slice(0, room - 1);
      lines.push(...shown, `… ${rows.length - shown.length} more (name them: jobmesh top <queue>…)`);
    } else lines.push(...rows);
  }
  return lines.map((l) => (l.length > size.columns ? l.slice(0, Math.max(0, size.columns - 1)) + '…' : l));
}

// Terminal control: the alternate screen keeps the shell's scrollback as it was.
const ENTER_SCREEN = '\x1b[?1049h\x1b[?25l';
const LEAVE_SCREEN = '\x1b[?25h\x1b[?1049l';
const HOME = '\x1b[H';
const CLEAR_LINE_END = '\x1b[K';
const CLEAR_BELOW = '\x1b[J';

/** Statuses after which watching again may work: the monitor is restarting, or went away. */
const RETRYABLE = new Set([status.UNAVAILABLE, status.CANCELLED]);
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 15_000;
/** How often the header's health is asked for again. */
const HEALTH_EVERY_MS = 10_000;

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });

/**
 * `jobmesh top [queue…] [--interval 2s]`: the queues' figures from WatchQueueStats, redrawn each
 * round on the alternate screen; `q` or Ctrl-C quits and gives the terminal back as it was. With
 * `--json`, one WatchQueueStatsResponse as JSON per line instead (no terminal needed). A lost
 * connection (UNAVAILABLE, or the monitor ending the stream) is shown and watched again with
 * backoff (1 s doubling to 15 s); any other error (an unknown queue, no MonitorService at the
 * address) ends the command with it.
 */
export const top: Handler = async (args, ctx) => {
  const { values, positionals: queues } = flags(args, { interval: { type: 'string', short: 'n' } });
  const intervalMs = durationMs(values.interval ?? '2s', '--interval');
  if (intervalMs < 1000) throw new UsageError(`--interval must be at least 1s, got "${values.interval}"`);

  const stop = new AbortController();
  const out = process.stdout;
  const screen = !ctx.json && out.isTTY;
  const view: TopView = { intervalMs };

  const draw = (): void => {
    const lines = topScreen(view, { columns: out.columns || 200, rows: out.rows || 50 });
    if (screen) out.write(`${HOME}${lines.join(`${CLEAR_LINE_END}\n`)}${CLEAR_LINE_END}${CLEAR_BELOW}`);
    else ctx.out(`${lines.join('\n')}\n`);
  };

  let healthAskedAt = 0;
  let healthInFlight = false;
  const refreshHealth = (): void => {
    if (healthInFlight || Date.now() - healthAskedAt < HEALTH_EVERY_MS) return;
    healthInFlight = true;
    healthAskedAt = Date.now();
    ctx.monitor.systemHealth({ timeoutMs: 5000, retry: { maxTries: 1 }, signal: stop.signal }).then(
      (h) => (view.health = h.status),
      () => (view.health = pb.ServingStatus.SERVING_STATUS_UNSPECIFIED),
    ).finally(() => {
      healthInFlight = false;
      if (screen && !stop.signal.aborted) draw();
    });
  };

  const onKey = (key: Buffer): void => {
    // q, Q, Ctrl-C (raw mode delivers it as a byte, not SIGINT) or Ctrl-D.
    if (/[qQ\x03\x04]/.test(key.toString('latin1'))) stop.abort();
  };
  const onSignal = (): void => stop.abort();
  // A reader that went away (`jobmesh top --json | head -3`) ends the watch instead of an EPIPE crash.
  const onOutputError = (): void => stop.abort();
  out.on('error', onOutputError);
  const stdin = process.stdin;
  const keys = screen && stdin.isTTY;
  if (screen) {
    out.write(ENTER_SCREEN);
    if (keys) {
      stdin.setRawMode(true);
      stdin.on('data', onKey);
      stdin.resume();
    }
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);
    out.on('resize', draw);
    draw();
  }

  try {
    let backoff = BACKOFF_MIN_MS;
    while (!stop.signal.aborted) {
      try {
        for await (const stats of ctx.monitor.watchQueueStats({ queues, intervalMs }, { signal: stop.signal })) {
          backoff = BACKOFF_MIN_MS;
          if (ctx.json) {
            ctx.out(JSON.stringify(pb.WatchQueueStatsResponse.toJSON({ stats })));
            continue;
          }
          Object.assign(view, { stats, at: new Date(), problem: undefined });
          if (screen) refreshHealth();
          draw();
        }
        if (stop.signal.aborted) break;
        view.problem = 'the monitor ended the stream';
      } catch (err) {
        if (stop.signal.aborted) break;
        if (!(err instanceof StatusError) || !RETRYABLE.has(err.code)) throw err;
        view.problem = `${status[err.code]}: ${err.details}`;
      }
      const problem = `${view.problem}; watching again in ${age(backoff)}`;
      if (screen) {
        view.problem = problem;
        draw();
      } else process.stderr.write(`jobmesh: ${problem}\n`);
      await sleep(backoff, stop.signal);
      backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
    }
  } finally {
    stop.abort();
    out.off('error', onOutputError);
    if (screen) {
      out.off('resize', draw);
      for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, onSignal);
      if (keys) {
        stdin.off('data', onKey);
        stdin.setRawMode(false);
        stdin.pause();
      }
      out.write(LEAVE_SCREEN);
    }
  }
};
