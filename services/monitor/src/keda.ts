// KEDA's external scaler (externalscaler.ExternalScaler, vendored in proto/third_party/keda):
// a queue's exact backlog drives a worker Deployment, down to zero and back.
import { createHash } from 'node:crypto';
import { keda } from '@jobmesh/contracts';
import { InvalidArgumentError, validateJobName, validateQueueName } from '@jobmesh/core';
import type { CallContext, RpcKit } from '@jobmesh/grpc-kit';
import { type Backbone, QueueStatsReader } from '@jobmesh/queue';

/** A ScaledObject's trigger metadata, parsed (KEDA sends every value as a string). */
export interface ScalerTrigger {
  queue: string;
  /** Only these job names; empty: the whole queue. */
  jobNames: string[];
  targetBacklog: number;
  activationBacklog: number;
  includeActive: boolean;
}

const KEYS = ['queue', 'jobNames', 'targetBacklog', 'activationBacklog', 'includeActive'];

/** Parses and checks trigger metadata; INVALID_ARGUMENT naming the key for anything wrong. */
export function parseTrigger(metadata: Record<string, string> | undefined): ScalerTrigger {
  const m = metadata ?? {};
  const field = (k: string): string => `scalerMetadata.${k}`;
  const unknown = Object.keys(m).find((k) => !KEYS.includes(k));
  if (unknown !== undefined) throw new InvalidArgumentError(field(unknown), `is not a Jobmesh scaler key; use ${KEYS.join(', ')}`);
  if (!m.queue) throw new InvalidArgumentError(field('queue'), 'is required: the queue whose backlog scales the workers');
  const queue = validateQueueName(m.queue, field('queue'));
  const jobNames = (m.jobNames ?? '')
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean)
    .map((n, i) => validateJobName(n, `${field('jobNames')}[${i}]`));
  const number = (k: string, dflt: number, min: number, strictlyAbove: boolean): number => {
    const raw = m[k];
    if (raw === undefined || raw.trim() === '') return dflt;
    const v = Number(raw);
    if (!Number.isFinite(v) || (strictlyAbove ? v <= min : v < min)) throw new InvalidArgumentError(field(k), `must be a number ${strictlyAbove ? 'above' : 'at least'} ${min}; got "${raw}"`);
    return v;
  };
  const includeRaw = m.includeActive?.trim().toLowerCase();
  if (includeRaw !== undefined && includeRaw !== '' && includeRaw !== 'true' && includeRaw !== 'false') {
    throw new InvalidArgumentError(field('includeActive'), `must be "true" or "false"; got "${m.includeActive}"`);
  }
  return {
    queue,
    jobNames,
    targetBacklog: number('targetBacklog', 10, 0, true),
    activationBacklog: number('activationBacklog', 0, 0, false),
    includeActive: includeRaw !== 'false',
  };
}

/**
 * The metric's name: lowercase `[a-z0-9-]`, as KEDA wants, from the queue, and the job names when
 * given (a short hash, so that two deployments on one queue get two metrics).
 */
export function metricName(t: ScalerTrigger): string {
  const base = `jobmesh-${t.queue.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`;
  if (!t.jobNames.length) return base;
  const hash = createHash('sha256').update([...t.jobNames].sort().join(',')).digest('hex').slice(0, 8);
  return `${base}-${hash}`;
}

/** How often StreamIsActive looks at the backlog. */
export const STREAM_POLL_MS = 1000;

/**
 * The backlog: waiting + prioritized + due delayed + waiting for a processor, plus active with
 * includeActive; of the trigger's job names only when it names some. A paused queue's is 0.
 */
export class ScalerBacklog {
  private readonly reader: QueueStatsReader;

  constructor(private readonly backbone: Backbone) {
    this.reader = new QueueStatsReader(backbone.redis, backbone.registry.keys);
  }

  async of(t: ScalerTrigger): Promise<number> {
    // NOT_FOUND for a queue that does not exist.
    const spec = await this.backbone.registry.get(t.queue);
    const now = Date.now();
    if (spec.paused) return 0;
    if (t.jobNames.length) {
      const b = await this.reader.nameBacklog(t.queue, t.jobNames, now);
      return b.waiting + b.prioritized + b.dueDelayed + b.waitingForProcessor + (t.includeActive ? b.active : 0);
    }
    const [s] = await this.reader.snapshots([t.queue], now);
    if (!s || s.paused) return 0;
    const c = s.counts;
    return c.waiting + c.prioritized + c.dueDelayed + c.waitingForProcessor + (t.includeActive ? c.active : 0);
  }
}

const M = (name: string): string => `/externalscaler.ExternalScaler/${name}`;

export function scalerHandlers(kit: RpcKit, backlog: ScalerBacklog, shutdown: AbortSignal, pollMs = STREAM_POLL_MS): keda.ExternalScalerServer {
  const active = async (ref: keda.ScaledObjectRef): Promise<boolean> => {
    const t = parseTrigger(ref.scalerMetadata);
    return (await backlog.of(t)) > t.activationBacklog;
  };
  return {
    isActive: kit.unary(M('IsActive'), async (ref: keda.ScaledObjectRef) => ({ result: await active(ref) })),
    streamIsActive: kit.serverStream(M('StreamIsActive'), (ref: keda.ScaledObjectRef, ctx, send: (r: keda.IsActiveResponse) => void) => streamActive(ref, ctx, send, active, shutdown, pollMs)),
    getMetricSpec: kit.unary(M('GetMetricSpec'), async (ref: keda.ScaledObjectRef) => {
      const t = parseTrigger(ref.scalerMetadata);
      await backlog.of(t); // NOT_FOUND for an unknown queue, as GetMetrics would say
      return { metricSpecs: [{ metricName: metricName(t), targetSize: Math.max(1, Math.round(t.targetBacklog)), targetSizeFloat: t.targetBacklog }] };
    }),
    getMetrics: kit.unary(M('GetMetrics'), async (req: keda.GetMetricsRequest) => {
      const t = parseTrigger(req.scaledObjectRef?.scalerMetadata);
      const value = await backlog.of(t);
      // Both fields: KEDA before 2.17 reads the int64 one.
      return { metricValues: [{ metricName: req.metricName || metricName(t), metricValue: value, metricValueFloat: value }] };
    }),
    // Optional in KEDA's contract; its targets never change here, so it sends the spec once.
    streamMetricSpec: kit.serverStream(M('StreamMetricSpec'), async (ref: keda.ScaledObjectRef, ctx, send: (r: keda.GetMetricSpecResponse) => void) => {
      const t = parseTrigger(ref.scalerMetadata);
      await backlog.of(t);
      send({ metricSpecs: [{ metricName: metricName(t), targetSize: Math.max(1, Math.round(t.targetBacklog)), targetSizeFloat: t.targetBacklog }] });
      await untilOver(ctx, shutdown);
    }),
  };
}

/** Resolves once the client left or the service stops. */
function untilOver(ctx: CallContext, shutdown: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ctx.signal.aborted || shutdown.aborted) return resolve();
    const done = (): void => {
      ctx.signal.removeEventListener('abort', done);
      shutdown.removeEventListener('abort', done);
      resolve();
    };
    ctx.signal.addEventListener('abort', done);
    shutdown.addEventListener('abort', done);
  });
}

/** StreamIsActive: the state once when opened, then only when it changes. */
async function streamActive(
  ref: keda.ScaledObjectRef,
  ctx: CallContext,
  send: (r: keda.IsActiveResponse) => void,
  active: (ref: keda.ScaledObjectRef) => Promise<boolean>,
  shutdown: AbortSignal,
  pollMs: number,
): Promise<void> {
  let last = await active(ref);
  send({ result: last });
  const over = (): boolean => ctx.signal.aborted || shutdown.aborted;
  while (!over()) {
    await Promise.race([new Promise<void>((r) => setTimeout(r, pollMs).unref()), untilOver(ctx, shutdown)]);
    if (over()) return;
    const now = await active(ref);
    if (now !== last) send({ result: (last = now) });
  }
}
