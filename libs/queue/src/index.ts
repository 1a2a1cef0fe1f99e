export * from './connection';
export * from './keys';
export * from './registry';
export * from './backbone';
export * from './proto-mapping';
export * from './job-mapping';
export * from './cancellation';
export * from './dead-letters';
export * from './atomic-enqueue';
export * from './children';
export * from './scripts';
export * from './served-directory';
export * from './worker-directory';
export * from './queue-stats';
export * from './processor-wait';
export * from './events';
export * from './redis-errors';
export { JobSetAside, type JobStore, RunningJob, STEPS_TTL_MS } from './running-job';
export { type BackoffSubject, type FailedAttempt, type JobProcessor, JobRunner, type JobRunnerOptions, type JobRunnerSettings, type RateLimit, SharedFetch } from './job-runner';
export { CancelRequests } from './cancel-requests';
export { WakeUps } from './wake-ups';
export { JobData } from './job-data';
export { type PlainJob, PlainAdder } from './plain-adds';
export { type DurableAck, type Enqueued, type NewFlowNode, type NewJob, JobProducer } from './job-producer';
export { type CancelOutcome, type JobPage, type JobView, JobAdmin } from './job-admin';
export { type ScheduleTemplate, type ScheduleTrigger, ScheduleStore } from './schedule-store';
export { type JobEventReaderOptions, JobEventReader } from './job-event-reader';
export {
  type DeadLetterCursor,
  type DeadLetterFacts,
  type DeadLetterFilter,
  DeadLetterNotFoundError,
  type DeadLetterPage,
  type DeadLetterSpan,
  DeadLetterStore,
  type NewDeadLetter,
  matchesFilter,
  parseDeadLetterId,
} from './dead-letter-store';
export { type FailedEntry, type FailedJob, FailedJobs, type FailedJobsWatch } from './failed-jobs';
export { type AddTaskOptions, type Task, TaskQueue, type TaskQueueOptions, type TaskState } from './task-queue';
