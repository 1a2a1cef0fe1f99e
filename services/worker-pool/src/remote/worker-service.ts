import type { ServerDuplexStream, ServerUnaryCall, sendUnaryData } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import {
  INVALID_DURATION,
  InvalidArgumentError,
  MAX_WORKER_ID_LENGTH,
  MAX_WORKER_JOB_NAMES,
  validateJobName,
  validateLabels,
  validateLength,
  validateQueueName,
} from '@jobmesh/core';
import { type CallContext, type RpcKit, requireQueues } from '@jobmesh/grpc-kit';
import { type QueueRegistry, durationToMs, msToDuration } from '@jobmesh/queue';
import type { WorkerPool } from '../worker-pool';
import type { FailResult, RemoteDispatcher } from './dispatcher';
import type { StreamSession } from './sessions';

const M = (name: string): string => `/jobmesh.v1.WorkerService/${name}`;
const MAX_LEASE_WAIT_MS = 30_000;
/** The Ack of a streamed Fail waits this long at most for the job's outcome. */
const STREAM_OUTCOME_WAIT_MS = 5_000;
/** FailJob waits at most this long for the outcome, and answers before the call's deadline. */
const UNARY_OUTCOME_WAIT_MS = 5_000;
/**
 * Backpressure: when this many of a stream's messages are read but not yet applied, or applied
 * but their Redis writes are unfinished, the server stops reading the stream (HTTP/2 flow control
 * then holds the worker back) until the backlog is down to LOW_WATER.
 */
const HIGH_WATER = 256;
const LOW_WATER = 64;
/** The most messages one ConnectRequest.batch may hold. */
const MAX_BATCH_MESSAGES = 1000;

export interface WorkerServiceParts {
  dispatcher: RemoteDispatcher;
  registry: QueueRegistry;
  pool: WorkerPool;
  replica: string;
  heartbeatIntervalMs: number;
  /** A Connect stream that has not sent Hello this long after it opened is ended. @default 10 s */
  helloTimeoutMs?: number;
}

export const DEFAULT_HELLO_TIMEOUT_MS = 10_000;

/** Queues one worker may name. */
const MAX_WORKER_QUEUES = 1000;

async function validQueues(registry: QueueRegistry, queues: string[], field: string): Promise<Set<string>> {
  if (!queues.length) throw new InvalidArgumentError(field, 'must name at least one queue');
  if (queues.length > MAX_WORKER_QUEUES) throw new InvalidArgumentError(field, `names ${queues.length} queues; at most ${MAX_WORKER_QUEUES}`);
  for (const [i, q] of queues.entries()) await registry.get(validateQueueName(q, `${field}[${i}]`));
  return new Set(queues);
}

/** Refuses a worker's id, SDK name, labels or job names over their bounds (each is kept and listed). */
function validateWorker(w: { workerId: string; sdk?: string; labels?: Record<string, string>; jobNames: string[] }, field: string): void {
  validateLength(w.workerId, MAX_WORKER_ID_LENGTH, `${field}worker_id`);
  if (w.sdk) validateLength(w.sdk, MAX_WORKER_ID_LENGTH, `${field}sdk`);
  if (w.labels) validateLabels(w.labels, `${field}labels`);
  if (w.jobNames.length > MAX_WORKER_JOB_NAMES) {
    throw new InvalidArgumentError(`${field}job_names`, `holds ${w.jobNames.length} names; at most ${MAX_WORKER_JOB_NAMES}`);
  }
  w.jobNames.forEach((n, i) => validateJobName(n, `${field}job_names[${i}]`));
}

const ack = (jobId: string, leaseToken: string, extra: Partial<pb.Ack> = {}): pb.ConnectResponse => ({ ack: pb.Ack.fromPartial({ jobId, leaseToken, ...extra }) });

/** The Ack fields that tell a Fail's outcome. */
function failFields(r: FailResult): Pick<pb.Ack, 'failOutcome' | 'willRetry' | 'retryAt'> {
  const willRetry = r.outcome === pb.FailOutcome.FAIL_OUTCOME_RETRY_SCHEDULED || r.outcome === pb.FailOutcome.FAIL_OUTCOME_RATE_LIMITED;
  return { failOutcome: r.outcome, willRetry, retryAt: willRetry ? r.retryAt : undefined };
}

/**
 * A ConnectRequest.batch's messages, to be applied one by one as if sent so; or the error that
 * refuses it (too many messages, a Hello or a batch in it), applied in its place.
 */
export function unbatch(batch: pb.ConnectRequestBatch): Array<pb.ConnectRequest | Error> {
  if (batch.messages.length > MAX_BATCH_MESSAGES) {
    return [new InvalidArgumentError('batch.messages', `holds ${batch.messages.length} messages; at most ${MAX_BATCH_MESSAGES}`)];
  }
  const hello = batch.messages.findIndex((m) => m.hello);
  if (hello >= 0) return [new InvalidArgumentError(`batch.messages[${hello}]`, 'is a Hello: send Hello on its own, as the first message')];
  const nested = batch.messages.findIndex((m) => m.batch);
  if (nested >= 0) return [new InvalidArgumentError(`batch.messages[${nested}]`, 'is a batch: batches do not nest')];
  return batch.messages;
}

/** The WorkerService handlers: the Connect stream, its unary twins, and ListWorkers. */
export function workerHandlers(kit: RpcKit, p: WorkerServiceParts): pb.WorkerServiceServer {
  const { dispatcher } = p;

  /**
   * One Connect stream. A single reader takes the messages in the order sent: Hello is applied
   * before anything after it is looked at; Credit and Heartbeat take effect at once; the messages
   * about one lease run one after another (a Progress or Log is stored before the Complete that
   * followed it is applied), while messages about different leases do not wait for each other.
   * A Fail's Ack goes out once its outcome is known, without holding up later messages.
   */
  const connect = (call: ServerDuplexStream<pb.ConnectRequest, pb.ConnectResponse>, ctx: CallContext): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      let session: StreamSession | undefined;
      let over = false;
      /** Set once the client is done (half-closed, cancelled, failed): finish after the backlog. */
      let ending: string | undefined;
      /** Messages read and not applied yet; an Error is a malformed batch, refused in its place. */
      const inbox: Array<pb.ConnectRequest | Error> = [];
      let reading = false;
      /** Lease work started and not finished yet. */
      let busy = 0;
      let unblock: (() => void) | undefined;
      /** Lease token → the last piece of work queued for it. */
      const chains = new Map<string, Promise<void>>();

      const write = (msg: pb.ConnectResponse): void => {
        if (!call.writableEnded && !call.destroyed) call.write(msg);
      };
      // To a worker that reads batches, what is sent in one turn of the event loop (the
      // Assignments a Credit placed, the Acks of the Completes read together) goes as one message.
      let batching = false;
      let outbox: pb.ConnectResponse[] = [];
      let flushDue = false;
      const flush = (): void => {
        flushDue = false;
        const msgs = outbox;
        outbox = [];
        if (msgs.length === 1) write(msgs[0]!);
        else if (msgs.length > 1) write({ batch: { messages: msgs } });
      };
      const send = (msg: pb.ConnectResponse): void => {
        if (!batching) return write(msg);
        outbox.push(msg);
        if (!flushDue) {
          flushDue = true;
          setImmediate(flush);
        }
      };
      const nack = (jobId: string, leaseToken: string, err: unknown, requestId = ''): void => {
        const mapped = kit.toStatus(err);
        send({ nack: pb.Nack.fromPartial({ jobId, leaseToken, code: mapped.code, message: mapped.details, requestId }) });
      };
      const finish = (why: string, err?: unknown): void => {
        if (over) return;
        over = true;
        flush();
        clearTimeout(helloTimer);
        inbox.length = 0;
        if (session) dispatcher.close(session, why);
        if (err) reject(err);
        else resolve();
      };

      /** Runs `work` after the earlier messages about the same lease; its errors become a Nack. */
      const inOrder = (token: string, work: () => Promise<void> | void, refuse: (err: unknown) => void): void => {
        busy++;
        const next = (chains.get(token) ?? Promise.resolve())
          .then(work)
          .catch(refuse)
          .finally(() => {
            busy--;
            if (chains.get(token) === next) chains.delete(token);
            if (busy <= LOW_WATER && unblock) {
              const go = unblock;
              unblock = undefined;
              go();
            }
            if (ending && !reading && chains.size === 0) finish(ending);
          });
        chains.set(token, next);
      };

      const hello = async (h: pb.Hello): Promise<void> => {
        if (!h.workerId) throw new InvalidArgumentError('hello.worker_id', 'is required');
        // The key's queues (auth on): every queue in the Hello, before anything is opened.
        requireQueues(ctx, h.queues, 'hello.queues');
        validateWorker(h, 'hello.');
        const queues = await validQueues(p.registry, h.queues, 'hello.queues');
        if (over) return;
        session = dispatcher.openStream({ workerId: h.workerId, queues, names: new Set(h.jobNames), labels: { ...h.labels }, sdk: h.sdk }, Math.max(1, h.maxInFlight), send, () => {
          flush();
          if (!call.writableEnded && !call.destroyed) call.end();
        });
        send({
          welcome: {
            sessionId: session.id,
            leaseTtl: msToDuration(dispatcher.leaseTtlMs),
            heartbeatInterval: msToDuration(p.heartbeatIntervalMs),
            acceptsBatches: true,
          },
        });
        batching = h.acceptsBatches;
      };

      /** Applies one message; returns a promise only when the reader must wait for it (Hello). */
      const apply = (msg: pb.ConnectRequest | Error): Promise<void> | undefined => {
        if (msg instanceof Error) throw msg;
        if (!session) {
          if (!msg.hello) throw new InvalidArgumentError('hello', 'the first message on a Connect stream must be Hello');
          return hello(msg.hello);
        }
        const s = session;
        if (msg.hello) throw new InvalidArgumentError('hello', 'Hello may be sent only once per stream');
        if (msg.credit) dispatcher.addCredit(s, msg.credit.n);
        else if (msg.heartbeat) dispatcher.heartbeat(s, msg.heartbeat.leaseTokens);
        else if (msg.progress) {
          const m = msg.progress;
          inOrder(m.leaseToken, () => dispatcher.progress(m, s), (err) => nack(m.jobId, m.leaseToken, err));
        } else if (msg.log) {
          const m = msg.log;
          inOrder(m.leaseToken, () => dispatcher.log(m, s), (err) => nack(m.jobId, m.leaseToken, err));
        } else if (msg.complete) {
          const m = msg.complete;
          inOrder(
            m.leaseToken,
            () => {
              dispatcher.complete(m, s);
              send(ack(m.jobId, m.leaseToken));
            },
            (err) => nack(m.jobId, m.leaseToken, err),
          );
        } else if (msg.fail) {
          const m = msg.fail;
          inOrder(
            m.leaseToken,
            () => {
              // The lease is settled now; the Ack follows once the outcome is known, and later
              // messages need not wait for it.
              void dispatcher.fail(m, s, STREAM_OUTCOME_WAIT_MS).then((r) => send(ack(m.jobId, m.leaseToken, failFields(r))));
            },
            (err) => nack(m.jobId, m.leaseToken, err),
          );
        } else if (msg.saveStep) {
          const m = msg.saveStep;
          inOrder(
            m.leaseToken,
            async () => {
              await dispatcher.saveStep(m, s);
              send(ack(m.jobId, m.leaseToken, { requestId: m.requestId }));
            },
            (err) => nack(m.jobId, m.leaseToken, err, m.requestId),
          );
        } else if (msg.addChildren) {
          const m = msg.addChildren;
          inOrder(
            m.leaseToken,
            async () => {
              requireQueues(ctx, m.children.map((c) => c.queue || m.queue), 'add_children.children.queue');
              const r = await dispatcher.addChildren(m, s);
              send(ack(m.jobId, m.leaseToken, { requestId: m.requestId, waitingChildren: r.waiting, children: r.children, childrenResults: r.childrenResults }));
            },
            (err) => nack(m.jobId, m.leaseToken, err, m.requestId),
          );
        } else if (msg.getChildrenResults) {
          const m = msg.getChildrenResults;
          inOrder(
            m.leaseToken,
            async () => {
              const childrenResults = await dispatcher.childrenResults(m, s);
              send(ack(m.jobId, m.leaseToken, { requestId: m.requestId, childrenResults }));
            },
            (err) => nack(m.jobId, m.leaseToken, err, m.requestId),
          );
        }
        // A message of a newer protocol this server does not know is ignored.
        return undefined;
      };

      const read = async (): Promise<void> => {
        if (reading) return;
        reading = true;
        try {
          while (inbox.length && !over) {
            const waiting = apply(inbox.shift()!);
            if (waiting) await waiting;
            if (busy > HIGH_WATER) await new Promise<void>((r) => (unblock = r));
          }
        } catch (err) {
          // A protocol error ends the stream with its status.
          finish('protocol error', err);
        } finally {
          reading = false;
        }
        if (over) return;
        if (call.isPaused()) call.resume();
        if (ending && chains.size === 0) finish(ending);
      };

      // A stream that never says Hello holds a connection's stream slot and memory for nothing.
      const helloTimeoutMs = p.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS;
      const helloTimer = setTimeout(() => {
        if (!session) finish('no Hello', new InvalidArgumentError('hello', `was not sent within ${helloTimeoutMs} ms of opening the stream`));
      }, helloTimeoutMs);
      helloTimer.unref();

      call.on('data', (msg: pb.ConnectRequest) => {
        if (over) return;
        if (msg.batch) inbox.push(...unbatch(msg.batch));
        else inbox.push(msg);
        if (inbox.length >= HIGH_WATER) call.pause();
        void read();
      });
      // What was read is applied first; then the session closes and its leases are released.
      const end = (why: string): void => {
        ending ??= why;
        if (!reading && chains.size === 0) finish(ending);
      };
      call.on('end', () => end('stream ended'));
      call.on('cancelled', () => end('stream cancelled'));
      call.on('error', () => end('stream failed'));
    });

  /** The deadlines of FailJob and LeaseJobs calls, by request: they answer shortly before it. */
  const deadlines = new WeakMap<object, number>();
  const failJob = kit.unary(M('FailJob'), async (req: pb.FailJobRequest): Promise<pb.FailJobResponse> => {
    if (!req.fail) throw new InvalidArgumentError('fail', 'is required');
    const deadline = deadlines.get(req);
    const left = deadline === undefined ? Infinity : deadline - Date.now();
    // Answer a little before the deadline (200 ms, or a tenth of what is left): a late answer
    // would be lost, and the worker would send the Fail again only to be refused as stale.
    const waitMs = Number.isFinite(left) ? Math.max(0, Math.min(UNARY_OUTCOME_WAIT_MS, left - Math.max(200, left * 0.1))) : UNARY_OUTCOME_WAIT_MS;
    const r = failFields(await dispatcher.fail(req.fail, undefined, waitMs));
    return { willRetry: r.willRetry, retryAt: r.retryAt, outcome: r.failOutcome };
  });

  const leaseJobs = kit.unary(M('LeaseJobs'), async (req: pb.LeaseJobsRequest, ctx: CallContext): Promise<pb.LeaseJobsResponse> => {
    validateWorker(req, '');
    const queues = await validQueues(p.registry, [req.queue], 'queue');
    if (req.max > 100) throw new InvalidArgumentError('max', `must be at most 100, got ${req.max}`);
    const max = req.max || 1;
    const askedMs = durationToMs(req.wait) ?? 0;
    if (Number.isNaN(askedMs) || askedMs < 0) throw new InvalidArgumentError('wait', Number.isNaN(askedMs) ? INVALID_DURATION : `must not be negative, got ${askedMs}ms`);
    // An empty answer shortly before the caller's deadline, rather than DEADLINE_EXCEEDED.
    const deadline = deadlines.get(req);
    const left = deadline === undefined ? Infinity : deadline - Date.now() - Math.max(100, (deadline - Date.now()) * 0.1);
    const waitMs = Math.max(0, Math.min(askedMs, MAX_LEASE_WAIT_MS, left));
    let wake!: () => void;
    const woken = new Promise<void>((r) => (wake = r));
    // Once the first job arrived, linger briefly for more, then answer: `wait` is for the first.
    let linger: NodeJS.Timeout | undefined;
    const { session, got } = dispatcher.startPoll(
      { workerId: req.workerId || `unary-${ctx.peer}`, queues, names: new Set(req.jobNames), labels: {}, sdk: '', max },
      () => {
        if (got.length >= max) wake();
        else linger ??= setTimeout(wake, 50);
      },
    );
    // Jobs already waiting reach this session through the runners; give them a moment.
    let timer: NodeJS.Timeout | undefined;
    if (got.length < max) await Promise.race([woken, new Promise<void>((r) => (timer = setTimeout(r, Math.max(waitMs, 50))))]);
    clearTimeout(timer);
    clearTimeout(linger);
    dispatcher.endPoll(session, got);
    return { assignments: got };
  });

  return {
    connect: kit.bidi(M('Connect'), (call, ctx) => connect(call, ctx)),

    leaseJobs: (call: ServerUnaryCall<pb.LeaseJobsRequest, pb.LeaseJobsResponse>, callback: sendUnaryData<pb.LeaseJobsResponse>) => {
      const deadline = call.getDeadline();
      const at = deadline instanceof Date ? deadline.getTime() : deadline;
      if (Number.isFinite(at)) deadlines.set(call.request, at);
      leaseJobs(call, callback);
    },
    extendLease: kit.unary(M('ExtendLease'), async (req: pb.ExtendLeaseRequest) => ({
      leaseExpiresAt: dispatcher.extend(req.queue, req.jobId, req.leaseToken),
    })),
    completeJob: kit.unary(M('CompleteJob'), async (req: pb.CompleteJobRequest) => {
      if (!req.complete) throw new InvalidArgumentError('complete', 'is required');
      dispatcher.complete(req.complete);
      return {};
    }),
    failJob: (call: ServerUnaryCall<pb.FailJobRequest, pb.FailJobResponse>, callback: sendUnaryData<pb.FailJobResponse>) => {
      const deadline = call.getDeadline();
      const at = deadline instanceof Date ? deadline.getTime() : deadline;
      if (Number.isFinite(at)) deadlines.set(call.request, at);
      failJob(call, callback);
    },
    reportProgress: kit.unary(M('ReportProgress'), async (req: pb.ReportProgressRequest) => {
      if (!req.progress) throw new InvalidArgumentError('progress', 'is required');
      await dispatcher.progress(req.progress);
      return {};
    }),
    saveStep: kit.unary(M('SaveStep'), async (req: pb.SaveStepRequest) => {
      if (!req.saveStep) throw new InvalidArgumentError('save_step', 'is required');
      await dispatcher.saveStep(req.saveStep);
      return {};
    }),
    addChildren: kit.unary(M('AddChildren'), async (req: pb.AddChildrenRequest) => {
      if (!req.addChildren) throw new InvalidArgumentError('add_children', 'is required');
      const r = await dispatcher.addChildren(req.addChildren);
      return { waitingChildren: r.waiting, childrenResults: r.childrenResults, children: r.children };
    }),
    getChildrenResults: kit.unary(M('GetChildrenResults'), async (req: pb.GetChildrenResultsRequest) => {
      if (!req.getChildrenResults) throw new InvalidArgumentError('get_children_results', 'is required');
      return { childrenResults: await dispatcher.childrenResults(req.getChildrenResults) };
    }),
    // Every replica's workers, from the shared directory (this replica's as they are now).
    listWorkers: kit.unary(M('ListWorkers'), async (req: pb.ListWorkersRequest) => ({ workers: await p.pool.allWorkers(req.queue || undefined) })),
  };
}
