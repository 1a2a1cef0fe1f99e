import { digestOf, secretMatches } from '@jobmesh/core';
import { parseApiKeysFile } from '@jobmesh/config';
import { UsageError } from './commands';
import { keys } from './keys';

const run = (args: string[]): string[] => {
  const lines: string[] = [];
  keys(args, (l) => lines.push(l));
  return lines;
};

describe('jobmesh keys create', () => {
  it('prints a new key once and a line the keys file takes, whose hash is the key`s', () => {
    const out = run(['create', '--role', 'worker', '--queues', 'emails, hooks-*', '--id', '123']);
    const key = out.find((l) => /^\s+123\./.test(l))!.trim();
    const line = out.find((l) => l.startsWith('  - {'))!;
    const [entry] = parseApiKeysFile(`keys:\n${line}\n`);
    expect(entry).toEqual({ id: '123', hash: expect.stringMatching(/^sha256:/), role: 'worker', queues: ['emails', 'hooks-*'] });
    expect(secretMatches(key.slice('123.'.length), digestOf(entry!.hash))).toBe(true);
    expect(line).not.toContain(key.slice('123.'.length));
  });

  it('names the key after its role when no --id is given, and never twice the same', () => {
    const a = run(['create', '--role', 'viewer', '--queues', '*']).join('\n');
    const b = run(['create', '--role', 'viewer', '--queues', '*']).join('\n');
    expect(a).toMatch(/id: "viewer-[0-9a-f]{8}"/);
    expect(a).not.toBe(b);
  });

  it('refuses a missing or unknown role, no queues, a bad glob and a bad id with a usage error', () => {
    expect(() => run(['create', '--queues', 'a'])).toThrow(UsageError);
    expect(() => run(['create', '--role', 'root', '--queues', 'a'])).toThrow(/one of producer, worker, viewer, admin/);
    expect(() => run(['create', '--role', 'admin'])).toThrow(/needs --queues/);
    expect(() => run(['create', '--role', 'admin', '--queues', 'a b'])).toThrow(/not a queue name or glob/);
    expect(() => run(['create', '--role', 'admin', '--queues', 'a', '--id', 'x.y'])).toThrow(/--id "x.y"/);
    expect(() => run(['list'])).toThrow(/keys create/);
  });
});
