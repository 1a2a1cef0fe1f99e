import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Server, ServerCredentials, type ServiceDefinition, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import protobuf from 'protobufjs';

// A stand-in for an OpenTelemetry Collector (none can be installed here): it decodes what an
// exporter really sent with the official OTLP definitions, vendored under libs/testing/proto (see
// the README there), so a test sees the wire format and not the exporter's in-memory view.

/** An attribute value as OTLP carries it (AnyValue), as plain JS. */
export type OtlpValue = string | boolean | number | bigint | Buffer | null | OtlpValue[] | { [key: string]: OtlpValue };
export type OtlpAttributes = Record<string, OtlpValue>;

/** How the span arrived. */
export type OtlpProtocol = 'grpc' | 'http/protobuf' | 'http/json';

/** One span from an export request, with its resource and scope. */
export interface DecodedSpan {
  /** 32 lowercase hex digits. */
  traceId: string;
  /** 16 lowercase hex digits. */
  spanId: string;
  /** 16 lowercase hex digits; '' for a root span. */
  parentSpanId: string;
  traceState: string;
  name: string;
  /** The proto's SpanKind without its prefix. Note the OTLP numbering differs from @opentelemetry/api's SpanKind. */
  kind: 'UNSPECIFIED' | 'INTERNAL' | 'SERVER' | 'CLIENT' | 'PRODUCER' | 'CONSUMER';
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  status: { code: 'UNSET' | 'OK' | 'ERROR'; message: string };
  attributes: OtlpAttributes;
  events: { name: string; timeUnixNano: bigint; attributes: OtlpAttributes }[];
  links: { traceId: string; spanId: string; traceState: string; attributes: OtlpAttributes }[];
  /** The resource's service.name, if it has one. */
  serviceName: string | undefined;
  resource: OtlpAttributes;
  scope: { name: string; version: string };
  protocol: OtlpProtocol;
}

export interface OtlpReceiver {
  /** For OTEL_EXPORTER_OTLP_ENDPOINT with OTEL_EXPORTER_OTLP_PROTOCOL=grpc (plaintext). */
  readonly grpcUrl: string;
  /** For OTEL_EXPORTER_OTLP_ENDPOINT with http/protobuf or http/json (the exporter appends /v1/traces). */
  readonly httpUrl: string;
  /** Every span received so far, in arrival order. */
  spans(): DecodedSpan[];
  /** Resolves with spans() once `pred` holds for it; rejects after `timeoutMs` with what had arrived. */
  waitForSpans(pred: (spans: DecodedSpan[]) => boolean, timeoutMs?: number): Promise<DecodedSpan[]>;
  /** Trace export requests received (of either protocol), including empty and undecodable ones. */
  readonly requests: number;
  /** Other HTTP requests, as "POST /v1/metrics": what an exporter that should not run would send. */
  readonly otherRequests: string[];
  close(): Promise<void>;
}

const PROTO_DIR = join(__dirname, '..', 'proto');
const PACKAGE = 'opentelemetry.proto.collector.trace.v1';

interface Otlp {
  request: protobuf.Type;
  response: protobuf.Type;
  exportPath: string;
  kinds: Record<number, string>;
  statusCodes: Record<number, string>;
}

let loaded: Otlp | undefined;

function otlp(): Otlp {
  if (loaded) return loaded;
  const root = new protobuf.Root();
  // The files import each other by their path below the proto root, as protoc's -I would.
  root.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(PROTO_DIR, target));
  root.loadSync(join(PROTO_DIR, 'opentelemetry/proto/collector/trace/v1/trace_service.proto'));
  root.resolveAll();
  const service = root.lookupService(`${PACKAGE}.TraceService`);
  const method = service.methods.Export;
  if (!method) throw new Error('TraceService has no Export method');
  const names = (e: protobuf.Enum, prefix: string): Record<number, string> =>
    Object.fromEntries(Object.entries(e.valuesById).map(([id, name]) => [Number(id), name.replace(prefix, '')]));
  loaded = {
    request: root.lookupType(`${PACKAGE}.ExportTraceServiceRequest`),
    response: root.lookupType(`${PACKAGE}.ExportTraceServiceResponse`),
    exportPath: `/${PACKAGE}.TraceService/Export`,
    kinds: names(root.lookupEnum('opentelemetry.proto.trace.v1.Span.SpanKind'), 'SPAN_KIND_'),
    statusCodes: names(root.lookupEnum('opentelemetry.proto.trace.v1.Status.StatusCode'), 'STATUS_CODE_'),
  };
  return loaded;
}

/**
 * Starts an OTLP trace receiver on 127.0.0.1, port 0, for both OTLP/gRPC
 * (`TraceService/Export`) and OTLP/HTTP (`POST /v1/traces`, protobuf or JSON, optionally gzipped).
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const defs = otlp();
  const received: DecodedSpan[] = [];
  const waiters = new Set<() => void>();
  let requests = 0;
  const otherRequests: string[] = [];
  const accept = (message: protobuf.Message, protocol: OtlpProtocol): void => {
    received.push(...decodeRequest(defs, message, protocol));
    for (const check of [...waiters]) check();
  };

  const grpc = new Server();
  const service: ServiceDefinition = {
    Export: {
      path: defs.exportPath,
      requestStream: false,
      responseStream: false,
      requestDeserialize: (buf: Buffer) => defs.request.decode(buf),
      requestSerialize: (msg: protobuf.Message) => Buffer.from(defs.request.encode(msg).finish()),
      responseSerialize: (msg: protobuf.Message) => Buffer.from(defs.response.encode(msg).finish()),
      responseDeserialize: (buf: Buffer) => defs.response.decode(buf),
    },
  };
  grpc.addService(service, {
    Export: (call: ServerUnaryCall<protobuf.Message, protobuf.Message>, callback: sendUnaryData<protobuf.Message>) => {
      requests += 1;
      accept(call.request, 'grpc');
      callback(null, defs.response.create({}));
    },
  });
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpc.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );

  const http = createServer((req, res) => {
    if (req.method !== 'POST' || req.url?.split('?')[0] !== '/v1/traces') {
      otherRequests.push(`${req.method ?? '?'} ${req.url ?? '?'}`);
      res.writeHead(404).end();
      return;
    }
    void handleHttp(defs, req, res, (message, protocol) => {
      requests += 1;
      if (message) accept(message, protocol);
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(0, '127.0.0.1', () => resolve());
  });
  const httpPort = (http.address() as AddressInfo).port;

  return {
    grpcUrl: `http://127.0.0.1:${grpcPort}`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    spans: () => [...received],
    get requests() {
      return requests;
    },
    otherRequests,
    waitForSpans(pred, timeoutMs = 10_000) {
      return new Promise<DecodedSpan[]>((resolve, reject) => {
        const check = (): void => {
          if (!pred([...received])) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve([...received]);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          const seen = received.map((s) => `${s.serviceName ?? '?'}:${s.name}`).join(', ') || 'none';
          reject(new Error(`timed out after ${timeoutMs} ms waiting for spans; ${requests} requests, spans: ${seen}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async close() {
      await new Promise<void>((resolve) => grpc.tryShutdown(() => resolve()));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

/** POST /v1/traces: answers as the OTLP/HTTP spec says, and hands over the decoded request. */
async function handleHttp(
  defs: Otlp,
  req: IncomingMessage,
  res: ServerResponse,
  got: (message: protobuf.Message | undefined, protocol: OtlpProtocol) => void,
): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  let body = Buffer.concat(chunks);
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim();
  const protocol: OtlpProtocol = type === 'application/json' ? 'http/json' : 'http/protobuf';
  try {
    if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
    let message: protobuf.Message;
    if (type === 'application/x-protobuf') message = defs.request.decode(body);
    else if (type === 'application/json') message = fromOtlpJson(defs, JSON.parse(body.toString('utf8')) as unknown);
    else {
      got(undefined, protocol);
      res.writeHead(415).end();
      return;
    }
    got(message, protocol);
    if (protocol === 'http/json') res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(Buffer.from(defs.response.encode(defs.response.create({})).finish()));
  } catch (err) {
    got(undefined, protocol);
    res.writeHead(400, { 'content-type': 'text/plain' }).end(`cannot decode the request: ${(err as Error).message}`);
  }
}

/**
 * OTLP/JSON is proto3's JSON mapping with lowerCamelCase names and integer enums, except that trace
 * and span ids are hex, not base64: those are turned into bytes, then the proto type builds the
 * message, so both HTTP encodings go through the same definitions.
 */
function fromOtlpJson(defs: Otlp, json: unknown): protobuf.Message {
  const hexToBytes = (o: Record<string, unknown>, keys: string[]): void => {
    for (const k of keys) if (typeof o[k] === 'string') o[k] = Buffer.from(o[k], 'hex');
  };
  const body = json as { resourceSpans?: { scopeSpans?: { spans?: Record<string, unknown>[] }[] }[] };
  for (const rs of body.resourceSpans ?? []) {
    for (const ss of rs.scopeSpans ?? []) {
      for (const span of ss.spans ?? []) {
        hexToBytes(span, ['traceId', 'spanId', 'parentSpanId']);
        for (const link of (span.links as Record<string, unknown>[] | undefined) ?? []) hexToBytes(link, ['traceId', 'spanId']);
      }
    }
  }
  if (!Array.isArray(body.resourceSpans)) throw new Error('resourceSpans is not an array');
  // Not verify(): it refuses the decimal strings OTLP/JSON uses for 64-bit integers; fromObject takes them.
  return defs.request.fromObject(body);
}

// ---- from the decoded message to DecodedSpan ----

interface KeyValue {
  key: string;
  value?: AnyValue;
}
interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
  arrayValue?: { values?: AnyValue[] };
  kvlistValue?: { values?: KeyValue[] };
  bytesValue?: Uint8Array;
}
interface SpanObject {
  traceId?: Uint8Array;
  spanId?: Uint8Array;
  parentSpanId?: Uint8Array;
  traceState?: string;
  name?: string;
  kind?: number;
  startTimeUnixNano?: string;
  endTimeUnixNano?: string;
  attributes?: KeyValue[];
  events?: { name?: string; timeUnixNano?: string; attributes?: KeyValue[] }[];
  links?: { traceId?: Uint8Array; spanId?: Uint8Array; traceState?: string; attributes?: KeyValue[] }[];
  status?: { code?: number; message?: string };
}
interface RequestObject {
  resourceSpans?: {
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: { scope?: { name?: string; version?: string }; spans?: SpanObject[] }[];
  }[];
}

function decodeRequest(defs: Otlp, message: protobuf.Message, protocol: OtlpProtocol): DecodedSpan[] {
  // longs as decimal strings: nanosecond timestamps do not fit a double.
  const req = defs.request.toObject(message, { longs: String, enums: Number, oneofs: false }) as RequestObject;
  const out: DecodedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes);
    const serviceName = typeof resource['service.name'] === 'string' ? resource['service.name'] : undefined;
    for (const ss of rs.scopeSpans ?? []) {
      const scope = { name: ss.scope?.name ?? '', version: ss.scope?.version ?? '' };
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          parentSpanId: hex(s.parentSpanId),
          traceState: s.traceState ?? '',
          name: s.name ?? '',
          kind: (defs.kinds[s.kind ?? 0] ?? 'UNSPECIFIED') as DecodedSpan['kind'],
          startTimeUnixNano: BigInt(s.startTimeUnixNano ?? 0),
          endTimeUnixNano: BigInt(s.endTimeUnixNano ?? 0),
          status: { code: (defs.statusCodes[s.status?.code ?? 0] ?? 'UNSET') as DecodedSpan['status']['code'], message: s.status?.message ?? '' },
          attributes: attributes(s.attributes),
          events: (s.events ?? []).map((e) => ({ name: e.name ?? '', timeUnixNano: BigInt(e.timeUnixNano ?? 0), attributes: attributes(e.attributes) })),
          links: (s.links ?? []).map((l) => ({ traceId: hex(l.traceId), spanId: hex(l.spanId), traceState: l.traceState ?? '', attributes: attributes(l.attributes) })),
          serviceName,
          resource,
          scope,
          protocol,
        });
      }
    }
  }
  return out;
}

function hex(bytes: Uint8Array | undefined): string {
  return bytes ? Buffer.from(bytes).toString('hex') : '';
}

function attributes(kvs: KeyValue[] | undefined): OtlpAttributes {
  const out: OtlpAttributes = {};
  for (const kv of kvs ?? []) out[kv.key] = value(kv.value);
  return out;
}

function value(v: AnyValue | undefined): OtlpValue {
  if (v === undefined) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) {
    const n = BigInt(v.intValue);
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  }
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(value);
  if (v.kvlistValue !== undefined) return attributes(v.kvlistValue.values);
  if (v.bytesValue !== undefined) return Buffer.from(v.bytesValue);
  return null;
}
