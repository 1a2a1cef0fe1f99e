import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
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

// ---- Redis Cluster ----

/** A local Redis Cluster of masters only, for tests. */
export interface RedisClusterHandle {
  /** "127.0.0.1:p1,127.0.0.1:p2,…", as REDIS_CLUSTER_NODES takes it. */
  nodes: string;
  ports: number[];
  /** The port of the master that holds `key`'s hash slot now. */
  portOfKey(key: string): Promise<number>;
  /** Stops every node (SIGTERM) and waits until they are gone. */
  stop(): Promise<void>;
}

/**
 * Starts `masters` redis-servers with `--cluster-enabled yes` on free loopback ports (below
 * 55000, with port + 10000 free too: the cluster bus), joins them with `redis-cli --cluster
 * create … --cluster-replicas 0`, and waits until every node says `cluster_state:ok`. Nodes are
 * killed and their dirs removed when the process exits, as startRedis's are.
 */
export async function startRedisCluster({ masters = 3 } = {}): Promise<RedisClusterHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'jobmesh-redis-cluster-'));
  tracked().dirs.add(dir);
  const servers: LocalServer[] = [];
  const ports: number[] = [];
  try {
    while (servers.length < masters) {
      const port = await freeClusterPort(ports);
      const nodeDir = join(dir, String(port));
      mkdirSync(nodeDir);
      const args = [...serverArgs(false, 'everysec'), '--cluster-enabled', 'yes', '--cluster-config-file', join(nodeDir, 'nodes.conf'), '--cluster-node-timeout', '5000'];
      try {
        servers.push(await launch(port, nodeDir, args));
        ports.push(port);
      } catch (err) {
        if (!(err instanceof PortInUseError)) throw err;
      }
    }
    await redisCli(['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
    await clusterOk(ports);
  } catch (err) {
    await Promise.all(servers.map((s) => s.terminate('SIGKILL')));
    throw err;
  }
  return {
    nodes: ports.map((p) => `127.0.0.1:${p}`).join(','),
    ports,
    async portOfKey(key) {
      const client = new Redis({ host: '127.0.0.1', port: ports[0]!, lazyConnect: true, retryStrategy: () => null });
      client.on('error', () => undefined);
      try {
        await client.connect();
        const slot = (await client.call('CLUSTER', 'KEYSLOT', key)) as number;
        const ranges = (await client.call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number, ...unknown[]]]>;
        const owner = ranges.find(([from, to]) => slot >= from && slot <= to);
        if (!owner) throw new Error(`no node holds slot ${slot} of key ${key}`);
        return Number(owner[2][1]);
      } finally {
        close(client);
      }
    },
    stop: async () => {
      await Promise.all(servers.map((s) => s.terminate('SIGTERM')));
    },
  };
}

/** A free loopback port below 55000 whose cluster bus port (+10000) is free too, not in `taken`. */
async function freeClusterPort(taken: number[]): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 35_000);
    if (taken.some((t) => Math.abs(t - port) < 2 || Math.abs(t + 10_000 - port) < 2 || Math.abs(t - 10_000 - port) < 2)) continue;
    if ((await canListen(port)) && (await canListen(port + 10_000))) return port;
  }
  throw new Error('found no free port pair (port, port + 10000) for a Redis Cluster node');
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function redisCli(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('error', (err: NodeJS.ErrnoException) => reject(err.code === 'ENOENT' ? new Error('redis-cli is not on PATH: install it with `apt-get install redis-tools`') : err));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`redis-cli ${args.join(' ')} exited with ${code}:\n${output}`))));
  });
}

/** Polls every node until its CLUSTER INFO says cluster_state:ok; throws after 30 s. */
async function clusterOk(ports: number[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const states = await Promise.all(
      ports.map(async (port) => {
        const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null });
        client.on('error', () => undefined);
        try {
          await client.connect();
          return /cluster_state:ok/.test((await client.call('CLUSTER', 'INFO')) as string);
        } catch {
          return false;
        } finally {
          close(client);
        }
      }),
    );
    if (states.every(Boolean)) return;
    if (Date.now() > deadline) throw new Error(`the Redis Cluster on ports ${ports.join(', ')} did not reach cluster_state:ok within 30 s`);
    await sleep(100);
  }
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
