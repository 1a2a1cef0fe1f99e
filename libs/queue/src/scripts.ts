import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from './connection';

/** Where the scripts live: libs/queue/lua, beside src/ and dist/ alike. */
const LUA_DIR = join(__dirname, '..', 'lua');

/** A line `--- @include "<name>"` in a script stands for the text of `lua/includes/<name>.lua` (BullMQ's habit). */
const INCLUDE = /^--- @include "([a-z0-9-]+)"$/gm;

function readScript(file: string): string {
  return readFileSync(join(LUA_DIR, `${file}.lua`), 'utf8').replace(INCLUDE, (_, name: string) => readFileSync(join(LUA_DIR, 'includes', `${name}.lua`), 'utf8'));
}

type Runner = (...keysThenArgs: (string | number | Buffer)[]) => Promise<unknown>;

/**
 * A Redis script kept in `lua/<name>-<number of keys>.lua` (BullMQ's habit), with its includes
 * from `lua/includes/`, read once, defined on
 * each connection with ioredis `defineCommand` (EVALSHA, the text sent again only after a NOSCRIPT),
 * and called through a typed wrapper.
 */
export class LuaScript<Keys extends string[], Args extends (string | number | Buffer)[]> {
  private readonly command: string;
  private readonly numberOfKeys: number;
  private lua?: string;

  /**
   * `file` is the base name without `.lua`, e.g. "park-job-6". `text`, when given, makes the
   * script's text instead of the file (a script built from BullMQ's own, see plain-adds.ts).
   */
  constructor(
    private readonly file: string,
    private readonly text: () => string = () => readScript(file),
  ) {
    const m = /^(.+)-(\d+)$/.exec(file);
    if (!m) throw new Error(`script file name "${file}" must end in -<number of keys>`);
    this.numberOfKeys = Number(m[2]);
    this.command = `jobmesh_${m[1]!.replace(/-/g, '_')}`;
  }

  private define(redis: RedisClient): Runner {
    const commands = redis as unknown as Record<string, Runner>;
    if (typeof commands[this.command] !== 'function') {
      this.lua ??= this.text();
      redis.defineCommand(this.command, { numberOfKeys: this.numberOfKeys, lua: this.lua });
    }
    return commands[this.command]!.bind(redis);
  }

  /** Runs the script on `redis`. */
  run(redis: RedisClient, keys: Keys, args: Args): Promise<unknown> {
    if (keys.length !== this.numberOfKeys) throw new Error(`${this.file} takes ${this.numberOfKeys} keys, got ${keys.length}`);
    return this.define(redis)(...keys, ...args);
  }

  /**
   * Queues the script on a pipeline or transaction of `redis`. A pipeline has the commands defined
   * on `redis` when it was made; on one made before the script's first use, it goes as EVAL.
   */
  queue(redis: RedisClient, pipeline: ChainableCommander, keys: Keys, args: Args): void {
    this.define(redis);
    const commands = pipeline as unknown as Record<string, ((...a: (string | number | Buffer)[]) => unknown) | undefined>;
    const command = commands[this.command];
    if (command) command.call(pipeline, ...keys, ...args);
    else pipeline.eval(this.lua!, this.numberOfKeys, ...keys, ...args);
  }
}
