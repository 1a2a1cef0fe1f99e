import type { Measurement, Round, ScenarioResult, Side } from './runner';
import { type Spread, spread } from './stats';

const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

const rate = (s: Spread, format: Intl.NumberFormat = int): string => `${format.format(s.median)} (${format.format(s.min)}–${format.format(s.max)})`;
/** The figures of a scenario with a figure table: whole numbers as they are, others to 2 decimals. */
const decimals = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

/**
 * The results as aligned text tables, one row a scenario: per side the median jobs/s over the
 * rounds and their range, and the ratio of the medians with the range of the rounds' own ratios.
 * The scenarios against raw BullMQ share one table; feature scenarios (Jobmesh against Jobmesh)
 * get one of their own per pair of side names, said to be on/off; figures a scenario sets in a
 * figure table (latencies, say) get a table per caption, then come the other figures the runs
 * recorded.
 */
export function formatTable(results: ScenarioResult[]): string {
  const row = (r: ScenarioResult): string[] => [
    r.title,
    int.format(r.jobs),
    String(r.rounds.length),
    rate(r.raw),
    rate(r.jobmesh),
    `${r.ratio.ofMedians.toFixed(3)} (${r.ratio.min.toFixed(3)}–${r.ratio.max.toFixed(3)})`,
  ];
  const parts: string[] = [];
  const bullmq = results.filter((r) => r.kind === 'bullmq');
  if (bullmq.length) {
    const header = ['scenario', 'jobs', 'rounds', 'raw BullMQ jobs/s: median (min–max)', 'Jobmesh jobs/s: median (min–max)', 'Jobmesh/raw: of medians (rounds min–max)'];
    parts.push(alignedTable(header, bullmq.map(row)));
  }
  const features = results.filter((r) => r.kind === 'feature');
  for (const key of new Set(features.map((r) => JSON.stringify(r.sides)))) {
    const group = features.filter((r) => JSON.stringify(r.sides) === key);
    const { raw: off, jobmesh: on } = group[0]!.sides;
    const header = ['scenario', 'jobs', 'rounds', `${off} jobs/s: median (min–max)`, `${on} jobs/s: median (min–max)`, 'on/off: of medians (rounds min–max)'];
    parts.push(`Both sides through Jobmesh: the ratio is "${on}" over "${off}", not Jobmesh over raw BullMQ.\n${alignedTable(header, group.map(row))}`);
  }
  const tabled = results.filter((r) => r.figureTable);
  for (const key of new Set(tabled.map((r) => JSON.stringify(r.figureTable)))) parts.push(figureTable(tabled.filter((r) => JSON.stringify(r.figureTable) === key)));
  const figures = results.flatMap(figureLines);
  if (figures.length) parts.push(['Recorded per run, median (min–max) over the measured rounds:', ...figures].join('\n'));
  const cpu = cpuTable(results);
  if (cpu) parts.push(cpu);
  return parts.join('\n\n');
}

/** Which children the CPU table names first, in this order; others follow by name. */
const PROCESS_ORDER = ['bench', 'redis', 'scheduler', 'worker-pool', 'dead-letter', 'raw-worker'];

/**
 * Where the CPU of the timed part went, a row a side: CPU µs a job in all (median over the
 * rounds), the cores that kept busy (CPU time over wall time, median), each process's µs a job
 * (median), and on the Jobmesh row raw's µs a job over Jobmesh's. On a machine whose cores both
 * sides keep busy, that last figure is about the most the jobs/s ratio can be: a side that needs
 * more CPU a job does fewer jobs a second on the same cores. '' when no run was measured (no /proc).
 */
function cpuTable(results: ScenarioResult[]): string {
  const measured = results.filter((r) => r.rounds.every((x) => x.raw.cpuMs && x.jobmesh.cpuMs));
  if (!measured.length) return '';
  const cpuMs = (m: Measurement, key?: string): number => (key === undefined ? Object.values(m.cpuMs!).reduce((a, b) => a + b, 0) : (m.cpuMs![key] ?? 0));
  const perJob = (m: Measurement, key?: string): number => (cpuMs(m, key) * 1000) / m.jobs;
  const rows = measured.flatMap((r) => {
    const of = (side: Side, key?: string): number => spread(r.rounds.map((x) => perJob(x[side], key))).median;
    const total = { raw: of('raw'), jobmesh: of('jobmesh') };
    return (['raw', 'jobmesh'] as Side[]).map((side) => {
      const runs = r.rounds.map((x) => x[side]);
      const cores = spread(runs.map((m) => cpuMs(m) / m.ms)).median;
      const waiting = runs.every((m) => m.waitMs) ? spread(runs.map((m) => Object.values(m.waitMs!).reduce((a, b) => a + b, 0) / m.ms)).median.toFixed(2) : '';
      const labels = [...new Set(runs.flatMap((m) => Object.keys(m.cpuMs!)))].sort(
        (a, b) => (PROCESS_ORDER.indexOf(a) + 1 || 99) - (PROCESS_ORDER.indexOf(b) + 1 || 99) || a.localeCompare(b),
      );
      const each = labels.map((l) => [l, of(side, l)] as const).filter(([, us]) => us >= 0.5);
      return [
        side === 'raw' ? r.title : '',
        r.sides[side],
        int.format(total[side]),
        cores.toFixed(2),
        waiting,
        side === 'jobmesh' ? (total.raw / total.jobmesh).toFixed(3) : '',
        each.map(([l, us]) => `${l} ${int.format(us)}`).join(', '),
      ];
    });
  });
  const header = ['scenario', 'side', 'CPU µs a job', 'cores busy', 'waiting for a CPU', 'raw/Jobmesh CPU a job', 'by process, µs a job'];
  return (
    'CPU in the timed part, median over the rounds (utime + stime of the bench and its children; waiting for a CPU: their threads\n' +
    `runnable but not running, on average, from /proc/<pid>/task/*/schedstat):\n${alignedTable(header, rows, [0, 1, 6])}`
  );
}

/**
 * The figure table of scenarios that share one (`FigureTable`): a row per scenario and figure, with
 * per side the median (min–max) over the rounds, then Jobmesh's minus raw's and Jobmesh's over
 * raw's, each of the medians with the range of the rounds' own.
 */
function figureTable(group: ScenarioResult[]): string {
  const { caption, keys, digits } = group[0]!.figureTable!;
  const format = new Intl.NumberFormat('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const of = (r: ScenarioResult, side: Side, key: string): number[] => r.rounds.map((x) => x[side].figures?.[key] ?? Number.NaN);
  const rows = group.flatMap((r) =>
    keys.map((key) => {
      const raw = spread(of(r, 'raw', key));
      const jobmesh = spread(of(r, 'jobmesh', key));
      const diffs = r.rounds.map((x) => (x.jobmesh.figures?.[key] ?? Number.NaN) - (x.raw.figures?.[key] ?? Number.NaN));
      const ratios = r.rounds.map((x) => (x.jobmesh.figures?.[key] ?? Number.NaN) / (x.raw.figures?.[key] ?? Number.NaN));
      const signed = (n: number): string => `${n > 0 ? '+' : ''}${format.format(n)}`;
      return [
        r.title,
        key,
        String(r.rounds.length),
        rate(raw, format),
        rate(jobmesh, format),
        `${signed(jobmesh.median - raw.median)} (${signed(Math.min(...diffs))}–${signed(Math.max(...diffs))})`,
        `${(jobmesh.median / raw.median).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`,
      ];
    }),
  );
  const header = ['scenario', 'figure', 'rounds', 'raw BullMQ: median (min–max)', 'Jobmesh: median (min–max)', 'Jobmesh − raw: of medians (rounds min–max)', 'Jobmesh/raw: of medians (rounds min–max)'];
  return `${caption}\n${alignedTable(header, rows)}`;
}

/**
 * `  end-to-end-traced, Jobmesh, tracing on: spans 20,000 (19,980–20,000)`, one line a side that
 * recorded figures; those of a figure table are in it instead.
 */
function figureLines(r: ScenarioResult): string[] {
  const tabled = new Set(r.figureTable?.keys);
  const format = r.figureTable ? decimals : int;
  return (['raw', 'jobmesh'] as Side[]).flatMap((side) => {
    const runs = r.rounds.map((x) => x[side].figures ?? {});
    const keys = [...new Set(runs.flatMap((f) => Object.keys(f)))].filter((k) => !tabled.has(k));
    if (!keys.length) return [];
    const each = keys.map((k) => `${k} ${rate(spread(runs.map((f) => f[k] ?? 0)), format)}`);
    return [`  ${r.name}, ${r.sides[side]}: ${each.join(', ')}`];
  });
}

/** A text table: the `text` columns (default: the first) are left-aligned, the rest (numbers) right-aligned. */
export function alignedTable(header: string[], rows: string[][], text: number[] = [0]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  const line = (cells: string[]): string => cells.map((cell, c) => (text.includes(c) ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export interface RunInfo {
  node: string;
  redis: string;
  cpus: number;
  /** What raw BullMQ's jobs were given (`--raw-options`); runs before 2026-12-02 evening gave them none ('bare'). */
  rawOptions?: string;
  /** Where raw BullMQ's Worker ran (`--raw-worker`); runs before 2026-12-03 ran it in the bench's process ('bench'). */
  rawWorker?: string;
}

/** A run's JSON line, as `formatJson` writes it and `compare` reads it. */
export interface BenchJson extends RunInfo {
  bench: 'jobmesh';
  at: string;
  scenarios: ScenarioJson[];
}

export interface ScenarioJson {
  name: string;
  /** Only for a feature scenario: its `raw` is Jobmesh with the feature off, its `jobmesh` with it on. */
  kind?: 'feature';
  /** Only for a feature scenario: what its `raw` and `jobmesh` sides are. */
  sides?: Record<Side, string>;
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
  figures?: Record<string, number>;
  /** CPU ms of the timed part by process (Measurement.cpuMs). */
  cpuMs?: Record<string, number>;
  /** ms each process waited for a CPU in the timed part (Measurement.waitMs). */
  waitMs?: Record<string, number>;
}

const round = (n: number, digits: number): number => Number(n.toFixed(digits));
const spreadJson = (s: Spread): Spread => ({ median: round(s.median, 0), min: round(s.min, 0), max: round(s.max, 0) });
const rounded = (byProcess: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(byProcess).map(([k, v]) => [k, round(v, 1)]));
const runJson = (m: Measurement): RunJson => ({
  jobsPerSec: round(m.jobsPerSec, 0),
  ms: round(m.ms, 1),
  ...(m.figures && { figures: m.figures }),
  ...(m.cpuMs && { cpuMs: rounded(m.cpuMs) }),
  ...(m.waitMs && { waitMs: rounded(m.waitMs) }),
});

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
      ...(r.kind === 'feature' && { kind: 'feature' as const, sides: r.sides }),
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
