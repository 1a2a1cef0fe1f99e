import type * as pb from '@jobmesh/contracts';
import type { Role } from '@jobmesh/core';

/**
 * The queues a call touches: a list of names, or ALL_QUEUES for a call that names none (a listing
 * across queues, a dead letter by id), which only a key whose queues include `*` may make. STREAM:
 * the queues come later in the stream (Connect's Hello, EnqueueStream's jobs) and the handler
 * checks them with `requireQueues`.
 */
export const ALL_QUEUES = Symbol('all queues');
export const STREAM = Symbol('queues named in the stream');
export type QueueScope = readonly string[] | typeof ALL_QUEUES | typeof STREAM | undefined;

export interface Permission {
  /** The roles besides admin that may call it. */
  roles: readonly Role[];
  /** The queues a request touches; undefined: none (GetSystemHealth). */
  queues: (request: never) => QueueScope;
}

/** One queue name, or ALL_QUEUES when it is empty (an optional filter, or a request without one). */
const one = (queue: string | undefined): QueueScope => (queue ? [queue] : ALL_QUEUES);
/** Several queue names; ALL_QUEUES if any is empty. */
const each = (queues: readonly (string | undefined)[]): QueueScope => (queues.length && queues.every((q) => q) ? (queues as string[]) : ALL_QUEUES);

const allQueues = (): QueueScope => ALL_QUEUES;
const inStream = (): QueueScope => STREAM;
const noQueue = (): QueueScope => undefined;

/** Every queue of a flow, walked without recursion (a flow can be deep). */
function flowQueues(root: pb.FlowNode | undefined): QueueScope {
  if (!root) return ALL_QUEUES;
  const out: string[] = [];
  const stack = [root];
  while (stack.length) {
    const node = stack.pop()!;
    out.push(node.queue);
    stack.push(...node.children);
  }
  return each(out);
}

/** A dead-letter selection: by ids (any queue), else its filter's queue; and a replay's target. */
function deadLetterSelection(r: { ids?: string[]; filter?: pb.DeadLetterFilter; targetQueue?: string } | undefined): QueueScope {
  if (!r || r.ids?.length) return ALL_QUEUES;
  const from = one(r.filter?.queue);
  if (from === ALL_QUEUES || !r.targetQueue) return from;
  return [...(from as string[]), r.targetQueue];
}

const P: Role = 'producer';
const W: Role = 'worker';
const V: Role = 'viewer';
const ADMIN_ONLY: readonly Role[] = [];

const S = '/jobmesh.v1.SchedulerService/';
const WS = '/jobmesh.v1.WorkerService/';
const D = '/jobmesh.v1.DeadLetterService/';
const M = '/jobmesh.v1.MonitorService/';

/**
 * The one table of who may call what: every method of every jobmesh.v1 service, the roles that
 * may call it (admin may call everything), and the queues its request touches, each of which must
 * match one of the key's queue globs. A method missing here is refused (a unit test checks that
 * every method of the contract is listed).
 */
export const PERMISSIONS: Readonly<Record<string, Permission>> = {
  // SchedulerService: queues (admin writes, viewers and producers read their own).
  [`${S}CreateQueue`]: { roles: ADMIN_ONLY, queues: (r: pb.CreateQueueRequest) => one(r.queue?.name) },
  [`${S}UpdateQueue`]: { roles: ADMIN_ONLY, queues: (r: pb.UpdateQueueRequest) => one(r.queue?.name) },
  [`${S}GetQueue`]: { roles: [P, V], queues: (r: pb.GetQueueRequest) => one(r.name) },
  [`${S}ListQueues`]: { roles: [V], queues: allQueues },
  [`${S}DeleteQueue`]: { roles: ADMIN_ONLY, queues: (r: pb.DeleteQueueRequest) => one(r.name) },
  [`${S}PauseQueue`]: { roles: ADMIN_ONLY, queues: (r: pb.PauseQueueRequest) => one(r.name) },
  [`${S}ResumeQueue`]: { roles: ADMIN_ONLY, queues: (r: pb.ResumeQueueRequest) => one(r.name) },
  // Jobs: producers enqueue and read their queues' jobs; changing a job is an admin's.
  [`${S}EnqueueJob`]: { roles: [P], queues: (r: pb.EnqueueJobRequest) => one(r.queue) },
  [`${S}EnqueueJobs`]: { roles: [P], queues: (r: pb.EnqueueJobsRequest) => one(r.queue) },
  [`${S}EnqueueFlow`]: { roles: [P], queues: (r: pb.EnqueueFlowRequest) => flowQueues(r.root) },
  [`${S}EnqueueStream`]: { roles: [P], queues: inStream },
  [`${S}GetJob`]: { roles: [P, V], queues: (r: pb.GetJobRequest) => one(r.queue) },
  [`${S}ListJobs`]: { roles: [P, V], queues: (r: pb.ListJobsRequest) => one(r.queue) },
  [`${S}CancelJob`]: { roles: ADMIN_ONLY, queues: (r: pb.CancelJobRequest) => one(r.queue) },
  [`${S}RetryJob`]: { roles: ADMIN_ONLY, queues: (r: pb.RetryJobRequest) => one(r.queue) },
  [`${S}PromoteJob`]: { roles: ADMIN_ONLY, queues: (r: pb.PromoteJobRequest) => one(r.queue) },
  [`${S}WatchJob`]: { roles: [P, V], queues: (r: pb.WatchJobRequest) => one(r.queue) },
  // Schedules enqueue on their own: an admin's.
  [`${S}UpsertSchedule`]: { roles: ADMIN_ONLY, queues: (r: pb.UpsertScheduleRequest) => one(r.schedule?.queue) },
  [`${S}GetSchedule`]: { roles: [V], queues: (r: pb.GetScheduleRequest) => one(r.queue) },
  [`${S}ListSchedules`]: { roles: [V], queues: (r: pb.ListSchedulesRequest) => one(r.queue) },
  [`${S}DeleteSchedule`]: { roles: ADMIN_ONLY, queues: (r: pb.DeleteScheduleRequest) => one(r.queue) },
  // WorkerService: workers, on their queues (a child added goes on its own queue, or the parent's).
  [`${WS}Connect`]: { roles: [W], queues: inStream },
  [`${WS}LeaseJobs`]: { roles: [W], queues: (r: pb.LeaseJobsRequest) => one(r.queue) },
  [`${WS}ExtendLease`]: { roles: [W], queues: (r: pb.ExtendLeaseRequest) => one(r.queue) },
  [`${WS}CompleteJob`]: { roles: [W], queues: (r: pb.CompleteJobRequest) => one(r.complete?.queue) },
  [`${WS}FailJob`]: { roles: [W], queues: (r: pb.FailJobRequest) => one(r.fail?.queue) },
  [`${WS}ReportProgress`]: { roles: [W], queues: (r: pb.ReportProgressRequest) => one(r.progress?.queue) },
  [`${WS}ListWorkers`]: { roles: [W, V], queues: (r: pb.ListWorkersRequest) => one(r.queue) },
  [`${WS}SaveStep`]: { roles: [W], queues: (r: pb.SaveStepRequest) => one(r.saveStep?.queue) },
  [`${WS}AddChildren`]: { roles: [W], queues: (r: pb.AddChildrenRequest) => childrenQueues(r.addChildren) },
  [`${WS}GetChildrenResults`]: { roles: [W], queues: (r: pb.GetChildrenResultsRequest) => one(r.getChildrenResults?.queue) },
  // DeadLetterService: viewers read, admins replay, purge and quarantine.
  [`${D}ListDeadLetters`]: { roles: [V], queues: (r: pb.ListDeadLettersRequest) => one(r.filter?.queue) },
  [`${D}GetDeadLetter`]: { roles: [V], queues: allQueues },
  [`${D}ReplayDeadLetters`]: { roles: ADMIN_ONLY, queues: (r: pb.ReplayDeadLettersRequest) => deadLetterSelection(r) },
  [`${D}StreamReplayDeadLetters`]: { roles: ADMIN_ONLY, queues: (r: pb.StreamReplayDeadLettersRequest) => deadLetterSelection(r.replay) },
  [`${D}PurgeDeadLetters`]: { roles: ADMIN_ONLY, queues: (r: pb.PurgeDeadLettersRequest) => deadLetterSelection(r) },
  [`${D}QuarantineDeadLetters`]: { roles: ADMIN_ONLY, queues: allQueues },
  [`${D}GetDeadLetterStats`]: { roles: [V], queues: (r: pb.GetDeadLetterStatsRequest) => one(r.queue) },
  [`${D}WatchDeadLetters`]: { roles: [V], queues: (r: pb.WatchDeadLettersRequest) => one(r.filter?.queue) },
  // MonitorService: viewers.
  [`${M}GetQueueStats`]: { roles: [V], queues: (r: pb.GetQueueStatsRequest) => one(r.queue) },
  [`${M}ListQueueStats`]: { roles: [V], queues: allQueues },
  [`${M}WatchQueueStats`]: { roles: [V], queues: (r: pb.WatchQueueStatsRequest) => (r.queues.length ? each(r.queues) : ALL_QUEUES) },
  [`${M}GetSystemHealth`]: { roles: [V], queues: noQueue },
};

/**
 * Services that stay open with auth on: health (probes, load balancers) and reflection (grpcurl),
 * and KEDA's external scaler, which cannot send a key and reports only backlog counts (reach it
 * over mTLS or a network policy).
 */
export const OPEN_SERVICES: readonly string[] = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection', 'externalscaler.ExternalScaler'];

function childrenQueues(m: pb.AddChildren | undefined): QueueScope {
  if (!m) return ALL_QUEUES;
  return each([m.queue, ...m.children.map((c) => c.queue || m.queue)]);
}
