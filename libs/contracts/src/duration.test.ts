import { durationToMs, msToDuration } from './duration';

describe('durationToMs', () => {
  it('converts a Duration to ms, rounding nanos', () => {
    expect(durationToMs({ seconds: 1, nanos: 500_000_000 })).toBe(1500);
    expect(durationToMs({ seconds: -1, nanos: -500_000_000 })).toBe(-1500);
    expect(durationToMs(undefined)).toBeUndefined();
    expect(durationToMs(msToDuration(1234))).toBe(1234);
  });

  it.each([
    ['nanos 2e9', { seconds: 1, nanos: 2e9 }],
    ['nanos of the other sign', { seconds: 1, nanos: -1 }],
    ['seconds beyond 10,000 years', { seconds: 315_576_000_001, nanos: 0 }],
    ['fractional seconds', { seconds: 1.5, nanos: 0 }],
  ])('gives NaN for a Duration out of its range (%s), which validators refuse', (_, d) => {
    expect(durationToMs(d)).toBeNaN();
  });
});
