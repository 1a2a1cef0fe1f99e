import { randomBytes } from 'node:crypto';
import { KEY_ID_PATTERN, QUEUE_GLOB_PATTERN, ROLES, type Role, newApiKey } from '@jobmesh/core';
import { flags, UsageError } from './commands';

/**
 * `jobmesh keys create --role R --queues 'a,b-*' [--id NAME]`: makes a key locally (nothing is
 * sent anywhere) and prints it once, with the line to add under `keys:` in the file that
 * JOBMESH_API_KEYS_FILE names. Only the hash goes in the file; the key is not shown again.
 */
export function keys(args: string[], out: (line: string) => void): number {
  const [sub, ...rest] = args;
  if (sub !== 'create') throw new UsageError('keys: the command is `jobmesh keys create --role <role> --queues <globs> [--id NAME]`');
  const { values, positionals } = flags(rest, { role: { type: 'string' }, queues: { type: 'string' }, id: { type: 'string' } });
  if (positionals.length) throw new UsageError(`keys create: unexpected argument "${positionals[0]}"`);
  const role = values.role as Role | undefined;
  if (!role || !ROLES.includes(role)) throw new UsageError(`keys create needs --role, one of ${ROLES.join(', ')}`);
  const queues = (values.queues ?? '').split(',').map((q) => q.trim()).filter(Boolean);
  if (!queues.length) throw new UsageError("keys create needs --queues, comma-separated queue names or globs, e.g. 'emails,hooks-*' ('*' for every queue)");
  const bad = queues.find((q) => !QUEUE_GLOB_PATTERN.test(q));
  if (bad !== undefined) throw new UsageError(`keys create: "${bad}" is not a queue name or glob (letters, digits, ".", "_", "-" and "*")`);
  const id = values.id ?? `${role}-${randomBytes(4).toString('hex')}`;
  if (!KEY_ID_PATTERN.test(id)) throw new UsageError(`keys create: --id "${id}" must be 1-64 letters, digits, "_" or "-", starting with a letter or digit`);
  const { key, hash } = newApiKey(id);
  const line = `  - { id: ${JSON.stringify(id)}, hash: "${hash}", role: ${role}, queues: [${queues.map((q) => JSON.stringify(q)).join(', ')}] }`;
  out(`API key (shown once; give it to the client as --api-key or JOBMESH_API_KEY):`);
  out(`  ${key}`);
  out('');
  out('Add this line under `keys:` in the file JOBMESH_API_KEYS_FILE names (the services reload it by themselves):');
  out(line);
  return 0;
}
