#!/usr/bin/env node
// Composition root of the standalone scheduler: config → telemetry → Redis → gRPC → serve → SIGTERM.
import { ConfigError } from '@jobmesh/config';
import { onShutdownSignal } from '@jobmesh/host';
import { createLogger } from '@jobmesh/telemetry';
import { loadSchedulerEnv } from './config';
import { startScheduler } from './start';

async function main(): Promise<void> {
  const env = loadSchedulerEnv();
  const logger = createLogger({ name: 'scheduler', level: env.LOG_LEVEL });
  const running = await startScheduler(env, { logger });
  onShutdownSignal(logger, running.stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`scheduler: ${err instanceof ConfigError || err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
