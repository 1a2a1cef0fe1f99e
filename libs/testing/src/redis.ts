import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runInThisContext } from 'node:vm';
import Redis from 'ioredis';
import type { StartedTestContainer } from 'testcontainers';

/** A Redis for tests, wherever it came from (REDIS_URL, a container or a local redis-server). */
export interface RedisHandle {
  /** `redis://host:port`, ready for ioredis or BullMQ. */
  url: string;
  port: number;
  /** Shuts Redis down gracefully (SIGTERM) and waits until it is gone. The data stays for restart(). */
  stop(): Promise<void>;
  /** Kills Redis with SIGKILL, as a crash would, and waits until it is gone. */
  kill(): Promise<void>;
  /** Starts Redis again on the same port with the same data (stopping it first if it runs). */
  restart(): Promise<void>;
  /** Deletes every key (FLUSHALL). */
  flush(): Promise<void>;
}

export interface StartRedisOptions {
  /** Start a Redis of the test's own even when REDIS_URL is set; needed for stop/kill/restart. @default false */
  own?: boolean;
  /** Turn on the append-only file, so writes survive kill() and restart(). Ignored for REDIS_URL. @default false */
  appendonly?: boolean;
  /**
   * With `appendonly`: `always` fsyncs each write before Redis answers it. Under `everysec`
   * Redis may answer writes it has not yet handed to the OS while an fsync is slow, and kill()
   * then loses them; tests that count on every answered write surviving a kill want `always`.
   * @default everysec
   */
  appendfsync?: 'always' | 'everysec';
}

const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
const notInstalled = (binary: string): string =>
  binary === 'redis-server'
    ? 'redis-server is not on PATH: install it with `apt-get install redis-server`, or set REDIS_URL (or run a Docker engine)'
    : `${binary} is not on PATH: install it with \`apt-get install ${binary}\``;

/**
 * Gives a test a Redis. REDIS_URL wins unless `own` is set; else a `redis:7` container if a Docker
 * engine answers; else a `redis-server` child process on a free port with its data in a temp dir.
 * Child processes are killed and temp dirs removed when the process exits; containers are removed
 * by testcontainers' reaper.
 */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisHandle> {
  const appendonly = opts.appendonly ?? false;
  const args = serverArgs(appendonly, opts.appendfsync ?? 'everysec');
  const external = process.env.REDIS_URL;
  if (external && !opts.own) return externalRedis(external);
  let dockerError: unknown;
  // Cheap check first: without a socket or DOCKER_HOST, testcontainers would only fail slowly.
  if (process.env.DOCKER_HOST || existsSync('/var/run/docker.sock')) {
    try {
      return await startContainer(args);
    } catch (err) {
      dockerError = err;
    }
  }
  try {
    return await startLocal(args);
  } catch (err) {
    if (dockerError !== undefined && err instanceof Error) err.message += `\n(Docker failed too: ${String(dockerError)})`;
    throw err;
  }
}

function externalRedis(url: string): RedisHandle {
  const notOwned = (op: string) => async () => {
    throw new Error(
      `cannot ${op} the Redis at REDIS_URL: the harness does not own it. Use startRedis({ own: true }) for a Redis the test may ${op}.`,
    );
  };
  return {
    url,
    port: Number(new URL(url).port || 6379),
    stop: notOwned('stop'),
    kill: notOwned('kill'),
    restart: notOwned('restart'),
    flush: () => flushAll(url),
  };
}

function serverArgs(appendonly: boolean, appendfsync: 'always' | 'everysec'): string[] {
  return ['--save', '', '--appendonly', appendonly ? 'yes' : 'no', '--appendfsync', appendfsync, '--maxmemory-policy', 'noeviction'];
}

// ---- container ----

// Loaded on first use: testcontainers pulls in a Docker client that runs without Docker never need.
function testcontainers(): typeof import('testcontainers') {
  return require('testcontainers') as typeof import('testcontainers');
}

async function startContainer(args: string[]): Promise<RedisHandle> {
  const { GenericContainer, Wait, getContainerRuntimeClient } = testcontainers();
  // A fixed host port, so the port (and clients' reconnects) stay the same across restart().
  const container: StartedTestContainer = await new GenericContainer('redis:7')
    .withExposedPorts({ container: 6379, host: await freePort() })
    .withCommand(['redis-server', ...args])
    .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
    .start();
  const host = container.getHost();
  const port = container.getMappedPort(6379);
  const url = `redis://${host}:${port}`;
  const client = await getContainerRuntimeClient();
  const docker = client.container.getById(container.getId());
  // The container is stopped but not removed, so restart() finds its data; the reaper removes it.
  return {
    url,
    port,
    stop: () => client.container.stop(docker, { timeout: STOP_TIMEOUT_MS }),
    async kill() {
      try {
        await docker.kill({ signal: 'SIGKILL' });
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 409) throw err; // 409: not running
      }
      await docker.wait();
    },
    async restart() {
      await container.restart({ timeout: STOP_TIMEOUT_MS });
      if (!(await waitForPing(host, port))) throw new Error(`Redis container did not answer PING on ${host}:${port} after restart`);
    },
    flush: () => flushAll(url),
  };
}

// ---- local redis-server ----

export interface LocalServer {
  /** Sends `signal` unless the process is gone, then waits for its exit (SIGKILL after 10 s). */
  terminate(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

async function startLocal(args: string[]): Promise<RedisHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'jobmesh-redis-'));
  tracked().dirs.add(dir);
  let port = await freePort();
  let server: LocalServer | undefined;
  // The free port is only free until someone else takes it; try another if that happened.
  for (let attempt = 1; !server; attempt++) {
    try {
      server = await launch(port, dir, args);
    } catch (err) {
      if (!(err instanceof PortInUseError) || attempt >= 3) throw err;
      port = await freePort();
    }
  }
  let current = server;
  const url = `redis://127.0.0.1:${port}`;
  return {
    url,
    port,
    stop: () => current.terminate('SIGTERM'),
    kill: () => current.terminate('SIGKILL'),
    async restart() {
      await current.terminate('SIGTERM');
      current = await launch(port, dir, args);
    },
    flush: () => flushAll(url),
  };
}

/** The port was taken between freePort() and the server's bind; try another. */
export class PortInUseError extends Error {}

/**
 * Starts `binary` (redis-server, or redis-sentinel with a config file first in `serverOptions`)
 * on 127.0.0.1:`port` with `dir` as its working directory, killed when this process exits, and
 * resolves once that very process answers PING. For this lib's harnesses (startRedis, startSentinelSet).
 */
export async function launch(port: number, dir: string, serverOptions: string[], binary = 'redis-server'): Promise<LocalServer> {
  const args = [...serverOptions, '--dir', dir, '--bind', '127.0.0.1', '--port', String(port)];
  // env passed explicitly so a test's changes to process.env (jest gives each file a copy) apply.
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  const { children } = tracked();
  children.add(child);
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let running = true;
  let spawnError: NodeJS.ErrnoException | undefined;
  const exited = new Promise<void>((resolve) => {
    child.on('error', (err) => {
      if (child.pid !== undefined) return; // a failed kill(); the process still runs
      spawnError = err;
      running = false;
      resolve();
    });
    child.once('exit', () => {
      running = false;
      resolve();
    });
  }).then(() => void children.delete(child));
  // A forgotten handle must not keep the test process alive; the exit hook kills the child.
  child.unref();
  (child.stdout as Socket | null)?.unref();
  (child.stderr as Socket | null)?.unref();

  const terminate = async (signal: 'SIGTERM' | 'SIGKILL') => {
    if (!running) return;
    child.kill(signal);
    const escalate = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(escalate);
  };

  try {
    const ready = await waitForPing('127.0.0.1', port, child.pid, () => {
      if (spawnError) throw spawnError.code === 'ENOENT' ? new Error(notInstalled(binary)) : spawnError;
      if (!running) {
        const Failure = /Address already in use/i.test(output) ? PortInUseError : Error;
        throw new Failure(`${binary} exited before accepting connections on port ${port}:\n${output}`);
      }
    });
    if (!ready) throw new Error(`${binary} did not answer PING on port ${port} within ${READY_TIMEOUT_MS} ms:\n${output}`);
  } catch (err) {
    await terminate('SIGKILL');
    throw err;
  }
  return { terminate };
}

/**
 * Polls until Redis at host:port answers PING; false after 10 s. With `pid`, the answer must come
 * from that process, not from a stranger on the port. `check` throws to give up early.
 */
async function waitForPing(host: string, port: number, pid?: number, check?: () => void): Promise<boolean> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    check?.();
    if (await answers(host, port, pid)) return true;
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}

async function answers(host: string, port: number, pid?: number): Promise<boolean> {
  const client = new Redis({ host, port, lazyConnect: true, retryStrategy: () => null, connectTimeout: 1000 });
  client.on('error', () => undefined); // failures are the answer; don't let ioredis log them
  try {
    await client.connect();
    if ((await client.ping()) !== 'PONG') return false;
    if (pid === undefined) return true;
    return (await client.info('server')).includes(`process_id:${pid}\r`);
  } catch {
    return false; // refused, or LOADING while the AOF is read
  } finally {
    close(client);
  }
}

async function flushAll(url: string): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, retryStrategy: () => null });
  client.on('error', () => undefined); // connect() and flushall() reject with it
  try {
    await client.connect();
    await client.flushall();
  } finally {
    close(client);
  }
}

/**
 * Disconnects unless the connection already ended: ioredis would otherwise arm a 2 s timer waiting
 * for a 'close' that has already happened, and hold the process open that long.
 */
function close(client: Redis): void {
  if (client.status !== 'end') client.disconnect();
}

/** A port that was free a moment ago: the OS picks it for a listener on port 0, which we close. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

// ---- clean-up on exit ----

export interface Tracked {
  children: Set<ChildProcess>;
  dirs: Set<string>;
}

const TRACKED = Symbol.for('@jobmesh/testing/redis');

/**
 * The children and temp dirs of this process, killed and removed when it exits. Kept on the real
 * `process`: jest gives each test file a copy whose 'exit' event never fires, and a fresh copy of
 * this module, so one set and one listener per process.
 */
export function tracked(): Tracked {
  const host = runInThisContext('process') as NodeJS.Process & { [TRACKED]?: Tracked };
  const existing = host[TRACKED];
  if (existing) return existing;
  const fresh: Tracked = { children: new Set(), dirs: new Set() };
  host[TRACKED] = fresh;
  host.on('exit', () => {
    for (const child of fresh.children) child.kill('SIGKILL');
    for (const dir of fresh.dirs) rmSync(dir, { recursive: true, force: true });
  });
  return fresh;
}
