import { formatDuration, parseDuration } from './duration';
import { InvalidArgumentError } from './errors';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['7d', 604_800_000],
    ['1h30m', 5_400_000],
    ['1d2h3m4s5ms', 93_784_005],
    ['1.5s', 1500],
    ['0s', 0],
  ])('parses %p as %p ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('reads "m" as minutes and "ms" as milliseconds', () => {
    expect(parseDuration('1m')).toBe(60_000);
    expect(parseDuration('1ms')).toBe(1);
  });

  it('reads a string of digits as milliseconds', () => {
    expect(parseDuration('1500')).toBe(1500);
  });

  it('passes a non-negative number through as milliseconds', () => {
    expect(parseDuration(0)).toBe(0);
    expect(parseDuration(42)).toBe(42);
  });

  it('ignores surrounding whitespace', () => {
    expect(parseDuration('  30s\n')).toBe(30_000);
  });

  it('rounds fractions of a millisecond', () => {
    expect(parseDuration('1.5ms')).toBe(2);
  });

  it.each(['', '   ', 'soon', '5x', '5 s', '1h 30m', 's', '-5s', '30s!', '1h30', 'h1'])('rejects %p as not a duration', (text) => {
    expect(() => parseDuration(text)).toThrow(InvalidArgumentError);
    expect(() => parseDuration(text)).toThrow(/is not a duration; use e\.g\./);
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY])('rejects the number %p', (ms) => {
    expect(() => parseDuration(ms)).toThrow(/must be a non-negative number of milliseconds/);
  });

  it('names the field in the error', () => {
    let caught: unknown;
    try {
      parseDuration('later', 'schedule.every');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError);
    expect(caught).toMatchObject({ name: 'InvalidArgumentError', kind: 'invalid_argument', field: 'schedule.every' });
    expect((caught as Error).message).toMatch(/^schedule\.every: "later" is not a duration/);
  });

  it('names the field "duration" when none is given', () => {
    expect(() => parseDuration('later')).toThrow(/^duration: /);
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0ms'],
    [250, '250ms'],
    [999, '999ms'],
    [1000, '1s'],
    [1500, '1s500ms'],
    [60_000, '1m'],
    [5_400_000, '1h30m'],
    [86_400_000, '1d'],
    [604_800_000, '7d'],
    [93_784_005, '1d2h3m4s5ms'],
    [3_600_001, '1h1ms'],
  ])('formats %p ms as %p', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('rounds to whole milliseconds from one second up', () => {
    expect(formatDuration(1000.4)).toBe('1s');
  });

  it.each([0, 1, 999, 1000, 61_001, 5_400_000, 93_784_005])('gives text that parses back to %p ms', (ms) => {
    expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
});
