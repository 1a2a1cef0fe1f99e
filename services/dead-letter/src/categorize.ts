import { compileMessagePattern } from '@jobmesh/config';
import { PROCESSOR_NOT_FOUND, type DeadLetterRuleSpec, type MessagePattern, type SeverityName, isTimeout, isUnrecoverable } from '@jobmesh/core';

/** What categorize() looks at: the final failure of a job, as BullMQ stored it. */
export interface FailureFacts {
  jobName: string;
  /** The last attempt's message (BullMQ's `failedReason`). */
  reason: string;
  /** The last attempt's stack (BullMQ's last `stacktrace` entry), if any. */
  stack?: string;
  attemptsMade: number;
  /** The job's `attempts` option. */
  attempts: number;
  /** It stalled (its worker went away) more often than the queue allows (FailedJob.stalledOut). */
  stalledOut?: boolean;
}

export interface Category {
  category: string;
  severity: SeverityName;
  /** Why it is quarantined at capture, when it is. */
  quarantine?: string;
}

/**
 * The error name of a failure. BullMQ stores only the message and the stack, not the error's
 * name; a stack starts with "<Name>: <message>", so the name is read from there when it is.
 */
export function errorNameOf(stack: string | undefined): string {
  const first = stack?.split('\n', 1)[0] ?? '';
  const m = /^([A-Za-z_$][\w$.]*)(?::|$)/.exec(first.trim());
  return m?.[1] ?? '';
}

/** Compiled rule patterns by source; cleared when it grows past a bound (queues' rules change rarely). */
const patterns = new Map<string, MessagePattern | undefined>();

/** A rule's pattern, compiled with RE2 (linear time); undefined (matches nothing) if it does not compile, e.g. one stored before RE2. */
function patternOf(source: string): MessagePattern | undefined {
  if (patterns.has(source)) return patterns.get(source);
  if (patterns.size >= 1000) patterns.clear();
  let re: MessagePattern | undefined;
  try {
    re = compileMessagePattern(source);
  } catch {
    re = undefined; // validated when the queue is stored; a bad pattern here matches nothing
  }
  patterns.set(source, re);
  return re;
}

function ruleMatches(rule: DeadLetterRuleSpec, f: FailureFacts, errorName: string): boolean {
  if (rule.errorName !== undefined && rule.errorName !== errorName) return false;
  if (rule.jobName !== undefined && rule.jobName !== f.jobName) return false;
  if (rule.messagePattern !== undefined) {
    const re = patternOf(rule.messagePattern);
    if (!re?.test(f.reason)) return false;
  }
  return true;
}

const EXTERNAL = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|ENOTFOUND|socket hang up|\b5\d\d\b|timeout|unavailable/i;
const CONFIGURATION = /config|missing (env|environment|setting|credential)|not configured|credentials?|api key/i;
const DATA = /validat|invalid|parse|malformed|unexpected token|schema/i;

/**
 * Why a DATA dead letter is quarantined at capture: replayed as it is, bad data fails the same way
 * (the pattern document quarantines data corruption). A fix replays it by id once released.
 */
export const DATA_QUARANTINE = 'bad data fails the same way again: fix it, release, then replay with a patch';

/**
 * The category of a dead letter: the queue's rules first (first match wins), then the built-ins.
 * Built-ins, in order: PROCESSOR_NOT_FOUND, STALLED_LIMIT (BullMQ may fail such a job with an
 * UnrecoverableError of its own, so this comes first), UNRECOVERABLE, TIMEOUT, EXHAUSTED_RETRIES;
 * a job that failed for good otherwise (e.g. a remote worker's unrecoverable FailJob) is guessed
 * from its message (CONFIGURATION, EXTERNAL_SERVICE, DATA), else UNRECOVERABLE.
 * PROCESSOR_NOT_FOUND and CONFIGURATION are critical (nothing succeeds until someone acts); DATA
 * dead letters, and those of a rule with `quarantine`, are quarantined at capture.
 */
export function categorize(f: FailureFacts, rules: readonly DeadLetterRuleSpec[] = []): Category {
  const errorName = errorNameOf(f.stack);
  for (const rule of rules) {
    if (ruleMatches(rule, f, errorName)) {
      return { category: rule.category, severity: rule.severity ?? 'warning', ...(rule.quarantine && { quarantine: `the queue's rule for ${rule.category} quarantines it` }) };
    }
  }
  const reason = f.reason;
  if (reason.startsWith(PROCESSOR_NOT_FOUND)) return { category: 'PROCESSOR_NOT_FOUND', severity: 'critical' };
  if (f.stalledOut) return { category: 'STALLED_LIMIT', severity: 'warning' };
  if (isUnrecoverable({ name: errorName })) return { category: 'UNRECOVERABLE', severity: 'warning' };
  if (isTimeout({ name: errorName }) || /timed out/i.test(reason)) return { category: 'TIMEOUT', severity: 'warning' };
  if (f.attemptsMade >= f.attempts) return { category: 'EXHAUSTED_RETRIES', severity: 'warning' };
  // Failed for good before its attempts ran out, for no reason named above: guess from the message.
  if (CONFIGURATION.test(reason)) return { category: 'CONFIGURATION', severity: 'critical' };
  if (EXTERNAL.test(reason)) return { category: 'EXTERNAL_SERVICE', severity: 'warning' };
  if (DATA.test(reason)) return { category: 'DATA', severity: 'warning', quarantine: DATA_QUARANTINE };
  return { category: 'UNRECOVERABLE', severity: 'warning' };
}
