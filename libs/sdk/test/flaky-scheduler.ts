import { type handleUnaryCall, status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { JobmeshClient } from '@jobmesh/sdk';
import { type GrpcTestServer, type PartialService, startGrpcServer } from '@jobmesh/testing';

/**
 * A SchedulerService in trouble, to test the client's retries against: each method's first `stall`
 * calls never answer (as a server waiting on a paused Redis), its calls up to the `failFirst`th answer
 * UNAVAILABLE, and later ones answer. `calls` counts each method's calls. Methods it is not given
 * answer UNIMPLEMENTED, so JobmeshClient.enqueueJob falls back from EnqueueStream to unary EnqueueJob.
 */
export class FlakyScheduler {
  readonly calls: Record<string, number> = {};
  stall = 0;
  failFirst = 0;
  private server?: GrpcTestServer;

  /** A handler for `method` that behaves as above and then answers `ok()`. */
  answer<Req, Res>(method: string, ok: () => Res): handleUnaryCall<Req, Res> {
    return (_call, cb) => {
      const n = (this.calls[method] = (this.calls[method] ?? 0) + 1);
      if (n <= this.stall) return; // never answers; the client's deadline ends the try
      if (n <= this.failFirst) return cb({ code: status.UNAVAILABLE, details: 'try again' });
      cb(null, ok());
    };
  }

  /** Starts serving `handlers` (built with {@link answer}) and returns a client of it. */
  async start(handlers: PartialService<typeof pb.SchedulerServiceService>, timeoutMs = 5000): Promise<JobmeshClient> {
    this.server = await startGrpcServer(pb.SchedulerServiceService, handlers);
    return new JobmeshClient({ address: this.server.address, timeoutMs });
  }

  /** Forgets the counts and sets `stall` and `failFirst` anew. */
  reset({ stall = 0, failFirst = 0 }: { stall?: number; failFirst?: number } = {}): void {
    for (const k of Object.keys(this.calls)) delete this.calls[k];
    this.stall = stall;
    this.failFirst = failFirst;
  }

  async stop(): Promise<void> {
    await this.server?.stop();
  }
}
