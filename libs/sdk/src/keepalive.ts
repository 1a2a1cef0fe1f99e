import type { ChannelOptions } from '@grpc/grpc-js';

/**
 * gRPC keepalive of a client channel: while it has calls open (or always, for a worker's stream)
 * the connection is pinged every `intervalMs`; one that has not answered a ping within
 * `timeoutMs` is closed, and its calls fail with UNAVAILABLE. So a dead connection (a blackholed
 * route, a peer whose host vanished, packets dropped with the sockets left open) is noticed within
 * `intervalMs + timeoutMs`, where TCP alone may wait for many minutes.
 */
export interface Keepalive {
  /** @default 10000 */
  intervalMs?: number;
  /** @default 5000 */
  timeoutMs?: number;
}

export const DEFAULT_KEEPALIVE: Required<Keepalive> = { intervalMs: 10_000, timeoutMs: 5_000 };

/**
 * The channel options of `keepalive` (`false`: none); `idle`: ping also when no call is open, for
 * a channel that should notice a dead connection before it is used again.
 */
export function keepaliveChannelOptions(keepalive: Keepalive | false | undefined, idle = false): ChannelOptions {
  if (keepalive === false) return {};
  const k = { ...DEFAULT_KEEPALIVE, ...keepalive };
  return {
    'grpc.keepalive_time_ms': k.intervalMs,
    'grpc.keepalive_timeout_ms': k.timeoutMs,
    'grpc.keepalive_permit_without_calls': idle ? 1 : 0,
  };
}
