import type { ScenarioResult } from './runner';

const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** The results as an aligned text table, one row a scenario. */
export function formatTable(results: ScenarioResult[]): string {
  const header = ['scenario', 'jobs', 'raw BullMQ jobs/s', 'Jobmesh jobs/s', 'Jobmesh/raw'];
  const rows = results.map((r) => [r.title, int.format(r.jobs), int.format(r.raw.jobsPerSec), int.format(r.jobmesh.jobsPerSec), r.ratio.toFixed(2)]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  // The first column is text (left-aligned), the rest are numbers (right-aligned).
  const line = (cells: string[]): string => cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export interface RunInfo {
  node: string;
  redis: string;
  cpus: number;
}

/** One JSON line with everything measured, for scripts (`npm run bench | tail -1`). */
export function formatJson(results: ScenarioResult[], info: RunInfo): string {
  const round = (n: number, digits: number): number => Number(n.toFixed(digits));
  return JSON.stringify({
    bench: 'jobmesh',
    at: new Date().toISOString(),
    ...info,
    scenarios: results.map((r) => ({
      name: r.name,
      jobs: r.jobs,
      warmup: r.warmup,
      raw: { jobsPerSec: round(r.raw.jobsPerSec, 0), ms: round(r.raw.ms, 1) },
      jobmesh: { jobsPerSec: round(r.jobmesh.jobsPerSec, 0), ms: round(r.jobmesh.ms, 1) },
      ratio: round(r.ratio, 3),
    })),
  });
}
