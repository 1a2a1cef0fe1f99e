// Validates Kubernetes and KEDA manifests offline against their schemas, with the precompiled
// validators of kubernetes-models and @kubernetes-models/keda (ES modules only, hence a script of
// its own, run by test/deploy/manifests.int.test.ts). Reads YAML documents from stdin; prints one
// JSON line per document: { kind, name, ok, error? }. A kind it has no schema for is an error.
import { readFileSync } from 'node:fs';
import YAML from 'yaml';

/** apiVersion → the module that exports its kinds. */
function moduleOf(apiVersion) {
  if (apiVersion.endsWith('.keda.sh/v1alpha1') || apiVersion === 'keda.sh/v1alpha1') return `@kubernetes-models/keda/${apiVersion}`;
  return `kubernetes-models/${apiVersion}`;
}

const input = readFileSync(0, 'utf8');
for (const doc of YAML.parseAllDocuments(input)) {
  const o = doc.toJS();
  if (!o) continue;
  const where = { kind: o.kind, name: o.metadata?.name };
  let out;
  try {
    if (doc.errors.length) throw new Error(doc.errors.map((e) => e.message).join('; '));
    if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string') throw new Error('apiVersion and kind are required');
    let models;
    try {
      models = await import(moduleOf(o.apiVersion));
    } catch {
      throw new Error(`no schema for apiVersion ${o.apiVersion}`);
    }
    const Model = models[o.kind];
    if (typeof Model !== 'function') throw new Error(`no schema for ${o.apiVersion} ${o.kind}`);
    new Model(o).validate();
    out = { ...where, ok: true };
  } catch (err) {
    out = { ...where, ok: false, error: err.message };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
