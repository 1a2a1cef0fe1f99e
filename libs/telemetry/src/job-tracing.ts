// Jobmesh's spans, made in one place so that every service names and attributes them alike (see
// semconv.ts). A job carries its context as a W3C traceparent string stored with it; these helpers
// turn such strings into contexts and links and back, and make each kind of span: the RPC server
// span, the enqueue (PRODUCER), each attempt (CONSUMER), a worker's own reported timing, the
// dead-letter capture and the replay.
//
// Without a started SDK (see startTracing) every helper is a no-op that costs a flag test: the
// traceparent a caller sent is passed through unchanged, so a job still carries its producer's
// trace id for GetJob, dead letters and the Python worker.
import { type Attributes, type Context, type Link, ROOT_CONTEXT, type Span, type SpanContext, SpanKind, SpanStatusCode, context, createTraceState, trace } from '@opentelemetry/api';
import * as C from './semconv';
import { tracingActive } from './tracing';

const TRACEPARENT = /^([\da-f]{2})-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})$/;
const INVALID_TRACE_ID = '0'.repeat(32);
const INVALID_SPAN_ID = '0'.repeat(16);

/** The span context a W3C traceparent names (remote), or undefined when it is not a valid one. */
export function parseTraceparent(traceparent: string | undefined, tracestate?: string): SpanContext | undefined {
  const m = traceparent ? TRACEPARENT.exec(traceparent.trim()) : null;
  if (!m || m[1] === 'ff' || m[2] === INVALID_TRACE_ID || m[3] === INVALID_SPAN_ID) return undefined;
  return { traceId: m[2]!, spanId: m[3]!, traceFlags: parseInt(m[4]!, 16) & 1, isRemote: true, traceState: tracestate ? createTraceState(tracestate) : undefined };
}

/** The W3C traceparent of a span context. */
export function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 1).toString(16).padStart(2, '0')}`;
}

/** A context whose parent is the span `traceparent` names; the root context without one. */
export function contextOf(traceparent: string | undefined, tracestate?: string): Context {
  return parentOf(parseTraceparent(traceparent, tracestate));
}

const parentOf = (sc: SpanContext | undefined): Context => (sc ? trace.setSpanContext(ROOT_CONTEXT, sc) : ROOT_CONTEXT);

/** A link to the span `traceparent` names, or nothing. */
function linksTo(traceparent: string | undefined, attributes?: Attributes): Link[] {
  const sc = parseTraceparent(traceparent);
  return sc ? [{ context: sc, attributes }] : [];
}

const tracer = () => trace.getTracer('jobmesh');

const messaging = (queue: string, type: string, name: string): Attributes => ({
  [C.ATTR_MESSAGING_SYSTEM]: C.MESSAGING_SYSTEM,
  [C.ATTR_MESSAGING_OPERATION_TYPE]: type,
  [C.ATTR_MESSAGING_OPERATION_NAME]: name,
  [C.ATTR_MESSAGING_DESTINATION_NAME]: queue,
});

/** Records `err` on `span` and marks it ERROR. */
function failSpan(span: Span, err: unknown): void {
  const e = err instanceof Error ? err : new Error(String(err));
  span.recordException(e);
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
}

// ---- RPC server spans (grpc-kit) ----

/** A call's server span, or nothing when tracing is off. */
export interface ServerSpan {
  /** The context the handler runs in (the span's). */
  readonly context: Context;
  /** The span's traceparent. */
  readonly traceparent: string;
  /** Ends it with the call's gRPC status code; `err` (unexpected failures) marks it ERROR. */
  end(code: number, err?: unknown): void;
}

/**
 * Starts the SERVER span of a gRPC call `method` ("/pkg.Service/Method"), continuing the caller's
 * traceparent and tracestate (from its metadata). Undefined when tracing is off.
 */
export function startServerSpan(method: string, traceparent: string | undefined, tracestate: string | undefined): ServerSpan | undefined {
  if (!tracingActive()) return undefined;
  const [service = '', name = ''] = method.replace(/^\//, '').split('/');
  const span = tracer().startSpan(
    `${service}/${name}`,
    { kind: SpanKind.SERVER, attributes: { [C.ATTR_RPC_SYSTEM]: 'grpc', [C.ATTR_RPC_SERVICE]: service, [C.ATTR_RPC_METHOD]: name } },
    contextOf(traceparent, tracestate),
  );
  return {
    context: trace.setSpan(contextOf(traceparent, tracestate), span),
    traceparent: formatTraceparent(span.spanContext()),
    end(code, err) {
      span.setAttribute(C.ATTR_RPC_GRPC_STATUS_CODE, code);
      if (err !== undefined) failSpan(span, err);
      span.end();
    },
  };
}

/** The traceparent of the active span (a handler's, under startServerSpan), if any. */
export function activeTraceparent(): string | undefined {
  const span = trace.getSpan(context.active());
  return span ? formatTraceparent(span.spanContext()) : undefined;
}

// ---- Enqueue (scheduler) ----

/** One job an enqueue writes. */
export interface EnqueuedJobRef {
  name: string;
  /** Its id, when the caller chose it. */
  id?: string;
}

/** The PRODUCER span of an enqueue, and the traceparent each of its jobs stores. */
export interface EnqueueSpan {
  /** Per job, in order: the traceparent to store with it. */
  readonly traceparents: Array<string | undefined>;
  /** Ends it: the ids the jobs got, or the error that failed the enqueue. */
  end(outcome: { ids?: string[]; err?: unknown }): void;
}

/**
 * The PRODUCER span `send <queue>` of an enqueue of `jobs`, a child of the active span (the RPC's)
 * or of `traceparent`. One job: the job stores this span's context. Several (EnqueueJobs): one span
 * with messaging.batch.message_count, and each job its own `create <queue>` span under it, whose
 * context it stores. With tracing off, every job stores `traceparent` as it came.
 */
export function startEnqueueSpan(queue: string, jobs: EnqueuedJobRef[], traceparent: string | undefined): EnqueueSpan {
  if (!tracingActive()) return { traceparents: jobs.map(() => traceparent), end: () => undefined };
  const parent = trace.getSpan(context.active()) ? context.active() : contextOf(traceparent);
  const batch = jobs.length > 1;
  const attributes = messaging(queue, 'send', 'enqueue');
  if (batch) attributes[C.ATTR_MESSAGING_BATCH_MESSAGE_COUNT] = jobs.length;
  else {
    attributes[C.ATTR_JOB_NAME] = jobs[0]?.name ?? '';
    if (jobs[0]?.id) attributes[C.ATTR_MESSAGING_MESSAGE_ID] = jobs[0].id;
  }
  const span = tracer().startSpan(`send ${queue}`, { kind: SpanKind.PRODUCER, attributes }, parent);
  const inSpan = trace.setSpan(parent, span);
  const creates = batch
    ? jobs.map((j) => {
        const a = messaging(queue, 'create', 'enqueue');
        a[C.ATTR_JOB_NAME] = j.name;
        if (j.id) a[C.ATTR_MESSAGING_MESSAGE_ID] = j.id;
        return tracer().startSpan(`create ${queue}`, { kind: SpanKind.PRODUCER, attributes: a }, inSpan);
      })
    : [];
  return {
    traceparents: batch ? creates.map((s) => formatTraceparent(s.spanContext())) : [formatTraceparent(span.spanContext())],
    end({ ids, err }) {
      if (err !== undefined) failSpan(span, err);
      if (!batch && ids?.[0]) span.setAttribute(C.ATTR_MESSAGING_MESSAGE_ID, ids[0]);
      creates.forEach((s, i) => {
        if (ids?.[i]) s.setAttribute(C.ATTR_MESSAGING_MESSAGE_ID, ids[i]);
        s.end();
      });
      span.end();
    },
  };
}

/** One node of a flow as its span sees it. */
export interface FlowNodeRef extends EnqueuedJobRef {
  queue: string;
  children: FlowNodeRef[];
}

/**
 * The spans of a flow enqueue: one PRODUCER `send <queue>` per node, under the active span (or
 * `traceparent`), each parent's span linking its children's. Returns the traceparent of every
 * node, in depth-first order (a node, then its children's subtrees), and the end call.
 */
export function startFlowSpans(root: FlowNodeRef, traceparent: string | undefined): { traceparents: Array<string | undefined>; end(outcome: { err?: unknown }): void } {
  const flat: FlowNodeRef[] = [];
  const walk = (n: FlowNodeRef): void => {
    flat.push(n);
    n.children.forEach(walk);
  };
  walk(root);
  if (!tracingActive()) return { traceparents: flat.map(() => traceparent), end: () => undefined };
  const parent = trace.getSpan(context.active()) ? context.active() : contextOf(traceparent);
  const spans = new Map<FlowNodeRef, Span>();
  // Children first, so that a parent's span can link them when it starts.
  const start = (n: FlowNodeRef): Span => {
    const links = n.children.map((c) => ({ context: start(c).spanContext(), attributes: { 'jobmesh.link': 'child' } }));
    const attributes = messaging(n.queue, 'send', 'enqueue');
    attributes[C.ATTR_JOB_NAME] = n.name;
    if (n.id) attributes[C.ATTR_MESSAGING_MESSAGE_ID] = n.id;
    if (n === root) attributes[C.ATTR_MESSAGING_BATCH_MESSAGE_COUNT] = flat.length;
    const span = tracer().startSpan(`send ${n.queue}`, { kind: SpanKind.PRODUCER, attributes, links }, parent);
    spans.set(n, span);
    return span;
  };
  start(root);
  return {
    traceparents: flat.map((n) => formatTraceparent(spans.get(n)!.spanContext())),
    end({ err }) {
      for (const s of spans.values()) {
        if (err !== undefined) failSpan(s, err);
        s.end();
      }
    },
  };
}

/**
 * The traceparent a schedule stores for its runs to link to: the active span's (the upsert RPC's),
 * else the caller's. Each run starts a trace of its own, linked to it (see startAttemptSpan).
 */
export function scheduleLinkTraceparent(traceparent: string | undefined): string | undefined {
  return activeTraceparent() ?? traceparent;
}

// ---- Attempts (worker-pool) ----

export interface AttemptInfo {
  queue: string;
  jobId: string;
  name: string;
  attempt: number;
  maxAttempts: number;
  /** The traceparent stored with the job (its enqueue span's). */
  traceparent?: string;
  /** A traceparent to link to, for a job without one of its own (a schedule's run). */
  linkTraceparent?: string;
  /** The schedule that added the job, if one did. */
  scheduleId?: string;
  /** ms from ready to this start, on a first attempt. */
  waitMs?: number;
}

/** A reported span of a worker that has no tracing library of its own. */
export interface ReportedWorkerSpan {
  name?: string;
  start: Date;
  end: Date;
  attributes?: Record<string, string>;
}

/** One attempt's CONSUMER span. */
export interface AttemptSpan {
  /** What to hand the attempt's worker: this span's traceparent, or the job's own with tracing off. */
  readonly traceparent: string | undefined;
  /** The context to run the processor in (the span's). */
  readonly context: Context;
  /** The remote worker the attempt went to. */
  assigned(workerId: string): void;
  /** Records the worker's own timing as a child of this span. */
  reported(span: ReportedWorkerSpan, failed?: string): void;
  /** The attempt completed. */
  completed(): void;
  /** The attempt failed: the error recorded, status ERROR; `final` when the job will not run again. */
  failed(err: unknown, final: boolean): void;
  /** The attempt ended without a verdict (requeued, delayed, waiting for children, ...). */
  setAside(outcome: string): void;
}

const NO_ATTEMPT_SPAN = (traceparent: string | undefined): AttemptSpan => ({
  traceparent,
  context: ROOT_CONTEXT,
  assigned: () => undefined,
  reported: () => undefined,
  completed: () => undefined,
  failed: () => undefined,
  setAside: () => undefined,
});

/**
 * The CONSUMER span `process <queue>` of one attempt: a child of the job's enqueue span, so that
 * retries are siblings in the producer's trace. A job without a traceparent of its own but with a
 * link (a schedule's run) starts a new trace linked to the schedule.
 */
export function startAttemptSpan(a: AttemptInfo): AttemptSpan {
  if (!tracingActive()) return NO_ATTEMPT_SPAN(a.traceparent);
  const attributes = messaging(a.queue, 'process', 'process');
  attributes[C.ATTR_MESSAGING_MESSAGE_ID] = a.jobId;
  attributes[C.ATTR_JOB_NAME] = a.name;
  attributes[C.ATTR_JOB_ATTEMPT] = a.attempt;
  attributes[C.ATTR_JOB_MAX_ATTEMPTS] = a.maxAttempts;
  if (a.waitMs !== undefined) attributes[C.ATTR_JOB_WAIT_MS] = a.waitMs;
  if (a.scheduleId) attributes[C.ATTR_SCHEDULE_ID] = a.scheduleId;
  const own = parseTraceparent(a.traceparent);
  const parent = parentOf(own);
  const links = own ? undefined : linksTo(a.linkTraceparent, { 'jobmesh.link': 'schedule' });
  const span = tracer().startSpan(`process ${a.queue}`, { kind: SpanKind.CONSUMER, attributes, links }, parent);
  const ctx = trace.setSpan(parent, span);
  let over = false;
  const finish = (): boolean => {
    if (over) return false;
    over = true;
    return true;
  };
  return {
    // Made when asked (a remote worker's assignment); an in-process attempt never needs it.
    get traceparent() {
      return formatTraceparent(span.spanContext());
    },
    context: ctx,
    assigned: (workerId) => {
      span.setAttribute(C.ATTR_WORKER_ID, workerId);
      span.addEvent('assigned', { [C.ATTR_WORKER_ID]: workerId });
    },
    reported: (r, failed) => {
      const child = tracer().startSpan(r.name || `work ${a.name}`, { kind: SpanKind.INTERNAL, startTime: r.start, attributes: { ...r.attributes, [C.ATTR_JOB_NAME]: a.name, [C.ATTR_JOB_ATTEMPT]: a.attempt, 'jobmesh.span.reported': true } }, ctx);
      if (failed !== undefined) child.setStatus({ code: SpanStatusCode.ERROR, message: failed });
      child.end(r.end < r.start ? r.start : r.end);
    },
    completed: () => {
      if (finish()) span.end();
    },
    failed: (err, final) => {
      if (!finish()) return;
      span.setAttribute(C.ATTR_ATTEMPT_FINAL, final);
      failSpan(span, err);
      span.end();
    },
    setAside: (outcome) => {
      if (!finish()) return;
      span.setAttribute(C.ATTR_ATTEMPT_OUTCOME, outcome);
      span.end();
    },
  };
}

// ---- Dead letters ----

/** Beyond this age, a failure's trace is taken as closed: its capture starts a trace linked to it. */
const CAPTURE_IN_TRACE_MS = 3_600_000;

/**
 * The span of a dead letter's capture, `dead_letter <queue>`: in the job's trace (a child of its
 * enqueue span, beside its attempts), or, for a failure older than an hour (found by a late
 * sweep), a new trace linked to it. Its traceparent is stored with the dead letter (the job's own
 * with tracing off), for replays to link to. Only a capture that stored the dead letter calls
 * `end`: a span never ended is never exported, so a capture another replica won leaves none.
 */
export function startCaptureSpan(d: { queue: string; jobId: string; name: string; category: string; severity: string; traceparent?: string; failedAt: number }): {
  traceparent: string | undefined;
  end(deadLetterId: string): void;
} {
  if (!tracingActive()) return { traceparent: d.traceparent, end: () => undefined };
  const attributes = messaging(d.queue, 'settle', 'dead_letter');
  attributes[C.ATTR_MESSAGING_MESSAGE_ID] = d.jobId;
  attributes[C.ATTR_JOB_NAME] = d.name;
  attributes[C.ATTR_DEAD_LETTER_CATEGORY] = d.category;
  attributes[C.ATTR_DEAD_LETTER_SEVERITY] = d.severity;
  const inTrace = Date.now() - d.failedAt < CAPTURE_IN_TRACE_MS;
  const span = tracer().startSpan(
    `dead_letter ${d.queue}`,
    { kind: SpanKind.CONSUMER, attributes, links: inTrace ? [] : linksTo(d.traceparent, { 'jobmesh.link': 'job' }) },
    inTrace ? contextOf(d.traceparent) : ROOT_CONTEXT,
  );
  return {
    traceparent: formatTraceparent(span.spanContext()),
    end(deadLetterId) {
      span.setAttribute(C.ATTR_DEAD_LETTER_ID, deadLetterId);
      span.end();
    },
  };
}

/**
 * Runs `fn` in a span `replay <queue>` that starts a trace of its own, linked to the dead letter's
 * (its capture span); the job it enqueues is a child of it, so its trace links back. `fn` gets the
 * traceparent to send with the enqueue (undefined with tracing off).
 */
export async function inReplaySpan<T>(d: { id: string; queue: string; traceparent?: string }, fn: (traceparent: string | undefined) => Promise<T>): Promise<T> {
  if (!tracingActive()) return fn(undefined);
  const attributes = messaging(d.queue, 'send', 'replay');
  attributes[C.ATTR_DEAD_LETTER_ID] = d.id;
  const span = tracer().startSpan(`replay ${d.queue}`, { kind: SpanKind.PRODUCER, attributes, links: linksTo(d.traceparent, { 'jobmesh.link': 'dead_letter' }) }, ROOT_CONTEXT);
  try {
    return await context.with(trace.setSpan(ROOT_CONTEXT, span), () => fn(formatTraceparent(span.spanContext())));
  } catch (err) {
    failSpan(span, err);
    throw err;
  } finally {
    span.end();
  }
}

export { context as otelContext };
