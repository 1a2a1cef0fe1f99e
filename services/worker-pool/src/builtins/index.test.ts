import type { LoadedConfigFile } from '@jobmesh/config';
import { builtinProcessors, parseRetryAfter } from '.';

const config = (builtins: Partial<Record<'http.request' | 'email.send', boolean>> = {}): LoadedConfigFile => ({
  queues: [],
  processors: { modules: [], builtins: { 'http.request': true, 'email.send': true, ...builtins } },
});

describe('builtinProcessors', () => {
  it('returns http.request and email.send for every queue by default', () => {
    expect(builtinProcessors({ config: config() }).map((p) => [p.queue, p.name])).toEqual([
      ['*', 'http.request'],
      ['*', 'email.send'],
    ]);
  });

  it('leaves out the built-ins the config file turns off', () => {
    expect(builtinProcessors({ config: config({ 'email.send': false }) }).map((p) => p.name)).toEqual(['http.request']);
    expect(builtinProcessors({ config: config({ 'http.request': false }) }).map((p) => p.name)).toEqual(['email.send']);
    expect(builtinProcessors({ config: config({ 'http.request': false, 'email.send': false }) })).toEqual([]);
  });

  it('includes email.send without SMTP settings, so start-up does not depend on them', () => {
    expect(builtinProcessors({ config: config(), smtpUrl: undefined }).map((p) => p.name)).toContain('email.send');
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');

  it('reads delay-seconds as milliseconds', () => {
    expect(parseRetryAfter('1', now)).toBe(1000);
    expect(parseRetryAfter(' 120 ', now)).toBe(120_000);
    expect(parseRetryAfter('0', now)).toBe(0);
  });

  it('reads an HTTP date as the time left until it, and a past date as 0', () => {
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:59:00 GMT', now)).toBe(0);
  });

  it('returns undefined when the header is absent or unreadable', () => {
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('-5', now)).toBeUndefined();
  });
});
