#!/usr/bin/env node
// Composition root of the standalone dead-letter service: config → telemetry → Redis → gRPC → serve → SIGTERM.
import { ConfigError } from '@jobmesh/config';
import { onShutdownSignal } from '@jobmesh/host';
import { createLogger } from '@jobmesh/telemetry';
import { loadDeadLetterEnv } from './config';
import { startDeadLetter } from './start';

async function main(): Promise<void> {
  const env = loadDeadLetterEnv();
  const logger = createLogger({ name: 'dead-letter', level: env.LOG_LEVEL });
  const running = await startDeadLetter(env, { logger });
  onShutdownSignal(logger, running.stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`dead-letter: ${err instanceof ConfigError || err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
