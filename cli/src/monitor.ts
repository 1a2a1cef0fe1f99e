import * as pb from '@jobmesh/contracts';
import { type Handler, flags, print } from './commands';
import { QUEUE_STATS_COLUMNS, SERVICE_HEALTH_COLUMNS, queueStatsRow, serviceHealthRow, servingName, table } from './format';

/** `jobmesh stats [queue]`: one queue's figures, or every queue's; `--json` the QueueStats (an array without a queue). */
export const stats: Handler = async (args, ctx) => {
  const { positionals } = flags(args, {});
  const [queue] = positionals;
  if (queue !== undefined) {
    const s = await ctx.monitor.queueStats(queue);
    return print(ctx, pb.QueueStats.toJSON(s), () => table([queueStatsRow(s)], QUEUE_STATS_COLUMNS));
  }
  const all = await ctx.monitor.listQueueStats();
  return print(ctx, all.map((s) => pb.QueueStats.toJSON(s)), () => table(all.map(queueStatsRow), QUEUE_STATS_COLUMNS));
};

/** `jobmesh health`: every service's status; exits 0 when the system is SERVING, 1 otherwise. */
export const health: Handler = async (args, ctx) => {
  flags(args, {});
  const h = await ctx.monitor.systemHealth();
  print(ctx, pb.GetSystemHealthResponse.toJSON(h), () => `system: ${servingName(h.status)}\n\n${table(h.services.map(serviceHealthRow), SERVICE_HEALTH_COLUMNS)}`);
  return h.status === pb.ServingStatus.SERVING_STATUS_SERVING ? 0 : 1;
};
