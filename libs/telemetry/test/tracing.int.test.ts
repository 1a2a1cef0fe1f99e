import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type DecodedSpan, type OtlpReceiver, type RedisHandle, eventually, startOtlpReceiver, startRedis } from '@jobmesh/testing';

// startTracing in a child process, as a service runs it: the real SDK and exporter, over real
// sockets, to a receiver that decodes the requests with the official OTLP definitions. The children
// load the built packages (they have no jest module mapping), so `npm run build` comes first.

const ROOT = join(__dirname, '..', '..', '..');
const FIXTURES = join(__dirname, 'fixtures');

/** What fixtures/make-span.js prints. */
interface Seen {
  enabled: boolean;
  recording: boolean;
  meterProvider: string;
  sdkLoaded: boolean;
}

interface Child {
  proc: ChildProcess;
  stdout: () => string;
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Runs a fixture with only the variables given (and PATH): no OTEL_* of the test's own leaks in. */
function run(fixture: string, env: Record<string, string>, args: string[] = []): Child {
  const proc = spawn(process.execPath, [join(FIXTURES, fixture), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    // 'close', not 'exit': it comes once stdout and stderr are drained too.
    proc.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  children.push(proc);
  return { proc, stdout: () => stdout, exited };
}

/** Runs make-span.js to the end and returns what it saw. */
async function makeSpan(env: Record<string, string>, serviceName?: string): Promise<Seen> {
  const { code, stdout, stderr } = await run('make-span.js', env, serviceName === undefined ? [] : [serviceName]).exited;
  if (code !== 0) throw new Error(`make-span.js exited with ${code}: ${stderr}`);
  return JSON.parse(stdout.trim()) as Seen;
}

// Long enough that the batch processor never exports on its own schedule while a test runs: a span
// that arrives came through shutdown()'s flush.
const NO_SCHEDULED_EXPORT = { OTEL_BSP_SCHEDULE_DELAY: '600000' };

const children: ChildProcess[] = [];
let receiver: OtlpReceiver;

beforeAll(() => {
  if (!existsSync(join(ROOT, 'libs', 'telemetry', 'dist', 'tracing.js')) || !existsSync(join(ROOT, 'libs', 'host', 'dist', 'index.js'))) {
    throw new Error('the fixtures load the built packages: run `npm run build` (npm test does) first');
  }
});
beforeEach(async () => {
  receiver = await startOtlpReceiver();
});
afterEach(async () => {
  for (const proc of children.splice(0)) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  await receiver.close();
});

const byName = (spans: DecodedSpan[], name: string): DecodedSpan => {
  const span = spans.find((s) => s.name === name);
  if (!span) throw new Error(`no span named ${name} among ${spans.map((s) => s.name).join(', ')}`);
  return span;
};

describe.each([
  ['grpc', () => receiver.grpcUrl],
  ['http/protobuf', () => receiver.httpUrl],
  ['http/json', () => receiver.httpUrl],
] as const)('startTracing with OTEL_EXPORTER_OTLP_PROTOCOL=%s', (protocol, endpoint) => {
  it('exports the spans made through the API, decoded from the wire with their ids, kinds, status, attributes, events and links', async () => {
    const seen = await makeSpan(
      {
        ...NO_SCHEDULED_EXPORT,
        OTEL_EXPORTER_OTLP_ENDPOINT: endpoint(),
        OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
        OTEL_SERVICE_NAME: 'svc-from-env',
        OTEL_RESOURCE_ATTRIBUTES: 'service.namespace=jobmesh-tests,deployment.environment.name=test',
      },
      'the-default-name',
    );
    expect(seen).toEqual({ enabled: true, recording: true, meterProvider: 'NoopMeterProvider', sdkLoaded: true });

    const spans = await receiver.waitForSpans((s) => s.length >= 2, 10_000);
    expect(spans).toHaveLength(2);
    const parent = byName(spans, 'parent op');
    const child = byName(spans, 'child op');
    for (const span of spans) {
      expect(span.protocol).toBe(protocol);
      expect(span.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(span.spanId).toMatch(/^[0-9a-f]{16}$/);
      // OTEL_SERVICE_NAME wins over the serviceName option; OTEL_RESOURCE_ATTRIBUTES adds to the resource.
      expect(span.serviceName).toBe('svc-from-env');
      expect(span.resource).toMatchObject({ 'service.namespace': 'jobmesh-tests', 'deployment.environment.name': 'test' });
      expect(span.scope).toEqual({ name: 'jobmesh-tracing-test', version: '1.2.3' });
      expect(span.startTimeUnixNano).toBeGreaterThan(0n);
      expect(span.endTimeUnixNano).toBeGreaterThanOrEqual(span.startTimeUnixNano);
    }
    expect(parent).toMatchObject({ parentSpanId: '', kind: 'PRODUCER', status: { code: 'UNSET', message: '' } });
    expect(parent.attributes).toEqual({ 'test.str': 'x', 'test.int': 7, 'test.bool': true, 'test.list': ['a', 'b'] });
    expect(child).toMatchObject({ traceId: parent.traceId, parentSpanId: parent.spanId, kind: 'CONSUMER', status: { code: 'ERROR', message: 'it broke' } });
    expect(child.events).toEqual([{ name: 'something happened', timeUnixNano: expect.any(BigInt) as bigint, attributes: { 'event.n': 1 } }]);
    expect(child.links).toEqual([{ traceId: parent.traceId, spanId: parent.spanId, traceState: '', attributes: { 'link.why': 'test' } }]);
    // Traces only: no metrics or logs exporter ran (over HTTP they would have posted to /v1/metrics, /v1/logs).
    expect(receiver.otherRequests).toEqual([]);
  });
});

it('takes OTEL_EXPORTER_OTLP_TRACES_ENDPOINT alone as the endpoint, and the serviceName option when no variable names the service', async () => {
  const seen = await makeSpan(
    { ...NO_SCHEDULED_EXPORT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.httpUrl}/v1/traces`, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' },
    'the-default-name',
  );
  expect(seen.enabled).toBe(true);
  const spans = await receiver.waitForSpans((s) => s.length >= 2, 10_000);
  expect(spans.map((s) => s.serviceName)).toEqual(['the-default-name', 'the-default-name']);
});

it('honours OTEL_TRACES_SAMPLER: always_off records and exports nothing', async () => {
  const seen = await makeSpan({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.httpUrl, OTEL_TRACES_SAMPLER: 'always_off' });
  expect(seen).toMatchObject({ enabled: true, recording: false });
  // The child has exited after shutdown(): whatever it was going to send has been sent.
  expect(receiver.spans()).toEqual([]);
});

it('starts nothing with OTEL_SDK_DISABLED=true, even with an endpoint: the receiver gets no request', async () => {
  const seen = await makeSpan({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.grpcUrl, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_SDK_DISABLED: 'true' });
  expect(seen).toEqual({ enabled: false, recording: false, meterProvider: 'NoopMeterProvider', sdkLoaded: false });
  expect(receiver.requests).toBe(0);
  expect(receiver.otherRequests).toEqual([]);
});

it('starts nothing without an exporter endpoint: enabled is false, the SDK is never loaded and spans are the no-op ones', async () => {
  const seen = await makeSpan({ OTEL_SERVICE_NAME: 'svc-from-env', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' });
  expect(seen).toEqual({ enabled: false, recording: false, meterProvider: 'NoopMeterProvider', sdkLoaded: false });
  expect(receiver.requests).toBe(0);
});

describe('a ServiceHost', () => {
  let redis: RedisHandle;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('flushes, on SIGTERM, a span that ended before the signal, with its name as the default service.name', async () => {
    const child = run('host-sigterm.js', {
      ...NO_SCHEDULED_EXPORT,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.grpcUrl,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      REDIS_URL: redis.url,
      JOBMESH_REDIS_PREFIX: `t${randomUUID().slice(0, 8)}`,
      JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
      JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
      JOBMESH_SHUTDOWN_GRACE: '5s',
      JOBMESH_CONFIG: '',
    });
    const traceId = await eventually(() => /^ready ([0-9a-f]{32})$/m.exec(child.stdout())?.[1], 30_000, 'the host fixture to be ready');
    // Ended, but waiting in the batch processor's queue.
    expect(receiver.requests).toBe(0);

    child.proc.kill('SIGTERM');
    const { code, stderr } = await child.exited;
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    const spans = await receiver.waitForSpans((s) => s.some((span) => span.traceId === traceId), 10_000);
    expect(byName(spans, 'before the signal')).toMatchObject({ traceId, serviceName: 'host-fixture', protocol: 'grpc' });
  });
});
