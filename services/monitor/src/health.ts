import { type ChannelCredentials, type ChannelOptions, loadPackageDefinition, type Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import * as pb from '@jobmesh/contracts';
import { type Dial, dialCredentials, dialOptions, dialMetadata } from '@jobmesh/grpc-kit';
import { type Backbone, DeadLetterStore, isCluster, type RedisClient, redisMemory, type RedisSettings } from '@jobmesh/queue';
import type { Logger } from '@jobmesh/telemetry';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { countWorkers, type QueueFigures } from './figures';

/** A service GetSystemHealth asks: its full gRPC name, checked with grpc.health.v1 at `address`. */
export interface HealthTarget {
  service: string;
  address: string;
}

type HealthStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface HealthClient {
  check(req: { service: string }, metadata: Metadata, opts: { deadline: Date }, cb: (err: ServiceError | null, res?: { status: HealthStatus }) => void): void;
  close(): void;
}

type HealthClientCtor = new (address: string, creds: ChannelCredentials, options?: ChannelOptions) => HealthClient;

let ctor: HealthClientCtor | undefined;

/** grpc.health.v1.Health's client, built once from grpc-health-check's own proto file. */
function healthClientCtor(): HealthClientCtor {
  if (!ctor) {
    const def = loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true });
    ctor = (loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: HealthClientCtor } } } }).grpc.health.v1.Health;
  }
  return ctor;
}

const SERVING_OF: Record<HealthStatus, pb.ServingStatus> = {
  SERVING: pb.ServingStatus.SERVING_STATUS_SERVING,
  NOT_SERVING: pb.ServingStatus.SERVING_STATUS_NOT_SERVING,
  UNKNOWN: pb.ServingStatus.SERVING_STATUS_UNSPECIFIED,
  SERVICE_UNKNOWN: pb.ServingStatus.SERVING_STATUS_UNSPECIFIED,
};

/**
 * GetSystemHealth: each service's grpc.health.v1 status at its address, each within the timeout
 * (all asked at once), Redis's own health, and key figures: connected workers and replicas,
 * dead letters, Redis memory and its maxmemory-policy.
 */
export class SystemHealth {
  private readonly clients = new Map<string, HealthClient>();
  private readonly deadLetters: DeadLetterStore;

  constructor(
    private readonly backbone: Backbone,
    private readonly figures: QueueFigures,
    private readonly targets: () => HealthTarget[],
    private readonly timeoutMs: number,
    private readonly logger: Logger,
    private readonly dial?: Dial,
  ) {
    this.deadLetters = new DeadLetterStore(backbone);
  }

  private figureFailed(what: string, err: Error): undefined {
    this.logger.warn({ err: err.message }, `could not read the ${what} figures for GetSystemHealth; answering without them`);
    return undefined;
  }

  private client(address: string): HealthClient {
    let c = this.clients.get(address);
    if (!c) this.clients.set(address, (c = new (healthClientCtor())(address, dialCredentials(this.dial), dialOptions(this.dial))));
    return c;
  }

  /** One service's health, never throwing: a service that cannot be reached is UNSPECIFIED with the error. */
  private check(t: HealthTarget): Promise<pb.ServiceHealth> {
    return new Promise((resolve) => {
      this.client(t.address).check({ service: t.service }, dialMetadata(this.dial), { deadline: new Date(Date.now() + this.timeoutMs) }, (err, res) => {
        const base = { service: t.service, address: t.address, figures: {} };
        if (err) {
          const why = err.code === status.DEADLINE_EXCEEDED ? `no answer within ${this.timeoutMs} ms` : err.code === status.NOT_FOUND ? 'not served at this address' : err.details || err.message;
          resolve({ ...base, status: pb.ServingStatus.SERVING_STATUS_UNSPECIFIED, error: why });
        } else {
          const s = SERVING_OF[res?.status ?? 'UNKNOWN'] ?? pb.ServingStatus.SERVING_STATUS_UNSPECIFIED;
          resolve({ ...base, status: s, error: s === pb.ServingStatus.SERVING_STATUS_SERVING ? '' : `reports ${res?.status ?? 'UNKNOWN'}` });
        }
      });
    });
  }

  private async redis(): Promise<pb.ServiceHealth> {
    const base = { service: 'redis', address: redisAddress(this.backbone.settings, connectedTo(this.backbone.redis)) };
    try {
      const mem = await redisMemory(this.backbone.redis);
      const figures: Record<string, string> = { used_memory_bytes: String(mem.usedBytes), maxmemory_bytes: String(mem.maxBytes), maxmemory_policy: mem.policy };
      const warn = mem.policy && mem.policy !== 'noeviction' ? `maxmemory-policy is ${mem.policy}: Redis may evict job keys; set noeviction` : '';
      return { ...base, status: pb.ServingStatus.SERVING_STATUS_SERVING, error: warn, figures };
    } catch (err) {
      return { ...base, status: pb.ServingStatus.SERVING_STATUS_NOT_SERVING, error: (err as Error).message, figures: {} };
    }
  }

  async get(): Promise<pb.GetSystemHealthResponse> {
    const [services, redis, workers, dead] = await Promise.all([
      Promise.all(this.targets().map((t) => this.check(t))),
      this.redis(),
      // Extra figures on an entry: the report goes without them, and says why in the log (a Redis
      // outage also shows as the redis entry; a malformed entry would show nowhere else).
      this.figures.allWorkers().catch((err: Error) => this.figureFailed('worker', err)),
      this.deadLetters.stats().catch((err: Error) => this.figureFailed('dead-letter', err)),
    ]);
    for (const s of services) {
      if (s.service === 'jobmesh.v1.WorkerService' && workers) {
        const remote = workers.filter((w) => w.kind !== pb.WorkerKind.WORKER_KIND_IN_PROCESS);
        s.figures.connected_workers = String(remote.length);
        s.figures.replicas = String(new Set(workers.map((w) => w.replica)).size);
        s.figures.queues_served = String(countWorkers(workers).size);
      }
      if (s.service === 'jobmesh.v1.DeadLetterService' && dead) s.figures.dead_letters = String(dead.total);
    }
    const all = [...services, redis];
    const serving = all.every((s) => s.status === pb.ServingStatus.SERVING_STATUS_SERVING);
    return { status: serving ? pb.ServingStatus.SERVING_STATUS_SERVING : pb.ServingStatus.SERVING_STATUS_NOT_SERVING, services: all };
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

/**
 * Where the backbone's Redis is, as an operator would look for it: the URL (password hidden); the
 * sentinels and the master they named, and which node that is now; or the cluster's seed nodes.
 */
export function redisAddress(settings: RedisSettings, now?: string): string {
  if (settings.clusterNodes) return `cluster ${settings.clusterNodes}`;
  if (settings.sentinels) return `sentinel master ${settings.masterName ?? ''} via ${settings.sentinels}${now ? `, now ${now}` : ''}`;
  return redact(settings.url ?? 'redis://127.0.0.1:6379');
}

/** The host:port a single-server connection is on now, if it is connected. */
function connectedTo(redis: RedisClient): string | undefined {
  if (isCluster(redis) || redis.status !== 'ready') return undefined;
  const { remoteAddress, remotePort } = redis.stream ?? {};
  return remoteAddress && remotePort ? `${remoteAddress}:${remotePort}` : undefined;
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
