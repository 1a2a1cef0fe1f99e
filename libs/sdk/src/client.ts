import { type CallOptions, type ChannelCredentials, credentials as grpcCredentials, Metadata, type ServiceError, type ClientReadableStream } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';

export interface JobmeshClientOptions {
  /** "host:port" of the Jobmesh gRPC endpoint. @default 127.0.0.1:50051 */
  address?: string;
  /** TLS credentials; plaintext when unset. */
  credentials?: ChannelCredentials;
  /** An API key, sent as `authorization: Bearer <key>`. */
  apiKey?: string;
  /** Deadline of each unary call, ms. @default 10000 */
  timeoutMs?: number;
}

export interface CallSettings {
  /** Overrides the client's deadline for this call, ms. */
  timeoutMs?: number;
  /** Extra metadata, e.g. a W3C `traceparent`. */
  metadata?: Record<string, string>;
  signal?: AbortSignal;
}

type Unary<Req, Res> = (req: Req, metadata: Metadata, options: Partial<CallOptions>, cb: (err: ServiceError | null, res: Res) => void) => unknown;

/** Any message with every field optional, as `fromPartial` accepts it. */
export type DeepPartial<T> = T extends Date | Buffer | string | number | boolean | undefined
  ? T
  : T extends Array<infer U>
    ? DeepPartial<U>[]
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

/** A typed, promise-based client of SchedulerService. */
export class JobmeshClient {
  readonly scheduler: pb.SchedulerServiceClient;
  private readonly timeoutMs: number;
  private readonly apiKey?: string;

  constructor(opts: JobmeshClientOptions = {}) {
    this.scheduler = new pb.SchedulerServiceClient(opts.address ?? '127.0.0.1:50051', opts.credentials ?? grpcCredentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.apiKey = opts.apiKey;
  }

  private metadata(s?: CallSettings): Metadata {
    const md = new Metadata();
    if (this.apiKey) md.set('authorization', `Bearer ${this.apiKey}`);
    for (const [k, v] of Object.entries(s?.metadata ?? {})) md.set(k, v);
    return md;
  }

  private call<Req, Res>(method: Unary<Req, Res>, req: Req, s?: CallSettings): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const deadline = new Date(Date.now() + (s?.timeoutMs ?? this.timeoutMs));
      const call = method.call(this.scheduler, req, this.metadata(s), { deadline }, (err, res) => (err ? reject(err) : resolve(res))) as {
        cancel(): void;
      };
      s?.signal?.addEventListener('abort', () => call.cancel(), { once: true });
    });
  }

  createQueue = (req: DeepPartial<pb.CreateQueueRequest>, s?: CallSettings) =>
    this.call(this.scheduler.createQueue, pb.CreateQueueRequest.fromPartial(req as never), s).then((r) => r.queue!);
  updateQueue = (req: DeepPartial<pb.UpdateQueueRequest>, s?: CallSettings) =>
    this.call(this.scheduler.updateQueue, pb.UpdateQueueRequest.fromPartial(req as never), s).then((r) => r.queue!);
  getQueue = (name: string, s?: CallSettings) => this.call(this.scheduler.getQueue, { name }, s).then((r) => r.queue!);
  listQueues = (req: Partial<pb.ListQueuesRequest> = {}, s?: CallSettings) => this.call(this.scheduler.listQueues, pb.ListQueuesRequest.fromPartial(req as never), s);
  deleteQueue = (name: string, force = false, s?: CallSettings) => this.call(this.scheduler.deleteQueue, { name, force }, s).then(() => undefined);
  pauseQueue = (name: string, s?: CallSettings) => this.call(this.scheduler.pauseQueue, { name }, s).then((r) => r.queue!);
  resumeQueue = (name: string, s?: CallSettings) => this.call(this.scheduler.resumeQueue, { name }, s).then((r) => r.queue!);

  enqueueJob = (req: DeepPartial<pb.EnqueueJobRequest>, s?: CallSettings) => this.call(this.scheduler.enqueueJob, pb.EnqueueJobRequest.fromPartial(req as never), s);
  enqueueJobs = (req: DeepPartial<pb.EnqueueJobsRequest>, s?: CallSettings) => this.call(this.scheduler.enqueueJobs, pb.EnqueueJobsRequest.fromPartial(req as never), s);
  enqueueFlow = (req: DeepPartial<pb.EnqueueFlowRequest>, s?: CallSettings) => this.call(this.scheduler.enqueueFlow, pb.EnqueueFlowRequest.fromPartial(req as never), s);

  getJob = (queue: string, id: string, s?: CallSettings) => this.call(this.scheduler.getJob, { queue, id }, s).then((r) => r.job!);
  listJobs = (req: Partial<pb.ListJobsRequest> & { queue: string }, s?: CallSettings) => this.call(this.scheduler.listJobs, pb.ListJobsRequest.fromPartial(req as never), s);
  cancelJob = (queue: string, id: string, reason = '', s?: CallSettings) => this.call(this.scheduler.cancelJob, { queue, id, reason }, s);
  retryJob = (queue: string, id: string, s?: CallSettings) => this.call(this.scheduler.retryJob, { queue, id }, s).then((r) => r.job!);
  promoteJob = (queue: string, id: string, s?: CallSettings) => this.call(this.scheduler.promoteJob, { queue, id }, s).then((r) => r.job!);

  upsertSchedule = (schedule: DeepPartial<pb.Schedule>, s?: CallSettings) =>
    this.call(this.scheduler.upsertSchedule, pb.UpsertScheduleRequest.fromPartial({ schedule } as never), s).then((r) => r.schedule!);
  getSchedule = (queue: string, id: string, s?: CallSettings) => this.call(this.scheduler.getSchedule, { queue, id }, s).then((r) => r.schedule!);
  listSchedules = (req: Partial<pb.ListSchedulesRequest> & { queue: string }, s?: CallSettings) =>
    this.call(this.scheduler.listSchedules, pb.ListSchedulesRequest.fromPartial(req as never), s);
  deleteSchedule = (queue: string, id: string, s?: CallSettings) => this.call(this.scheduler.deleteSchedule, { queue, id }, s).then(() => undefined);

  /** Streams a job's events until it reaches a terminal state. Break out of the loop to stop. */
  async *watchJob(queue: string, id: string, s?: Omit<CallSettings, 'timeoutMs'>): AsyncGenerator<pb.JobEvent> {
    const stream: ClientReadableStream<pb.WatchJobResponse> = this.scheduler.watchJob({ queue, id }, this.metadata(s));
    s?.signal?.addEventListener('abort', () => stream.cancel(), { once: true });
    try {
      for await (const msg of stream as AsyncIterable<pb.WatchJobResponse>) if (msg.event) yield msg.event;
    } finally {
      stream.cancel();
    }
  }

  close(): void {
    this.scheduler.close();
  }
}
