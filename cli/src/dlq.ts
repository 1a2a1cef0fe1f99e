import * as pb from '@jobmesh/contracts';
import { status } from '@grpc/grpc-js';
import { type CommandContext, type Handler, UsageError, durationMs, flags, int, jsonObject, msDuration, print } from './commands';
import { DEAD_LETTER_COLUMNS, deadLetterRow, describeDeadLetter, table } from './format';

const OPTIONS = {
  queue: { type: 'string', short: 'q' },
  name: { type: 'string' },
  category: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  limit: { type: 'string', short: 'n' },
  'page-token': { type: 'string' },
  to: { type: 'string' },
  patch: { type: 'string' },
  rate: { type: 'string' },
  'older-than': { type: 'string' },
  reason: { type: 'string' },
  all: { type: 'boolean' },
  'include-replayed': { type: 'boolean' },
} as const;

type Values = ReturnType<typeof flags<typeof OPTIONS>>['values'];

/** An ISO time, or a duration meaning that long ago ("30m", "2h", "7d"). */
function pointInTime(text: string, flag: string): Date {
  // A bare number would be milliseconds to parseDuration, which nobody means here.
  if (!/^\d+$/.test(text)) {
    try {
      return new Date(Date.now() - durationMs(text, flag));
    } catch {
      // not a duration: try a time
    }
  }
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) throw new UsageError(`${flag} must be an ISO time (2026-05-01T09:00:00Z) or how long ago (30m, 2h, 7d), got "${text}"`);
  return at;
}

/** The filter the flags describe; undefined when no filter flag was given. */
function filterOf(v: Values): pb.DeadLetterFilter | undefined {
  if (v.queue === undefined && v.name === undefined && v.category === undefined && v.since === undefined && v.until === undefined) return undefined;
  return pb.DeadLetterFilter.fromPartial({
    queue: v.queue,
    jobName: v.name,
    category: v.category,
    since: v.since === undefined ? undefined : pointInTime(v.since, '--since'),
    until: v.until === undefined ? undefined : pointInTime(v.until, '--until'),
  });
}

/**
 * Ids, or a filter, for replay and purge. A bulk operation over every dead letter must be asked
 * for with --all, so a forgotten filter flag cannot replay or purge everything; `bounded` is true
 * when something else (purge's --older-than) narrows it already.
 */
function selection(sub: string, ids: string[], v: Values, bounded = false): { ids: string[]; filter?: pb.DeadLetterFilter } {
  const filter = filterOf(v);
  if (ids.length && (filter || v.all)) throw new UsageError(`dlq ${sub}: give ids or filter flags (or --all), not both`);
  if (ids.length || filter || bounded) return { ids, filter };
  if (!v.all) throw new UsageError(`dlq ${sub} needs ids, a filter (--queue, --name, --category, --since, --until) or --all for every dead letter`);
  return { ids, filter: pb.DeadLetterFilter.fromPartial({}) }; // an empty filter matches everything
}

/**
 * `dlq replay` over StreamReplayDeadLetters. No deadline: the server paces a bulk replay at
 * --rate, so it may rightly take longer than --timeout. Each replay is printed as it happens
 * (with --json, one line at the end, also when it stops part-way); on a terminal, a progress bar
 * on stderr. Ctrl-C cancels
 * the stream, which stops the replay between two dead letters: what was replayed stays recorded,
 * and the same command again goes on from there. A second Ctrl-C exits at once.
 */
async function replay(ctx: CommandContext, req: pb.ReplayDeadLettersRequest): Promise<void> {
  const interrupt = new AbortController();
  const onSigint = (): void => interrupt.abort();
  process.once('SIGINT', onSigint);
  const bar = !ctx.json && process.stderr.isTTY ? new ProgressBar(process.stderr) : undefined;
  const replayed: pb.ReplayedJob[] = [];
  let progress: pb.ReplayProgress | undefined;
  const result = (): pb.ReplayDeadLettersResponse => ({ replayed, skippedQuarantined: progress?.skippedQuarantined ?? 0, skippedReplayed: progress?.skippedReplayed ?? 0 });
  try {
    for await (const msg of ctx.deadLetters.streamReplay(req, { signal: interrupt.signal })) {
      const p = (progress = msg.progress ?? progress ?? pb.ReplayProgress.fromPartial({}));
      replayed.push(...msg.replayed);
      if (!ctx.json) {
        bar?.clear();
        for (const r of msg.replayed) ctx.out(`${r.deadLetterId} → ${r.job?.queue}/${r.job?.id}${r.deduplicated ? ' (enqueued by an earlier replay)' : ''}`);
      }
      bar?.draw(p);
    }
  } catch (err) {
    bar?.clear();
    // What was replayed before it stopped, once it started (the lines were printed as it went).
    if (ctx.json && progress) print(ctx, pb.ReplayDeadLettersResponse.toJSON(result()), () => '');
    // Printed by main as "jobmesh: <status>: …", exit code 1.
    if (!interrupt.signal.aborted) throw err;
    throw Object.assign(new Error('interrupted'), {
      code: status.CANCELLED,
      details: `interrupted after ${progress?.replayed ?? 0} replayed; they are recorded, and the same command again goes on from there without replaying them twice`,
    });
  } finally {
    process.off('SIGINT', onSigint);
    bar?.clear();
  }
  print(ctx, pb.ReplayDeadLettersResponse.toJSON(result()), () => replaySummary(progress ?? pb.ReplayProgress.fromPartial({})));
}

function replaySummary(p: pb.ReplayProgress): string {
  const hint = p.skippedReplayed ? ' (--include-replayed replays those too)' : '';
  return `replayed ${p.replayed}, skipped ${p.skippedQuarantined} quarantined, ${p.skippedReplayed} already replayed${hint}`;
}

/** One line on a terminal, redrawn in place at most 10 times a second. */
class ProgressBar {
  private drawn = false;
  private last = 0;
  private readonly started = Date.now();

  constructor(private readonly tty: NodeJS.WriteStream) {}

  draw(p: pb.ReplayProgress): void {
    const now = Date.now();
    const done = p.total > 0 && p.examined >= p.total;
    if (this.drawn && !done && now - this.last < 100) return;
    this.last = now;
    const width = 30;
    const ratio = p.total ? Math.min(1, p.examined / p.total) : 1;
    const filled = Math.round(ratio * width);
    const perSecond = p.replayed / Math.max(0.001, (now - this.started) / 1000);
    const skipped = p.skippedQuarantined + p.skippedReplayed;
    const line =
      `replaying [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.examined}/${p.total} ${Math.floor(ratio * 100)}%` +
      `  replayed ${p.replayed}${skipped ? `, skipped ${skipped}` : ''}  ${perSecond.toFixed(0)}/s`;
    this.tty.write(`\r\x1b[K${line.slice(0, Math.max(20, (this.tty.columns || 100) - 1))}`);
    this.drawn = true;
  }

  /** Takes the bar off the screen, so that a line can be printed where it was. */
  clear(): void {
    if (this.drawn) this.tty.write('\r\x1b[K');
    this.drawn = false;
  }
}

function ids(positionals: string[], usage: string): string[] {
  if (!positionals.length) throw new UsageError(`usage: jobmesh ${usage}`);
  return positionals;
}

export const dlq: Handler = async (args, ctx) => {
  const [sub = 'list', ...rest] = args;
  const { values: v, positionals } = flags(rest, OPTIONS);
  const d = ctx.deadLetters;
  switch (sub) {
    case 'list': {
      const res = await d.list({ filter: filterOf(v), pageSize: int(v.limit, '--limit') ?? 50, pageToken: v['page-token'] ?? '' });
      return print(ctx, pb.ListDeadLettersResponse.toJSON(res), () => {
        const more = res.nextPageToken ? `\nmore: --page-token ${res.nextPageToken}` : '';
        return table(res.deadLetters.map(deadLetterRow), DEAD_LETTER_COLUMNS) + more;
      });
    }
    case 'show': {
      const [id] = ids(positionals, 'dlq show <id>');
      const deadLetter = await d.get(id!);
      return print(ctx, pb.GetDeadLetterResponse.toJSON({ deadLetter }), () => describeDeadLetter(deadLetter, ctx.traceUrl));
    }
    case 'replay': {
      const dataPatch = v.patch === undefined ? undefined : jsonObject(v.patch, '--patch');
      return replay(ctx, {
        ...selection('replay', positionals, v),
        targetQueue: v.to ?? '',
        dataPatch,
        maxPerSecond: int(v.rate, '--rate') ?? 0,
        includeReplayed: v['include-replayed'] ?? false,
      });
    }
    case 'purge': {
      const olderThan = v['older-than'] === undefined ? undefined : msDuration(v['older-than'], '--older-than');
      const res = await d.purge({ ...selection('purge', positionals, v, olderThan !== undefined), olderThan });
      return print(ctx, pb.PurgeDeadLettersResponse.toJSON(res), () => `purged ${res.purged} dead letter${res.purged === 1 ? '' : 's'}`);
    }
    case 'stats': {
      const res = await d.stats(v.queue ?? '');
      return print(ctx, pb.GetDeadLetterStatsResponse.toJSON(res), () => {
        const rows = res.counts.map((c) => ({ queue: c.queue, category: c.category, count: String(c.count) }));
        return `${table(rows, ['queue', 'category', 'count'])}\ntotal ${res.total}`;
      });
    }
    case 'quarantine':
    case 'release': {
      const quarantined = sub === 'quarantine';
      const list = ids(positionals, quarantined ? 'dlq quarantine <id>… [--reason TEXT]' : 'dlq release <id>…');
      const res = await d.quarantine({ ids: list, quarantined, reason: v.reason ?? '' });
      // `updated` leaves out those already in that state.
      return print(ctx, pb.QuarantineDeadLettersResponse.toJSON(res), () => `${quarantined ? 'quarantined' : 'released'} ${res.updated} of ${list.length}`);
    }
    case 'watch': {
      // Until Ctrl-C: one line (or JSON value) per new dead letter matching the filter.
      if (v.since !== undefined || v.until !== undefined) throw new UsageError('dlq watch takes --queue, --name and --category; it shows dead letters from now on');
      for await (const dead of d.watch(filterOf(v) ?? {})) {
        print(ctx, pb.DeadLetter.toJSON(dead), () => {
          const r = deadLetterRow(dead);
          return `${r['dead-lettered']}  ${r.id}  ${r.category} (${r.severity})  ${r.error}`.trimEnd();
        });
      }
      return;
    }
    default:
      throw new UsageError(`unknown command "dlq ${sub}"; use list, show, replay, purge, stats, quarantine, release or watch`);
  }
};
