import type { Measurement, Round, ScenarioResult } from './runner';
import type { Spread } from './stats';

const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

const rate = (s: Spread): string => `${int.format(s.median)} (${int.format(s.min)}–${int.format(s.max)})`;

/**
 * The results as an aligned text table, one row a scenario: per side the median jobs/s over the
 * rounds and their range, and the ratio of the medians with the range of the rounds' own ratios.
 */
export function formatTable(results: ScenarioResult[]): string {
  const header = ['scenario', 'jobs', 'rounds', 'raw BullMQ jobs/s: median (min–max)', 'Jobmesh jobs/s: median (min–max)', 'Jobmesh/raw: of medians (rounds min–max)'];
  const rows = results.map((r) => [
    r.title,
    int.format(r.jobs),
    String(r.rounds.length),
    rate(r.raw),
    rate(r.jobmesh),
    `${r.ratio.ofMedians.toFixed(3)} (${r.ratio.min.toFixed(3)}–${r.ratio.max.toFixed(3)})`,
  ]);
  return alignedTable(header, rows);
}

/** A text table: the first column is text (left-aligned), the rest are numbers (right-aligned). */
export function alignedTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  const line = (cells: string[]): string => cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export interface RunInfo {
  node: string;
  redis: string;
  cpus: number;
}

/** A run's JSON line, as `formatJson` writes it and `compare` reads it. */
export interface BenchJson extends RunInfo {
  bench: 'jobmesh';
  at: string;
  scenarios: ScenarioJson[];
}

export interface ScenarioJson {
  name: string;
  jobs: number;
  warmup: number;
  raw: Spread;
  jobmesh: Spread;
  ratio: ScenarioResult['ratio'];
  rounds: { first: Round['first']; raw: RunJson; jobmesh: RunJson; ratio: number }[];
}

interface RunJson {
  jobsPerSec: number;
  ms: number;
}

const round = (n: number, digits: number): number => Number(n.toFixed(digits));
const spreadJson = (s: Spread): Spread => ({ median: round(s.median, 0), min: round(s.min, 0), max: round(s.max, 0) });
const runJson = (m: Measurement): RunJson => ({ jobsPerSec: round(m.jobsPerSec, 0), ms: round(m.ms, 1) });

/**
 * One JSON line with everything measured, every round included, for scripts
 * (`npm run bench | tail -1`) and for `node bench/dist/compare.js` (two runs side by side).
 */
export function formatJson(results: ScenarioResult[], info: RunInfo): string {
  const json: BenchJson = {
    bench: 'jobmesh',
    at: new Date().toISOString(),
    ...info,
    scenarios: results.map((r) => ({
      name: r.name,
      jobs: r.jobs,
      warmup: r.warmup,
      raw: spreadJson(r.raw),
      jobmesh: spreadJson(r.jobmesh),
      ratio: { ofMedians: round(r.ratio.ofMedians, 3), min: round(r.ratio.min, 3), max: round(r.ratio.max, 3) },
      rounds: r.rounds.map((x) => ({ first: x.first, raw: runJson(x.raw), jobmesh: runJson(x.jobmesh), ratio: round(x.ratio, 3) })),
    })),
  };
  return JSON.stringify(json);
}
