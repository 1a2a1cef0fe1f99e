#!/usr/bin/env node
// Composition root of a worker-pool replica: config → telemetry → Redis → processors → serve → SIGTERM.
import { onShutdownSignal } from '@jobmesh/host';
import { createLogger } from '@jobmesh/telemetry';
import { loadWorkerPoolEnv } from './config';
import { startWorkerPool } from './start';

async function main(): Promise<void> {
  const env = loadWorkerPoolEnv();
  const logger = createLogger({ name: 'worker-pool', level: env.LOG_LEVEL });
  const running = await startWorkerPool(env, { logger });
  onShutdownSignal(logger, running.stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`worker-pool: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
