import { type ChildProcess, fork } from 'node:child_process';
import { resolve } from 'node:path';

/** The receiver is up: where exporters send to. */
export interface SinkReady {
  type: 'ready';
  /** For OTEL_EXPORTER_OTLP_ENDPOINT with http/protobuf (and http/json, for the decoding one). */
  httpUrl: string;
  /** For OTEL_EXPORTER_OTLP_ENDPOINT with grpc: the decoding receiver only. */
  grpcUrl?: string;
}

/**
 * `count`: otlp-count.ts, which walks each OTLP/HTTP protobuf request's bytes to count its spans
 * and decodes nothing, so it costs next to no CPU. `decode`: @jobmesh/testing's receiver (gRPC and
 * HTTP), which decodes every span into an object, as a check of what was sent, at a CPU cost that
 * a collector elsewhere would not put on the measured machine.
 */
export type SinkMode = 'count' | 'decode';

/** What the receiver has got so far. */
export interface SinkCounts {
  type: 'counts';
  /** The request's id, echoed. */
  id: number;
  /** Trace export requests, of either protocol (including empty and undecodable ones). */
  requests: number;
  /** Requests to other paths (metrics, logs): what no exporter should send here. */
  otherRequests: number;
  /** Spans received by "<service.name> <kind>", e.g. `worker-pool CONSUMER`. */
  spans: Record<string, number>;
  /** CPU time the receiver's process has used since it started (user and system), in ms. */
  cpuMs: number;
}

export interface OtlpSink extends Omit<SinkReady, 'type'> {
  /** What the receiver has got so far; it answers in the order asked. */
  counts(): Promise<Omit<SinkCounts, 'type' | 'id'>>;
  stop(): Promise<void>;
}

const SINK_MAIN = resolve(__dirname, 'otlp-sink-main.js');
const START_TIMEOUT_MS = 20_000;
/** Counting even 100,000 decoded spans takes well under this. */
const ANSWER_TIMEOUT_MS = 10_000;

/**
 * Starts an OTLP receiver as a process of its own, as a collector would be: what it does competes
 * for the machine's cores, not for the bench's event loop, and what it keeps is not in the bench's
 * heap.
 */
export async function startOtlpSink(mode: SinkMode): Promise<OtlpSink> {
  // Nothing of the bench's environment: the receiver needs none.
  const child: ChildProcess = fork(SINK_MAIN, [mode], { env: { PATH: process.env.PATH }, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const ready = await new Promise<SinkReady>((resolveReady, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the OTLP sink did not start within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    child.once('message', (msg: SinkReady) => {
      clearTimeout(timer);
      resolveReady(msg);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the OTLP sink exited with code ${code} before it was ready`));
    });
  });
  let asked = 0;
  return {
    httpUrl: ready.httpUrl,
    ...(ready.grpcUrl !== undefined && { grpcUrl: ready.grpcUrl }),
    counts: () =>
      new Promise((resolveCounts, reject) => {
        const timer = setTimeout(() => done(new Error(`the OTLP sink did not answer within ${ANSWER_TIMEOUT_MS} ms`)), ANSWER_TIMEOUT_MS);
        const gone = (): void => done(new Error('the OTLP sink exited before it answered'));
        const id = ++asked;
        const answer = (msg: SinkCounts): void => {
          if (msg.type === 'counts' && msg.id === id) done(undefined, msg);
        };
        function done(err: Error | undefined, msg?: SinkCounts): void {
          clearTimeout(timer);
          child.off('exit', gone);
          child.off('message', answer);
          if (err) reject(err);
          else resolveCounts({ requests: msg!.requests, otherRequests: msg!.otherRequests, spans: msg!.spans, cpuMs: msg!.cpuMs });
        }
        child.once('exit', gone);
        child.on('message', answer);
        child.send({ type: 'counts', id });
      }),
    stop: async () => {
      if (child.connected) child.disconnect();
      else if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
