/**
 * A multi-step data-processing job: fetch a CSV of sales → validate it → aggregate it by region →
 * store the report as a JSON file. Run it with worker-pool (see README.md):
 *
 *   jobmesh enqueue data-pipeline import --data '{"dataset":"q3","csv":"region,product,quantity,unit_price\nnorth,widget,3,2.50"}'
 *
 * Each step's output is persisted (runSteps → ctx.step), so a retry resumes at the step that
 * failed: a CSV fetched once is not fetched again because the disk was full when storing.
 * Bad input fails the job at once with UnrecoverableError: retrying cannot fix it.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineProcessor, runSteps, type Step, UnrecoverableError } from '@jobmesh/sdk';

/** The job's input: a dataset name and its CSV, inline or at an http(s) URL. */
export interface ImportData {
  /** Names the report file: letters, digits, '-' and '_'. */
  dataset: string;
  /** CSV text with the header `region,product,quantity,unit_price`. */
  csv?: string;
  /** Where to fetch the CSV from, instead of `csv`. */
  url?: string;
}

export interface SaleRow {
  region: string;
  product: string;
  quantity: number;
  unitPrice: number;
}

export interface RegionTotal {
  region: string;
  orders: number;
  units: number;
  /** In the CSV's currency, rounded to cents. */
  revenue: number;
}

export interface ImportResult {
  dataset: string;
  rows: number;
  regions: RegionTotal[];
  /** Where the report was written. */
  storedAt: string;
}

/** Where reports go. A real pipeline would write to a database or an object store. */
export const REPORT_DIR = join(tmpdir(), 'jobmesh-data-pipeline');

const HEADER = ['region', 'product', 'quantity', 'unit_price'];
/** Errors listed in one validation failure; the rest are counted. */
const MAX_LISTED_PROBLEMS = 5;

/** Gets the CSV text. A 4xx will not go away on a retry; a 5xx or a network error may. */
const fetchCsv: Step<ImportData, string> = {
  name: 'fetch',
  async run(input, ctx) {
    if (typeof input.csv === 'string') return input.csv;
    const res = await fetch(input.url!, { signal: ctx.signal });
    if (res.status >= 400 && res.status < 500) throw new UnrecoverableError(`GET ${input.url} answered ${res.status}`);
    if (!res.ok) throw new Error(`GET ${input.url} answered ${res.status}; will retry`);
    return res.text();
  },
};

/** Parses every row and rejects the whole file if any row is wrong: partial imports mislead. */
const validate: Step<string, SaleRow[]> = {
  name: 'validate',
  run(csv) {
    const [head = '', ...lines] = csv.trim().split(/\r?\n/);
    const columns = head.split(',').map((c) => c.trim().toLowerCase());
    if (columns.join(',') !== HEADER.join(',')) {
      throw new UnrecoverableError(`the CSV header must be "${HEADER.join(',')}", got "${head}"`);
    }
    const rows: SaleRow[] = [];
    const problems: string[] = [];
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      const [region = '', product = '', quantity = '', unitPrice = ''] = line.split(',').map((c) => c.trim());
      const row = { region, product, quantity: Number(quantity), unitPrice: Number(unitPrice) };
      const wrong = [
        !row.region && 'region is empty',
        !row.product && 'product is empty',
        !(Number.isInteger(row.quantity) && row.quantity > 0) && `quantity "${quantity}" is not a whole number above 0`,
        !(Number.isFinite(row.unitPrice) && row.unitPrice >= 0) && `unit_price "${unitPrice}" is not a price`,
      ].filter(Boolean);
      if (wrong.length) problems.push(`line ${i + 2}: ${wrong.join(', ')}`);
      else rows.push(row);
    });
    if (problems.length) {
      const more = problems.length > MAX_LISTED_PROBLEMS ? `; and ${problems.length - MAX_LISTED_PROBLEMS} more` : '';
      throw new UnrecoverableError(`${problems.length} invalid row${problems.length === 1 ? '' : 's'}: ${problems.slice(0, MAX_LISTED_PROBLEMS).join('; ')}${more}`);
    }
    if (!rows.length) throw new UnrecoverableError('the CSV has no rows');
    return rows;
  },
};

/** Totals per region, largest revenue first. */
const transform: Step<SaleRow[], RegionTotal[]> = {
  name: 'transform',
  run(rows) {
    const byRegion = new Map<string, RegionTotal>();
    for (const r of rows) {
      const t = byRegion.get(r.region) ?? { region: r.region, orders: 0, units: 0, revenue: 0 };
      t.orders += 1;
      t.units += r.quantity;
      t.revenue += r.quantity * r.unitPrice;
      byRegion.set(r.region, t);
    }
    return [...byRegion.values()]
      .map((t) => ({ ...t, revenue: Math.round(t.revenue * 100) / 100 }))
      .sort((a, b) => b.revenue - a.revenue || a.region.localeCompare(b.region));
  },
};

/**
 * Writes the report. The job may run twice (at-least-once: a worker can die after writing but
 * before acknowledging), so the write is idempotent: same path, whole file via rename.
 */
function store(dataset: string, jobId: string): Step<RegionTotal[], { regions: RegionTotal[]; storedAt: string }> {
  return {
    name: 'store',
    async run(regions) {
      await mkdir(REPORT_DIR, { recursive: true });
      const storedAt = join(REPORT_DIR, `${dataset}.json`);
      const partial = `${storedAt}.${jobId}.tmp`;
      await writeFile(partial, `${JSON.stringify({ dataset, jobId, regions }, null, 2)}\n`);
      await rename(partial, storedAt);
      return { regions, storedAt };
    },
  };
}

/** Rejects malformed job data before any work; the dataset name becomes a file name. */
function checkInput(data: Partial<ImportData>): ImportData {
  if (typeof data.dataset !== 'string' || !/^[A-Za-z0-9_-]{1,100}$/.test(data.dataset)) {
    throw new UnrecoverableError('data.dataset must be 1-100 letters, digits, "-" or "_"');
  }
  const hasCsv = typeof data.csv === 'string';
  const hasUrl = typeof data.url === 'string' && /^https?:\/\//.test(data.url);
  if (hasCsv === hasUrl) throw new UnrecoverableError('give either data.csv (CSV text) or data.url (an http(s) URL), not both');
  return data as ImportData;
}

export const importSales = defineProcessor<Partial<ImportData>, ImportResult>({
  queue: 'data-pipeline',
  name: 'import',
  async process(job, ctx) {
    const input = checkInput(job.data);
    // Progress goes 25, 50, 75, 100 as the steps finish; WatchJob streams it.
    const { regions, storedAt } = await runSteps<{ regions: RegionTotal[]; storedAt: string }>(ctx, input, [
      fetchCsv,
      validate,
      transform,
      store(input.dataset, job.id),
    ]);
    await ctx.log(`stored ${regions.length} regions of ${input.dataset} at ${storedAt}`);
    return { dataset: input.dataset, rows: regions.reduce((n, r) => n + r.orders, 0), regions, storedAt };
  },
});
