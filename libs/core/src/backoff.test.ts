import { computeBackoff } from './backoff';
import type { BackoffSpec } from './options';

const never = () => 0; // random() = 0: jitter takes nothing off
const always = () => 1; // random() = 1: jitter takes off the most it may

function delays(spec: BackoffSpec, attempts: number[], random = never): number[] {
  return attempts.map((n) => computeBackoff(spec, n, random));
}

describe('computeBackoff', () => {
  it('waits the same delay before every retry with fixed backoff', () => {
    expect(delays({ kind: 'fixed', delayMs: 1500 }, [1, 2, 3, 10])).toEqual([1500, 1500, 1500, 1500]);
  });

  it('doubles the delay with each attempt with exponential backoff', () => {
    expect(delays({ kind: 'exponential', delayMs: 1000 }, [1, 2, 3, 4, 5])).toEqual([1000, 2000, 4000, 8000, 16000]);
  });

  it('grows the delay by the base delay with each attempt with linear backoff', () => {
    expect(delays({ kind: 'linear', delayMs: 1000 }, [1, 2, 3, 4])).toEqual([1000, 2000, 3000, 4000]);
  });

  it('falls back to the fixed delay for custom strategies, which the worker-pool resolves', () => {
    expect(delays({ kind: 'custom', delayMs: 700, customStrategy: 'fib' }, [1, 2, 5])).toEqual([700, 700, 700]);
  });

  it('treats an attempt below 1 as the first and ignores fractions of an attempt', () => {
    const spec: BackoffSpec = { kind: 'exponential', delayMs: 100 };
    expect(delays(spec, [0, -3, 1])).toEqual([100, 100, 100]);
    expect(computeBackoff(spec, 3.9, never)).toBe(400);
  });

  it('caps every delay at maxDelayMs', () => {
    expect(delays({ kind: 'exponential', delayMs: 1000, maxDelayMs: 5000 }, [1, 3, 4, 20])).toEqual([1000, 4000, 5000, 5000]);
    expect(delays({ kind: 'linear', delayMs: 1000, maxDelayMs: 2500 }, [2, 3, 100])).toEqual([2000, 2500, 2500]);
    expect(computeBackoff({ kind: 'fixed', delayMs: 9000, maxDelayMs: 3000 }, 1, never)).toBe(3000);
  });

  it('treats a maxDelayMs of 0 as no cap', () => {
    expect(computeBackoff({ kind: 'exponential', delayMs: 1000, maxDelayMs: 0 }, 11, never)).toBe(1_024_000);
  });

  it('takes off between nothing and jitter times the delay, so 0.2 turns 10 s into 8-10 s', () => {
    const spec: BackoffSpec = { kind: 'fixed', delayMs: 10_000, jitter: 0.2 };
    expect(computeBackoff(spec, 1, never)).toBe(10_000);
    expect(computeBackoff(spec, 1, () => 0.5)).toBe(9_000);
    expect(computeBackoff(spec, 1, always)).toBe(8_000);
  });

  it('stays within the jitter bounds with the default Math.random', () => {
    const spec: BackoffSpec = { kind: 'exponential', delayMs: 1000, jitter: 0.5 };
    for (let i = 0; i < 200; i++) {
      const delay = computeBackoff(spec, 3);
      expect(delay).toBeGreaterThanOrEqual(2000);
      expect(delay).toBeLessThanOrEqual(4000);
    }
  });

  it('applies jitter after the cap, so a jittered delay never exceeds maxDelayMs', () => {
    const spec: BackoffSpec = { kind: 'exponential', delayMs: 1000, maxDelayMs: 5000, jitter: 0.5 };
    expect(computeBackoff(spec, 10, never)).toBe(5000);
    expect(computeBackoff(spec, 10, always)).toBe(2500);
  });

  it('clamps jitter to 0..1, so a delay is never negative and negative jitter does nothing', () => {
    expect(computeBackoff({ kind: 'fixed', delayMs: 1000, jitter: 2 }, 1, always)).toBe(0);
    expect(computeBackoff({ kind: 'fixed', delayMs: 1000, jitter: -1 }, 1, always)).toBe(1000);
  });

  it('returns whole milliseconds', () => {
    expect(computeBackoff({ kind: 'fixed', delayMs: 1000, jitter: 1 / 3 }, 1, () => 0.5)).toBe(833);
  });
});
