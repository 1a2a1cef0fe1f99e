// The worker side of CancelJob for active jobs: requests published on the cancel channel, and
// their stored copies for requests published while the subscription was down.
import type { Logger } from '@jobmesh/telemetry';
import type { RedisClient } from './connection';
import type { Backbone } from './backbone';
import type { CancelRequest } from './cancellation';
import { closeConnection, createRedis, keepSubscribed } from './connection';

/**
 * Listens for cancel requests for active jobs. Requests published while the subscription was
 * reconnecting never arrive; `onReconnect` is the moment to look at the stored ones
 * (storedReasons) for the jobs running here.
 */
export class CancelRequests {
  private readonly subscriber: RedisClient;

  constructor(
    private readonly backbone: Pick<Backbone, 'settings' | 'redis' | 'registry'>,
    private readonly logger: Logger,
  ) {
    this.subscriber = createRedis(backbone.settings, 'worker', 'jobmesh:cancel-sub');
    // It reconnects by itself, and requests missed meanwhile are read back on 'ready'; the
    // backbone's own connection reports the outage.
    this.subscriber.on('error', () => undefined);
  }

  /** Subscribes; `onRequest` gets each request, `onReconnect` each reconnect after the first. */
  async start(onRequest: (req: CancelRequest) => void, onReconnect: () => void): Promise<void> {
    const channel = this.backbone.registry.keys.cancelChannel;
    this.subscriber.on('message', (from: string, message: string) => {
      if (from !== channel) return;
      try {
        onRequest(JSON.parse(message) as CancelRequest);
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, 'ignoring a malformed cancel request');
      }
    });
    this.subscriber.on('ready', onReconnect);
    await keepSubscribed(this.subscriber, channel);
  }

  /** The stored cancel reasons of these jobs of `queue`, in order ('' or null: none). One round trip. */
  storedReasons(queue: string, jobIds: string[]): Promise<(string | null)[]> {
    const keys = this.backbone.registry.keys;
    return this.backbone.redis.mget(jobIds.map((id) => keys.cancelRequest(queue, id)));
  }

  async close(): Promise<void> {
    await closeConnection(this.subscriber);
  }
}
