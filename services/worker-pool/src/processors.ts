import { extname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type AnyProcessorDefinition, type BackoffDefinition, type BackoffFn, isBackoffDefinition, isProcessorDefinition } from '@jobmesh/sdk';

/** Routes each job to its processor by (queue, job name); '*' processors serve every queue. */
export class ProcessorRegistry {
  private readonly byQueue = new Map<string, Map<string, AnyProcessorDefinition>>();
  readonly backoffs = new Map<string, BackoffFn>();

  add(def: AnyProcessorDefinition): void {
    let names = this.byQueue.get(def.queue);
    if (!names) this.byQueue.set(def.queue, (names = new Map()));
    if (names.has(def.name)) throw new Error(`two processors for job "${def.name}" on queue "${def.queue}"; each (queue, name) needs exactly one`);
    names.set(def.name, def);
  }

  addBackoff(def: BackoffDefinition): void {
    if (this.backoffs.has(def.name)) throw new Error(`two backoff strategies named "${def.name}"`);
    this.backoffs.set(def.name, def.delay);
  }

  /** The processor for a job, or undefined: a queue's own processor wins over a '*' one. */
  resolve(queue: string, name: string): AnyProcessorDefinition | undefined {
    return this.byQueue.get(queue)?.get(name) ?? this.byQueue.get('*')?.get(name);
  }

  /** Queues named by processors ('*' excluded). */
  namedQueues(): string[] {
    return [...this.byQueue.keys()].filter((q) => q !== '*');
  }

  /** Job names that can be processed on `queue`. */
  names(queue: string): string[] {
    return [...new Set([...(this.byQueue.get(queue)?.keys() ?? []), ...(this.byQueue.get('*')?.keys() ?? [])])];
  }

  /** Registers every processor and backoff a module exports (default, named, or in arrays). */
  register(exports: unknown, source: string): number {
    let n = 0;
    const visit = (v: unknown): void => {
      if (isProcessorDefinition(v)) {
        this.add(v);
        n++;
      } else if (isBackoffDefinition(v)) {
        this.addBackoff(v);
        n++;
      } else if (Array.isArray(v)) v.forEach(visit);
    };
    // `module.exports = defineProcessor(…)` or `= [ … ]`, else every named export (default included).
    if (isProcessorDefinition(exports) || isBackoffDefinition(exports) || Array.isArray(exports)) visit(exports);
    else for (const v of Object.values((exports ?? {}) as Record<string, unknown>)) visit(v);
    if (n === 0) throw new Error(`${source} exports no defineProcessor(...) or defineBackoff(...) values`);
    return n;
  }

  /** Loads processor modules by path: CommonJS (.js, .cjs, and .ts under a TS loader) or ESM (.mjs). */
  async load(paths: string[]): Promise<void> {
    for (const path of paths) {
      let mod: unknown;
      try {
        mod = extname(path) === '.mjs' ? await import(pathToFileURL(path).href) : require(path);
      } catch (err) {
        throw new Error(`cannot load processor module ${path}: ${(err as Error).message}`);
      }
      this.register(mod, path);
    }
  }
}
