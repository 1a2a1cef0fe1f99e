#!/usr/bin/env node
// Composition root of the standalone monitor: config → telemetry → Redis → gRPC → serve → SIGTERM.
import { onShutdownSignal } from '@jobmesh/host';
import { createLogger } from '@jobmesh/telemetry';
import { loadMonitorEnv } from './config';
import { startMonitor } from './start';

async function main(): Promise<void> {
  const env = loadMonitorEnv();
  const logger = createLogger({ name: 'monitor', level: env.LOG_LEVEL });
  const running = await startMonitor(env, { logger });
  onShutdownSignal(logger, running.stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`monitor: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
