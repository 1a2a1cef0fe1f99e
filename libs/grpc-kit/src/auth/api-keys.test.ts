import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ApiKeyEntry, hashSecret } from '@jobmesh/core';
import { silentLogger } from '@jobmesh/telemetry';
import { ApiKeyAuth } from './api-keys';

// The file's format is @jobmesh/config's; here a JSON list of entries stands for it.
const read = (path: string): ApiKeyEntry[] => JSON.parse(readFileSync(path, 'utf8')) as ApiKeyEntry[];
const entry = (id: string, secret: string): ApiKeyEntry => ({ id, hash: hashSecret(secret), role: 'viewer', queues: ['*'] });

let dir: string;
let file: string;
const auths: ApiKeyAuth[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-keys-'));
  file = join(dir, 'keys.json');
  writeFileSync(file, JSON.stringify([entry('a', 'secret-a')]));
});
afterEach(() => {
  for (const a of auths.splice(0)) a.close();
  rmSync(dir, { recursive: true, force: true });
});
const open = (opts: { watch?: boolean; sighup?: boolean } = {}): ApiKeyAuth => {
  const a = new ApiKeyAuth({ path: file, read, logger: silentLogger(), ...opts });
  auths.push(a);
  return a;
};

it('takes a file an editor renames over the old one, and keeps the keys in force when the new file is bad', async () => {
  const auth = open({ sighup: false });
  expect(auth.authenticate('Bearer a.secret-a').id).toBe('a');
  const reloaded = once(auth, 'reload');
  writeFileSync(`${file}.swp`, JSON.stringify([entry('b', 'secret-b')]));
  renameSync(`${file}.swp`, file);
  await reloaded;
  expect(auth.authenticate('Bearer b.secret-b').id).toBe('b');
  expect(() => auth.authenticate('Bearer a.secret-a')).toThrow(expect.objectContaining({ kind: 'unauthenticated' }));

  const failed = once(auth, 'reloadFailed');
  writeFileSync(file, '[{ not json');
  await failed;
  expect(auth.authenticate('Bearer b.secret-b').id).toBe('b');
});

it('takes a Kubernetes Secret volume`s update: the ..data link swapped to a new directory', async () => {
  // The layout kubelet makes: keys.json → ..data/keys.json, ..data → a timestamped directory.
  mkdirSync(join(dir, '..v1'));
  writeFileSync(join(dir, '..v1', 'keys.json'), JSON.stringify([entry('a', 'secret-a')]));
  symlinkSync('..v1', join(dir, '..data'));
  rmSync(file);
  symlinkSync(join('..data', 'keys.json'), file);
  const auth = open({ sighup: false });
  expect(auth.authenticate('Bearer a.secret-a').id).toBe('a');
  mkdirSync(join(dir, '..v2'));
  writeFileSync(join(dir, '..v2', 'keys.json'), JSON.stringify([entry('k', 'secret-k')]));
  const reloaded = once(auth, 'reload');
  symlinkSync('..v2', join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  await reloaded;
  expect(auth.authenticate('Bearer k.secret-k').id).toBe('k');
});

it('reloads on SIGHUP, with the watch off', async () => {
  const auth = open({ watch: false });
  writeFileSync(file, JSON.stringify([entry('c', 'secret-c')]));
  expect(() => auth.authenticate('Bearer c.secret-c')).toThrow();
  const reloaded = once(auth, 'reload');
  process.emit('SIGHUP', 'SIGHUP');
  await reloaded;
  expect(auth.authenticate('Bearer c.secret-c').id).toBe('c');
  auth.close();
  expect(process.listenerCount('SIGHUP')).toBe(0);
});

it('answers UNAUTHENTICATED for a missing, malformed, unknown or wrong key', () => {
  const auth = open({ watch: false, sighup: false });
  for (const bad of [undefined, '', 'a.secret-a', 'Bearer a', 'Bearer a.', 'Bearer .secret-a', 'Bearer a.secret-b', 'Bearer z.secret-a', Buffer.from('Bearer a.secret-a')]) {
    expect(() => auth.authenticate(bad)).toThrow(expect.objectContaining({ kind: 'unauthenticated' }));
  }
  expect(auth.authenticate('Bearer a.secret-a').role).toBe('viewer');
});
