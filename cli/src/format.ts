import * as pb from '@jobmesh/contracts';

/** Plain text tables and values for terminal output; `--json` bypasses all of this. */
export function table(rows: Record<string, string>[], columns: string[]): string {
  if (rows.length === 0) return '(none)';
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => r[c] ?? '')))].join('\n');
}

export function stateName(s: pb.JobState): string {
  return pb.jobStateToJSON(s).replace('JOB_STATE_', '').toLowerCase().replace('_', '-');
}

export function eventName(t: pb.JobEventType): string {
  return pb.jobEventTypeToJSON(t).replace('JOB_EVENT_TYPE_', '').toLowerCase();
}

export function time(d: Date | undefined): string {
  return d ? d.toISOString() : '';
}

export function ms(d: pb.Duration | undefined): string {
  if (!d) return '';
  const v = pb.durationToMs(d)!;
  if (v > 0 && v % 3_600_000 === 0) return `${v / 3_600_000}h`;
  if (v > 0 && v % 60_000 === 0) return `${v / 60_000}m`;
  return v % 1000 === 0 ? `${v / 1000}s` : `${v}ms`;
}

/** A job in full; `traceUrl` (JOBMESH_TRACE_UI_URL) adds a link to its trace. */
export function describeJob(j: pb.Job, traceUrl?: (traceId: string) => string): string {
  const lines: [string, string][] = [
    ['id', j.id],
    ['queue', j.queue],
    ['name', j.name],
    ['state', j.processorWaitUntil ? `${stateName(j.state)} for a processor of "${j.name}" (until ${time(j.processorWaitUntil)})` : stateName(j.state)],
    ['attempts', `${j.attemptsMade} of ${j.options?.attempts ?? '?'}`],
    ['data', JSON.stringify(j.data ?? {})],
    ['created', time(j.createdAt)],
  ];
  if (j.runAt) lines.push(['run at', time(j.runAt)]);
  if (j.processedAt) lines.push(['started', time(j.processedAt)]);
  if (j.finishedAt) lines.push(['finished', time(j.finishedAt)]);
  if (j.progress !== undefined) lines.push(['progress', JSON.stringify(j.progress)]);
  if (j.result !== undefined) lines.push(['result', JSON.stringify(j.result)]);
  if (j.failureReason) lines.push(['failure', j.failureReason]);
  if (j.parent) lines.push(['parent', `${j.parent.queue}/${j.parent.id}`]);
  if (j.idempotencyKey) lines.push(['idem. key', j.idempotencyKey]);
  if (j.traceId) lines.push(['trace id', j.traceId]);
  if (j.traceId && traceUrl) lines.push(['trace', traceUrl(j.traceId)]);
  return keyValues(lines);
}

/** "key  value" lines with the values aligned. */
export function keyValues(lines: [string, string][], width = 10): string {
  return lines.map(([k, v]) => `${k.padEnd(width)} ${v}`.trimEnd()).join('\n');
}

/** The first line of `text`, cut to `max` characters. */
export function truncate(text: string, max: number): string {
  const line = text.split('\n', 1)[0]!;
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

export function queueRow(q: pb.QueueConfig): Record<string, string> {
  return {
    name: q.name,
    concurrency: String(q.concurrency),
    'rate limit': q.rateLimit?.max ? `${q.rateLimit.max}/${ms(q.rateLimit.duration)}` : '',
    paused: q.paused ? 'yes' : '',
    'processor wait': ms(q.processorWait),
  };
}

export function scheduleRow(s: pb.Schedule): Record<string, string> {
  return {
    id: s.id,
    trigger: s.cron !== undefined ? `cron ${s.cron} ${s.timezone}` : `every ${ms(s.every)}`,
    job: s.template?.name ?? '',
    next: time(s.nextRunAt),
    fired: String(s.iterationCount),
  };
}

export function severityName(s: pb.Severity): string {
  return pb.severityToJSON(s).replace('SEVERITY_', '').toLowerCase();
}

export const DEAD_LETTER_COLUMNS = ['id', 'queue', 'job', 'category', 'severity', 'dead-lettered', 'attempts', 'quarantined', 'error'];

export function deadLetterRow(d: pb.DeadLetter): Record<string, string> {
  return {
    id: d.id,
    queue: d.job?.queue ?? '',
    job: d.job?.name ?? '',
    category: d.category,
    severity: severityName(d.severity),
    'dead-lettered': time(d.deadLetteredAt),
    attempts: String(d.job?.attemptsMade ?? d.errors.length),
    quarantined: d.quarantined ? 'yes' : '',
    error: truncate(d.errors.at(-1)?.message ?? '', 60),
  };
}

/** A dead letter in full: summary, job snapshot, every attempt's error with its stack, replays. */
export function describeDeadLetter(d: pb.DeadLetter, traceUrl?: (traceId: string) => string): string {
  const indent = (text: string): string => text.replace(/^/gm, '  ');
  const summary = keyValues(
    [
      ['id', d.id],
      ['category', d.category],
      ['severity', severityName(d.severity)],
      ['dead-lettered', time(d.deadLetteredAt)],
      ['trace id', d.traceId],
      ...(d.traceId && traceUrl ? [['trace', traceUrl(d.traceId)] as [string, string]] : []),
      ['quarantined', d.quarantined ? `yes${d.quarantineReason ? ` (${d.quarantineReason})` : ''}` : 'no'],
    ],
    13,
  );
  const errors = d.errors.map((e) => {
    const head = `attempt ${e.attempt}${e.failedAt ? ` at ${time(e.failedAt)}` : ''}: ${e.errorName ? `${e.errorName}: ` : ''}${e.message}`;
    // The stack's first line repeats the message; the frames follow it.
    const frames = e.stacktrace.slice(1).filter(Boolean).map((l) => l.trim());
    return [head, ...frames.map((f) => `    ${f}`)].join('\n');
  });
  const replays = d.replays.map((r) => `${time(r.replayedAt)}  → ${r.job?.queue}/${r.job?.id}`);
  return [
    summary,
    `job\n${indent(d.job ? describeJob(d.job) : '(none)')}`,
    `errors\n${indent(errors.join('\n') || '(none)')}`,
    `replays\n${indent(replays.join('\n') || '(none)')}`,
  ].join('\n\n');
}

/** A length of time for a glance: "850ms", "42s", "3m05s", "2h07m", "4d03h". */
export function age(msValue: number): string {
  if (msValue < 1000) return `${Math.max(0, Math.round(msValue))}ms`;
  const s = Math.floor(msValue / 1000);
  const two = (n: number): string => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${two(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d${two(Math.floor(s / 3600) % 24)}h`;
}

/** A per-second rate with two significant decimals below 10: "0", "0.33", "12.5", "340". */
export function rate(perSecond: number): string {
  if (perSecond === 0) return '0';
  // Thresholds where rounding would carry over: 9.999 is "10.0", not "10.00".
  if (perSecond < 9.995) return perSecond.toFixed(2);
  if (perSecond < 99.95) return perSecond.toFixed(1);
  return String(Math.round(perSecond));
}

export const QUEUE_STATS_COLUMNS = [
  'queue',
  'waiting',
  'active',
  'delayed',
  'waiting-for-processor',
  'failed',
  'dead-lettered',
  'completed/s',
  'failed/s',
  'oldest age',
  'p50/p95',
  'workers',
  'paused',
];

/**
 * One queue's figures as a row of QUEUE_STATS_COLUMNS. Processing times are blank when nothing
 * finished in the last minute; workers show how many of them are remote ("3 (2 remote)").
 */
export function queueStatsRow(s: pb.QueueStats): Record<string, string> {
  const c = s.counts;
  const p50 = pb.durationToMs(s.processingP50);
  const p95 = pb.durationToMs(s.processingP95);
  return {
    queue: s.queue,
    waiting: String(c?.waiting ?? 0),
    active: String(c?.active ?? 0),
    delayed: String(c?.delayed ?? 0),
    'waiting-for-processor': String(c?.waitingForProcessor ?? 0),
    failed: String(c?.failed ?? 0),
    'dead-lettered': String(c?.deadLettered ?? 0),
    'completed/s': rate(s.completedPerSecond),
    'failed/s': rate(s.failedPerSecond),
    'oldest age': s.oldestWaitingAge ? age(pb.durationToMs(s.oldestWaitingAge)!) : '',
    'p50/p95': p50 || p95 ? `${age(p50 ?? 0)}/${age(p95 ?? 0)}` : '',
    workers: s.remoteWorkers ? `${s.workers} (${s.remoteWorkers} remote)` : String(s.workers),
    paused: s.paused ? 'yes' : '',
  };
}

/** "serving", "not-serving", or "unknown" (the service could not be asked). */
export function servingName(s: pb.ServingStatus): string {
  return s === pb.ServingStatus.SERVING_STATUS_UNSPECIFIED ? 'unknown' : pb.servingStatusToJSON(s).replace('SERVING_STATUS_', '').toLowerCase().replace('_', '-');
}

export const SERVICE_HEALTH_COLUMNS = ['service', 'status', 'address', 'error', 'figures'];

export function serviceHealthRow(h: pb.ServiceHealth): Record<string, string> {
  return {
    service: h.service,
    status: servingName(h.status),
    address: h.address,
    error: truncate(h.error, 60),
    figures: Object.entries(h.figures)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${v}`)
      .join(' '),
  };
}
