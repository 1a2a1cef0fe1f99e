import type { Duration } from './gen/google/protobuf/duration';

/**
 * google.protobuf.Duration to milliseconds, rounded to the nearest ms; undefined stays undefined.
 * The one conversion: every package uses it, so a duration means the same thing everywhere.
 */
export function durationToMs(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  return d.seconds * 1000 + Math.round(d.nanos / 1e6);
}

/** Milliseconds to a google.protobuf.Duration (whole ms kept exactly); undefined stays undefined. */
export function msToDuration(ms: number): Duration;
export function msToDuration(ms: number | undefined): Duration | undefined;
export function msToDuration(ms: number | undefined): Duration | undefined {
  if (ms === undefined) return undefined;
  const seconds = Math.trunc(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}
