import { readFileSync } from 'node:fs';
import { type BenchJson, alignedTable } from './report';

const USAGE = `usage: node bench/dist/compare.js A B

  A, B  files holding the output of two bench runs (the whole stdout, or its last line)

For each scenario in both runs: each run's ratio of medians with its rounds' range, and how far
B's medians are from A's (B / A − 1) for raw BullMQ, Jobmesh and the ratio. For a feature
scenario (end-to-end-traced) "raw" is Jobmesh with the feature off and "Jobmesh" with it on.`;

/** The last line of `file` that is a bench JSON line. */
function benchJson(file: string): BenchJson {
  const lines = readFileSync(file, 'utf8').split('\n').reverse();
  for (const line of lines) {
    if (!line.startsWith('{')) continue;
    const parsed = JSON.parse(line) as Partial<BenchJson>;
    if (parsed.bench === 'jobmesh' && Array.isArray(parsed.scenarios) && parsed.scenarios.every((s) => Array.isArray(s.rounds))) return parsed as BenchJson;
  }
  throw new Error(`${file} holds no bench JSON line with rounds (a line starting {"bench":"jobmesh", from a bench that has --rounds)`);
}

const pct = (b: number, a: number): string => {
  const d = (b / a - 1) * 100;
  return `${d >= 0 ? '+' : ''}${d.toFixed(1)} %`;
};

const ratio = (r: BenchJson['scenarios'][number]['ratio']): string => `${r.ofMedians.toFixed(3)} (${r.min.toFixed(3)}–${r.max.toFixed(3)})`;

function main(argv: string[]): number {
  if (argv.length !== 2 || argv.includes('--help') || argv.includes('-h')) {
    console.error(USAGE);
    return argv.includes('--help') || argv.includes('-h') ? 0 : 2;
  }
  const [a, b] = argv.map(benchJson) as [BenchJson, BenchJson];
  const rows: string[][] = [];
  for (const sa of a.scenarios) {
    const sb = b.scenarios.find((s) => s.name === sa.name);
    if (!sb) continue;
    rows.push([
      sa.name,
      ratio(sa.ratio),
      ratio(sb.ratio),
      pct(sb.raw.median, sa.raw.median),
      pct(sb.jobmesh.median, sa.jobmesh.median),
      pct(sb.ratio.ofMedians, sa.ratio.ofMedians),
    ]);
  }
  const rawOf = (r: BenchJson): string => r.rawOptions ?? 'bare';
  const workerOf = (r: BenchJson): string => r.rawWorker ?? 'bench';
  const run = (r: BenchJson): string => `${r.at} (${r.node}, Redis ${r.redis}, ${r.cpus} cpus, raw options ${rawOf(r)}, raw worker in ${workerOf(r) === 'bench' ? "the bench's process" : 'a process of its own'})`;
  console.log(`A: ${run(a)}\nB: ${run(b)}\n`);
  if (rawOf(a) !== rawOf(b)) console.log(`The raw sides differ (--raw-options ${rawOf(a)} against ${rawOf(b)}): raw BullMQ did different work a job in the two runs.\n`);
  if (workerOf(a) !== workerOf(b)) console.log(`The raw sides differ (--raw-worker ${workerOf(a)} against ${workerOf(b)}): raw BullMQ's Worker ran in different places in the two runs.\n`);
  console.log(alignedTable(['scenario', 'A Jobmesh/raw (min–max)', 'B Jobmesh/raw (min–max)', 'raw median B/A', 'Jobmesh median B/A', 'ratio B/A'], rows));
  // A feature scenario's two sides are both Jobmesh: say what "raw" and "Jobmesh" stand for there.
  for (const sa of a.scenarios) {
    if (sa.sides && b.scenarios.some((s) => s.name === sa.name)) {
      console.log(`\n${sa.name}: both sides Jobmesh; "raw" is ${sa.sides.raw}, "Jobmesh" is ${sa.sides.jobmesh}, the ratio is on/off`);
    }
  }
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  console.error(`compare: ${(err as Error).message}`);
  process.exitCode = 1;
}
