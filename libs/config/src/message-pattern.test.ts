import { InvalidArgumentError } from '@jobmesh/core';
import { compileMessagePattern } from './message-pattern';

describe('compileMessagePattern', () => {
  it('matches "(a+)+b" against 100,000 "a"s in linear time, not for minutes', () => {
    const started = Date.now();
    const re = compileMessagePattern('(a+)+b');
    expect(re.test('a'.repeat(100_000))).toBe(false);
    expect(re.test(`${'a'.repeat(30)}b`)).toBe(true);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('searches the message, as RegExp.test does', () => {
    expect(compileMessagePattern('ECONN(REFUSED|RESET)').test('connect ECONNREFUSED 127.0.0.1:80')).toBe(true);
    expect(compileMessagePattern('^timeout').test('no timeout')).toBe(false);
  });

  it.each(['(?=a)b', '(a)\\1', '(unclosed'])('refuses %p with INVALID_ARGUMENT naming the field and RE2', (source) => {
    let err: unknown;
    try {
      compileMessagePattern(source, 'queue.dead_letter.rules[0].message_pattern');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).field).toBe('queue.dead_letter.rules[0].message_pattern');
    expect((err as Error).message).toMatch(/not a valid RE2 regular expression/);
  });

  it('refuses a pattern over 1024 characters', () => {
    expect(() => compileMessagePattern('a'.repeat(1025))).toThrow(/1025 characters; at most 1024/);
  });
});
