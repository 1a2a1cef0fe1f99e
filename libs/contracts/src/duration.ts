import type { Duration } from './gen/google/protobuf/duration';

/** google.protobuf.Duration's range: ±10,000 years of seconds; nanos below one second, of the seconds' sign. */
const MAX_DURATION_SECONDS = 315_576_000_000;
const MAX_NANOS = 999_999_999;

/**
 * google.protobuf.Duration to milliseconds, rounded to the nearest ms; undefined stays undefined.
 * A Duration out of its range (seconds beyond ±315576000000, nanos beyond ±999999999, or signs
 * that disagree) gives NaN, which every validator refuses as INVALID_ARGUMENT: nanos 2e9 was
 * read as 2 s more. The one conversion: every package uses it, so a duration means the same
 * thing everywhere.
 */
export function durationToMs(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  const { seconds, nanos } = d;
  if (!Number.isInteger(seconds) || Math.abs(seconds) > MAX_DURATION_SECONDS) return NaN;
  if (!Number.isInteger(nanos) || Math.abs(nanos) > MAX_NANOS || (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0)) return NaN;
  return seconds * 1000 + Math.round(nanos / 1e6);
}

/** Milliseconds to a google.protobuf.Duration (whole ms kept exactly); undefined stays undefined. */
export function msToDuration(ms: number): Duration;
export function msToDuration(ms: number | undefined): Duration | undefined;
export function msToDuration(ms: number | undefined): Duration | undefined {
  if (ms === undefined) return undefined;
  const seconds = Math.trunc(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}
