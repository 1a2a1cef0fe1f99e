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
  const v = d.seconds * 1000 + d.nanos / 1e6;
  return v % 1000 === 0 ? `${v / 1000}s` : `${v}ms`;
}

export function describeJob(j: pb.Job): string {
  const lines: [string, string][] = [
    ['id', j.id],
    ['queue', j.queue],
    ['name', j.name],
    ['state', stateName(j.state)],
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
  return lines.map(([k, v]) => `${k.padEnd(10)} ${v}`).join('\n');
}

export function queueRow(q: pb.QueueConfig): Record<string, string> {
  return {
    name: q.name,
    concurrency: String(q.concurrency),
    'rate limit': q.rateLimit?.max ? `${q.rateLimit.max}/${ms(q.rateLimit.duration)}` : '',
    paused: q.paused ? 'yes' : '',
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
