import {
  status as Status,
  type handleBidiStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type Metadata,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { type Counter, type Histogram, type Logger, type Registry, type ServerSpan, counter, histogram, otelContext, startServerSpan } from '@jobmesh/telemetry';
import { type ErrorTranslator, type MappedStatus, serviceError, toStatus } from './status';

/** What a handler knows about its call. */
export interface CallContext {
  /** The full method path, e.g. "/jobmesh.v1.SchedulerService/EnqueueJob". */
  method: string;
  metadata: Metadata;
  peer: string;
  /** Aborted when the client cancels or the deadline passes. */
  signal: AbortSignal;
  /** Set by the auth hook, e.g. the API key's principal. */
  principal?: unknown;
  /**
   * The W3C traceparent to continue: this call's server span's when tracing is on, else the
   * caller's `traceparent` metadata as sent (when valid), else undefined.
   */
  readonly traceparent?: string;
}

interface GrpcCall {
  metadata: Metadata;
  cancelled: boolean;
  getPeer(): string;
  on(event: 'cancelled', listener: () => void): unknown;
}

/**
 * A call's context. The abort signal is made on first use only: most unary handlers never look at
 * it, and grpc-js reports 'cancelled' after every call's status is sent, which must not count as
 * a cancel once the call is over.
 */
class CallScope implements CallContext {
  principal?: unknown;
  traceparent: string | undefined;
  private controller?: AbortController;
  private over = false;

  constructor(
    readonly method: string,
    private readonly call: GrpcCall,
  ) {}

  get metadata(): Metadata {
    return this.call.metadata;
  }

  get peer(): string {
    return this.call.getPeer();
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = (this.controller = new AbortController());
      const abort = (): void => {
        if (!this.over) controller.abort(new Error('call cancelled by the client or its deadline'));
      };
      if (this.call.cancelled) abort();
      else this.call.on('cancelled', abort);
    }
    return this.controller.signal;
  }

  /** Marks the call finished: later 'cancelled' notifications are ignored. */
  end(): void {
    this.over = true;
  }
}

/**
 * Authenticates and authorises a call before its handler runs; throw an Unauthenticated or
 * PermissionDenied error to reject it. Returns the principal stored on the context.
 */
export type AuthHook = (ctx: CallContext, request: unknown) => unknown | Promise<unknown>;

export interface RpcKitOptions {
  logger: Logger;
  registry: Registry;
  auth?: AuthHook;
  /** Recognises backend failures (a Redis outage) as typed errors; see toStatus. */
  translate?: ErrorTranslator;
}

/**
 * Turns async handlers into grpc-js handlers: runs the auth hook, maps every error to a status in
 * one place, records `jobmesh_grpc_*` metrics, and aborts the context on cancel or deadline.
 */
export class RpcKit {
  private readonly requests;
  private readonly latency;
  /** Each method's series, bound on its first call, so a call costs no label object or lookup. */
  private readonly series = new Map<string, { latency: Histogram.Internal<string>; byCode: Map<Status, Counter.Internal> }>();

  constructor(private readonly opts: RpcKitOptions) {
    this.requests = counter(opts.registry, 'jobmesh_grpc_requests_total', 'gRPC calls handled, by method and status code', ['method', 'code']);
    this.latency = histogram(opts.registry, 'jobmesh_grpc_request_duration_seconds', 'gRPC call latency (streams: until the stream ends)', ['method']);
  }

  /**
   * The status `err` answers a call with, as this kit maps it (with its translator): for handlers
   * that report an error inside a reply (a Nack) rather than as the call's status.
   */
  toStatus(err: unknown): MappedStatus {
    return toStatus(err, this.opts.translate);
  }

  /** Counts a call the server answered before any handler ran (see GrpcServerOptions.refused). */
  refused(method: string, code: Status): void {
    this.finish(method, process.hrtime.bigint(), code);
    // Debug only, like any caller's mistake: garbage sent in bulk must not flood the log.
    this.opts.logger.debug({ method, code: Status[code] }, 'request refused before its handler: not a valid protobuf message');
  }

  private context(method: string, call: GrpcCall): CallScope {
    return new CallScope(method, call);
  }

  private finish(method: string, started: bigint, code: Status, err?: unknown): void {
    let m = this.series.get(method);
    if (!m) this.series.set(method, (m = { latency: this.latency.labels({ method }), byCode: new Map() }));
    let requests = m.byCode.get(code);
    if (!requests) m.byCode.set(code, (requests = this.requests.labels({ method, code: Status[code] ?? String(code) })));
    requests.inc();
    m.latency.observe(Number(process.hrtime.bigint() - started) / 1e9);
    if (err === undefined) return;
    const mapped = this.toStatus(err);
    if (!mapped.expected) this.opts.logger.error({ err, method }, 'unexpected error in handler');
    else if (mapped.code === Status.UNAVAILABLE) this.opts.logger.warn({ method, err: (err as Error).message }, 'backend unavailable');
  }

  /**
   * A unary call, in a SERVER span that continues the caller's traceparent when tracing is on.
   * Streams get no span of their own: a WatchJob or Connect stream lives for minutes or hours,
   * and the jobs it carries have their own spans.
   */
  unary<Req, Res>(method: string, fn: (req: Req, ctx: CallContext) => Promise<Res>): handleUnaryCall<Req, Res> {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      const started = process.hrtime.bigint();
      const ctx = this.context(method, call);
      const incoming = traceHeaders(call.metadata);
      const span = startServerSpan(method, incoming.traceparent, incoming.tracestate);
      ctx.traceparent = span ? span.traceparent : incoming.traceparent;
      const handle = async (): Promise<Res> => {
        if (this.opts.auth) ctx.principal = await this.opts.auth(ctx, call.request);
        return fn(call.request, ctx);
      };
      void (span ? otelContext.with(span.context, handle) : handle()).then(
        (res) => {
          ctx.end();
          this.finish(method, started, Status.OK);
          span?.end(Status.OK);
          callback(null, res);
        },
        (err: unknown) => {
          ctx.end();
          const mapped = this.toStatus(err);
          this.finish(method, started, mapped.code, err);
          endSpan(span, mapped);
          callback(serviceError(mapped));
        },
      );
    };
  }

  /** Ends a stream when its handler settles: OK, or the mapped status; not if the client left. */
  private settleStream(
    method: string,
    started: bigint,
    ctx: CallContext,
    call: { end(): void; emit(event: 'error', err: Error): boolean },
    done: Promise<void>,
  ): void {
    done.then(
      () => {
        this.finish(method, started, Status.OK);
        if (!ctx.signal.aborted) call.end();
      },
      (err: unknown) => {
        const mapped = this.toStatus(err);
        this.finish(method, started, mapped.code, err);
        if (!ctx.signal.aborted) failStream(call, mapped);
      },
    );
  }

  /** A server stream: `fn` writes with `send` and resolves when the stream should end. */
  serverStream<Req, Res>(
    method: string,
    fn: (req: Req, ctx: CallContext, send: (res: Res) => void) => Promise<void>,
  ): handleServerStreamingCall<Req, Res> {
    return (call: ServerWritableStream<Req, Res>) =>
      this.runStream(method, call, call.request, (ctx) =>
        fn(call.request, ctx, (res) => {
          if (!ctx.signal.aborted) call.write(res);
        }),
      );
  }

  /** A bidi stream: `fn` owns the call and resolves when it is over. */
  bidi<Req, Res>(method: string, fn: (call: ServerDuplexStream<Req, Res>, ctx: CallContext) => Promise<void>): handleBidiStreamingCall<Req, Res> {
    return (call: ServerDuplexStream<Req, Res>) => this.runStream(method, call, undefined, (ctx) => fn(call, ctx));
  }

  /** Runs a stream's handler: its context, the auth hook (with the request, for a server stream), then `run`. */
  private runStream(method: string, call: GrpcCall & { end(): void; emit(event: 'error', err: Error): boolean }, request: unknown, run: (ctx: CallContext) => Promise<void>): void {
    const started = process.hrtime.bigint();
    const ctx = this.context(method, call);
    // No span of its own (see unary), but what it starts may continue the caller's trace.
    ctx.traceparent = traceHeaders(call.metadata).traceparent;
    this.settleStream(
      method,
      started,
      ctx,
      call,
      (async () => {
        if (this.opts.auth) ctx.principal = await this.opts.auth(ctx, request);
        await run(ctx);
      })(),
    );
  }
}

const TRACEPARENT = /^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/;

/** The caller's W3C trace headers, when its traceparent is well formed. */
function traceHeaders(metadata: Metadata): { traceparent?: string; tracestate?: string } {
  const tp = metadata.get('traceparent')[0];
  if (typeof tp !== 'string' || !TRACEPARENT.test(tp)) return {};
  const ts = metadata.get('tracestate');
  return { traceparent: tp, tracestate: ts.length ? ts.map(String).join(',') : undefined };
}

/**
 * Ends a call's span with its status: ERROR for the codes that mean the server failed (as the
 * RPC conventions have it for servers), not for a caller's mistake such as INVALID_ARGUMENT.
 */
function endSpan(span: ServerSpan | undefined, mapped: MappedStatus): void {
  if (!span) return;
  const serverFault = [Status.UNKNOWN, Status.DEADLINE_EXCEEDED, Status.UNIMPLEMENTED, Status.INTERNAL, Status.UNAVAILABLE, Status.DATA_LOSS].includes(mapped.code);
  span.end(mapped.code, serverFault ? new Error(mapped.details) : undefined);
}

/**
 * Ends a server or bidi stream with an error status. grpc-js sends the status from its own
 * 'error' listener; `destroy(err)` would skip `_final`, so the client never got a status and hung.
 */
function failStream(call: { emit(event: 'error', err: Error): boolean }, mapped: MappedStatus): void {
  call.emit('error', Object.assign(new Error(mapped.details), serviceError(mapped)));
}
