import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * What an API key may be given. producer: enqueue, read its queues' jobs, watch; worker:
 * WorkerService on its queues; viewer: read everything, monitor and dead letters included;
 * admin: everything. The table of RPC → role is libs/grpc-kit's PERMISSIONS.
 */
export const ROLES = ['producer', 'worker', 'viewer', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** What an API key id may be: no dot, since the key is `<id>.<secret>`. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** A stored secret hash: `sha256:` and 64 lowercase hex digits (see KEY_HASH_PREFIX for why SHA-256). */
export const KEY_HASH_PATTERN = /^sha256:[0-9a-f]{64}$/;

/** A queue glob of a key: a queue name in which `*` stands for any run of characters; `*` alone is every queue. */
export const QUEUE_GLOB_PATTERN = /^[A-Za-z0-9._*-]{1,100}$/;

/** One declared key, as the keys file (JOBMESH_API_KEYS_FILE) has it. */
export interface ApiKeyEntry {
  id: string;
  /** `sha256:<hex>` of the secret; never the secret. */
  hash: string;
  role: Role;
  queues: string[];
}

/**
 * How an API key's secret is stored: `sha256:<64 hex digits>`, the SHA-256 of the secret's UTF-8
 * text. SHA-256 rather than scrypt or argon2 because the secrets are not passwords: `jobmesh keys
 * create` makes them from 32 random bytes, so there is nothing to guess and a slow hash would only
 * cost CPU on every call (every RPC checks its key). A stolen file of hashes gives no key.
 */
export const KEY_HASH_PREFIX = 'sha256:';

/** The stored form of `secret`: `sha256:<hex>`. */
export function hashSecret(secret: string): string {
  return KEY_HASH_PREFIX + createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** The 32 digest bytes of a stored `sha256:<hex>` hash. */
export function digestOf(storedHash: string): Buffer {
  if (!KEY_HASH_PATTERN.test(storedHash)) throw new Error(`not a key hash: expected sha256:<64 hex digits>`);
  return Buffer.from(storedHash.slice(KEY_HASH_PREFIX.length), 'hex');
}

/**
 * Whether `secret` hashes to `digest`, in constant time: the secret's hash is compared with
 * `crypto.timingSafeEqual` (both are 32 bytes, whatever the secret's length).
 */
export function secretMatches(secret: string, digest: Buffer): boolean {
  const given = createHash('sha256').update(secret, 'utf8').digest();
  return given.length === digest.length && timingSafeEqual(given, digest);
}

/** A new key: `<id>.<secret>` with a secret of 32 random bytes in base64url, and its stored hash. */
export function newApiKey(id: string): { key: string; secret: string; hash: string } {
  if (!KEY_ID_PATTERN.test(id)) throw new Error(`key id "${id}" must be 1-64 letters, digits, "_" or "-", starting with a letter or digit`);
  const secret = randomBytes(32).toString('base64url');
  return { key: `${id}.${secret}`, secret, hash: hashSecret(secret) };
}
