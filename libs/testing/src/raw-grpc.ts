import { Client, credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';

/** How a raw call ended: its status code and message (OK with the reply's bytes). */
export interface RawOutcome {
  code: status;
  details: string;
  reply?: Buffer;
}

/**
 * A client that sends hand-made bytes as the request of any method: for malformed protobuf,
 * invalid UTF-8 in strings and other messages no generated client can produce.
 */
export class RawGrpcClient {
  private readonly client: Client;

  constructor(address: string) {
    this.client = new Client(address, credentials.createInsecure(), { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 });
  }

  /** Calls `path` (e.g. "/jobmesh.v1.SchedulerService/GetJob") with `bytes` as the request. */
  unary(path: string, bytes: Buffer, opts: { timeoutMs?: number; metadata?: Metadata } = {}): Promise<RawOutcome> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest<Buffer, Buffer>(
        path,
        (b) => b,
        (b) => b,
        bytes,
        opts.metadata ?? new Metadata(),
        { deadline: Date.now() + (opts.timeoutMs ?? 10_000) },
        (err: ServiceError | null, reply?: Buffer) => resolve(err ? { code: err.code, details: err.details } : { code: status.OK, details: '', reply }),
      );
    });
  }

  /**
   * Opens a server stream on `path` with `bytes` as its request; resolves with its status once
   * it ends, or with CANCELLED after `timeoutMs` if it has not (an open stream is not an error).
   */
  serverStream(path: string, bytes: Buffer, opts: { timeoutMs?: number } = {}): Promise<RawOutcome & { messages: number }> {
    return new Promise((resolve) => {
      const call = this.client.makeServerStreamRequest<Buffer, Buffer>(path, (b) => b, (b) => b, bytes, new Metadata(), {});
      let messages = 0;
      const timer = setTimeout(() => call.cancel(), opts.timeoutMs ?? 2000);
      call.on('data', () => (messages += 1));
      call.on('error', () => undefined);
      call.on('status', (s: { code: status; details: string }) => {
        clearTimeout(timer);
        resolve({ code: s.code, details: s.details, messages });
      });
    });
  }

  /** Opens a bidi stream on `path`, writes each of `frames` raw, half-closes, and resolves with its status (CANCELLED after `timeoutMs`). */
  bidi(path: string, frames: Buffer[], opts: { timeoutMs?: number } = {}): Promise<RawOutcome & { messages: number }> {
    const stream = this.openBidi(path, opts);
    for (const f of frames) stream.write(f);
    stream.end();
    return stream.outcome;
  }

  /** Opens a bidi stream on `path` to write raw frames to; `outcome` is its status (CANCELLED after `timeoutMs`). */
  openBidi(path: string, opts: { timeoutMs?: number } = {}): { write(frame: Buffer): void; end(): void; outcome: Promise<RawOutcome & { messages: number }> } {
    const call = this.client.makeBidiStreamRequest<Buffer, Buffer>(path, (b) => b, (b) => b, new Metadata(), {});
    let messages = 0;
    const timer = setTimeout(() => call.cancel(), opts.timeoutMs ?? 2000);
    call.on('data', () => (messages += 1));
    call.on('error', () => undefined);
    const outcome = new Promise<RawOutcome & { messages: number }>((resolve) =>
      call.on('status', (s: { code: status; details: string }) => {
        clearTimeout(timer);
        resolve({ code: s.code, details: s.details, messages });
      }),
    );
    return { write: (frame) => void call.write(frame), end: () => void call.end(), outcome };
  }

  close(): void {
    this.client.close();
  }
}
