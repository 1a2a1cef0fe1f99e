// The deployment files read as their tools read them: `kubectl kustomize` renders each overlay, the
// compose, Prometheus and Grafana files are parsed as YAML, the Dockerfiles are split into stages.
// Nothing here needs a Docker engine or a cluster.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { posix, resolve } from 'node:path';
import { commonEnvSchema, parseConfigFile, parseEnv, splitHostPort } from '@jobmesh/config';
import YAML from 'yaml';

const ROOT = resolve(__dirname, '../..');
const read = (path: string): string => readFileSync(resolve(ROOT, path), 'utf8');
const GRPC_PORT = 50051;
const HTTP_PORT = 9464;
const ENV_KEYS = new Set(Object.keys(commonEnvSchema.shape));

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
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  envFrom?: { configMapRef?: { name: string } }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  securityContext?: { runAsNonRoot?: boolean; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean };
  volumeMounts?: { name: string; mountPath: string }[];
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
      const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === ref.name);
      // A Secret the overlay leaves to the operator (prod): stand in a valid URL to check the rest.
      env[e.name] = secret ? Buffer.from(secret.data![ref.key]!, 'base64').toString('utf8') : 'redis://redis.example:6379';
    } else if (e.value !== undefined) {
      env[e.name] = e.value;
    }
  }
  return env;
}

describe.each(['dev', 'prod'])('deploy/k8s/overlays/%s', (overlay) => {
  let objects: K8sObject[];

  beforeAll(() => {
    objects = kustomize(`deploy/k8s/overlays/${overlay}`);
  });

  it('renders a Deployment and a Service for the scheduler, labelled as part of Jobmesh', () => {
    expect(jobmeshDeployments(objects).map((d) => d.metadata.name)).toContain('jobmesh-scheduler');
    expect(ofKind(objects, 'Service').map((s) => s.metadata.name)).toContain('jobmesh-scheduler');
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
      expect(c.ports?.map((p) => p.containerPort)).toEqual(expect.arrayContaining([GRPC_PORT, HTTP_PORT]));
      expect(c.readinessProbe?.grpc?.port).toBe(GRPC_PORT);
      expect(c.livenessProbe?.httpGet?.path).toBe('/livez');
      expect(portNumber(c, c.livenessProbe!.httpGet!.port)).toBe(HTTP_PORT);
      if (c.startupProbe?.httpGet) expect(portNumber(c, c.startupProbe.httpGet.port)).toBe(HTTP_PORT);
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
  });

  it('gives each service an environment it accepts, from the ConfigMap and REDIS_URL from the Secret', () => {
    for (const d of jobmeshDeployments(objects)) {
      const c = jobmeshContainer(d);
      const configMap = c.envFrom?.find((f) => f.configMapRef)?.configMapRef?.name;
      expect(configMap).toMatch(/^jobmesh-config(-[a-z0-9]+)?$/);
      // A misspelt key would be ignored by the service without a word.
      for (const key of Object.keys(named(objects, 'ConfigMap', configMap!).data ?? {})) expect(ENV_KEYS).toContain(key);
      expect(c.env?.find((e) => e.name === 'REDIS_URL')?.valueFrom?.secretKeyRef).toEqual({
        name: expect.stringMatching(/^jobmesh-redis(-[a-z0-9]+)?$/),
        key: 'REDIS_URL',
      });
      const env = parseEnv(commonEnvSchema, podEnv(objects, c));
      expect(splitHostPort(env.JOBMESH_GRPC_ADDRESS)).toEqual({ host: '0.0.0.0', port: GRPC_PORT });
      expect(splitHostPort(env.JOBMESH_HTTP_ADDRESS)).toEqual({ host: '0.0.0.0', port: HTTP_PORT });
    }
  });

  it('mounts the queue config file where JOBMESH_CONFIG points, and it parses with the real parser', () => {
    for (const d of jobmeshDeployments(objects)) {
      const c = jobmeshContainer(d);
      const path = podEnv(objects, c).JOBMESH_CONFIG!;
      expect(path).toBeDefined();
      const mount = c.volumeMounts?.find((m) => m.mountPath === posix.dirname(path));
      expect(mount).toBeDefined();
      const volume = (d.spec.template.spec.volumes as { name: string; configMap?: { name: string } }[]).find((v) => v.name === mount!.name);
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
      const d = ofKind(objects, 'Deployment').find((d) =>
        Object.entries(s.spec.selector as Record<string, string>).every(([k, v]) => d.spec.template.metadata.labels[k] === v),
      );
      expect({ service: s.metadata.name, selects: d?.metadata.name }).toEqual({ service: s.metadata.name, selects: expect.any(String) });
      const declared = containersOf(d!).flatMap((c) => c.ports ?? []);
      for (const p of s.spec.ports as { targetPort: number | string }[]) {
        expect(declared.some((dp) => dp.name === p.targetPort || dp.containerPort === p.targetPort)).toBe(true);
      }
    }
  });

  if (overlay === 'prod') {
    it('runs three read-only replicas of each service in production mode, behind a PodDisruptionBudget', () => {
      const pdbs = ofKind(objects, 'PodDisruptionBudget');
      for (const d of jobmeshDeployments(objects)) {
        expect(d.spec.replicas).toBe(3);
        const c = jobmeshContainer(d);
        expect(c.securityContext?.readOnlyRootFilesystem).toBe(true);
        expect(podEnv(objects, c).JOBMESH_MODE).toBe('production');
        const pdb = pdbs.find((p) =>
          Object.entries(p.spec.selector.matchLabels as Record<string, string>).every(([k, v]) => d.spec.template.metadata.labels[k] === v),
        );
        expect({ deployment: d.metadata.name, pdb: pdb?.metadata.name }).toEqual({ deployment: d.metadata.name, pdb: expect.any(String) });
        // Keeps at least two of three running through a drain.
        if (pdb!.spec.maxUnavailable !== undefined) expect(pdb!.spec.maxUnavailable).toBe(1);
        else expect(pdb!.spec.minAvailable).toBeGreaterThanOrEqual(2);
      }
    });

    it('commits no Secret: the operator creates jobmesh-redis', () => {
      expect(ofKind(objects, 'Secret')).toEqual([]);
    });
  }

  if (overlay === 'dev') {
    it('runs one replica with debug logs, writable for Tilt’s live_update', () => {
      for (const d of jobmeshDeployments(objects)) {
        expect(d.spec.replicas).toBe(1);
        const c = jobmeshContainer(d);
        expect(podEnv(objects, c).LOG_LEVEL).toBe('debug');
        expect(c.securityContext?.readOnlyRootFilesystem).toBe(false);
      }
    });

    it('brings a Redis that the Secret’s REDIS_URL reaches, configured as Jobmesh requires', () => {
      const redis = ofKind(objects, 'Deployment').find((d) => containersOf(d).some((c) => /^redis(:|$)/.test(c.image)));
      expect(redis).toBeDefined();
      const server = containersOf(redis!).find((c) => /^redis(:|$)/.test(c.image))!;
      expect([...(server.command ?? []), ...(server.args ?? [])].join(' ')).toMatch(/--maxmemory-policy noeviction/);
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
  });

  it('restarts `node` through the file that the Tilt image makes writable', () => {
    const restartFile = /RESTART_FILE = '([^']+)'/.exec(tiltfile)?.[1];
    expect(restartFile).toBeDefined();
    expect(read('deploy/docker/Dockerfile.tilt')).toContain(`install -m 666 /dev/null ${restartFile!}`);
    // Tilt replaces the containers' command with this entrypoint and keeps their args (the script).
    expect(tiltfile).toMatch(/entrypoint=\['\/tilt-restart-wrapper', '--watch_file=' \+ RESTART_FILE, 'node'\]/);
  });

  it('deploys the dev overlay and forwards gRPC 50051 and HTTP 9464 of a Deployment it renders', () => {
    const overlay = /k8s_yaml\(kustomize\('([^']+)'\)\)/.exec(tiltfile)?.[1];
    expect(overlay).toBe('deploy/k8s/overlays/dev');
    const deployments = ofKind(kustomize(overlay!), 'Deployment').map((d) => d.metadata.name);
    const resource = /k8s_resource\(\s*'([^']+)',\s*port_forwards=\[([^\]]*)\]/.exec(tiltfile);
    expect(deployments).toContain(resource?.[1]);
    expect(resource![2]!.match(/'[^']+'/g)).toEqual([`'${GRPC_PORT}:${GRPC_PORT}'`, `'${HTTP_PORT}:${HTTP_PORT}'`]);
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

  it('runs redis, jaeger, prometheus, grafana and the scheduler', () => {
    expect(Object.keys(services)).toEqual(expect.arrayContaining(['redis', 'jaeger', 'prometheus', 'grafana', 'scheduler']));
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

  it('points the scheduler at the redis and jaeger services, in production mode, with an environment it accepts', () => {
    const redis = new URL(env.REDIS_URL!);
    expect([redis.protocol, redis.hostname, Number(redis.port || 6379)]).toEqual(['redis:', 'redis', 6379]);
    const otlp = new URL(env.OTEL_EXPORTER_OTLP_ENDPOINT!);
    expect([otlp.hostname, Number(otlp.port)]).toEqual(['jaeger', 4317]);
    expect(env.OTEL_EXPORTER_OTLP_PROTOCOL).toBe('grpc');
    expect(env.JOBMESH_MODE).toBe('production');
    for (const key of Object.keys(env).filter((k) => !k.startsWith('OTEL_'))) expect(ENV_KEYS).toContain(key);
    const parsed = parseEnv(commonEnvSchema, env);
    expect(splitHostPort(parsed.JOBMESH_GRPC_ADDRESS)).toEqual({ host: '0.0.0.0', port: GRPC_PORT });
    expect(splitHostPort(parsed.JOBMESH_HTTP_ADDRESS)).toEqual({ host: '0.0.0.0', port: HTTP_PORT });
  });

  it('publishes the scheduler’s gRPC and HTTP ports', () => {
    expect(containerPorts(scheduler)).toEqual(expect.arrayContaining([GRPC_PORT, HTTP_PORT]));
  });

  it('starts the scheduler once Redis answers, and runs Redis as production mode requires', () => {
    expect(scheduler.depends_on).toMatchObject({ redis: { condition: 'service_healthy' } });
    expect(services.redis!.healthcheck?.test.join(' ')).toMatch(/redis-cli ping/);
    const command = (services.redis!.command ?? []).join(' ');
    expect(command).toMatch(/--appendonly yes/);
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

  it('has Prometheus scrape the scheduler’s metrics port, with the config it mounts', () => {
    const [source] = bindMounts(services.prometheus!).find(([, target]) => target === '/etc/prometheus') ?? [];
    expect(source).toBeDefined();
    const config = YAML.parse(read(posix.join(source!, 'prometheus.yml'))) as {
      scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[];
    };
    const targets = config.scrape_configs.flatMap((j) => j.static_configs.flatMap((c) => c.targets.map((t) => ({ job: j, target: t }))));
    const toScheduler = targets.find(({ target }) => target === `scheduler:${splitHostPort(env.JOBMESH_HTTP_ADDRESS!).port}`);
    expect(toScheduler).toBeDefined();
    expect(toScheduler!.job.metrics_path ?? '/metrics').toBe('/metrics');
    for (const { target } of targets) {
      const host = splitHostPort(target).host;
      if (host !== 'localhost') expect(Object.keys(services)).toContain(host);
    }
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
