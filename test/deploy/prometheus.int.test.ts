// deploy/prometheus checked by the real promtool: the config (with the rule files it loads), the
// alert rules, and their unit tests (deploy/prometheus/rules/jobmesh.rules.test.yml).
// promtool comes with Debian's prometheus package; .ci/run installs it.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import YAML from 'yaml';

const ROOT = resolve(__dirname, '../..');
const CONFIG = 'deploy/prometheus/prometheus.yml';
const RULES = 'deploy/prometheus/rules/jobmesh.rules.yml';
const RULES_TEST = 'deploy/prometheus/rules/jobmesh.rules.test.yml';

function promtool(...args: string[]): string {
  try {
    return execFileSync('promtool', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') {
      throw new Error(
        'promtool is not installed: these tests check deploy/prometheus with it. ' +
          'Install it (Debian: `sudo apt-get install prometheus`, or .ci/run) and run them again.',
      );
    }
    throw new Error(`promtool ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
  }
}

describe('deploy/prometheus (promtool)', () => {
  it('has a config that promtool accepts, loading the Jobmesh rules', () => {
    // rule_files are relative to the config file, so the paths that resolve to /etc/prometheus/rules
    // in the container (docker-compose.yml mounts deploy/prometheus there) resolve here too.
    const config = YAML.parse(readFileSync(resolve(ROOT, CONFIG), 'utf8')) as { rule_files?: string[] };
    expect((config.rule_files ?? []).map((f) => resolve(ROOT, dirname(CONFIG), f))).toContain(resolve(ROOT, RULES));
    expect(promtool('check', 'config', CONFIG)).toMatch(/SUCCESS: .*is valid prometheus config file/);
  });

  it('has alert rules that promtool accepts', () => {
    expect(promtool('check', 'rules', RULES)).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('passes the rules’ unit tests, which cover every alert', () => {
    // The unit test file loads the rule file itself (rule_files, relative to it).
    const tests = YAML.parse(readFileSync(resolve(ROOT, RULES_TEST), 'utf8')) as {
      rule_files: string[];
      tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    expect(tests.rule_files.map((f) => resolve(ROOT, dirname(RULES_TEST), f))).toEqual([resolve(ROOT, RULES)]);
    const rules = YAML.parse(readFileSync(resolve(ROOT, RULES), 'utf8')) as { groups: { rules: { alert?: string }[] }[] };
    const alerts = rules.groups.flatMap((g) => g.rules.flatMap((r) => (r.alert ? [r.alert] : [])));
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
