// A worker-pool replica's wake channel: other replicas tell it that they handed it jobs of a
// name it serves (ProcessorWait.handOff), so it takes them without anyone polling.
import type { Logger } from '@jobmesh/telemetry';
import type { RedisClient } from './connection';
import type { Backbone } from './backbone';
import { closeConnection, createRedis, keepSubscribed } from './connection';

/**
 * Listens on this replica's wake channel. Wake-ups sent while the subscription was reconnecting
 * never arrive; `onReconnect` is the moment to look at the hand-off sets of the names it serves
 * (the jobs also come back to the queue by themselves, after HANDOFF_FALLBACK_MS).
 */
export class WakeUps {
  private readonly subscriber: RedisClient;
  private readonly channel: string;

  constructor(
    backbone: Pick<Backbone, 'settings' | 'registry'>,
    replica: string,
    private readonly logger: Logger,
  ) {
    this.channel = backbone.registry.keys.wakeChannel(replica);
    this.subscriber = createRedis(backbone.settings, 'worker', 'jobmesh:wake-sub');
    // It reconnects by itself, and what was missed meanwhile is looked for on 'ready'; the
    // backbone's own connection reports the outage.
    this.subscriber.on('error', () => undefined);
  }

  /** Subscribes; `onWake` gets each (queue, job name), `onReconnect` each reconnect after the first. */
  async start(onWake: (queue: string, name: string) => void, onReconnect: () => void): Promise<void> {
    this.subscriber.on('message', (from: string, message: string) => {
      if (from !== this.channel) return;
      const nl = message.indexOf('\n');
      if (nl < 1) {
        this.logger.warn({ message }, 'ignoring a malformed wake-up');
        return;
      }
      onWake(message.slice(0, nl), message.slice(nl + 1));
    });
    await keepSubscribed(this.subscriber, this.channel);
    this.subscriber.on('ready', onReconnect);
  }

  async close(): Promise<void> {
    await closeConnection(this.subscriber);
  }
}
