// @jobmesh/monitor/testing: a monitor on port 0 beside the worker-pool harness, for tests. Not
// part of the service: only tests import it.
import * as pb from '@jobmesh/contracts';
import { credentials } from '@grpc/grpc-js';
import { silentLogger } from '@jobmesh/telemetry';
import { serviceEnv, useHarness } from '@jobmesh/testing';
import { type DeadLetterClient, type DeadLetterHarness, startDeadLetterHarness } from '@jobmesh/dead-letter/testing';
import { type PoolHarness, startPoolHarness } from '@jobmesh/worker-pool/testing';
import { loadMonitorEnv, type RunningMonitor, startMonitor } from './index';

export { eventually, uniqueQueue, waitFor } from '@jobmesh/testing';

/** A promise-returning MonitorService client. */
export interface MonitorClient {
  raw: pb.MonitorServiceClient;
  getQueueStats(queue: string): Promise<pb.QueueStats>;
  listQueueStats(): Promise<pb.QueueStats[]>;
  getSystemHealth(): Promise<pb.GetSystemHealthResponse>;
  close(): void;
}

export function monitorClient(address: string): MonitorClient {
  const raw = new pb.MonitorServiceClient(address, credentials.createInsecure());
  const call = <Res>(invoke: (cb: (err: Error | null, res: Res) => void) => unknown): Promise<Res> =>
    new Promise((resolve, reject) => invoke((err, res) => (err ? reject(err) : resolve(res))));
  return {
    raw,
    getQueueStats: async (queue) => (await call<pb.GetQueueStatsResponse>((cb) => raw.getQueueStats({ queue }, cb))).stats!,
    listQueueStats: async () => (await call<pb.ListQueueStatsResponse>((cb) => raw.listQueueStats({}, cb))).stats,
    getSystemHealth: () => call<pb.GetSystemHealthResponse>((cb) => raw.getSystemHealth({}, cb)),
    close: () => raw.close(),
  };
}

type RunningDeadLetter = Awaited<ReturnType<DeadLetterHarness['startDeadLetter']>>['service'];

export interface MonitorHarness extends PoolHarness {
  /**
   * Starts a dead-letter service (see @jobmesh/dead-letter/testing) on the harness's Redis and
   * prefix; a monitor started after it checks it and its dashboard calls it.
   */
  startDeadLetter(env?: Record<string, string>): Promise<{ service: RunningDeadLetter; client: DeadLetterClient; address: string }>;
  /** Starts a monitor on the harness's Redis and prefix, checking the harness's scheduler by default; `env` on top. */
  startMonitor(env?: Record<string, string>): Promise<{ service: RunningMonitor; client: MonitorClient; address: string }>;
}

/** startMonitorHarness for a test file: started in beforeAll, stopped in afterAll (see useHarness). */
export function useMonitorHarness(): MonitorHarness {
  return useHarness('monitor', () => startMonitorHarness());
}

/**
 * A scheduler, worker-pool replicas, dead-letter services and monitors started on demand; stop()
 * stops them all. With `deadLetters`, the base is the dead-letter harness (one worker-pool
 * replica already running its `fail`, `fatal` and `hang` processors).
 */
export async function startMonitorHarness(opts: { deadLetters?: boolean } = {}): Promise<MonitorHarness> {
  const base = opts.deadLetters ? await startDeadLetterHarness() : undefined;
  const h: PoolHarness = base ?? (await startPoolHarness());
  const running: Array<{ service: RunningMonitor; client: MonitorClient }> = [];
  let deadLetterAddress = h.address;
  return {
    ...h,
    startDeadLetter: async (env = {}) => {
      if (!base) throw new Error('startMonitorHarness({ deadLetters: true }) starts dead-letter services');
      const d = await base.startDeadLetter(env);
      deadLetterAddress = `127.0.0.1:${d.service.grpcPort}`;
      return { ...d, address: deadLetterAddress };
    },
    startMonitor: async (env = {}) => {
      const service = await startMonitor(
        loadMonitorEnv(
          serviceEnv(h.redis, h.prefix, {
            JOBMESH_SCHEDULER_ADDRESS: h.address,
            JOBMESH_WORKER_POOL_ADDRESS: h.address,
            JOBMESH_DEAD_LETTER_ADDRESS: deadLetterAddress,
            ...env,
          }),
        ),
        { logger: silentLogger() },
      );
      const address = `127.0.0.1:${service.grpcPort}`;
      const client = monitorClient(address);
      running.push({ service, client });
      return { service, client, address };
    },
    stop: async () => {
      for (const r of running) r.client.close();
      await Promise.all(running.map((r) => r.service.stop()));
      await (base ?? h).stop();
    },
  };
}
