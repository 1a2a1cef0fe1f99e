import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';

export interface LocalRedis {
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

/** What to tell someone who has neither REDIS_URL nor redis-server. */
export const NO_REDIS_HELP =
  'jobmesh up needs Redis 6.2 or newer, and found none: REDIS_URL is not set and there is no redis-server on the PATH. ' +
  'Either install Redis (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) and run jobmesh up again, ' +
  'which then starts it for you with its data in .jobmesh/, or point Jobmesh at a Redis you run: ' +
  'REDIS_URL=redis://host:6379 npm start (set its maxmemory-policy to noeviction).';

export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

async function freePort(preferred: number): Promise<number> {
  const tryPort = (port: number): Promise<number> =>
    new Promise((res, rej) => {
      const srv = createServer();
      srv.once('error', rej);
      srv.listen(port, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => res(p));
      });
    });
  return tryPort(preferred).catch(() => tryPort(0));
}

/**
 * Starts redis-server for `jobmesh up`: loopback only, data and AOF in `<cwd>/.jobmesh/redis`,
 * fsynced before each answer (`appendfsync always`: with `everysec`, Redis answers writes it has
 * not handed to the OS while an fsync is slow, and a crash loses them; docs/reliability.md),
 * noeviction (BullMQ must never lose keys). Prefers port 6390 so the URL is stable across runs.
 */
export async function startLocalRedis(cwd = process.cwd()): Promise<LocalRedis> {
  const dataDir = resolve(cwd, '.jobmesh', 'redis');
  mkdirSync(dataDir, { recursive: true });
  const port = await freePort(6390);
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dataDir, '--appendonly', 'yes', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction', '--save', '', '--protected-mode', 'yes'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  await new Promise<void>((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start within 10 s:\n${output}`)), 10_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (/Ready to accept connections/.test(output)) {
        clearTimeout(timer);
        resolveReady();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with code ${code}:\n${output}`));
    });
  });
  child.stdout?.removeAllListeners('data').resume();
  child.stderr?.removeAllListeners('data').resume();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  process.once('exit', () => child.kill('SIGTERM'));
  return {
    url: `redis://127.0.0.1:${port}`,
    dataDir,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
