// deploy/prometheus checked by the real promtool: the config (with the rule files it loads), the
// alert rules, and their unit tests (deploy/prometheus/rules/jobmesh.rules.test.yml); and each
// alert's labels, annotations and runbook section in docs/operations.md.
// promtool comes with Debian's prometheus package; .ci/run installs it.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import YAML from 'yaml';
import { promtool } from './fixtures/promtool';

const ROOT = resolve(__dirname, '../..');
const CONFIG = 'deploy/prometheus/prometheus.yml';
const RULES = 'deploy/prometheus/rules/jobmesh.rules.yml';
const RULES_TEST = 'deploy/prometheus/rules/jobmesh.rules.test.yml';
const THRESHOLDS = 'deploy/prometheus/rules/queue-thresholds.yml';
/** The unit test's own queue-thresholds.yml, written as docs/operations.md shows. */
const THRESHOLDS_EXAMPLE = 'deploy/prometheus/rules/testdata/queue-thresholds.yml';
const RUNBOOKS = 'docs/operations.md';

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const readRules = (file: string): Rule[] =>
  (YAML.parse(readFileSync(resolve(ROOT, file), 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);

describe('deploy/prometheus (promtool)', () => {
  it('has a config that promtool accepts, loading the Jobmesh rules', () => {
    // rule_files are relative to the config file, so the paths that resolve to /etc/prometheus/rules
    // in the container (docker-compose.yml mounts deploy/prometheus there) resolve here too.
    const config = YAML.parse(readFileSync(resolve(ROOT, CONFIG), 'utf8')) as { rule_files?: string[] };
    expect((config.rule_files ?? []).map((f) => resolve(ROOT, dirname(CONFIG), f))).toEqual([resolve(ROOT, RULES), resolve(ROOT, THRESHOLDS)]);
    expect(promtool('check', 'config', CONFIG)).toMatch(/SUCCESS: .*is valid prometheus config file/);
  });

  it('has alert rules that promtool accepts', () => {
    expect(promtool('check', 'rules', RULES)).toMatch(/SUCCESS: \d+ rules found/);
    // No per-queue threshold by default; the example the docs give is valid too.
    expect(promtool('check', 'rules', THRESHOLDS)).toMatch(/SUCCESS: 0 rules found/);
    expect(promtool('check', 'rules', THRESHOLDS_EXAMPLE)).toMatch(/SUCCESS: 1 rules found/);
    const doc = readFileSync(resolve(ROOT, RUNBOOKS), 'utf8');
    const example = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('jobmesh:queue_max_wait_seconds'));
    expect(YAML.parse(example ?? '')).toEqual(YAML.parse(readFileSync(resolve(ROOT, THRESHOLDS_EXAMPLE), 'utf8')));
  });

  it('gives every alert a severity, a summary, a description naming its queue, and a runbook section', () => {
    const doc = readFileSync(resolve(ROOT, RUNBOOKS), 'utf8');
    // GitHub's anchors: a heading in lower case, spaces as dashes, punctuation dropped.
    const anchors = new Set([...doc.matchAll(/^#{2,4} (.+)$/gm)].map((m) => m[1]!.trim().toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-')));
    const alerts = readRules(RULES).filter((r) => r.alert);
    expect(alerts.length).toBeGreaterThanOrEqual(17);
    const cases = (YAML.parse(readFileSync(resolve(ROOT, RULES_TEST), 'utf8')) as {
      tests: { alert_rule_test?: { alertname: string; exp_alerts: { exp_labels?: Record<string, string> }[] }[] }[];
    }).tests.flatMap((t) => t.alert_rule_test ?? []);
    const perQueue = new Set(cases.filter((c) => c.exp_alerts.some((a) => a.exp_labels?.queue)).map((c) => c.alertname));
    expect(perQueue.size).toBeGreaterThanOrEqual(8);
    for (const r of alerts) {
      const anchor = r.alert!.toLowerCase();
      expect({ alert: r.alert, severity: r.labels?.severity }).toEqual({ alert: r.alert, severity: expect.stringMatching(/^(critical|warning)$/) });
      expect({ alert: r.alert, runbook: r.annotations?.runbook_url }).toEqual({ alert: r.alert, runbook: `${RUNBOOKS}#${anchor}` });
      expect({ alert: r.alert, section: anchors.has(anchor) }).toEqual({ alert: r.alert, section: true });
      expect(r.annotations?.summary).toBeTruthy();
      expect(r.annotations?.description).toBeTruthy();
      // An alert per queue (one its unit test expects with a queue label) says which queue, in its
      // summary and in its description.
      if (perQueue.has(r.alert!)) {
        expect({ alert: r.alert, summary: r.annotations!.summary, description: r.annotations!.description }).toEqual({
          alert: r.alert,
          summary: expect.stringContaining('{{ $labels.queue }}'),
          description: expect.stringContaining('{{ $labels.queue }}'),
        });
      }
    }
    // …and the runbook lists no alert that does not exist.
    const documented = [...doc.matchAll(/^### (Jobmesh\w+)$/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(alerts.map((r) => r.alert).sort());
  });

  it('passes the rules’ unit tests, which cover every alert', () => {
    // The unit test file loads the rule file itself (rule_files, relative to it).
    const tests = YAML.parse(readFileSync(resolve(ROOT, RULES_TEST), 'utf8')) as {
      rule_files: string[];
      tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    expect(tests.rule_files.map((f) => resolve(ROOT, dirname(RULES_TEST), f))).toEqual([resolve(ROOT, RULES), resolve(ROOT, THRESHOLDS_EXAMPLE)]);
    const alerts = readRules(RULES).flatMap((r) => (r.alert ? [r.alert] : []));
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const alert of alerts) {
      const mine = cases.filter((c) => c.alertname === alert);
      // Each alert is seen firing, and seen not firing where it must not.
      expect({ alert, fires: mine.some((c) => c.exp_alerts.length > 0), quiet: mine.some((c) => c.exp_alerts.length === 0) }).toEqual({
        alert,
        fires: true,
        quiet: true,
      });
    }
    expect(promtool('test', 'rules', RULES_TEST)).toMatch(/SUCCESS/);
  });
});
