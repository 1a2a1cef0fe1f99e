import { Metadata, type status } from '@grpc/grpc-js';

/**
 * A replay that stopped part-way, with the status code of what stopped it (the scheduler's own,
 * for a refused enqueue). It has the shape of a downstream gRPC status (code, details,
 * metadata), which grpc-kit passes on as it is, since no Jobmesh error kind covers every code.
 */
export class ReplayStoppedError extends Error {
  override readonly name = 'ReplayStoppedError';
  readonly details: string;
  readonly metadata = new Metadata();

  constructor(
    readonly code: status,
    message: string,
    /** How many dead letters were replayed before it stopped. */
    readonly replayed: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.details = message;
  }
}
