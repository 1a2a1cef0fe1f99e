import { authOffInProduction, parseApiKeysFile } from './api-keys-file';

const HASH = `sha256:${'ab'.repeat(32)}`;

describe('parseApiKeysFile', () => {
  it('reads keys with id, hash, role and queue globs', () => {
    const text = `keys:\n  - { id: ci, hash: "${HASH}", role: producer, queues: [emails, "hooks-*"] }\n  - id: ops\n    hash: "${HASH}"\n    role: admin\n    queues: ["*"]\n`;
    expect(parseApiKeysFile(text)).toEqual([
      { id: 'ci', hash: HASH, role: 'producer', queues: ['emails', 'hooks-*'] },
      { id: 'ops', hash: HASH, role: 'admin', queues: ['*'] },
    ]);
  });

  it('accepts a file with no keys (every call is then refused)', () => {
    expect(parseApiKeysFile('keys: []\n')).toEqual([]);
  });

  it('names the line, the key and what to fix for a bad role', () => {
    const text = `keys:\n  - { id: ci, hash: "${HASH}", role: producer, queues: [emails] }\n  - id: ops\n    hash: "${HASH}"\n    role: root\n    queues: ["*"]\n`;
    expect(() => parseApiKeysFile(text, 'keys.yaml')).toThrow('keys.yaml: line 5: keys.1.role (key "ops") must be one of producer, worker, viewer, admin');
  });

  it('refuses a secret where the hash goes, without repeating it', () => {
    const text = 'keys:\n  - { id: ci, hash: "ci.very-secret-value", role: producer, queues: [emails] }\n';
    let message = '';
    try {
      parseApiKeysFile(text, 'keys.yaml');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^keys\.yaml: line 2: keys\.0\.hash \(key "ci"\) looks like a key/);
    expect(message).not.toContain('very-secret-value');
  });

  it('refuses an unknown field, an id with a dot, a bad glob, no queues and a duplicate id', () => {
    expect(() => parseApiKeysFile(`keys:\n  - { id: ci, hash: "${HASH}", role: producer, queues: [a], secret: x }\n`)).toThrow(/line 2: keys\.0.*secret/);
    expect(() => parseApiKeysFile(`keys:\n  - { id: c.i, hash: "${HASH}", role: producer, queues: [a] }\n`)).toThrow(/keys\.0\.id .*no dot/);
    expect(() => parseApiKeysFile(`keys:\n  - { id: ci, hash: "${HASH}", role: producer, queues: ["a b"] }\n`)).toThrow(/keys\.0\.queues\.0 .*glob/);
    expect(() => parseApiKeysFile(`keys:\n  - { id: ci, hash: "${HASH}", role: producer, queues: [] }\n`)).toThrow(/at least one queue glob/);
    expect(() => parseApiKeysFile(`keys:\n  - { id: ci, hash: "${HASH}", role: producer, queues: [a] }\n  - { id: ci, hash: "${HASH}", role: viewer, queues: [a] }\n`)).toThrow(/"ci" is declared twice/);
  });

  it('names the line of a YAML syntax error', () => {
    expect(() => parseApiKeysFile('keys:\n  - { id: ci, hash: [\n', 'k.yaml')).toThrow(/^k\.yaml: line \d+: cannot be parsed as YAML/);
  });
});

describe('authOffInProduction', () => {
  it('is one paragraph in production without a keys file, nothing otherwise', () => {
    expect(authOffInProduction({ JOBMESH_MODE: 'production' })).toMatch(/^JOBMESH_MODE=production refuses to start with auth off: .*JOBMESH_API_KEYS_FILE.*jobmesh keys create/);
    expect(authOffInProduction({ JOBMESH_MODE: 'production', JOBMESH_API_KEYS_FILE: 'keys.yaml' })).toBeUndefined();
    expect(authOffInProduction({ JOBMESH_MODE: 'development' })).toBeUndefined();
  });
});
