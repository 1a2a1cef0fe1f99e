// Every rendered Kubernetes document, of every overlay, validated offline against the Kubernetes
// and KEDA schemas (kubernetes-models, @kubernetes-models/keda), and a deliberately broken fixture
// that must fail the same check.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const ROOT = resolve(__dirname, '../..');
const VALIDATE = resolve(__dirname, 'validate-manifests.mjs');
const OVERLAYS = ['dev', 'dev-keda', 'prod', 'prod-hpa'];

interface Verdict {
  kind: string;
  name: string;
  ok: boolean;
  error?: string;
}

function validate(yaml: string): Verdict[] {
  const out = execFileSync(process.execPath, [VALIDATE], { cwd: ROOT, input: yaml, encoding: 'utf8' });
  return out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Verdict);
}

const render = (overlay: string): string => execFileSync('kubectl', ['kustomize', resolve(ROOT, 'deploy/k8s/overlays', overlay)], { encoding: 'utf8' });

it.each(OVERLAYS)('renders overlays/%s into documents that all pass their schema', (overlay) => {
  const verdicts = validate(render(overlay));
  expect(verdicts.length).toBeGreaterThan(10);
  expect(verdicts.filter((v) => !v.ok)).toEqual([]);
});

it('validates the KEDA documents against KEDA’s own schema', () => {
  const kinds = validate(render('prod')).map((v) => v.kind);
  expect(kinds).toEqual(expect.arrayContaining(['ScaledObject', 'TriggerAuthentication', 'Deployment', 'PodDisruptionBudget']));
  expect(validate(render('prod-hpa')).map((v) => v.kind)).toContain('HorizontalPodAutoscaler');
});

it('fails the deliberately broken fixture, document by document', () => {
  const verdicts = validate(readFileSync(resolve(__dirname, 'fixtures/broken-manifests.yaml'), 'utf8'));
  expect(verdicts.map((v) => [v.name, v.ok])).toEqual([
    ['no-target', false],
    ['replicas-as-text', false],
    ['unknown-kind', false],
  ]);
  expect(verdicts[0]!.error).toMatch(/scaleTargetRef must have required property 'name'|scaleTargetRef/);
  expect(verdicts[1]!.error).toMatch(/replicas must be integer/);
  expect(verdicts[2]!.error).toBe('no schema for keda.sh/v1alpha1 ScaledObjectTypo');
});
