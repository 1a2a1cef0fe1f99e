import type { ServerDuplexStream } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { InvalidArgumentError, TERMINAL_STATES } from '@jobmesh/core';
import type { CallContext, RpcKit } from '@jobmesh/grpc-kit';
import { queueSpecToProto, stateFromProto } from '@jobmesh/queue';
import type { Logger } from '@jobmesh/telemetry';
import type { Enqueuer } from './enqueue';
import { enqueueStream } from './enqueue-stream';
import type { Jobs } from './jobs';
import type { Queues } from './queues';
import type { Schedules } from './schedules';
import { type JobEventHub, currentStateEvent, isTerminalEvent } from './watch';

export interface SchedulerParts {
  queues: Queues;
  enqueuer: Enqueuer;
  jobs: Jobs;
  schedules: Schedules;
  hub: JobEventHub;
  logger: Logger;
  /** Aborted when the service shuts down, to end open WatchJob streams. */
  shutdown: AbortSignal;
}

const M = (name: string): string => `/jobmesh.v1.SchedulerService/${name}`;

/** Thin handlers: decode, call the domain module, encode. Errors map to statuses in grpc-kit. */
export function schedulerHandlers(kit: RpcKit, p: SchedulerParts): pb.SchedulerServiceServer {
  return {
    createQueue: kit.unary(M('CreateQueue'), async (req: pb.CreateQueueRequest) => ({ queue: queueSpecToProto(await p.queues.create(req.queue)) })),
    updateQueue: kit.unary(M('UpdateQueue'), async (req: pb.UpdateQueueRequest) => ({
      queue: queueSpecToProto(await p.queues.update(req.queue, req.updateMask)),
    })),
    getQueue: kit.unary(M('GetQueue'), async (req: pb.GetQueueRequest) => ({ queue: queueSpecToProto(await p.queues.get(req.name)) })),
    listQueues: kit.unary(M('ListQueues'), async (req: pb.ListQueuesRequest) => {
      const { queues, next } = await p.queues.list(req.pageSize, req.pageToken);
      return { queues: queues.map(queueSpecToProto), nextPageToken: next };
    }),
    deleteQueue: kit.unary(M('DeleteQueue'), async (req: pb.DeleteQueueRequest) => (await p.queues.delete(req.name, req.force), {})),
    pauseQueue: kit.unary(M('PauseQueue'), async (req: pb.PauseQueueRequest) => ({ queue: queueSpecToProto(await p.queues.setPaused(req.name, true)) })),
    resumeQueue: kit.unary(M('ResumeQueue'), async (req: pb.ResumeQueueRequest) => ({ queue: queueSpecToProto(await p.queues.setPaused(req.name, false)) })),

    enqueueJob: kit.unary(M('EnqueueJob'), (req: pb.EnqueueJobRequest, ctx) => p.enqueuer.enqueue(req, ctx.traceparent)),
    enqueueJobs: kit.unary(M('EnqueueJobs'), (req: pb.EnqueueJobsRequest, ctx) => p.enqueuer.enqueueBulk(req, ctx.traceparent)),
    enqueueFlow: kit.unary(M('EnqueueFlow'), (req: pb.EnqueueFlowRequest, ctx) => p.enqueuer.enqueueFlow(req, ctx.traceparent)),
    enqueueStream: kit.bidi(M('EnqueueStream'), (call: ServerDuplexStream<pb.EnqueueStreamRequest, pb.EnqueueStreamResponse>, ctx) =>
      enqueueStream(p.enqueuer, kit, p.logger, p.shutdown, call, ctx),
    ),

    getJob: kit.unary(M('GetJob'), (req: pb.GetJobRequest) => p.jobs.getWith(req)),
    listJobs: kit.unary(M('ListJobs'), (req: pb.ListJobsRequest) => p.jobs.list(req)),
    cancelJob: kit.unary(M('CancelJob'), (req: pb.CancelJobRequest) => p.jobs.cancel(req)),
    retryJob: kit.unary(M('RetryJob'), async (req: pb.RetryJobRequest) => ({ job: await p.jobs.retry(req.queue, req.id) })),
    promoteJob: kit.unary(M('PromoteJob'), async (req: pb.PromoteJobRequest) => ({ job: await p.jobs.promote(req.queue, req.id) })),
    watchJob: kit.serverStream(M('WatchJob'), (req: pb.WatchJobRequest, ctx, send: (r: pb.WatchJobResponse) => void) => watchJob(p, req, ctx, send)),

    upsertSchedule: kit.unary(M('UpsertSchedule'), async (req: pb.UpsertScheduleRequest, ctx) => ({ schedule: await p.schedules.upsert(req.schedule, ctx.traceparent) })),
    getSchedule: kit.unary(M('GetSchedule'), async (req: pb.GetScheduleRequest) => ({ schedule: await p.schedules.get(req.queue, req.id) })),
    listSchedules: kit.unary(M('ListSchedules'), (req: pb.ListSchedulesRequest) => p.schedules.list(req)),
    deleteSchedule: kit.unary(M('DeleteSchedule'), async (req: pb.DeleteScheduleRequest) => (await p.schedules.delete(req.queue, req.id), {})),
  };
}

/**
 * Subscribes first, then reads the job, so no event between the two is lost. The first event
 * describes the current state; the stream ends after a terminal event, on client cancel, or
 * when the server shuts down.
 */
async function watchJob(p: SchedulerParts, req: pb.WatchJobRequest, ctx: CallContext, send: (r: pb.WatchJobResponse) => void): Promise<void> {
  if (!req.id) throw new InvalidArgumentError('id', 'is required');
  await p.queues.get(req.queue);
  const T = pb.JobEventType;
  let last: pb.JobEventType | undefined;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const buffered: pb.JobEvent[] = [];
  let live = false;
  const deliver = (event: pb.JobEvent): void => {
    // A 'delayed' event before the job ever ran is the enqueue itself, not a retry.
    if (event.type === T.JOB_EVENT_TYPE_RETRY_SCHEDULED && last !== T.JOB_EVENT_TYPE_ACTIVE) return;
    // The first event may repeat what the snapshot already said.
    if (event.type === last && event.type !== T.JOB_EVENT_TYPE_PROGRESS && event.type !== T.JOB_EVENT_TYPE_LOG) return;
    last = event.type;
    send({ event });
    if (isTerminalEvent(event)) done();
  };
  const unsubscribe = await p.hub.subscribe(req.queue, req.id, (event) => (live ? deliver(event) : buffered.push(event)));
  const onAbort = (): void => done();
  ctx.signal.addEventListener('abort', onAbort);
  p.shutdown.addEventListener('abort', onAbort);
  try {
    const job = await p.jobs.get(req.queue, req.id);
    const state = stateFromProto(job.state);
    deliver(currentStateEvent(job, state));
    if (state && TERMINAL_STATES.has(state)) return;
    live = true;
    for (const e of buffered.splice(0)) deliver(e);
    await finished;
  } finally {
    unsubscribe();
    ctx.signal.removeEventListener('abort', onAbort);
    p.shutdown.removeEventListener('abort', onAbort);
  }
}
