// The deployment files read as their tools read them: `kubectl kustomize` renders each overlay, the
// compose, Prometheus and Grafana files are parsed as YAML, the Dockerfiles are split into stages.
// Nothing here needs a Docker engine or a cluster.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { posix, resolve } from 'node:path';
import { authOffInProduction, commonEnvSchema, parseConfigFile, parseEnv, plaintextExposure, splitHostPort, tlsSettings } from '@jobmesh/config';
import YAML from 'yaml';
import { deadLetterEnvSchema } from '@jobmesh/dead-letter';
import { monitorEnvSchema } from '@jobmesh/monitor';
import { schedulerEnvSchema } from '@jobmesh/scheduler';
import { workerPoolEnvSchema } from '@jobmesh/worker-pool';

const ROOT = resolve(__dirname, '../..');
const read = (path: string): string => readFileSync(resolve(ROOT, path), 'utf8');
const GRPC_PORT = 50051;
const HTTP_PORT = 9464;
const ENV_KEYS = new Set(Object.keys(commonEnvSchema.shape));

/** Every Jobmesh service, by the script its container runs, with the settings it reads. */
const SERVICES = {
  scheduler: schedulerEnvSchema,
  'worker-pool': workerPoolEnvSchema,
  'dead-letter': deadLetterEnvSchema,
  monitor: monitorEnvSchema,
} as const;
type ServiceName = keyof typeof SERVICES;
const SERVICE_NAMES = Object.keys(SERVICES) as ServiceName[];
const scriptOf = (service: ServiceName): string => `services/${service}/dist/main.js`;
const serviceOfScript = (script: string | undefined): ServiceName | undefined => SERVICE_NAMES.find((n) => scriptOf(n) === script);

/**
 * How long SIGTERM may take at most: the worker-pool waits up to the grace for active jobs, then up
 * to the grace again for gRPC calls (services/worker-pool/src/start.ts); the others wait once.
 */
const maxStopMs = (service: ServiceName, env: Record<string, unknown>): number =>
  (service === 'worker-pool' ? 2 : 1) * (env.JOBMESH_SHUTDOWN_GRACE as number);

// ---------------------------------------------------------------------------------------------
// Kubernetes

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  data?: Record<string, string>;
  spec?: any; // kinds differ; the tests read it field by field
}

interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: {
    name: string;
    value?: string;
    valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean }; fieldRef?: { fieldPath: string } };
  }[];
  envFrom?: { configMapRef?: { name: string } }[];
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  livenessProbe?: Probe;
  startupProbe?: Probe;
  securityContext?: { runAsNonRoot?: boolean; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
}

interface Volume {
  name: string;
  configMap?: { name: string };
  secret?: { secretName: string; items?: { key: string; path: string }[] };
}

interface Probe {
  grpc?: { port: number };
  httpGet?: { path: string; port: number | string };
  exec?: { command: string[] };
  tcpSocket?: { port: number | string };
}

function parseYamlDocuments(text: string, source: string): unknown[] {
  return YAML.parseAllDocuments(text).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors[0]!.message}`);
    return doc.toJS();
  });
}

function kustomize(dir: string): K8sObject[] {
  let out: string;
  try {
    out = execFileSync('kubectl', ['kustomize', resolve(ROOT, dir)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new Error(
        'kubectl is not installed: these tests render deploy/k8s with `kubectl kustomize`. ' +
          'Install kubectl (https://kubernetes.io/docs/tasks/tools/) and run them again.',
      );
    }
    throw new Error(`kubectl kustomize ${dir} failed:\n${e.stderr || e.message}`);
  }
  return parseYamlDocuments(out, `kubectl kustomize ${dir}`).filter((o): o is K8sObject => o !== null);
}

const ofKind = (objects: K8sObject[], kind: string): K8sObject[] => objects.filter((o) => o.kind === kind);

function named(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} named ${name} in the render`);
  return found;
}

const containersOf = (d: K8sObject): Container[] => d.spec.template.spec.containers as Container[];

/** The Deployments that run the Jobmesh image (the dev overlay also has a Redis). */
const jobmeshDeployments = (objects: K8sObject[]): K8sObject[] =>
  ofKind(objects, 'Deployment').filter((d) => containersOf(d).some((c) => /^jobmesh(:|$)/.test(c.image)));

const jobmeshContainer = (d: K8sObject): Container => containersOf(d).find((c) => /^jobmesh(:|$)/.test(c.image))!;

function portNumber(c: Container, port: number | string): number | undefined {
  return typeof port === 'number' ? port : c.ports?.find((p) => p.name === port)?.containerPort;
}

/** The service's environment as the pod gets it: the ConfigMap behind envFrom, then `env`, secrets resolved. */
function podEnv(objects: K8sObject[], c: Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, named(objects, 'ConfigMap', from.configMapRef.name).data);
  }
  for (const e of c.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref) {
      const value = objects.find((o) => o.kind === 'Secret' && o.metadata.name === ref.name)?.data?.[ref.key];
      if (value !== undefined) env[e.name] = Buffer.from(value, 'base64').toString('utf8');
      // An optional Secret nobody created leaves the variable unset, as the kubelet does.
      else if (ref.optional) continue;
      // A Secret the overlay leaves to the operator (prod): stand in a valid URL to check the rest.
      else if (e.name === 'REDIS_URL') env[e.name] = 'redis://redis.example:6379';
      else env[e.name] = `<secret ${ref.name}/${ref.key}>`;
    } else if (e.valueFrom?.fieldRef) {
      env[e.name] = `<${e.valueFrom.fieldRef.fieldPath}>`;
    } else if (e.value !== undefined) {
      env[e.name] = e.value;
    }
  }
  return env;
}

/** Which Jobmesh service a Deployment runs, by its script. */
function serviceOf(d: K8sObject): ServiceName {
  const service = serviceOfScript(jobmeshContainer(d).args?.[0]);
  if (!service) throw new Error(`${d.metadata.name} runs no known service: ${jobmeshContainer(d).args?.join(' ')}`);
  return service;
}

const selects = (s: K8sObject, d: K8sObject): boolean =>
  Object.entries(s.spec.selector as Record<string, string>).every(([k, v]) => d.spec.template.metadata.labels[k] === v);

/** What scales a Deployment: a KEDA ScaledObject or an HPA targeting it, with its bounds. */
function autoscalerOf(objects: K8sObject[], deployment: string): { kind: string; min: number; max: number } | undefined {
  const so = ofKind(objects, 'ScaledObject').find((o) => o.spec.scaleTargetRef?.name === deployment);
  if (so) return { kind: 'ScaledObject', min: (so.spec.minReplicaCount as number | undefined) ?? 0, max: (so.spec.maxReplicaCount as number | undefined) ?? 100 };
  const hpa = ofKind(objects, 'HorizontalPodAutoscaler').find((o) => o.spec.scaleTargetRef?.name === deployment);
  return hpa ? { kind: 'HorizontalPodAutoscaler', min: (hpa.spec.minReplicas as number | undefined) ?? 1, max: hpa.spec.maxReplicas as number } : undefined;
}

describe.each(['dev', 'dev-keda', 'prod', 'prod-hpa'])('deploy/k8s/overlays/%s', (overlay) => {
  let objects: K8sObject[];

  beforeAll(() => {
    objects = kustomize(`deploy/k8s/overlays/${overlay}`);
  });

  it('renders a Deployment and a Service for every service, labelled as part of Jobmesh', () => {
    expect(jobmeshDeployments(objects).map((d) => d.metadata.name).sort()).toEqual(SERVICE_NAMES.map((n) => `jobmesh-${n}`).sort());
    for (const name of SERVICE_NAMES) {
      const d = named(objects, 'Deployment', `jobmesh-${name}`);
      expect({ deployment: d.metadata.name, runs: serviceOf(d) }).toEqual({ deployment: d.metadata.name, runs: name });
      // gRPC for clients (the worker-pool's: remote workers), and HTTP.
      const service = named(objects, 'Service', `jobmesh-${name}`);
      expect(selects(service, d)).toBe(true);
      expect((service.spec.ports as { port: number }[]).map((p) => p.port)).toEqual(expect.arrayContaining([GRPC_PORT, HTTP_PORT]));
    }
    for (const o of objects.filter((o) => ['Deployment', 'Service', 'PodDisruptionBudget'].includes(o.kind))) {
      expect({ object: `${o.kind}/${o.metadata.name}`, labels: o.metadata.labels }).toEqual({
        object: `${o.kind}/${o.metadata.name}`,
        labels: expect.objectContaining({
          'app.kubernetes.io/name': expect.any(String),
          'app.kubernetes.io/part-of': 'jobmesh',
          'app.kubernetes.io/component': expect.any(String),
        }),
      });
    }
    for (const d of ofKind(objects, 'Deployment')) {
      expect(d.spec.template.metadata.labels).toMatchObject({ 'app.kubernetes.io/part-of': 'jobmesh' });
      expect(d.spec.template.metadata.labels).toMatchObject(d.spec.selector.matchLabels);
    }
  });

  it('has every Jobmesh container listen on gRPC 50051 and HTTP 9464, probed there', () => {
    for (const d of jobmeshDeployments(objects)) {
      const c = jobmeshContainer(d);
      const where = d.metadata.name;
      expect(c.ports?.map((p) => p.containerPort)).toEqual(expect.arrayContaining([GRPC_PORT, HTTP_PORT]));
      // Ready: gRPC health (NOT_SERVING from SIGTERM on), or /readyz (Redis answers).
      const ready = c.readinessProbe;
      const readiness = ready?.grpc ? `grpc:${ready.grpc.port}` : ready?.httpGet ? `${ready.httpGet.path}:${portNumber(c, ready.httpGet.port)}` : undefined;
      expect({ where, readiness }).toEqual({ where, readiness: expect.stringMatching(new RegExp(`^(grpc:${GRPC_PORT}|/readyz:${HTTP_PORT})$`)) });
      // /readyz answers before gRPC listens: then a startup probe on the gRPC port holds readiness back
      // until it does (gRPC health, or in production, where gRPC is TLS, a TCP connection).
      const startup = c.startupProbe?.grpc ? c.startupProbe.grpc.port : c.startupProbe?.tcpSocket && portNumber(c, c.startupProbe.tcpSocket.port);
      if (!ready?.grpc) expect({ where, startup }).toEqual({ where, startup: GRPC_PORT });
      expect(c.livenessProbe?.httpGet?.path).toBe('/livez');
      expect(portNumber(c, c.livenessProbe!.httpGet!.port)).toBe(HTTP_PORT);
      if (c.startupProbe?.httpGet) expect(portNumber(c, c.startupProbe.httpGet.port)).toBe(HTTP_PORT);
    }
  });

  it('has Prometheus scrape every Jobmesh pod’s metrics port, and gives pods time to stop', () => {
    for (const d of jobmeshDeployments(objects)) {
      const where = d.metadata.name;
      expect({ where, annotations: d.spec.template.metadata.annotations }).toEqual({
        where,
        annotations: expect.objectContaining({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(HTTP_PORT), 'prometheus.io/path': '/metrics' }),
      });
      // The kubelet kills the pod after terminationGracePeriodSeconds: longer than SIGTERM may take.
      const env = parseEnv(SERVICES[serviceOf(d)], podEnv(objects, jobmeshContainer(d)));
      const graceMs = (d.spec.template.spec.terminationGracePeriodSeconds as number) * 1000;
      expect({ where, graceMs }).toEqual({ where, graceMs: expect.any(Number) });
      expect(graceMs).toBeGreaterThan(maxStopMs(serviceOf(d), env));
    }
  });

  it('runs every container as non-root without privilege escalation, with resources set', () => {
    for (const d of ofKind(objects, 'Deployment')) {
      const pod = d.spec.template.spec;
      for (const c of containersOf(d)) {
        const where = `${d.metadata.name}/${c.name}`;
        expect({ where, runAsNonRoot: c.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot }).toEqual({ where, runAsNonRoot: true });
        expect({ where, allowPrivilegeEscalation: c.securityContext?.allowPrivilegeEscalation }).toEqual({ where, allowPrivilegeEscalation: false });
        expect({ where, resources: (c as { resources?: unknown }).resources }).toEqual({ where, resources: expect.objectContaining({ requests: expect.any(Object) }) });
      }
    }
    // Jobmesh containers: CPU and memory requested, memory bounded, nothing more than the defaults allow.
    for (const d of jobmeshDeployments(objects)) {
      const c = jobmeshContainer(d);
      const where = d.metadata.name;
      expect({ where, requests: Object.keys(c.resources?.requests ?? {}).sort(), memoryLimit: c.resources?.limits?.memory }).toEqual({
        where,
        requests: ['cpu', 'memory'],
        memoryLimit: expect.stringMatching(/^\d+(Mi|Gi)$/),
      });
      expect({ where, pod: d.spec.template.spec.securityContext, automount: d.spec.template.spec.automountServiceAccountToken }).toEqual({
        where,
        pod: expect.objectContaining({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } }),
        automount: false,
      });
      expect({ where, drop: (c.securityContext as { capabilities?: { drop?: string[] } })?.capabilities?.drop }).toEqual({ where, drop: ['ALL'] });
    }
  });

  it('gives each service an environment it accepts, from the ConfigMap and REDIS_URL from the Secret', () => {
    for (const d of jobmeshDeployments(objects)) {
      const c = jobmeshContainer(d);
      const service = serviceOf(d);
      const configMap = c.envFrom?.find((f) => f.configMapRef)?.configMapRef?.name;
      expect(configMap).toMatch(/^jobmesh-config(-[a-z0-9]+)?$/);
      // A misspelt key would be ignored by the service without a word. The shared ConfigMap holds
      // what every service reads; a service's own settings are in its container's env.
      for (const key of Object.keys(named(objects, 'ConfigMap', configMap!).data ?? {})) expect(ENV_KEYS).toContain(key);
      const own = new Set(Object.keys(SERVICES[service].shape));
      for (const e of c.env ?? []) {
        if (!e.name.startsWith('OTEL_')) expect({ service, key: e.name, known: own.has(e.name) }).toEqual({ service, key: e.name, known: true });
      }
      expect(c.env?.find((e) => e.name === 'REDIS_URL')?.valueFrom?.secretKeyRef).toEqual({
        name: expect.stringMatching(/^jobmesh-redis(-[a-z0-9]+)?$/),
        key: 'REDIS_URL',
      });
      expect(c.env?.find((e) => e.name === 'OTEL_SERVICE_NAME')?.value).toBe(`jobmesh-${service}`);
      const env = parseEnv(SERVICES[service], podEnv(objects, c));
      expect(splitHostPort(env.JOBMESH_GRPC_ADDRESS)).toEqual({ host: '0.0.0.0', port: GRPC_PORT });
      expect(splitHostPort(env.JOBMESH_HTTP_ADDRESS)).toEqual({ host: '0.0.0.0', port: HTTP_PORT });
    }
  });

  it('takes the dead-letter webhooks from an optional Secret, never from the ConfigMap', () => {
    const c = jobmeshContainer(named(objects, 'Deployment', 'jobmesh-dead-letter'));
    const configMap = named(objects, 'ConfigMap', c.envFrom!.find((f) => f.configMapRef)!.configMapRef!.name);
    // The URLs may hold tokens, and the signing key is a secret.
    const webhookKeys = Object.keys(deadLetterEnvSchema.shape).filter((k) => /^JOBMESH_DLQ_WEBHOOK_(INFO|WARNING|CRITICAL|SECRET)$/.test(k));
    expect(webhookKeys.length).toBeGreaterThan(0);
    for (const key of webhookKeys) {
      expect(Object.keys(configMap.data ?? {})).not.toContain(key);
      const e = c.env?.find((x) => x.name === key);
      expect({ key, from: e?.valueFrom?.secretKeyRef, value: e?.value }).toEqual({
        key,
        from: { name: expect.not.stringMatching(/^jobmesh-redis/), key, optional: true },
        value: undefined,
      });
    }
    // Nobody has to create it: the service starts without webhooks.
    expect(podEnv(objects, c)).not.toHaveProperty('JOBMESH_DLQ_WEBHOOK_CRITICAL');
  });

  it('points the dead-letter service at the scheduler’s Service and gRPC port, and the worker-pool’s Service at its gRPC port', () => {
    const deadLetter = named(objects, 'Deployment', 'jobmesh-dead-letter');
    const env = parseEnv(deadLetterEnvSchema, podEnv(objects, jobmeshContainer(deadLetter)));
    const { host, port } = splitHostPort(env.JOBMESH_SCHEDULER_ADDRESS);
    // A Service in the same namespace, by its short name, that selects the scheduler's pods.
    const service = named(objects, 'Service', host);
    const scheduler = named(objects, 'Deployment', 'jobmesh-scheduler');
    expect(selects(service, scheduler)).toBe(true);
    const schedulerContainer = jobmeshContainer(scheduler);
    const servicePort = (service.spec.ports as { port: number; targetPort: number | string }[]).find((p) => p.port === port);
    expect(servicePort).toBeDefined();
    const listens = splitHostPort(parseEnv(schedulerEnvSchema, podEnv(objects, schedulerContainer)).JOBMESH_GRPC_ADDRESS).port;
    expect(portNumber(schedulerContainer, servicePort!.targetPort)).toBe(listens);

    const workerPool = named(objects, 'Deployment', 'jobmesh-worker-pool');
    const workers = named(objects, 'Service', 'jobmesh-worker-pool');
    expect(selects(workers, workerPool)).toBe(true);
    const grpc = (workers.spec.ports as { name: string; targetPort: number | string; appProtocol?: string }[]).find((p) => p.name === 'grpc');
    expect(portNumber(jobmeshContainer(workerPool), grpc!.targetPort)).toBe(GRPC_PORT);
  });

  it('declares every Service’s gRPC port as h2c in development and as TLS (https) in production', () => {
    for (const name of SERVICE_NAMES) {
      const grpc = (named(objects, 'Service', `jobmesh-${name}`).spec.ports as { name: string; appProtocol?: string }[]).find((p) => p.name === 'grpc');
      expect({ name, appProtocol: grpc?.appProtocol }).toEqual({ name, appProtocol: overlay.startsWith('prod') ? 'https' : 'kubernetes.io/h2c' });
    }
  });

  it('passes the start-up checks production mode runs (auth on; TLS on a non-loopback gRPC address), in every service', () => {
    for (const d of jobmeshDeployments(objects)) {
      const where = d.metadata.name;
      const env = parseEnv(SERVICES[serviceOf(d)], podEnv(objects, jobmeshContainer(d)));
      expect({ where, mode: env.JOBMESH_MODE }).toEqual({ where, mode: overlay.startsWith('prod') ? 'production' : 'development' });
      // The very functions libs/host calls before it opens anything; undefined is no refusal.
      expect({ where, refusal: authOffInProduction(env) }).toEqual({ where, refusal: undefined });
      const tls = tlsSettings(env);
      expect({ where, refusal: plaintextExposure(env, tls) }).toEqual({ where, refusal: undefined });
      if (overlay.startsWith('prod')) {
        // Not merely loopback: TLS on, and the services' own clients dial it, trusting the CA.
        expect({ where, server: tls.server, caFile: tls.client?.caFile }).toEqual({ where, server: expect.objectContaining({ certFile: expect.any(String) }), caFile: expect.any(String) });
      } else {
        expect({ where, server: tls.server, client: tls.client, keys: env.JOBMESH_API_KEYS_FILE }).toEqual({ where, server: undefined, client: undefined, keys: undefined });
      }
    }
  });

  if (overlay.startsWith('dev')) {
    it('keeps the plaintext probes: gRPC health where the base has it', () => {
      const scheduler = jobmeshContainer(named(objects, 'Deployment', 'jobmesh-scheduler'));
      expect(scheduler.readinessProbe?.grpc?.port).toBe(GRPC_PORT);
      for (const name of ['worker-pool', 'dead-letter', 'monitor']) {
        expect({ name, startup: jobmeshContainer(named(objects, 'Deployment', `jobmesh-${name}`)).startupProbe?.grpc?.port }).toEqual({ name, startup: GRPC_PORT });
      }
    });
  }

  it('mounts the queue config file where JOBMESH_CONFIG points, and it parses with the real parser', () => {
    for (const d of jobmeshDeployments(objects)) {
      const c = jobmeshContainer(d);
      const path = podEnv(objects, c).JOBMESH_CONFIG!;
      expect(path).toBeDefined();
      const mount = c.volumeMounts?.find((m) => m.mountPath === posix.dirname(path));
      expect(mount).toBeDefined();
      const volume = (d.spec.template.spec.volumes as Volume[]).find((v) => v.name === mount!.name);
      const text = named(objects, 'ConfigMap', volume!.configMap!.name).data?.[posix.basename(path)];
      expect(text).toBeDefined();
      const queues = parseConfigFile(text!, posix.basename(path));
      expect(queues.length).toBeGreaterThan(0);
    }
  });

  it('starts each service with `node` and its script as args, a script the repository builds', () => {
    for (const d of jobmeshDeployments(objects)) {
      const c = jobmeshContainer(d);
      expect(c.command).toEqual(['node']);
      const script = c.args?.[0] ?? '';
      expect(script).toMatch(/^(services\/[a-z-]+|cli)\/dist\/main\.js$/);
      expect(existsSync(resolve(ROOT, script.replace('/dist/', '/src/').replace(/\.js$/, '.ts')))).toBe(true);
    }
  });

  it('has every Service select a Deployment’s pods and target ports that container declares', () => {
    for (const s of ofKind(objects, 'Service')) {
      const d = ofKind(objects, 'Deployment').find((d) => selects(s, d));
      expect({ service: s.metadata.name, selects: d?.metadata.name }).toEqual({ service: s.metadata.name, selects: expect.any(String) });
      const declared = containersOf(d!).flatMap((c) => c.ports ?? []);
      for (const p of s.spec.ports as { targetPort: number | string }[]) {
        expect(declared.some((dp) => dp.name === p.targetPort || dp.containerPort === p.targetPort)).toBe(true);
      }
    }
  });

  it('leaves the replica count of an autoscaled Deployment to its autoscaler, and scales only the worker-pool and the Python worker', () => {
    for (const d of ofKind(objects, 'Deployment')) {
      const scaler = autoscalerOf(objects, d.metadata.name);
      if (!scaler) continue;
      expect({ deployment: d.metadata.name, replicas: d.spec.replicas }).toEqual({ deployment: d.metadata.name, replicas: undefined });
      expect(['jobmesh-worker-pool', 'jobmesh-python-worker']).toContain(d.metadata.name);
      expect(scaler.max).toBeGreaterThan(scaler.min);
    }
    const pool = autoscalerOf(objects, 'jobmesh-worker-pool');
    if (overlay.endsWith('keda') || overlay === 'prod') expect(pool).toMatchObject({ kind: 'ScaledObject', min: 0 });
    else if (overlay === 'prod-hpa') expect(pool).toMatchObject({ kind: 'HorizontalPodAutoscaler', min: 2 });
    else expect(pool).toBeUndefined();
  });

  if (overlay.startsWith('prod')) {
    it('runs several read-only replicas of each service in production mode, behind a PodDisruptionBudget', () => {
      const pdbs = ofKind(objects, 'PodDisruptionBudget');
      expect(named(objects, 'Deployment', 'jobmesh-scheduler').spec.replicas).toBe(3);
      for (const d of jobmeshDeployments(objects)) {
        const scaler = autoscalerOf(objects, d.metadata.name);
        // Autoscaled: up to several replicas (KEDA also down to zero, when nothing waits).
        const replicas = scaler ? scaler.max : (d.spec.replicas as number);
        expect({ deployment: d.metadata.name, replicas }).toEqual({ deployment: d.metadata.name, replicas: expect.any(Number) });
        expect(replicas).toBeGreaterThanOrEqual(2);
        const c = jobmeshContainer(d);
        expect(c.securityContext?.readOnlyRootFilesystem).toBe(true);
        expect(podEnv(objects, c).JOBMESH_MODE).toBe('production');
        const pdb = pdbs.find((p) =>
          Object.entries(p.spec.selector.matchLabels as Record<string, string>).every(([k, v]) => d.spec.template.metadata.labels[k] === v),
        );
        expect({ deployment: d.metadata.name, pdb: pdb?.metadata.name }).toEqual({ deployment: d.metadata.name, pdb: expect.any(String) });
        // One pod at a time through a drain: some keep running, and a drain can still proceed.
        if (pdb!.spec.maxUnavailable !== undefined) expect(pdb!.spec.maxUnavailable).toBe(1);
        else expect(pdb!.spec.minAvailable).toBe(replicas - 1);
        // Long enough for SIGTERM's shutdown grace (30 s) to run its course.
        expect(d.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(30);
      }
    });

    it('commits no Secret: the operator creates each one the pods name, as docs/operations.md shows', () => {
      expect(ofKind(objects, 'Secret')).toEqual([]);
      const referenced = new Set<string>();
      for (const d of ofKind(objects, 'Deployment')) {
        for (const c of containersOf(d)) for (const e of c.env ?? []) if (e.valueFrom?.secretKeyRef) referenced.add(e.valueFrom.secretKeyRef.name);
        for (const v of (d.spec.template.spec.volumes ?? []) as Volume[]) if (v.secret) referenced.add(v.secret.secretName);
      }
      for (const a of ofKind(objects, 'TriggerAuthentication')) for (const r of a.spec.secretTargetRef as { name: string }[]) referenced.add(r.name);
      const keda = overlay === 'prod' ? ['jobmesh-scaler-tls', 'jobmesh-python-worker-key'] : [];
      expect([...referenced].sort()).toEqual(['jobmesh-redis', 'jobmesh-dlq-webhooks', 'jobmesh-tls', 'jobmesh-api-keys', 'jobmesh-service-key', ...keda].sort());
      const operations = read('docs/operations.md');
      for (const name of referenced) expect({ name, documented: operations.includes(`secret generic ${name}`) || operations.includes(`secretName: ${name}`) }).toEqual({ name, documented: true });
    });

    it('has no gRPC probe (the kubelet’s cannot do TLS): readiness is /readyz over HTTP, startup a TCP connect to gRPC', () => {
      for (const d of jobmeshDeployments(objects)) {
        const c = jobmeshContainer(d);
        const where = d.metadata.name;
        expect({ where, grpc: [c.startupProbe, c.readinessProbe, c.livenessProbe].some((p) => p?.grpc) }).toEqual({ where, grpc: false });
        expect({ where, path: c.readinessProbe?.httpGet?.path, port: portNumber(c, c.readinessProbe?.httpGet?.port ?? '') }).toEqual({ where, path: '/readyz', port: HTTP_PORT });
        expect({ where, startup: portNumber(c, c.startupProbe?.tcpSocket?.port ?? '') }).toEqual({ where, startup: GRPC_PORT });
        // The probes' port stays plaintext HTTP: with JOBMESH_HTTP_TLS on, an httpGet would need scheme HTTPS.
        expect(parseEnv(SERVICES[serviceOf(d)], podEnv(objects, c)).JOBMESH_HTTP_TLS).toBe(false);
      }
    });

    it('points every file setting at a read-only mount of the Secret (and key) that holds it', () => {
      const expected: Record<string, [secret: string, key: string]> = {
        JOBMESH_TLS_CERT: ['jobmesh-tls', 'tls.crt'],
        JOBMESH_TLS_KEY: ['jobmesh-tls', 'tls.key'],
        JOBMESH_TLS_CA: ['jobmesh-tls', 'ca.crt'],
        JOBMESH_API_KEYS_FILE: ['jobmesh-api-keys', 'keys.yaml'],
      };
      const containers = jobmeshDeployments(objects).map((d) => ({ d, c: jobmeshContainer(d) }));
      const python = ofKind(objects, 'Deployment').find((d) => d.metadata.name === 'jobmesh-python-worker');
      if (python) containers.push({ d: python, c: containersOf(python)[0]! });
      expect(containers.length).toBe(overlay === 'prod' ? 5 : 4);
      for (const { d, c } of containers) {
        const where = d.metadata.name;
        const env = podEnv(objects, c);
        const files = Object.keys(env).filter((k) => /^JOBMESH_(TLS_(CERT|KEY|CA|CLIENT_CA|CLIENT_CERT|CLIENT_KEY)|API_KEYS_FILE)$/.test(k));
        // The Python worker is only a client: it trusts the CA, and holds no server key.
        expect({ where, files: files.sort() }).toEqual({ where, files: (where === 'jobmesh-python-worker' ? ['JOBMESH_TLS_CA'] : Object.keys(expected)).sort() });
        for (const key of files) {
          const path = env[key]!;
          const mount = c.volumeMounts?.find((m) => path.startsWith(`${m.mountPath}/`));
          expect({ where, key, path, mount: mount && { readOnly: mount.readOnly, subPath: mount.subPath } }).toEqual({ where, key, path, mount: { readOnly: true, subPath: undefined } });
          const volume = (d.spec.template.spec.volumes as Volume[]).find((v) => v.name === mount!.name);
          const file = posix.relative(mount!.mountPath, path);
          // The file a Secret volume shows: an item's path, or (without items) the key itself.
          const shown = volume?.secret?.items ? volume.secret.items.find((i) => i.path === file)?.key : file;
          expect({ where, key, secret: volume?.secret?.secretName, secretKey: shown }).toEqual({ where, key, secret: expected[key]![0], secretKey: expected[key]![1] });
        }
        if (where === 'jobmesh-python-worker') {
          const volumes = (d.spec.template.spec.volumes as Volume[]).filter((v) => v.secret?.secretName === 'jobmesh-tls');
          expect(volumes.map((v) => v.secret!.items?.map((i) => i.key))).toEqual([['ca.crt']]);
        }
      }
    });

    it('has the services that call others, and the Python worker, send an API key from a Secret', () => {
      const keyOf = (c: Container): unknown => c.env?.find((e) => e.name === 'JOBMESH_API_KEY')?.valueFrom?.secretKeyRef ?? c.env?.find((e) => e.name === 'JOBMESH_API_KEY');
      for (const d of jobmeshDeployments(objects)) {
        const callsOthers = ['dead-letter', 'monitor'].includes(serviceOf(d));
        expect({ where: d.metadata.name, key: keyOf(jobmeshContainer(d)) }).toEqual({ where: d.metadata.name, key: callsOthers ? { name: 'jobmesh-service-key', key: 'key' } : undefined });
      }
      const python = ofKind(objects, 'Deployment').find((d) => d.metadata.name === 'jobmesh-python-worker');
      if (overlay === 'prod') expect(keyOf(containersOf(python!)[0]!)).toEqual({ name: 'jobmesh-python-worker-key', key: 'key' });
    });
  }

  if (overlay.includes('keda') || overlay === 'prod') {
    it('dials the monitor’s scaler with the TLS TriggerAuthentication in production, plaintext in development', () => {
      const auth = named(objects, 'TriggerAuthentication', 'jobmesh-scaler-tls');
      expect((auth.spec.secretTargetRef as { parameter: string }[]).map((r) => r.parameter).sort()).toEqual(['caCert', 'tlsClientCert', 'tlsClientKey']);
      const triggers = ofKind(objects, 'ScaledObject').flatMap((so) => (so.spec.triggers as { type: string; metadata: { scalerAddress: string }; authenticationRef?: { name: string } }[]).map((t) => ({ so: so.metadata.name, t })));
      expect(triggers.length).toBeGreaterThanOrEqual(2);
      for (const { so, t } of triggers) {
        expect({ so, type: t.type, host: splitHostPort(t.metadata.scalerAddress).host }).toEqual({ so, type: 'external', host: 'jobmesh-monitor' });
        expect({ so, auth: t.authenticationRef?.name }).toEqual({ so, auth: overlay === 'prod' ? 'jobmesh-scaler-tls' : undefined });
      }
      const python = containersOf(named(objects, 'Deployment', 'jobmesh-python-worker'))[0]!;
      const names = (python.env ?? []).map((e) => e.name);
      if (overlay === 'prod') expect(names).toEqual(expect.arrayContaining(['JOBMESH_TLS_CA', 'JOBMESH_API_KEY']));
      else expect(names.filter((n) => /TLS|API_KEY/.test(n))).toEqual([]);
    });
  }

  if (overlay.startsWith('dev')) {
    it('runs one replica with debug logs, writable for Tilt’s live_update', () => {
      for (const d of jobmeshDeployments(objects)) {
        expect(d.spec.replicas).toBe(autoscalerOf(objects, d.metadata.name) ? undefined : 1);
        const c = jobmeshContainer(d);
        expect(podEnv(objects, c).LOG_LEVEL).toBe('debug');
        expect(c.securityContext?.readOnlyRootFilesystem).toBe(false);
      }
    });

    it('brings a Redis that the Secret’s REDIS_URL reaches, configured as Jobmesh requires', () => {
      const redis = ofKind(objects, 'Deployment').find((d) => containersOf(d).some((c) => /^redis(:|$)/.test(c.image)));
      expect(redis).toBeDefined();
      const server = containersOf(redis!).find((c) => /^redis(:|$)/.test(c.image))!;
      const args = [...(server.command ?? []), ...(server.args ?? [])].join(' ');
      expect(args).toMatch(/--maxmemory-policy noeviction/);
      // An acknowledged enqueue survives a crash of Redis or of its node (docs/reliability.md).
      expect(args).toMatch(/--appendonly yes/);
      expect(args).toMatch(/--appendfsync always/);
      expect(server.readinessProbe?.exec?.command).toEqual(['redis-cli', 'ping']);

      const url = new URL(podEnv(objects, jobmeshContainer(named(objects, 'Deployment', 'jobmesh-scheduler'))).REDIS_URL!);
      const service = named(objects, 'Service', url.hostname);
      expect(service.spec.selector).toEqual(redis!.spec.selector.matchLabels);
      expect((service.spec.ports as { port: number }[]).map((p) => p.port)).toContain(Number(url.port || 6379));
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Dockerfiles

interface Instruction {
  keyword: string;
  args: string;
}

interface Stage {
  name?: string;
  base: string;
  workdir: string;
  instructions: Instruction[];
}

/** Splits a Dockerfile into stages the way the builder does: comments dropped, continuations joined, global ARGs applied to FROM. */
function parseDockerfile(path: string): Stage[] {
  const logical = read(path)
    .split('\n')
    .filter((line) => !line.trim().startsWith('#'))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of logical) {
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const upper = keyword.toUpperCase();
    const current = stages[stages.length - 1];
    if (upper === 'FROM') {
      const m = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      const base = m[1]!.replace(/\$\{?(\w+)\}?/g, (_, v: string) => globalArgs[v] ?? '');
      stages.push({ name: m[2], base, workdir: '/', instructions: [] });
    } else if (!current) {
      if (upper === 'ARG') {
        const [name, value = ''] = args.split('=');
        globalArgs[name!] = value;
      }
    } else {
      if (upper === 'WORKDIR') current.workdir = posix.resolve(current.workdir, args);
      current.instructions.push({ keyword: upper, args });
    }
  }
  return stages;
}

interface Copy {
  from?: string;
  sources: string[];
  dest: string;
}

function copiesOf(stage: Stage): Copy[] {
  let workdir = '/';
  const copies: Copy[] = [];
  for (const i of stage.instructions) {
    if (i.keyword === 'WORKDIR') workdir = posix.resolve(workdir, i.args);
    if (i.keyword !== 'COPY') continue;
    const tokens = i.args.split(/\s+/);
    const from = tokens.find((t) => t.startsWith('--from='))?.slice('--from='.length);
    const paths = tokens.filter((t) => !t.startsWith('--'));
    copies.push({ from, sources: paths.slice(0, -1), dest: posix.resolve(workdir, paths[paths.length - 1]!) });
  }
  return copies;
}

/** Where `path` of stage `from` ends up in `stage`, if a COPY brings it there (a directory's contents go to dest). */
function whereCopied(stage: Stage, from: Stage, path: string): string | undefined {
  for (const c of copiesOf(stage).filter((c) => c.from === from.name)) {
    const source = c.sources.find((s) => path === s || path.startsWith(`${s}/`));
    if (source) return c.dest + path.slice(source.length);
  }
  return undefined;
}

const runs = (stage: Stage): string => stage.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args).join('\n');

interface Workspace {
  dir: string;
  name: string;
  dependencies: string[];
}

function workspaces(): Workspace[] {
  const dirs = (JSON.parse(read('package.json')) as { workspaces: string[] }).workspaces;
  return dirs.map((dir) => {
    const pkg = JSON.parse(read(`${dir}/package.json`)) as { name: string; dependencies?: Record<string, string> };
    return { dir, name: pkg.name, dependencies: Object.keys(pkg.dependencies ?? {}) };
  });
}

describe('deploy/docker/Dockerfile', () => {
  const stages = parseDockerfile('deploy/docker/Dockerfile');
  const runtime = stages[stages.length - 1]!;
  const build = stages.find((s) => /\bnpm ci\b/.test(runs(s)));

  it('builds every stage on node:20-bookworm-slim', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s.base).toBe('node:20-bookworm-slim');
  });

  it('installs with npm ci, builds (buf generate + tsc -b), then prunes the dev dependencies', () => {
    expect(build).toBeDefined();
    const script = runs(build!);
    // With --ignore-scripts the `prepare` script (npm run build) does not run, so the build must be explicit.
    if (/npm ci[^\n]*--ignore-scripts/.test(script)) expect(script).toMatch(/npm run build/);
    expect(script.indexOf('npm prune --omit=dev')).toBeGreaterThan(script.search(/npm (ci|run build)/));
    expect(build).not.toBe(runtime);
  });

  it('copies proto/ into the runtime image where libs/contracts/dist looks for it', () => {
    const relative = /PROTO_DIR\s*=\s*resolve\(__dirname,\s*'([^']+)'\)/.exec(read('libs/contracts/src/index.ts'))?.[1];
    expect(relative).toBeDefined();
    const expected = posix.resolve(runtime.workdir, 'libs/contracts/dist', relative!);
    expect(whereCopied(runtime, build!, posix.resolve(build!.workdir, 'proto'))).toBe(expected);
  });

  it('copies node_modules and every workspace a service or the CLI needs at run time', () => {
    // Workspace packages are symlinks in node_modules (@jobmesh/x -> ../../libs/x): same paths in both stages.
    const landing = (dir: string): string | undefined => whereCopied(runtime, build!, posix.resolve(build!.workdir, dir));
    expect(landing('node_modules')).toBe(posix.resolve(runtime.workdir, 'node_modules'));
    const all = workspaces();
    const needed = new Set<Workspace>();
    const visit = (w: Workspace): void => {
      if (needed.has(w)) return;
      needed.add(w);
      for (const dep of w.dependencies) {
        const ws = all.find((x) => x.name === dep);
        if (ws) visit(ws);
      }
    };
    all.filter((w) => w.dir.startsWith('services/') || w.dir === 'cli').forEach(visit);
    for (const w of needed) {
      for (const path of [`${w.dir}/package.json`, `${w.dir}/dist`]) {
        expect({ path, landsAt: landing(path) }).toEqual({ path, landsAt: posix.resolve(runtime.workdir, path) });
      }
    }
  });

  it('runs as a non-root user, exposes 50051 and 9464, and starts the scheduler by default', () => {
    const last = (keyword: string): string | undefined => runtime.instructions.filter((i) => i.keyword === keyword).pop()?.args;
    expect(last('USER')).toBeDefined();
    expect(last('USER')!.split(':')[0]).not.toMatch(/^(root|0)$/);
    expect(last('EXPOSE')?.split(/\s+/)).toEqual(expect.arrayContaining([String(GRPC_PORT), String(HTTP_PORT)]));
    expect(JSON.parse(last('CMD')!)).toEqual(['node', 'services/scheduler/dist/main.js']);
    // The slim image has neither curl nor wget.
    expect(last('HEALTHCHECK') ?? '').not.toMatch(/\b(curl|wget)\b/);
  });

  it('builds from a context that leaves out host builds, dependencies and git, but keeps what the build reads', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const pattern of ['**/node_modules', '**/dist', '.git', '.jobmesh']) expect(ignored).toContain(pattern);
    for (const needed of ['proto', 'package.json', 'package-lock.json', 'libs', 'services', 'cli', 'buf.gen.yaml', 'tsconfig.json']) {
      expect(ignored).not.toContain(needed);
    }
  });
});

describe('Tiltfile and deploy/docker/Dockerfile.tilt', () => {
  const tiltfile = read('Tiltfile');

  it('builds the Tilt image from a context that keeps the dist folders live_update syncs', () => {
    const dockerfile = /dockerfile='([^']+)'/.exec(tiltfile)?.[1];
    expect(dockerfile).toBe('deploy/docker/Dockerfile.tilt');
    // Tilt watches (and so syncs) only what the build context admits; the root .dockerignore drops dist.
    const ignore = read(`${dockerfile!}.dockerignore`).split('\n').map((l) => l.trim());
    const keepsDist = ignore.lastIndexOf('!**/dist');
    expect(keepsDist).toBeGreaterThanOrEqual(0);
    expect(ignore.slice(keepsDist + 1).some((l) => /^(\*\*\/)?dist$/.test(l))).toBe(false);
    for (const s of parseDockerfile(dockerfile!)) expect(s.base).toMatch(/^(node:20-bookworm-slim|tiltdev\/restart-helper:.+)$/);
    expect(tiltfile).toMatch(/sync\(ws \+ '\/dist', '\/app\/' \+ ws \+ '\/dist'\) for ws in WORKSPACES/);
    // The Redis scripts are read at run time from libs/queue/lua, beside dist/: in the image, and synced.
    expect(ignore).toContain('!libs/queue/lua');
    expect(tiltfile).toContain("sync('libs/queue/lua', '/app/libs/queue/lua')");
  });

  it('restarts `node` through the file that the Tilt image makes writable', () => {
    const restartFile = /RESTART_FILE = '([^']+)'/.exec(tiltfile)?.[1];
    expect(restartFile).toBeDefined();
    expect(read('deploy/docker/Dockerfile.tilt')).toContain(`install -m 666 /dev/null ${restartFile!}`);
    // Tilt replaces the containers' command with this entrypoint and keeps their args (the script).
    expect(tiltfile).toMatch(/entrypoint=\['\/tilt-restart-wrapper', '--watch_file=' \+ RESTART_FILE, 'node'\]/);
  });

  it('deploys the dev overlay and forwards gRPC 50051 and HTTP 9464 of every service, on host ports that differ', () => {
    const overlay = /k8s_yaml\(kustomize\('([^']+)'\)\)/.exec(tiltfile)?.[1];
    expect(overlay).toBe('deploy/k8s/overlays/dev');
    const deployments = jobmeshDeployments(kustomize(overlay!)).map((d) => d.metadata.name);
    const resources = [...tiltfile.matchAll(/k8s_resource\(\s*'([^']+)',\s*port_forwards=\[([^\]]*)\]/g)].map((m) => ({
      name: m[1]!,
      forwards: (m[2]!.match(/'[^']+'/g) ?? []).map((f) => f.slice(1, -1).split(':').map(Number) as [number, number]),
    }));
    expect(resources.map((r) => r.name).sort()).toEqual([...deployments].sort());
    for (const r of resources) expect({ resource: r.name, to: r.forwards.map(([, to]) => to) }).toEqual({ resource: r.name, to: [GRPC_PORT, HTTP_PORT] });
    const hostPorts = resources.flatMap((r) => r.forwards.map(([from]) => from));
    expect(new Set(hostPorts).size).toBe(hostPorts.length);
    // The scheduler keeps the ports every example and the CLI default to.
    expect(resources.find((r) => r.name === 'jobmesh-scheduler')?.forwards).toEqual([[GRPC_PORT, GRPC_PORT], [HTTP_PORT, HTTP_PORT]]);
  });
});

// ---------------------------------------------------------------------------------------------
// docker-compose.yml, Prometheus, Grafana

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile?: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }> | string[];
  healthcheck?: { test: string[] };
  deploy?: { replicas?: number };
  stop_grace_period?: string;
}

/** Compose's ${VAR:-default} and ${VAR-default} as on a machine where VAR is unset; $$ is a $. */
const interpolate = (value: string): string =>
  value.replace(/\$\$|\$\{(\w+)(?::?-([^}]*))?\}/g, (m, _name: string, fallback?: string) => (m === '$$' ? '$' : (fallback ?? '')));

/** A Compose duration ("40s", "1m15s") in ms; Compose waits 10s by default. */
function composeDurationMs(text: string | undefined): number {
  if (text === undefined) return 10_000;
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)];
  expect(parts.map((p) => p[0]).join('')).toBe(text);
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]!]!, 0);
}

describe('docker-compose.yml', () => {
  // Compose resolves YAML merge keys (<<), which the jobmesh services use for what they share.
  const compose = YAML.parse(read('docker-compose.yml'), { merge: true }) as {
    services: Record<string, ComposeService>;
    volumes?: Record<string, unknown>;
  };
  const services = compose.services;
  const scheduler = services.scheduler!;
  const env = scheduler.environment ?? {};

  /** The container side of each published port, e.g. "127.0.0.1:50051:50051" → 50051. */
  const containerPorts = (s: ComposeService): number[] => (s.ports ?? []).map((p) => Number(String(p).split(':').pop()));

  /** [source, target] of each bind mount; named volumes are left out. */
  const bindMounts = (s: ComposeService): [string, string][] =>
    (s.volumes ?? [])
      .map((v) => v.split(':') as [string, string])
      .filter(([source]) => source.startsWith('.') || source.startsWith('/'));

  it('runs redis, jaeger, prometheus, grafana, the scheduler, the worker-pool and the dead-letter service', () => {
    expect(Object.keys(services)).toEqual(expect.arrayContaining(['redis', 'jaeger', 'prometheus', 'grafana', 'scheduler', 'worker-pool', 'dead-letter']));
    expect(services.redis!.image).toMatch(/^redis:7/);
    expect(services.jaeger!.image).toMatch(/^jaegertracing\/all-in-one:/);
    expect(services.prometheus!.image).toMatch(/^prom\/prometheus:/);
    expect(services.grafana!.image).toMatch(/^grafana\/grafana:/);
    expect(containerPorts(services.grafana!)).toContain(3000);
  });

  it('builds the scheduler from the Dockerfile and runs its script', () => {
    expect(scheduler.build?.dockerfile).toBe('deploy/docker/Dockerfile');
    expect(scheduler.command).toEqual(['node', 'services/scheduler/dist/main.js']);
  });

  it('points the scheduler at the redis and jaeger services, in development mode, with an environment it accepts', () => {
    const redis = new URL(env.REDIS_URL!);
    expect([redis.protocol, redis.hostname, Number(redis.port || 6379)]).toEqual(['redis:', 'redis', 6379]);
    const otlp = new URL(env.OTEL_EXPORTER_OTLP_ENDPOINT!);
    expect([otlp.hostname, Number(otlp.port)]).toEqual(['jaeger', 4317]);
    expect(env.OTEL_EXPORTER_OTLP_PROTOCOL).toBe('grpc');
    // One machine, ports on 127.0.0.1, no keys or TLS: development mode (the comment says what production needs).
    expect(env.JOBMESH_MODE).toBe('development');
    expect(read('docker-compose.yml')).toMatch(/Production mode needs\s*#?\s*JOBMESH_API_KEYS_FILE/);
    for (const key of Object.keys(env).filter((k) => !k.startsWith('OTEL_'))) expect(ENV_KEYS).toContain(key);
    const parsed = parseEnv(commonEnvSchema, env);
    expect(splitHostPort(parsed.JOBMESH_GRPC_ADDRESS)).toEqual({ host: '0.0.0.0', port: GRPC_PORT });
    expect(splitHostPort(parsed.JOBMESH_HTTP_ADDRESS)).toEqual({ host: '0.0.0.0', port: HTTP_PORT });
  });

  it('publishes the scheduler’s gRPC and HTTP ports', () => {
    expect(containerPorts(scheduler)).toEqual(expect.arrayContaining([GRPC_PORT, HTTP_PORT]));
  });

  /** The Jobmesh services by name, from the script each runs. */
  const jobmesh = Object.entries(services).flatMap(([name, s]) => {
    const service = serviceOfScript(s.command?.[1]);
    return service ? [{ name, service, s }] : [];
  });

  it('runs every Jobmesh service from the one image, with an environment it accepts', () => {
    expect(jobmesh.map((j) => j.service).sort()).toEqual([...SERVICE_NAMES].sort());
    for (const { name, service, s } of jobmesh) {
      expect({ name, image: s.image, dockerfile: s.build?.dockerfile, command: s.command }).toEqual({
        name,
        image: scheduler.image,
        dockerfile: 'deploy/docker/Dockerfile',
        command: ['node', scriptOf(service)],
      });
      const raw = s.environment ?? {};
      const own = new Set(Object.keys(SERVICES[service].shape));
      for (const key of Object.keys(raw).filter((k) => !k.startsWith('OTEL_'))) expect({ name, key, known: own.has(key) }).toEqual({ name, key, known: true });
      const values = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, interpolate(String(v))]));
      expect(values.OTEL_SERVICE_NAME).toBe(`jobmesh-${service}`);
      // Every service's spans go to the Jaeger service, over OTLP/gRPC (its port 4317 receives OTLP).
      expect({ name, endpoint: values.OTEL_EXPORTER_OTLP_ENDPOINT, protocol: values.OTEL_EXPORTER_OTLP_PROTOCOL }).toEqual({ name, endpoint: 'http://jaeger:4317', protocol: 'grpc' });
      expect(services.jaeger!.ports).toContain('127.0.0.1:4317:4317');
      const parsed = parseEnv(SERVICES[service], values);
      expect(new URL(parsed.REDIS_URL!).hostname).toBe('redis');
      // Starts: the checks libs/host runs before it opens anything refuse nothing.
      expect({ name, refusal: authOffInProduction(parsed) ?? plaintextExposure(parsed, tlsSettings(parsed)) }).toEqual({ name, refusal: undefined });
      expect(splitHostPort(parsed.JOBMESH_GRPC_ADDRESS)).toEqual({ host: '0.0.0.0', port: GRPC_PORT });
      expect(splitHostPort(parsed.JOBMESH_HTTP_ADDRESS)).toEqual({ host: '0.0.0.0', port: HTTP_PORT });
      expect(s.depends_on).toMatchObject({ redis: { condition: 'service_healthy' } });
      expect(s.healthcheck?.test.join(' ')).toContain(`:${HTTP_PORT}/readyz`);
      expect(bindMounts(s).find(([, target]) => target === parsed.JOBMESH_CONFIG)).toBeDefined();
      // Compose kills the container after stop_grace_period: longer than SIGTERM may take.
      expect({ name, stopMs: composeDurationMs(s.stop_grace_period) }).toEqual({ name, stopMs: expect.any(Number) });
      expect(composeDurationMs(s.stop_grace_period)).toBeGreaterThan(maxStopMs(service, parsed));
    }
  });

  it('runs several worker-pool replicas, publishing no port that they would clash on', () => {
    const [workerPool] = jobmesh.filter((j) => j.service === 'worker-pool');
    expect(workerPool!.s.deploy?.replicas).toBeGreaterThanOrEqual(2);
    expect(workerPool!.s.ports ?? []).toEqual([]);
  });

  it('publishes host ports on 127.0.0.1 only, none twice: gRPC of the scheduler, the dead-letter service and the monitor', () => {
    const published = Object.entries(services).flatMap(([name, s]) =>
      (s.ports ?? []).map((p) => {
        const [ip, host, container] = String(p).split(':');
        return { name, ip, host: Number(host), container: Number(container) };
      }),
    );
    for (const p of published) expect({ ...p, ip: p.ip }).toEqual({ ...p, ip: '127.0.0.1' });
    const hostPorts = published.map((p) => p.host);
    expect(new Set(hostPorts).size).toBe(hostPorts.length);
    const grpc = published.filter((p) => jobmesh.some((j) => j.name === p.name) && p.container === GRPC_PORT);
    expect(grpc.map((p) => jobmesh.find((j) => j.name === p.name)!.service).sort()).toEqual(['dead-letter', 'monitor', 'scheduler']);
  });

  it('points the dead-letter service at the scheduler’s gRPC port, and webhooks default to none', () => {
    const [deadLetter] = jobmesh.filter((j) => j.service === 'dead-letter');
    const values = Object.fromEntries(Object.entries(deadLetter!.s.environment ?? {}).map(([k, v]) => [k, interpolate(String(v))]));
    const parsed = parseEnv(deadLetterEnvSchema, values);
    const { host, port } = splitHostPort(parsed.JOBMESH_SCHEDULER_ADDRESS);
    expect(serviceOfScript(services[host]?.command?.[1])).toBe('scheduler');
    expect(port).toBe(splitHostPort(env.JOBMESH_GRPC_ADDRESS!).port);
    // Not written in the file (they may hold tokens): from the shell or .env, unset otherwise.
    for (const key of ['JOBMESH_DLQ_WEBHOOK_INFO', 'JOBMESH_DLQ_WEBHOOK_WARNING', 'JOBMESH_DLQ_WEBHOOK_CRITICAL', 'JOBMESH_DLQ_WEBHOOK_SECRET']) {
      const raw = deadLetter!.s.environment?.[key];
      if (raw !== undefined && raw !== null) expect({ key, raw }).toEqual({ key, raw: `\${${key}:-}` });
      expect(parsed[key as keyof typeof parsed]).toBeUndefined();
    }
  });

  it('starts the scheduler once Redis answers, and runs Redis as production mode requires', () => {
    expect(scheduler.depends_on).toMatchObject({ redis: { condition: 'service_healthy' } });
    expect(services.redis!.healthcheck?.test.join(' ')).toMatch(/redis-cli ping/);
    const command = (services.redis!.command ?? []).join(' ');
    expect(command).toMatch(/--appendonly yes/);
    expect(command).toMatch(/--appendfsync always/);
    expect(command).toMatch(/--maxmemory-policy noeviction/);
    expect(compose.volumes).toHaveProperty(services.redis!.volumes![0]!.split(':')[0]!);
  });

  it('names only files and folders that exist in the repository', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.build) {
        const dockerfile = posix.join(s.build.context, s.build.dockerfile ?? 'Dockerfile');
        expect({ service: name, dockerfile, exists: existsSync(resolve(ROOT, dockerfile)) }).toEqual({ service: name, dockerfile, exists: true });
      }
      for (const [source] of bindMounts(s)) {
        expect({ service: name, source, exists: existsSync(resolve(ROOT, source)) }).toEqual({ service: name, source, exists: true });
      }
      for (const volume of (s.volumes ?? []).map((v) => v.split(':')[0]!).filter((v) => !/^[./]/.test(v))) {
        expect(compose.volumes).toHaveProperty(volume);
      }
    }
  });

  it('mounts a queue config that parses where JOBMESH_CONFIG points', () => {
    const mount = bindMounts(scheduler).find(([, target]) => target === env.JOBMESH_CONFIG);
    expect(mount).toBeDefined();
    expect(parseConfigFile(read(mount![0]), mount![0]).length).toBeGreaterThan(0);
  });

  it('has Prometheus scrape every Jobmesh service’s metrics port, labelled with the service, with the config it mounts', () => {
    const [source] = bindMounts(services.prometheus!).find(([, target]) => target === '/etc/prometheus') ?? [];
    expect(source).toBeDefined();
    const config = YAML.parse(read(posix.join(source!, 'prometheus.yml'))) as {
      rule_files?: string[];
      scrape_configs: {
        job_name: string;
        metrics_path?: string;
        static_configs?: { targets: string[]; labels?: Record<string, string> }[];
        dns_sd_configs?: { names: string[]; type?: string; port: number }[];
        relabel_configs?: { source_labels?: string[]; regex?: string; target_label?: string; replacement?: string }[];
      }[];
    };
    // Static targets carry their labels; DNS ones (a scaled service: every replica) get `service`
    // from the name they were found by.
    const targets = config.scrape_configs.flatMap((j) => [
      ...(j.static_configs ?? []).flatMap((c) => c.targets.map((t) => ({ job: j, target: t, service: c.labels?.service }))),
      ...(j.dns_sd_configs ?? []).flatMap((c) =>
        c.names.map((n) => {
          const relabel = j.relabel_configs?.find((r) => r.target_label === 'service' && r.source_labels?.join() === '__meta_dns_name');
          return { job: j, target: `${n}:${c.port}`, service: relabel && new RegExp(`^(?:${relabel.regex ?? '(.*)'})$`).test(n) ? n : undefined };
        }),
      ),
    ]);
    for (const { name, s } of jobmesh) {
      const port = splitHostPort(interpolate(s.environment!.JOBMESH_HTTP_ADDRESS!)).port;
      const to = targets.find(({ target }) => target === `${name}:${port}`);
      expect({ name, scraped: to?.target, service: to?.service }).toEqual({ name, scraped: `${name}:${port}`, service: name });
      expect(to!.job.metrics_path ?? '/metrics').toBe('/metrics');
    }
    for (const { target } of targets) {
      const host = splitHostPort(target).host;
      if (host !== 'localhost') expect(Object.keys(services)).toContain(host);
    }
    // Rule files resolve next to the config, in the container as in the repository.
    expect(config.rule_files?.length).toBeGreaterThan(0);
    for (const file of config.rule_files!) expect({ file, exists: existsSync(resolve(ROOT, source!, file)) }).toEqual({ file, exists: true });
  });

  it('provisions Grafana with data sources that reach the prometheus and jaeger services', () => {
    const [source] = bindMounts(services.grafana!).find(([, target]) => target === '/etc/grafana/provisioning/datasources') ?? [];
    expect(source).toBeDefined();
    const file = read(posix.join(source!, 'datasources.yml'));
    const { datasources } = YAML.parse(file) as { datasources: { type: string; url: string }[] };
    // The ports these images serve their query APIs on.
    for (const [type, port] of [['prometheus', 9090], ['jaeger', 16686]] as const) {
      const url = new URL(datasources.find((d) => d.type === type)!.url);
      expect([url.hostname, Number(url.port)]).toEqual([type, port]);
      expect(Object.keys(services)).toContain(url.hostname);
    }
  });
});
