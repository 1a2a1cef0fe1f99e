// The span attribute names Jobmesh writes, in one place. The OpenTelemetry messaging and RPC
// conventions are at Development status, so their names are copied here (as of semantic
// conventions 1.37) rather than imported from @opentelemetry/semantic-conventions/incubating,
// whose exports may change in any release.

/** messaging.system's value for every Jobmesh span. */
export const MESSAGING_SYSTEM = 'jobmesh';

export const ATTR_MESSAGING_SYSTEM = 'messaging.system';
/** `create`, `send`, `receive`, `process` or `settle`. */
export const ATTR_MESSAGING_OPERATION_TYPE = 'messaging.operation.type';
/** The system's own name for the operation, e.g. `enqueue`, `process`, `dead_letter`. */
export const ATTR_MESSAGING_OPERATION_NAME = 'messaging.operation.name';
/** The queue. */
export const ATTR_MESSAGING_DESTINATION_NAME = 'messaging.destination.name';
/** The job id. */
export const ATTR_MESSAGING_MESSAGE_ID = 'messaging.message.id';
/** How many jobs one enqueue span wrote (EnqueueJobs, flows). */
export const ATTR_MESSAGING_BATCH_MESSAGE_COUNT = 'messaging.batch.message_count';

export const ATTR_RPC_SYSTEM = 'rpc.system';
export const ATTR_RPC_SERVICE = 'rpc.service';
export const ATTR_RPC_METHOD = 'rpc.method';
export const ATTR_RPC_GRPC_STATUS_CODE = 'rpc.grpc.status_code';

/** The job's name (the processor it runs). */
export const ATTR_JOB_NAME = 'jobmesh.job.name';
/** The attempt, counted from 1. */
export const ATTR_JOB_ATTEMPT = 'jobmesh.job.attempt';
/** How many attempts the job may make. */
export const ATTR_JOB_MAX_ATTEMPTS = 'jobmesh.job.max_attempts';
/** How long the job waited from ready to this attempt's start, ms (first attempt only). */
export const ATTR_JOB_WAIT_MS = 'jobmesh.job.wait_ms';
/** How an attempt ended when it neither completed nor failed: `requeued`, `delayed`, `waiting-children`, `rate-limited`, `cancelled`. */
export const ATTR_ATTEMPT_OUTCOME = 'jobmesh.attempt.outcome';
/** Whether a failed attempt was the job's last (it is dead-lettered). */
export const ATTR_ATTEMPT_FINAL = 'jobmesh.attempt.final';
/** The remote worker that ran the attempt (its Hello's worker_id); absent in-process. */
export const ATTR_WORKER_ID = 'jobmesh.worker.id';
export const ATTR_DEAD_LETTER_ID = 'jobmesh.dead_letter.id';
export const ATTR_DEAD_LETTER_CATEGORY = 'jobmesh.dead_letter.category';
export const ATTR_DEAD_LETTER_SEVERITY = 'jobmesh.dead_letter.severity';
/** The schedule that fired a job. */
export const ATTR_SCHEDULE_ID = 'jobmesh.schedule.id';
