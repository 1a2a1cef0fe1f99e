import * as pb from '@jobmesh/contracts';
import { type Handler, UsageError, durationMs, flags, int, jsonObject, msDuration, print } from './commands';
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
      return print(ctx, pb.GetDeadLetterResponse.toJSON({ deadLetter }), () => describeDeadLetter(deadLetter));
    }
    case 'replay': {
      const dataPatch = v.patch === undefined ? undefined : jsonObject(v.patch, '--patch');
      // No deadline: the server paces a bulk replay at --rate, so it may rightly take longer than
      // --timeout, and cut short it would stop half-way. Ctrl-C cancels the call, which stops it.
      const res = await d.replay(
        { ...selection('replay', positionals, v), targetQueue: v.to ?? '', dataPatch, maxPerSecond: int(v.rate, '--rate') ?? 0 },
        { timeoutMs: Infinity },
      );
      return print(ctx, pb.ReplayDeadLettersResponse.toJSON(res), () =>
        [...res.replayed.map((r) => `${r.deadLetterId} → ${r.job?.queue}/${r.job?.id}`), `replayed ${res.replayed.length}, skipped ${res.skippedQuarantined} quarantined`].join('\n'),
      );
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
