import { KEY_HASH_PATTERN, digestOf, hashSecret, newApiKey, secretMatches } from './api-keys';

describe('API key hashes', () => {
  it('stores a secret as sha256:<hex>, never the secret', () => {
    const hash = hashSecret('s3cret');
    expect(hash).toMatch(KEY_HASH_PATTERN);
    expect(hash).not.toContain('s3cret');
    // SHA-256 of "abc", the FIPS 180-2 test vector.
    expect(hashSecret('abc')).toBe('sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('matches the right secret and refuses a wrong one, of any length', () => {
    const digest = digestOf(hashSecret('right'));
    expect(secretMatches('right', digest)).toBe(true);
    expect(secretMatches('wrong', digest)).toBe(false);
    expect(secretMatches('', digest)).toBe(false);
    expect(secretMatches('right'.repeat(1000), digest)).toBe(false);
  });

  it('refuses a stored hash that is not sha256:<64 hex digits>', () => {
    expect(() => digestOf('sha256:abc')).toThrow(/sha256:<64 hex digits>/);
    expect(() => digestOf('md5:900150983cd24fb0d6963f7d28e17f72')).toThrow();
  });

  it('makes a key <id>.<32 random bytes in base64url> whose hash matches it', () => {
    const a = newApiKey('ci');
    const b = newApiKey('ci');
    expect(a.key).toMatch(/^ci\.[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.secret, 'base64url')).toHaveLength(32);
    expect(a.key).not.toBe(b.key);
    expect(secretMatches(a.secret, digestOf(a.hash))).toBe(true);
    expect(() => newApiKey('has.dot')).toThrow(/key id/);
  });
});
