import type { ServerDuplexStream } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { InvalidArgumentError, validateQueueName } from '@jobmesh/core';
import { type RpcKit, toStatus } from '@jobmesh/grpc-kit';
import { type QueueRegistry, durationToMs, msToDuration } from '@jobmesh/queue';
import type { WorkerPool } from '../worker-pool';
import type { RemoteDispatcher, Session } from './dispatcher';

const M = (name: string): string => `/jobmesh.v1.WorkerService/${name}`;
const MAX_LEASE_WAIT_MS = 30_000;

export interface WorkerServiceParts {
  dispatcher: RemoteDispatcher;
  registry: QueueRegistry;
  pool: WorkerPool;
  replica: string;
  heartbeatIntervalMs: number;
}

async function validQueues(registry: QueueRegistry, queues: string[], field: string): Promise<Set<string>> {
  if (!queues.length) throw new InvalidArgumentError(field, 'must name at least one queue');
  for (const [i, q] of queues.entries()) await registry.get(validateQueueName(q, `${field}[${i}]`));
  return new Set(queues);
}

/** The WorkerService handlers: the Connect stream, its unary twins, and ListWorkers. */
export function workerHandlers(kit: RpcKit, p: WorkerServiceParts): pb.WorkerServiceServer {
  const { dispatcher } = p;

  const connect = async (call: ServerDuplexStream<pb.ConnectRequest, pb.ConnectResponse>): Promise<void> => {
    let session: Session | undefined;
    const send = (msg: pb.ConnectResponse): void => {
      if (!call.writableEnded && !call.destroyed) call.write(msg);
    };
    const nack = (jobId: string, token: string, err: unknown): void => {
      const mapped = toStatus(err);
      send({ nack: { jobId, leaseToken: token, code: mapped.code, message: mapped.details } });
    };
    await new Promise<void>((resolve, reject) => {
      const end = (why: string): void => {
        if (session) dispatcher.close(session, why);
        resolve();
      };
      call.on('data', (msg: pb.ConnectRequest) => {
        void (async () => {
          if (!session) {
            if (!msg.hello) throw new InvalidArgumentError('hello', 'the first message on a Connect stream must be Hello');
            const h = msg.hello;
            if (!h.workerId) throw new InvalidArgumentError('hello.worker_id', 'is required');
            const queues = await validQueues(p.registry, h.queues, 'hello.queues');
            session = dispatcher.open({
              workerId: h.workerId,
              kind: 'stream',
              queues,
              names: new Set(h.jobNames),
              maxInFlight: Math.max(1, h.maxInFlight),
              credit: 0,
              labels: { ...h.labels },
              sdk: h.sdk,
              send,
              end: () => {
                if (!call.writableEnded && !call.destroyed) call.end();
              },
            });
            send({
              welcome: {
                sessionId: session.id,
                leaseTtl: msToDuration(dispatcher.leaseTtlMs),
                heartbeatInterval: msToDuration(p.heartbeatIntervalMs),
              },
            });
            return;
          }
          const s = session;
          if (msg.hello) throw new InvalidArgumentError('hello', 'Hello may be sent only once per stream');
          if (msg.credit) dispatcher.addCredit(s, msg.credit.n);
          else if (msg.heartbeat) dispatcher.heartbeat(s, msg.heartbeat.leaseTokens);
          else if (msg.progress) await dispatcher.progress(msg.progress, s).catch((err) => nack(msg.progress!.jobId, msg.progress!.leaseToken, err));
          else if (msg.log) await dispatcher.log(msg.log, s).catch((err) => nack(msg.log!.jobId, msg.log!.leaseToken, err));
          else if (msg.complete) {
            const c = msg.complete;
            try {
              dispatcher.complete(c, s);
              send({ ack: { jobId: c.jobId, leaseToken: c.leaseToken } });
            } catch (err) {
              nack(c.jobId, c.leaseToken, err);
            }
          } else if (msg.fail) {
            const f = msg.fail;
            try {
              dispatcher.fail(f, s);
              send({ ack: { jobId: f.jobId, leaseToken: f.leaseToken } });
            } catch (err) {
              nack(f.jobId, f.leaseToken, err);
            }
          }
        })().catch((err: unknown) => {
          // A protocol error ends the stream with its status.
          if (session) dispatcher.close(session, 'protocol error');
          reject(err);
        });
      });
      call.on('end', () => end('stream ended'));
      call.on('cancelled', () => end('stream cancelled'));
      call.on('error', () => end('stream failed'));
    });
  };

  return {
    connect: kit.bidi(M('Connect'), (call) => connect(call)),

    leaseJobs: kit.unary(M('LeaseJobs'), async (req: pb.LeaseJobsRequest, ctx) => {
      const queues = await validQueues(p.registry, [req.queue], 'queue');
      if (req.max > 100) throw new InvalidArgumentError('max', `must be at most 100, got ${req.max}`);
      const max = req.max || 1;
      const waitMs = Math.min(durationToMs(req.wait) ?? 0, MAX_LEASE_WAIT_MS);
      const got: pb.Assignment[] = [];
      let wake!: () => void;
      const woken = new Promise<void>((r) => (wake = r));
      // Once the first job arrived, linger briefly for more, then answer: `wait` is for the first.
      let linger: NodeJS.Timeout | undefined;
      const session = dispatcher.open({
        workerId: req.workerId || `unary-${ctx.peer}`,
        kind: 'unary',
        queues,
        names: new Set(req.jobNames),
        maxInFlight: max,
        credit: max,
        labels: {},
        sdk: '',
        collect: (a) => {
          got.push(a);
          if (got.length >= max) wake();
          else linger ??= setTimeout(wake, 50);
        },
      });
      // Jobs already waiting reach this session through the runners; give them a moment.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([woken, new Promise<void>((r) => (timer = setTimeout(r, Math.max(waitMs, 50))))]);
      clearTimeout(timer);
      clearTimeout(linger);
      session.collect = undefined;
      session.credit = 0;
      if (session.leases.size === 0) dispatcher.close(session, 'lease call over');
      else dispatcher.releaseIdle(session);
      return { assignments: got };
    }),

    extendLease: kit.unary(M('ExtendLease'), async (req: pb.ExtendLeaseRequest) => ({
      leaseExpiresAt: dispatcher.extend(req.queue, req.jobId, req.leaseToken),
    })),
    completeJob: kit.unary(M('CompleteJob'), async (req: pb.CompleteJobRequest) => {
      if (!req.complete) throw new InvalidArgumentError('complete', 'is required');
      dispatcher.complete(req.complete);
      return {};
    }),
    failJob: kit.unary(M('FailJob'), async (req: pb.FailJobRequest) => {
      if (!req.fail) throw new InvalidArgumentError('fail', 'is required');
      dispatcher.fail(req.fail);
      return { willRetry: false, retryAt: undefined };
    }),
    reportProgress: kit.unary(M('ReportProgress'), async (req: pb.ReportProgressRequest) => {
      if (!req.progress) throw new InvalidArgumentError('progress', 'is required');
      await dispatcher.progress(req.progress);
      return {};
    }),
    listWorkers: kit.unary(M('ListWorkers'), async (req: pb.ListWorkersRequest) => {
      const workers: pb.WorkerInfo[] = [];
      for (const s of dispatcher.sessions.values()) {
        if (req.queue && !s.queues.has(req.queue)) continue;
        workers.push({
          workerId: s.workerId,
          kind: s.kind === 'stream' ? pb.WorkerKind.WORKER_KIND_STREAM : pb.WorkerKind.WORKER_KIND_UNARY,
          queues: [...s.queues],
          inFlight: s.leases.size,
          maxInFlight: s.maxInFlight,
          labels: s.labels,
          sdk: s.sdk,
          connectedAt: s.connectedAt,
          replica: p.replica,
        });
      }
      for (const r of p.pool.status()) {
        if (req.queue && r.queue !== req.queue) continue;
        workers.push({
          workerId: `${p.replica}/${r.queue}`,
          kind: pb.WorkerKind.WORKER_KIND_IN_PROCESS,
          queues: [r.queue],
          inFlight: r.active,
          maxInFlight: r.concurrency,
          labels: {},
          sdk: 'jobmesh-worker-pool',
          connectedAt: undefined,
          replica: p.replica,
        });
      }
      return { workers };
    }),
  };
}

