import { type ChannelCredentials, type ChannelOptions, credentials as grpcCredentials, Metadata } from '@grpc/grpc-js';

/**
 * How a service calls another (dead-letter → scheduler, monitor → every service): the channel
 * credentials (TLS, mTLS) and the API key it sends. Built once by the service host from
 * JOBMESH_TLS_CA, JOBMESH_TLS_CLIENT_CERT/KEY and JOBMESH_API_KEY.
 */
export interface Dial {
  /** Plaintext when unset. */
  credentials?: ChannelCredentials;
  /** Sent as `authorization: Bearer <key>` on every call. */
  apiKey?: string;
  /** Channel options of every client (its keepalive: JOBMESH_KEEPALIVE_INTERVAL/TIMEOUT). */
  options?: ChannelOptions;
}

/** The channel credentials of `dial`: plaintext when it has none. */
export const dialCredentials = (dial: Dial | undefined): ChannelCredentials => dial?.credentials ?? grpcCredentials.createInsecure();

/** The channel options of `dial`'s clients. */
export const dialOptions = (dial: Dial | undefined): ChannelOptions => dial?.options ?? {};

/** Metadata for one call of `dial`: its API key, and `extra`. */
export function dialMetadata(dial: Dial | undefined, extra: Record<string, string> = {}): Metadata {
  const md = new Metadata();
  if (dial?.apiKey) md.set('authorization', `Bearer ${dial.apiKey}`);
  for (const [k, v] of Object.entries(extra)) md.set(k, v);
  return md;
}
