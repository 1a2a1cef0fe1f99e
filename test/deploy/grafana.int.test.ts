// deploy/grafana's dashboard as Grafana and Prometheus read it: the JSON's structure (data sources,
// the queue variable, panels on the grid), the provider that loads it against docker-compose.yml's
// mounts, and every panel query parsed by the real promtool (each written as a recording rule into
// a temporary rules file for `promtool check rules`). test/deploy/prometheus-scrape.int.test.ts runs
// the same queries against a real Prometheus scraping real services.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import YAML from 'yaml';
import { dashboardQueries, DASHBOARD, type Dashboard, type Panel, panelsOf } from './fixtures/dashboard';
import { promtool } from './fixtures/promtool';

const ROOT = resolve(__dirname, '../..');
const read = (path: string): string => readFileSync(resolve(ROOT, path), 'utf8');
const PROVISIONING = 'deploy/grafana/provisioning';

interface ComposeService {
  volumes?: string[];
}

const compose = YAML.parse(read('docker-compose.yml')) as { services: Record<string, ComposeService> };
/** [source, target] of each of Grafana's bind mounts, sources relative to the repository. */
const grafanaMounts = (compose.services.grafana?.volumes ?? [])
  .map((v) => v.split(':') as [string, string])
  .filter(([source]) => source.startsWith('.'))
  .map(([source, target]): [string, string] => [posix.normalize(source), target]);

const dashboard = JSON.parse(read(DASHBOARD)) as Dashboard;
const panels = panelsOf(dashboard);

describe('deploy/grafana dashboard', () => {
  it('is provisioned from the directory docker-compose.yml mounts where the provider looks', () => {
    // The provisioning directory is mounted where Grafana reads dashboard providers…
    const [providers] = grafanaMounts.find(([, target]) => target === '/etc/grafana/provisioning/dashboards') ?? [];
    expect(providers).toBe(`${PROVISIONING}/dashboards`);
    const files = readdirSync(resolve(ROOT, providers!)).filter((f) => /\.ya?ml$/.test(f));
    expect(files.length).toBeGreaterThan(0);
    const paths = files.flatMap((f) => {
      const doc = YAML.parse(read(posix.join(providers!, f))) as { apiVersion: number; providers: { type: string; options: { path: string } }[] };
      expect(doc.apiVersion).toBe(1);
      return doc.providers.map((p) => ({ type: p.type, path: p.options.path }));
    });
    // …and each provider's path is the target of a mount holding the dashboard JSON.
    for (const { type, path } of paths) {
      expect(type).toBe('file');
      const mount = grafanaMounts.find(([, target]) => target === path);
      expect({ path, mounted: mount?.[0] }).toEqual({ path, mounted: posix.dirname(DASHBOARD) });
    }
    expect(paths.length).toBeGreaterThan(0);
  });

  it('queries only the data source that Grafana is provisioned with, in every panel and target', () => {
    const sources = (YAML.parse(read(`${PROVISIONING}/datasources/datasources.yml`)) as { datasources: { uid: string; type: string }[] }).datasources;
    const prometheus = sources.find((d) => d.type === 'prometheus')!;
    expect(prometheus).toBeDefined();
    const expected = { type: 'prometheus', uid: prometheus.uid };
    for (const p of panels.filter((q) => q.type !== 'row')) {
      expect({ panel: p.title, datasource: p.datasource }).toEqual({ panel: p.title, datasource: expected });
      expect(p.targets?.length).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        expect({ panel: p.title, refId: t.refId, datasource: t.datasource }).toEqual({ panel: p.title, refId: t.refId, datasource: expected });
        expect(t.expr.trim()).not.toBe('');
      }
    }
    const variable = dashboard.templating.list.find((v) => v.name === 'queue');
    expect(variable?.datasource).toEqual(expected);
  });

  it('has a multi-value queue variable, with All as a regex, that every queue panel filters by', () => {
    const variable = dashboard.templating.list.find((v) => v.name === 'queue')!;
    expect(variable).toMatchObject({ type: 'query', multi: true, includeAll: true, allValue: '.*' });
    // The values are the queues the monitor reports (one series per queue, whatever its state).
    expect(variable.definition).toBe('label_values(jobmesh_queue_length, queue)');
    expect(variable.query).toMatchObject({ query: variable.definition });
    // Every panel of the queues row filters every query by it.
    const queueRow = panels.filter((p) => p.type !== 'row' && rowOf(p)?.title.startsWith('Queues'));
    expect(queueRow.length).toBeGreaterThanOrEqual(10);
    for (const p of queueRow) for (const t of p.targets ?? []) expect({ panel: p.title, expr: t.expr }).toEqual({ panel: p.title, expr: expect.stringContaining('queue=~"$queue"') });
  });

  it('has the panels the issue lists', () => {
    const titles = panels.map((p) => p.title);
    for (const want of [
      'Throughput',
      'Failure ratio',
      'Backlog by state',
      'Oldest waiting age',
      'Processing time p50 / p95',
      'Workers',
      'Dead letters stored by category',
      'Dead letters arriving by category',
    ]) {
      expect(titles).toContain(want);
    }
  });

  it('lays the panels out on the 24-column grid without overlaps, each with its own id', () => {
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const placed = panels.map((p) => ({ title: p.title, ...p.gridPos }));
    for (const p of placed) expect(p.x + p.w).toBeLessThanOrEqual(24);
    for (const [i, a] of placed.entries()) {
      for (const b of placed.slice(i + 1)) {
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        expect({ a: a.title, b: b.title, overlap }).toEqual({ a: a.title, b: b.title, overlap: false });
      }
    }
  });

  it('has only PromQL that promtool accepts in its panels and its variable', () => {
    const queries = dashboardQueries(dashboard, { queue: '.*', rateInterval: '1m' });
    expect(queries.length).toBeGreaterThanOrEqual(panels.filter((p) => p.type !== 'row').length);
    // Grafana's variables are gone; what is left is Prometheus's.
    for (const q of queries) expect({ q: q.name, expr: q.expr }).toEqual({ q: q.name, expr: expect.not.stringMatching(/\$/) });
    const dir = mkdtempSync(join(tmpdir(), 'jobmesh-dashboard-'));
    try {
      const file = join(dir, 'dashboard.rules.yml');
      const groups = [{ name: 'dashboard', rules: queries.map((q) => ({ record: `jobmesh_dashboard:${q.name}`, expr: q.expr })) }];
      writeFileSync(file, YAML.stringify({ groups }));
      expect(promtool('check', 'rules', file)).toMatch(new RegExp(`SUCCESS: ${queries.length} rules found`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The row a panel sits under: the nearest row panel above it. */
function rowOf(panel: Panel): Panel | undefined {
  return panels
    .filter((p) => p.type === 'row' && p.gridPos.y <= panel.gridPos.y)
    .sort((a, b) => b.gridPos.y - a.gridPos.y)[0];
}
