// GrpcServer as grpcurl, a load balancer and an oversized client see it: grpc.health.v1, server
// reflection and the message size limit, over a real gRPC connection on 127.0.0.1:0.
import { dirname, join } from 'node:path';
import { type ClientDuplexStream, type ClientReadableStream, credentials, loadPackageDefinition, type ServiceError, status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { SchedulerServiceService } from '@jobmesh/contracts';
import { silentLogger } from '@jobmesh/telemetry';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { FileDescriptorProto } from 'protobufjs/ext/descriptor';
import { type SchedulerHarness, startSchedulerHarness, uniqueQueue, waitFor } from '@jobmesh/scheduler/testing';
import { GrpcServer } from '../src';

const SCHEDULER = 'jobmesh.v1.SchedulerService';
/** The v1 reflection proto @grpc/reflection serves, from its own package. */
const REFLECTION_PROTO = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');

type Status = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
type Callback<T> = (err: ServiceError | null, res?: T) => void;
interface HealthStub {
  check(req: { service: string }, opts: { deadline: Date }, cb: Callback<{ status: Status }>): void;
  watch(req: { service: string }): ClientReadableStream<{ status: Status }>;
  close(): void;
}
interface ReflectionRequest {
  host?: string;
  list_services?: string;
  file_containing_symbol?: string;
}
interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}
interface ReflectionStub {
  ServerReflectionInfo(): ClientDuplexStream<ReflectionRequest, ReflectionResponse>;
  close(): void;
}

const stubs: { close(): void }[] = [];

/** A grpc.health.v1 client built from grpc-health-check's own proto file. */
function healthClient(address: string): HealthStub {
  const def = loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true });
  const pkg = loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: new (a: string, c: unknown) => HealthStub } } } };
  const client = new pkg.grpc.health.v1.Health(address, credentials.createInsecure());
  stubs.push(client);
  return client;
}

function check(client: HealthStub, service: string): Promise<Status> {
  return new Promise((resolve, reject) =>
    client.check({ service }, { deadline: new Date(Date.now() + 2000) }, (err, res) => (err ? reject(err) : resolve(res!.status))),
  );
}

/** A grpc.reflection.v1 client, as grpcurl speaks it. */
function reflectionClient(address: string): ReflectionStub {
  const def = loadSync(REFLECTION_PROTO, { keepCase: true, oneofs: true, defaults: true });
  const pkg = loadPackageDefinition(def) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: new (a: string, c: unknown) => ReflectionStub } } };
  };
  const client = new pkg.grpc.reflection.v1.ServerReflection(address, credentials.createInsecure());
  stubs.push(client);
  return client;
}

/** Sends one request on a fresh ServerReflectionInfo stream and resolves with the first answer. */
function reflect(client: ReflectionStub, req: ReflectionRequest): Promise<ReflectionResponse> {
  return new Promise((resolve, reject) => {
    const call = client.ServerReflectionInfo();
    call.once('data', (res: ReflectionResponse) => {
      resolve(res);
      call.end();
    });
    call.once('error', reject);
    call.write({ host: '', ...req });
  });
}

afterAll(() => {
  for (const s of stubs.splice(0)) s.close();
});

describe('a scheduler behind GrpcServer', () => {
  let h: SchedulerHarness;
  beforeAll(async () => {
    h = await startSchedulerHarness();
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('reports SERVING on grpc.health.v1 for "" and for jobmesh.v1.SchedulerService once listening', async () => {
    const health = healthClient(h.address);
    await expect(check(health, '')).resolves.toBe('SERVING');
    await expect(check(health, SCHEDULER)).resolves.toBe('SERVING');
  });

  it('answers a health check for a service it does not serve with NOT_FOUND', async () => {
    await expect(check(healthClient(h.address), 'jobmesh.v1.NoSuchService')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('lists every jobmesh.v1 service and grpc.health.v1.Health over server reflection', async () => {
    const res = await reflect(reflectionClient(h.address), { list_services: '*' });
    const names = res.list_services_response?.service.map((s) => s.name);
    expect(names).toEqual(
      expect.arrayContaining([
        SCHEDULER,
        'jobmesh.v1.WorkerService',
        'jobmesh.v1.DeadLetterService',
        'jobmesh.v1.MonitorService',
        'grpc.health.v1.Health',
      ]),
    );
  });

  it('returns the file descriptor declaring jobmesh.v1.SchedulerService for file_containing_symbol', async () => {
    const res = await reflect(reflectionClient(h.address), { file_containing_symbol: SCHEDULER });
    expect(res.error_response).toBeUndefined();
    const files = (res.file_descriptor_response?.file_descriptor_proto ?? []).map((bytes) => FileDescriptorProto.decode(bytes) as unknown as {
      name: string;
      package: string;
      service: { name: string; method: { name: string }[] }[];
    });
    const declaring = files[0];
    expect(declaring).toMatchObject({ package: 'jobmesh.v1' });
    const service = declaring!.service.find((s) => s.name === 'SchedulerService');
    expect(service?.method.map((m) => m.name)).toEqual(expect.arrayContaining(['EnqueueJob', 'GetJob', 'WatchJob']));
  });

  it('describes grpc.health.v1.Health over reflection too', async () => {
    const res = await reflect(reflectionClient(h.address), { file_containing_symbol: 'grpc.health.v1.Health' });
    const file = FileDescriptorProto.decode(res.file_descriptor_response!.file_descriptor_proto[0]!) as unknown as { package: string; service: { name: string }[] };
    expect(file.package).toBe('grpc.health.v1');
    expect(file.service.map((s) => s.name)).toContain('Health');
  });

  it('answers file_containing_symbol for an unknown symbol with a NOT_FOUND error response', async () => {
    const res = await reflect(reflectionClient(h.address), { file_containing_symbol: 'jobmesh.v1.Nope' });
    expect(res.error_response).toMatchObject({ error_code: status.NOT_FOUND });
  });

  // Runs last in this block: it stops the harness.
  it('tells a health watcher NOT_SERVING when the scheduler stops', async () => {
    const call = healthClient(h.address).watch({ service: SCHEDULER });
    const seen: Status[] = [];
    call.on('data', (m: { status: Status }) => seen.push(m.status));
    call.on('error', () => undefined); // cancelled below, or cut off by the shutdown
    await waitFor('the watch to report SERVING', () => seen.includes('SERVING'));
    const stopping = h.stop();
    await waitFor('the watch to report NOT_SERVING', () => seen.includes('NOT_SERVING'));
    call.cancel(); // lets the graceful shutdown finish without waiting for this stream
    await stopping;
    expect(seen).toEqual(['SERVING', 'NOT_SERVING']);
  });
});

describe('GrpcServer health status', () => {
  let server: GrpcServer;
  let address: string;
  beforeAll(async () => {
    server = new GrpcServer({ logger: silentLogger() });
    // No handlers: every SchedulerService method answers UNIMPLEMENTED; health is what is tested.
    server.add(SCHEDULER, SchedulerServiceService, {});
    address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  });
  afterAll(async () => {
    await server.shutdown(1000);
  });

  it('reports NOT_SERVING for "" and every added service after setStatus(NOT_SERVING), and SERVING again after setStatus(SERVING)', async () => {
    const health = healthClient(address);
    await expect(check(health, SCHEDULER)).resolves.toBe('SERVING');

    server.setStatus('NOT_SERVING');
    await expect(check(health, '')).resolves.toBe('NOT_SERVING');
    await expect(check(health, SCHEDULER)).resolves.toBe('NOT_SERVING');

    server.setStatus('SERVING');
    await expect(check(health, '')).resolves.toBe('SERVING');
    await expect(check(health, SCHEDULER)).resolves.toBe('SERVING');
  });

  it('reports the port it bound when asked for port 0', () => {
    expect(server.port).toBeGreaterThan(0);
    expect(address).toBe(`127.0.0.1:${server.port}`);
  });
});

describe('JOBMESH_MAX_MESSAGE_BYTES', () => {
  let h: SchedulerHarness;
  beforeAll(async () => {
    // A payload limit far above the message limit, so only the transport can refuse.
    h = await startSchedulerHarness({ env: { JOBMESH_MAX_MESSAGE_BYTES: '2048', JOBMESH_MAX_PAYLOAD_BYTES: String(1024 * 1024) } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('refuses a request larger than the limit with RESOURCE_EXHAUSTED and still serves small ones', async () => {
    const queue = uniqueQueue('max-msg');
    await h.client.createQueue({ queue: { name: queue } });
    await expect(h.client.enqueueJob({ queue, job: { name: 'big', data: { blob: 'x'.repeat(4096) } } })).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      details: expect.stringMatching(/larger than max/i),
    });
    await expect(h.client.enqueueJob({ queue, job: { name: 'small', data: { blob: 'x'.repeat(100) } } })).resolves.toMatchObject({ deduplicated: false });
    const { jobs } = await h.client.listJobs({ queue });
    expect(jobs.map((j) => j.name)).toEqual(['small']);
  });
});
