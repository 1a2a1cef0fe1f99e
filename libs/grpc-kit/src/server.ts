import { dirname, resolve } from 'node:path';
import { Server, ServerCredentials, type ServiceDefinition, type UntypedServiceImplementation, type status as Status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { PROTO_DIR, PROTO_FILES } from '@jobmesh/contracts';
import type { Logger } from '@jobmesh/telemetry';
import { decodeGuard, guardDeserializers } from './decode-guard';
import { HealthImplementation, protoPath as healthProtoPath, type ServingStatus } from 'grpc-health-check';

/** grpc-health-check ships <dir>/health/v1/health.proto; loaded relative to <dir>, reflection names it health/v1/health.proto. */
const HEALTH_PROTO_DIR = resolve(dirname(healthProtoPath), '../..');
const HEALTH_PROTO_FILE = 'health/v1/health.proto';

export interface GrpcServerOptions {
  logger: Logger;
  /** Largest message sent or received, bytes. @default 8 MiB */
  maxMessageBytes?: number;
  /** TLS; plaintext when unset. */
  credentials?: ServerCredentials;
  /**
   * Every connection is pinged this often; one that does not answer within `timeoutMs` is closed,
   * and its calls end (a remote worker's stream, and with it its leases). @default 10 s and 5 s
   */
  keepalive?: { intervalMs: number; timeoutMs: number };
  /** Streams one client connection may hold open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). @default 1000 */
  maxConcurrentStreams?: number;
  /**
   * Told of each call the server answers before any handler runs (a request that is no valid
   * protobuf message: INVALID_ARGUMENT), so it is counted with the rest (RpcKit.refused).
   */
  refused?: (method: string, code: Status) => void;
}

/**
 * A gRPC server with grpc.health.v1 and server reflection (so grpcurl works without proto files).
 * Services registered with `add` are reported in health under their full name and under "".
 */
export class GrpcServer {
  readonly server: Server;
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING' });
  private readonly services: string[] = [];
  private boundPort = 0;
  private status: ServingStatus = 'NOT_SERVING';

  constructor(private readonly opts: GrpcServerOptions) {
    const max = opts.maxMessageBytes ?? 8 * 1024 * 1024;
    this.server = new Server({
      'grpc.max_receive_message_length': max,
      'grpc.max_send_message_length': max,
      // Keepalive: ping each connection every `keepalive.intervalMs` and drop it when a ping goes
      // unanswered for `timeoutMs` (a peer gone without a FIN: a remote worker's stream ends and
      // its leases are released); close connections that held no call for 5 minutes (clients
      // reconnect on their next call), so idle connections do not pile up.
      'grpc.keepalive_time_ms': opts.keepalive?.intervalMs ?? 10_000,
      'grpc.keepalive_timeout_ms': opts.keepalive?.timeoutMs ?? 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_connection_idle_ms': 5 * 60_000,
      'grpc.max_concurrent_streams': opts.maxConcurrentStreams ?? 1000,
      interceptors: [decodeGuard((method, code) => opts.refused?.(method, code))],
    });
    this.health.addToServer(this.server);
    // Health's proto too, so grpcurl can list and describe grpc.health.v1.Health like the rest.
    const pkg = loadSync([...PROTO_FILES, HEALTH_PROTO_FILE], { includeDirs: [PROTO_DIR, HEALTH_PROTO_DIR], keepCase: true });
    new ReflectionService(pkg).addToServer(this.server);
  }

  /** Adds a service; `name` is its full proto name, e.g. "jobmesh.v1.SchedulerService". */
  add(name: string, definition: ServiceDefinition, impl: UntypedServiceImplementation): void {
    this.server.addService(guardDeserializers(definition), impl);
    this.services.push(name);
    this.health.setStatus(name, this.status);
  }

  /** Sets every service's health; a status it already has is not sent to watchers again. */
  setStatus(status: ServingStatus): void {
    if (status === this.status) return;
    this.status = status;
    for (const s of ['', ...this.services]) this.health.setStatus(s, status);
  }

  /** Binds `address` (port 0 picks one) and starts serving. Returns the bound port. */
  async listen(address: string): Promise<number> {
    this.boundPort = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(address, this.opts.credentials ?? ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(new Error(`cannot listen on ${address}: ${err.message}`)) : resolve(port),
      );
    });
    this.setStatus('SERVING');
    return this.boundPort;
  }

  get port(): number {
    return this.boundPort;
  }

  /**
   * Graceful shutdown: health goes NOT_SERVING, new calls are refused, calls in progress get
   * `graceMs` to finish, then the rest are cancelled.
   */
  async shutdown(graceMs = 30_000): Promise<void> {
    this.setStatus('NOT_SERVING');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.opts.logger.warn({ graceMs }, 'grace period over; cancelling the calls still open');
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
