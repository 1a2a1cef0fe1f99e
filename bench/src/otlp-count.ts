import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

// The lean OTLP/HTTP receiver of the traced scenarios: it walks each protobuf request's wire format
// (no decoding into objects) just far enough to count its spans by service.name and kind, and
// answers 200 with an empty ExportTraceServiceResponse, so that it takes next to no CPU from the
// services it measures.

/** opentelemetry.proto.trace.v1.Span.SpanKind, by number. */
const KINDS = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'];

interface Field {
  field: number;
  /** The varint of a VARINT field. */
  value: number;
  /** The bytes of a LEN field. */
  bytes?: Buffer;
}

/** The top-level fields of one protobuf message. */
function* fields(buf: Buffer): Generator<Field> {
  let at = 0;
  const varint = (): number => {
    let n = 0;
    let scale = 1;
    for (;;) {
      if (at >= buf.length) throw new Error('truncated varint');
      const b = buf[at++]!;
      n += (b & 0x7f) * scale;
      if (b < 0x80) return n;
      scale *= 128;
    }
  };
  while (at < buf.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    switch (tag & 7) {
      case 0:
        yield { field, value: varint() };
        break;
      case 1:
        at += 8;
        break;
      case 2: {
        const len = varint();
        if (at + len > buf.length) throw new Error('truncated field');
        yield { field, value: len, bytes: buf.subarray(at, at + len) };
        at += len;
        break;
      }
      case 5:
        at += 4;
        break;
      default:
        throw new Error(`wire type ${tag & 7} is not in OTLP`);
    }
  }
}

const sub = (buf: Buffer, n: number): Buffer[] => [...fields(buf)].filter((f) => f.field === n && f.bytes).map((f) => f.bytes!);

/** service.name of a Resource (attributes = 1; KeyValue key = 1, value = 2; AnyValue string_value = 1). */
function serviceName(resource: Buffer | undefined): string {
  for (const kv of resource ? sub(resource, 1) : []) {
    const key = sub(kv, 1)[0]?.toString('utf8');
    const value = sub(kv, 2)[0];
    if (key === 'service.name' && value) return sub(value, 1)[0]?.toString('utf8') ?? 'unknown';
  }
  return 'unknown';
}

/**
 * Adds the spans of one ExportTraceServiceRequest to `counts`, by "<service.name> <kind>":
 * resource_spans = 1, its resource = 1 and scope_spans = 2, their spans = 2, a span's kind = 6.
 */
export function countSpans(request: Buffer, counts: Record<string, number>): void {
  for (const rs of sub(request, 1)) {
    const service = serviceName(sub(rs, 1)[0]);
    for (const ss of sub(rs, 2)) {
      for (const span of sub(ss, 2)) {
        let kind = 0;
        for (const f of fields(span)) if (f.field === 6 && !f.bytes) kind = f.value;
        const key = `${service} ${KINDS[kind] ?? 'UNSPECIFIED'}`;
        counts[key] = (counts[key] ?? 0) + 1;
      }
    }
  }
}

export interface CountingReceiver {
  /** For OTEL_EXPORTER_OTLP_ENDPOINT with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf. */
  readonly httpUrl: string;
  /** POST /v1/traces requests, including refused ones. */
  readonly requests: number;
  /** Requests to anything else. */
  readonly otherRequests: number;
  /** Spans by "<service.name> <kind>". */
  readonly spans: Record<string, number>;
  close(): Promise<void>;
}

/** Starts the lean receiver on 127.0.0.1, port 0: OTLP/HTTP protobuf only (JSON gets 415). */
export async function startCountingReceiver(): Promise<CountingReceiver> {
  const spans: Record<string, number> = {};
  let requests = 0;
  let otherRequests = 0;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'POST' || req.url?.split('?')[0] !== '/v1/traces') {
      otherRequests += 1;
      res.writeHead(404).end();
      return;
    }
    requests += 1;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if ((req.headers['content-type'] ?? '').split(';')[0]?.trim() !== 'application/x-protobuf') {
      res.writeHead(415).end();
      return;
    }
    try {
      const body = Buffer.concat(chunks);
      countSpans(req.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body, spans);
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`cannot read the request: ${(err as Error).message}`);
      return;
    }
    // An empty ExportTraceServiceResponse is zero bytes.
    res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 }).end();
  };
  const server: Server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    httpUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get requests() {
      return requests;
    },
    get otherRequests() {
      return otherRequests;
    },
    spans,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
