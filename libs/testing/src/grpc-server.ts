import {
  type handleBidiStreamingCall,
  type handleClientStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type MethodDefinition,
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedHandleCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';

/** The handler grpc-js expects for one method definition, by its request and response types and streaming. */
export type HandlerOf<M> =
  M extends MethodDefinition<infer Req, infer Res>
    ? M['requestStream'] extends true
      ? M['responseStream'] extends true
        ? handleBidiStreamingCall<Req, Res>
        : handleClientStreamingCall<Req, Res>
      : M['responseStream'] extends true
        ? handleServerStreamingCall<Req, Res>
        : handleUnaryCall<Req, Res>
    : never;

/**
 * Some of a service's handlers, each typed by its method in the generated definition (for example
 * `pb.SchedulerServiceService`). A method left out answers UNIMPLEMENTED, as grpc-js does for any
 * method without a handler; a client that falls back on UNIMPLEMENTED (the SDK's enqueue stream
 * falls back to unary EnqueueJob) meets such a fake as it would an older server.
 */
export type PartialService<D> = { [K in keyof D]?: HandlerOf<D[K]> };

/** A gRPC server started by {@link startGrpcServer}. */
export interface GrpcTestServer {
  /** host:port to give a client, on 127.0.0.1. */
  address: string;
  port: number;
  /** Ends every call at once and closes the port. */
  stop(): Promise<void>;
}

/**
 * Starts a real gRPC server on 127.0.0.1, port 0, serving part of one service: a fake to test a
 * client against; plaintext unless `opts.credentials` (e.g. TLS) is given. Responses go through
 * the method's serializer, so a message built from a partial
 * object must come from `pb.X.fromPartial` (a repeated field cannot encode `undefined`).
 *
 * @example
 * const server = await startGrpcServer(pb.WorkerServiceService, {
 *   connect: (call) => call.emit('error', Object.assign(new Error('no'), { code: status.UNAUTHENTICATED })),
 * });
 */
export async function startGrpcServer<D extends ServiceDefinition>(definition: D, handlers: PartialService<D>, opts: { credentials?: ServerCredentials } = {}): Promise<GrpcTestServer> {
  const implementation: UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(handlers) as [string, UntypedHandleCall | undefined][]) {
    if (handler) implementation[name] = handler;
  }
  const server = new Server();
  server.addService(definition, implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', opts.credentials ?? ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    address: `127.0.0.1:${port}`,
    port,
    stop: async () => {
      server.forceShutdown();
    },
  };
}
