// Conversions between the jobmesh.v1 messages and the domain types of @jobmesh/core.
import * as pb from '@jobmesh/contracts';
import type {
  BackoffKind,
  BackoffSpec,
  DeadLetterPolicySpec,
  JobOptionsSpec,
  JobStateName,
  QueueSpec,
  RetentionSpec,
  SeverityName,
} from '@jobmesh/core';
import { DEFAULT_CONCURRENCY, DEFAULT_PROCESSOR_WAIT_MS, InvalidArgumentError } from '@jobmesh/core';

// The one Duration conversion lives in @jobmesh/contracts; these names stay for this package's users.
export const { durationToMs, msToDuration } = pb;

const BACKOFF_FROM_PB: Record<number, BackoffKind | undefined> = {
  [pb.BackoffKind.BACKOFF_KIND_FIXED]: 'fixed',
  [pb.BackoffKind.BACKOFF_KIND_EXPONENTIAL]: 'exponential',
  [pb.BackoffKind.BACKOFF_KIND_LINEAR]: 'linear',
  [pb.BackoffKind.BACKOFF_KIND_CUSTOM]: 'custom',
};
const BACKOFF_TO_PB: Record<BackoffKind, pb.BackoffKind> = {
  fixed: pb.BackoffKind.BACKOFF_KIND_FIXED,
  exponential: pb.BackoffKind.BACKOFF_KIND_EXPONENTIAL,
  linear: pb.BackoffKind.BACKOFF_KIND_LINEAR,
  custom: pb.BackoffKind.BACKOFF_KIND_CUSTOM,
};

function backoffFromProto(b: pb.Backoff | undefined, field: string): BackoffSpec | undefined {
  if (!b) return undefined;
  if (b.kind === pb.BackoffKind.BACKOFF_KIND_UNSPECIFIED) return undefined; // the queue default applies
  const kind = BACKOFF_FROM_PB[b.kind];
  if (!kind) {
    throw new InvalidArgumentError(`${field}.kind`, `${b.kind} is not a BackoffKind; use FIXED (1), EXPONENTIAL (2), LINEAR (3) or CUSTOM (4), or leave it unset`);
  }
  return {
    kind,
    delayMs: durationToMs(b.delay) ?? 0,
    maxDelayMs: durationToMs(b.maxDelay),
    jitter: b.jitter || undefined,
    customStrategy: b.customStrategy || undefined,
  };
}

function backoffToProto(b: BackoffSpec | undefined): pb.Backoff | undefined {
  if (!b) return undefined;
  return {
    kind: BACKOFF_TO_PB[b.kind],
    delay: msToDuration(b.delayMs),
    maxDelay: msToDuration(b.maxDelayMs),
    jitter: b.jitter ?? 0,
    customStrategy: b.customStrategy ?? '',
  };
}

function retentionFromProto(r: pb.Retention | undefined): RetentionSpec | undefined {
  return r && { count: r.count, ageMs: durationToMs(r.age) };
}

function retentionToProto(r: RetentionSpec | undefined): pb.Retention | undefined {
  return r && { count: r.count, age: msToDuration(r.ageMs) };
}

/** A request's JobOptions in domain terms; `field` is its path, for the errors it may throw. */
export function jobOptionsFromProto(o: pb.JobOptions | undefined, field = 'options'): JobOptionsSpec {
  if (!o) return {};
  return {
    attempts: o.attempts,
    backoff: backoffFromProto(o.backoff, `${field}.backoff`),
    delayMs: durationToMs(o.delay),
    runAt: o.runAt,
    priority: o.priority,
    timeoutMs: durationToMs(o.timeout),
    idempotencyKey: o.idempotencyKey || undefined,
    jobId: o.jobId || undefined,
    keepCompleted: retentionFromProto(o.keepCompleted),
    keepFailed: retentionFromProto(o.keepFailed),
    replayOf: o.replayOf || undefined,
  };
}

export function jobOptionsToProto(o: JobOptionsSpec): pb.JobOptions {
  return {
    attempts: o.attempts,
    backoff: backoffToProto(o.backoff),
    delay: msToDuration(o.delayMs),
    runAt: o.runAt,
    priority: o.priority,
    timeout: msToDuration(o.timeoutMs),
    idempotencyKey: o.idempotencyKey ?? '',
    jobId: o.jobId ?? '',
    keepCompleted: retentionToProto(o.keepCompleted),
    keepFailed: retentionToProto(o.keepFailed),
    replayOf: o.replayOf ?? '',
  };
}

const SEVERITY_TO_PB: Record<SeverityName, pb.Severity> = {
  info: pb.Severity.SEVERITY_INFO,
  warning: pb.Severity.SEVERITY_WARNING,
  critical: pb.Severity.SEVERITY_CRITICAL,
};

/** A severity's proto value; UNSPECIFIED for none (or a stored name this version does not know). */
export const severityToProto = (s: SeverityName | undefined): pb.Severity => (s && SEVERITY_TO_PB[s]) ?? pb.Severity.SEVERITY_UNSPECIFIED;

/** A proto severity's name; undefined for UNSPECIFIED or an unknown value. */
export const severityFromProto = (s: pb.Severity): SeverityName | undefined =>
  (Object.keys(SEVERITY_TO_PB) as SeverityName[]).find((name) => SEVERITY_TO_PB[name] === s);

function deadLetterFromProto(d: pb.DeadLetterPolicy | undefined): DeadLetterPolicySpec {
  if (!d) return {};
  return {
    disabled: d.disabled || undefined,
    rules: d.rules.map((r) => ({
      errorName: r.errorName || undefined,
      messagePattern: r.messagePattern || undefined,
      jobName: r.jobName || undefined,
      category: r.category,
      severity: severityFromProto(r.severity),
      quarantine: r.quarantine || undefined,
    })),
    retention: retentionFromProto(d.retention),
  };
}

function deadLetterToProto(d: DeadLetterPolicySpec): pb.DeadLetterPolicy {
  return {
    disabled: d.disabled ?? false,
    rules: (d.rules ?? []).map((r) => ({
      errorName: r.errorName ?? '',
      messagePattern: r.messagePattern ?? '',
      jobName: r.jobName ?? '',
      category: r.category,
      severity: severityToProto(r.severity),
      quarantine: r.quarantine ?? false,
    })),
    retention: retentionToProto(d.retention),
  };
}

/** A QueueConfig from a request; unset concurrency takes the default. */
export function queueSpecFromProto(q: pb.QueueConfig): QueueSpec {
  const rateMax = q.rateLimit?.max ?? 0;
  return {
    name: q.name,
    concurrency: q.concurrency || DEFAULT_CONCURRENCY,
    rateLimit: rateMax > 0 ? { max: rateMax, durationMs: durationToMs(q.rateLimit?.duration) ?? 0 } : undefined,
    defaultJobOptions: jobOptionsFromProto(q.defaultJobOptions, 'queue.default_job_options'),
    paused: q.paused,
    deadLetter: deadLetterFromProto(q.deadLetter),
    labels: { ...q.labels },
    ...(q.processorWait && { processorWaitMs: durationToMs(q.processorWait) }),
  };
}

export function queueSpecToProto(q: QueueSpec): pb.QueueConfig {
  return {
    name: q.name,
    concurrency: q.concurrency,
    rateLimit: q.rateLimit && { max: q.rateLimit.max, duration: msToDuration(q.rateLimit.durationMs) },
    defaultJobOptions: jobOptionsToProto(q.defaultJobOptions),
    paused: q.paused,
    deadLetter: deadLetterToProto(q.deadLetter),
    labels: { ...q.labels },
    processorWait: msToDuration(q.processorWaitMs ?? DEFAULT_PROCESSOR_WAIT_MS),
  };
}

const STATE_TO_PB: Record<JobStateName, pb.JobState> = {
  waiting: pb.JobState.JOB_STATE_WAITING,
  delayed: pb.JobState.JOB_STATE_DELAYED,
  prioritized: pb.JobState.JOB_STATE_PRIORITIZED,
  active: pb.JobState.JOB_STATE_ACTIVE,
  'waiting-children': pb.JobState.JOB_STATE_WAITING_CHILDREN,
  completed: pb.JobState.JOB_STATE_COMPLETED,
  failed: pb.JobState.JOB_STATE_FAILED,
  'dead-lettered': pb.JobState.JOB_STATE_DEAD_LETTERED,
  cancelled: pb.JobState.JOB_STATE_CANCELLED,
};

export function stateToProto(s: JobStateName | undefined): pb.JobState {
  return s ? STATE_TO_PB[s] : pb.JobState.JOB_STATE_UNSPECIFIED;
}

export function stateFromProto(s: pb.JobState): JobStateName | undefined {
  return (Object.keys(STATE_TO_PB) as JobStateName[]).find((k) => STATE_TO_PB[k] === s);
}
