/** A job's state, as Jobmesh reports it. */
export type JobStateName =
  | 'waiting'
  | 'delayed'
  | 'prioritized'
  | 'active'
  | 'waiting-children'
  | 'completed'
  | 'failed'
  | 'dead-lettered'
  | 'cancelled';

export const JOB_STATES: readonly JobStateName[] = [
  'waiting',
  'delayed',
  'prioritized',
  'active',
  'waiting-children',
  'completed',
  'failed',
  'dead-lettered',
  'cancelled',
];

/** States a job never leaves by itself (RetryJob can still move a failed job). */
export const TERMINAL_STATES: ReadonlySet<JobStateName> = new Set(['completed', 'failed', 'dead-lettered', 'cancelled']);

/** States from which CancelJob removes a job at once. */
export const CANCELLABLE_NOW: ReadonlySet<JobStateName> = new Set(['waiting', 'delayed', 'prioritized', 'waiting-children']);

export function isTerminal(state: JobStateName): boolean {
  return TERMINAL_STATES.has(state);
}
