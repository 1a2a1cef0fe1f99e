import { readFileSync } from 'node:fs';
import { type ApiKeyEntry, KEY_HASH_PATTERN, KEY_ID_PATTERN, QUEUE_GLOB_PATTERN, ROLES } from '@jobmesh/core';
import YAML, { LineCounter } from 'yaml';
import { z } from 'zod';

const key = z.strictObject({
  id: z.string().regex(KEY_ID_PATTERN, 'must be 1-64 letters, digits, "_" or "-" (no dot), starting with a letter or digit'),
  hash: z.string().superRefine((h, ctx) => {
    if (KEY_HASH_PATTERN.test(h)) return;
    ctx.addIssue({
      code: 'custom',
      message: h.includes('.')
        ? 'looks like a key (<id>.<secret>), not a hash: put the "sha256:…" hash `jobmesh keys create` printed here, never the secret'
        : 'must be "sha256:" and 64 lowercase hex digits, as `jobmesh keys create` prints it',
    });
  }),
  role: z.enum(ROLES, { error: `must be one of ${ROLES.join(', ')}` }),
  queues: z
    .array(z.string().regex(QUEUE_GLOB_PATTERN, 'must be a queue name or a glob of one with "*", e.g. emails, hooks-* or * for every queue'))
    .min(1, 'must list at least one queue glob ("*" for every queue)'),
});

const keysFile = z.strictObject({ keys: z.array(key) });

/**
 * Parses the API keys file (JOBMESH_API_KEYS_FILE), YAML:
 *
 * ```yaml
 * keys:
 *   - { id: ci, hash: "sha256:…", role: producer, queues: [emails, "hooks-*"] }
 * ```
 *
 * Throws an error naming the file, the line and the key, and what to fix.
 */
export function parseApiKeysFile(text: string, source = 'keys file'): ApiKeyEntry[] {
  const lines = new LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const at = (offset: number | undefined): string => (offset === undefined ? '' : `line ${lines.linePos(offset).line}: `);
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    throw new Error(`${source}: ${at(e.pos[0])}cannot be parsed as YAML: ${e.message.split('\n')[0]}`);
  }
  const parsed = keysFile.safeParse(doc.toJS() ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.path as (string | number)[];
    // The deepest node that exists, for its line.
    let node: unknown;
    for (let n = path.length; n >= 0 && !node; n--) node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    const raw = (doc.toJS() as { keys?: { id?: unknown }[] } | null)?.keys;
    const id = typeof path[1] === 'number' && typeof raw?.[path[1]]?.id === 'string' ? ` (key "${raw[path[1]]!.id as string}")` : '';
    throw new Error(`${source}: ${at(range?.[0])}${path.join('.') || '(root)'}${id} ${issue.message}`);
  }
  const seen = new Set<string>();
  for (const k of parsed.data.keys) {
    if (seen.has(k.id)) throw new Error(`${source}: key id "${k.id}" is declared twice; ids must be unique`);
    seen.add(k.id);
  }
  return parsed.data.keys;
}

/** Reads and parses the API keys file at `path`. */
export function loadApiKeysFile(path: string): ApiKeyEntry[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`JOBMESH_API_KEYS_FILE: cannot read ${path}: ${(err as Error).message}`);
  }
  return parseApiKeysFile(text, path);
}

/**
 * The paragraph production mode refuses to start with when auth is off. Returned (not thrown) so
 * the start path can put it beside its other checks.
 */
export function authOffInProduction(env: { JOBMESH_MODE: string; JOBMESH_API_KEYS_FILE?: string }): string | undefined {
  if (env.JOBMESH_MODE !== 'production' || env.JOBMESH_API_KEYS_FILE) return undefined;
  return (
    'JOBMESH_MODE=production refuses to start with auth off: without JOBMESH_API_KEYS_FILE anyone who can reach the gRPC port ' +
    'can call every RPC, read every payload and replay dead letters. Create keys with `jobmesh keys create --role <producer|worker|viewer|admin> ' +
    "--queues '<globs>'`, put the lines it prints under `keys:` in a YAML file, and set JOBMESH_API_KEYS_FILE to its path " +
    '(or unset JOBMESH_MODE to run in development mode).'
  );
}
