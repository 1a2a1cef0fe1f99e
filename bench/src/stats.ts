/** The middle and the ends of a set of figures. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** The median (the mean of the two middle values for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function spread(values: readonly number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

/** How wide a spread is next to its median: (max − min) / median, e.g. 0.08 for ±4 %. */
export function relativeWidth(s: Spread): number {
  return (s.max - s.min) / s.median;
}
