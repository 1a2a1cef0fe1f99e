// Property-based fuzzing of every RPC that `jobmesh up` serves (issue 15, point 6): requests are
// made from the proto descriptors with fast-check (random and boundary values, 1 MiB strings,
// Struct nesting 1,000 deep, NaN and Infinity, lone surrogates, 10,000-element lists, unknown enum
// values, messages over the size limit) and some are then corrupted byte by byte (malformed
// protobuf, invalid UTF-8 in strings). Every answer must be a status that tells the caller what it
// did, never INTERNAL or UNKNOWN; the server must not crash; a rejected call must write nothing
// (the keyspace fingerprint); RSS is reported.
//
// `npm test` runs a fixed seed and a bounded number of runs; FUZZ_SEED and FUZZ_RUNS run others
// (e.g. FUZZ_SEED=7 FUZZ_RUNS=5000 npx jest test/fuzz).
import { resolve } from 'node:path';
import { status } from '@grpc/grpc-js';
import { up, type UpHandle } from '@jobmesh/cli';
import { PROTO_DIR, PROTO_FILES } from '@jobmesh/contracts';
import { JobmeshClient } from '@jobmesh/sdk';
import { keyspace, RawGrpcClient, type RawOutcome, type RedisClient, type RedisHandle, connectRedis, serviceEnv, startRedis, uniquePrefix } from '@jobmesh/testing';
import fc from 'fast-check';
import * as protobuf from 'protobufjs';

// From the environment of the test run (test code; the services read theirs through libs/config).
const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

/** What an answer may be: each tells the caller what it did, or that it was refused. */
const ALLOWED = new Set([
  status.OK,
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.ALREADY_EXISTS,
  status.FAILED_PRECONDITION,
  status.RESOURCE_EXHAUSTED,
  status.UNAUTHENTICATED,
  status.PERMISSION_DENIED,
  status.OUT_OF_RANGE,
]);

const MiB = 1024 * 1024;
/** One string of 1 MiB, and one over the 8 MiB message limit, made once. */
const BIG = 'x'.repeat(MiB);
const HUGE = 'y'.repeat(9 * MiB);

// ---- the contract, from the proto files ----

// The test's own protobufjs makes Structs 1,000 deep (the server decodes with the generated code,
// whose limit is its own).
protobuf.util.recursionLimit = 5000;
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : resolve(PROTO_DIR, target));
root.loadSync(PROTO_FILES, { keepCase: true });
root.resolveAll();

const SERVICES = ['jobmesh.v1.SchedulerService', 'jobmesh.v1.WorkerService', 'jobmesh.v1.DeadLetterService', 'jobmesh.v1.MonitorService', 'externalscaler.ExternalScaler'];
const METHODS = SERVICES.flatMap((name) => {
  const service = root.lookupService(name);
  return service.methodsArray.map((m) => ({ path: `/${name}/${m.name}`, method: m, request: root.lookupType(m.requestType), stream: !!m.requestStream, serverStream: !!m.responseStream }));
});

// ---- values ----

/** A queue that exists, so generated requests also reach past the queue lookup. */
const KNOWN_QUEUE = 'fuzz-known';

const strings = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant(KNOWN_QUEUE) },
    { weight: 3, arbitrary: fc.constantFrom('fuzz-other', 'job-1', 'x', '*', 'emails', '0', '1') },
    { weight: 3, arbitrary: fc.string({ maxLength: 30 }) },
    { weight: 1, arbitrary: fc.constantFrom('', ' ', '../etc/passwd', 'a:b', '\uFFFD', '\uD800', 'a\uDC00b', 'é', '\u0000', '(a+)+b', '(?=x)', '* * * * * *') },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
    { weight: 1, arbitrary: fc.constantFrom(BIG, 'a'.repeat(201), 'q'.repeat(1025)) },
  );

const INT_EDGES = [0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 21, 2 ** 21 - 1, 1000, 10_000, 10_001];
const UINT_EDGES = [0, 1, 2 ** 32 - 1, 2 ** 31, 2 ** 21, 2 ** 21 - 1, 1000, 1001, 10_000, 10_001];
const LONG_EDGES = ['0', '1', '-1', '4611686018427387904', '-4611686018427387904', '9007199254740993', '315576000001', '9223372036854775807'];

function scalar(type: string, repeated: boolean): fc.Arbitrary<unknown> {
  switch (type) {
    case 'string':
      return strings();
    case 'bytes':
      return fc.uint8Array({ maxLength: 16 });
    case 'bool':
      return fc.boolean();
    case 'double':
    case 'float':
      return fc.oneof(fc.double(), fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 1e308, 0.5));
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return fc.oneof(fc.constantFrom(...INT_EDGES), fc.integer());
    case 'uint32':
    case 'fixed32':
      return fc.oneof(fc.constantFrom(...UINT_EDGES), fc.nat({ max: 2 ** 32 - 1 }));
    case 'int64':
    case 'sint64':
    case 'sfixed64':
    case 'uint64':
    case 'fixed64':
      // As decimal strings: protobufjs reads them into Longs exactly.
      return fc
        .oneof(fc.constantFrom(...LONG_EDGES), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String))
        .map((s) => (type.startsWith('u') || type.startsWith('fixed') ? s.replace('-', '') : s));
    default:
      throw new Error(`no arbitrary for ${type} (repeated: ${repeated})`);
  }
}

/** A Struct nested `levels` deep, as protobufjs objects. */
function deepStruct(levels: number): unknown {
  let v: unknown = { fields: { a: { numberValue: 1 } } };
  for (let i = 1; i < levels; i++) v = { fields: { a: { structValue: v } } };
  return v;
}

const messages = new Map<string, fc.Arbitrary<Record<string, unknown>>>();

const LIKELY = new Set(['queue', 'name', 'id', 'job', 'jobs', 'root', 'schedule', 'template', 'queues', 'hello', 'worker_id']);

/** A message of `type`, up to `depth` levels of messages deep. */
function message(type: protobuf.Type, depth: number): fc.Arbitrary<Record<string, unknown>> {
  const key = `${type.fullName}@${depth}`;
  const made = messages.get(key);
  if (made) return made;
  let arb: fc.Arbitrary<Record<string, unknown>>;
  if (type.fullName === '.google.protobuf.Struct' && depth > 0) {
    arb = fc.oneof(
      { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => ({ fields: toFields(v) })) },
      { weight: 1, arbitrary: fc.constantFrom(32, 33, 1000).map((n) => deepStruct(n) as Record<string, unknown>) },
    );
  } else if (depth <= 0) {
    arb = fc.constant({});
  } else {
    // Each field is left out two times in three: requests then often get past validation, and a
    // bad value in one field is not always hidden behind another one.
    // The fields that name what a call is about are there nine times in ten.
    const fields = type.fieldsArray.map((f) =>
      fc.oneof({ weight: LIKELY.has(f.name) ? 1 : 20, arbitrary: fc.constant(undefined) }, { weight: LIKELY.has(f.name) ? 9 : 10, arbitrary: field(f, depth) }).map((v) => [f.name, v] as const),
    );
    arb = fc.tuple(...fields).map((entries) => Object.fromEntries(entries.filter(([, v]) => v !== undefined)));
  }
  messages.set(key, arb);
  return arb;
}

/** Struct fields for a JSON value (a non-object goes in as field "v"). */
function toFields(v: unknown): Record<string, unknown> {
  const obj = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : { v };
  return Object.fromEntries(Object.entries(obj).map(([k, x]) => [k, toValue(x)]));
}

function toValue(x: unknown): Record<string, unknown> {
  if (x === null) return { nullValue: 0 };
  if (typeof x === 'number') return { numberValue: x };
  if (typeof x === 'string') return { stringValue: x };
  if (typeof x === 'boolean') return { boolValue: x };
  if (Array.isArray(x)) return { listValue: { values: x.map(toValue) } };
  return { structValue: { fields: toFields(x) } };
}

function single(f: protobuf.Field, depth: number): fc.Arbitrary<unknown> {
  const resolved = f.resolvedType;
  if (resolved instanceof protobuf.Enum) return fc.oneof(fc.constantFrom(...Object.values(resolved.values)), fc.constantFrom(99, -1, 2 ** 31 - 1));
  if (resolved instanceof protobuf.Type) {
    if (resolved.fullName === '.google.protobuf.Duration' || resolved.fullName === '.google.protobuf.Timestamp') {
      return fc.record({ seconds: scalar('int64', false), nanos: fc.oneof(fc.constantFrom(0, 2e9, -1, 999_999_999, 500_000_000), fc.integer()) }, { requiredKeys: [] });
    }
    return fc.constant(0).chain(() => message(resolved, depth - 1));
  }
  return scalar(f.type, f.repeated);
}

function field(f: protobuf.Field, depth: number): fc.Arbitrary<unknown> {
  if (f instanceof protobuf.MapField) {
    return fc.oneof(
      { weight: 4, arbitrary: fc.dictionary(strings().filter((k) => k.length < 100), single(f, depth), { maxKeys: 3 }) },
      { weight: 1, arbitrary: fc.constant(Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'v']))) },
    );
  }
  if (f.repeated) {
    return fc.oneof(
      { weight: 6, arbitrary: fc.array(single(f, depth), { maxLength: 3 }) },
      // 10,000 elements of one value: the list is long, the generation cheap.
      { weight: 1, arbitrary: single(f, 1).map((v) => Array.from({ length: 10_000 }, () => (typeof v === 'string' ? v.slice(0, 64) : v))) },
    );
  }
  return single(f, depth);
}

// ---- plausible requests: valid-looking values, so calls get past validation and write ----

const plausibleMessages = new Map<string, fc.Arbitrary<Record<string, unknown>>>();

function plausibleSingle(f: protobuf.Field, depth: number): fc.Arbitrary<unknown> {
  const resolved = f.resolvedType;
  if (resolved instanceof protobuf.Enum) return fc.constantFrom(...Object.values(resolved.values));
  if (resolved instanceof protobuf.Type) {
    if (resolved.fullName === '.google.protobuf.Duration') return fc.record({ seconds: fc.nat({ max: 120 }), nanos: fc.constant(0) });
    if (resolved.fullName === '.google.protobuf.Timestamp') return fc.integer({ min: -3600, max: 86_400 }).map((d) => ({ seconds: Math.floor(Date.now() / 1000) + d, nanos: 0 }));
    if (resolved.fullName === '.google.protobuf.Struct') return fc.dictionary(fc.constantFrom('a', 'b', 'n'), fc.oneof(fc.integer(), fc.string({ maxLength: 8 }))).map((v) => ({ fields: toFields(v) }));
    return fc.constant(0).chain(() => plausible(resolved, depth - 1));
  }
  switch (f.type) {
    case 'string':
      return fc.constantFrom(KNOWN_QUEUE, KNOWN_QUEUE, 'job-1', 'x', 'k-1', 'w-1');
    case 'bool':
      return fc.boolean();
    case 'double':
    case 'float':
      return fc.double({ min: 0, max: 1, noNaN: true });
    case 'bytes':
      return fc.uint8Array({ maxLength: 4 });
    default:
      return f.type.includes('64') ? fc.nat({ max: 60 }).map(String) : fc.nat({ max: 5 });
  }
}

function plausible(type: protobuf.Type, depth: number): fc.Arbitrary<Record<string, unknown>> {
  const key = `${type.fullName}@${depth}`;
  const made = plausibleMessages.get(key);
  if (made) return made;
  let arb: fc.Arbitrary<Record<string, unknown>> = fc.constant({});
  if (depth > 0) {
    const fields = type.fieldsArray.map((f) => {
      const one = plausibleSingle(f, depth);
      const value = f instanceof protobuf.MapField ? fc.dictionary(fc.constantFrom('team', 'tier'), one, { maxKeys: 2 }) : f.repeated ? fc.array(one, { maxLength: 2 }) : one;
      return fc.oneof({ weight: LIKELY.has(f.name) ? 1 : 3, arbitrary: fc.constant(undefined) }, { weight: LIKELY.has(f.name) ? 9 : 1, arbitrary: value }).map((v) => [f.name, v] as const);
    });
    arb = fc.tuple(...fields).map((entries) => Object.fromEntries(entries.filter(([, v]) => v !== undefined)));
  }
  plausibleMessages.set(key, arb);
  return arb;
}

/** A plausible request with one top-level field given a wild value: the bad value gets past the rest. */
function oneWildField(type: protobuf.Type): fc.Arbitrary<Record<string, unknown>> {
  if (!type.fieldsArray.length) return plausible(type, 4);
  return fc.tuple(plausible(type, 4), fc.constantFrom(...type.fieldsArray).chain((f) => field(f, 3).map((v) => [f.name, v] as const))).map(([m, [name, v]]) => ({ ...m, [name]: v }));
}

/** Encoded bytes of a generated request, corrupted or not. */
function request(type: protobuf.Type): fc.Arbitrary<{ bytes: Buffer; how: string }> {
  const encoded = fc.oneof(
    { weight: 6, arbitrary: message(type, 4).map((m) => ({ m, oversized: false })) },
    { weight: 3, arbitrary: plausible(type, 4).map((m) => ({ m, oversized: false })) },
    { weight: 4, arbitrary: oneWildField(type).map((m) => ({ m, oversized: false })) },
    // Over the 8 MiB message limit.
    { weight: 1, arbitrary: fc.constant({ m: {}, oversized: true }) },
  );
  return fc
    .tuple(
      encoded,
      fc.oneof(
        { weight: 8, arbitrary: fc.constant<Mutation>({ kind: 'none' }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.constantFrom(0xff, 0x80, 0xc0, 0xfe, 0x0f, 0x07) }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('append' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 8 }) }) },
      ),
    )
    .map(([{ m, oversized }, mutation]) => {
      let bytes: Buffer;
      if (oversized) {
        // Field 1 of nearly every request is a string: 9 MiB of it.
        bytes = Buffer.from(protobuf.Writer.create().uint32(10).string(HUGE).finish());
      } else {
        bytes = Buffer.from(type.encode(type.fromObject(m)).finish());
      }
      return { bytes: mutate(bytes, mutation), how: `${oversized ? 'oversized' : 'generated'}/${mutation.kind}` };
    });
}

type Mutation = { kind: 'none' } | { kind: 'truncate'; at: number } | { kind: 'byte'; at: number; value: number } | { kind: 'append'; extra: Uint8Array };

function mutate(bytes: Buffer, m: Mutation): Buffer {
  if (m.kind === 'none' || bytes.length === 0) return m.kind === 'append' ? Buffer.from(m.extra) : bytes;
  if (m.kind === 'truncate') return bytes.subarray(0, m.at % bytes.length);
  if (m.kind === 'append') return Buffer.concat([bytes, m.extra]);
  const out = Buffer.from(bytes);
  out[m.at % out.length] = m.value;
  return out;
}

// ---- the servers ----

let redis: RedisHandle;
let handle: UpHandle;
let raw: RawGrpcClient;
let probe: RedisClient;
let prefix: string;

beforeAll(async () => {
  redis = await startRedis();
  prefix = uniquePrefix();
  // The worker-pool serves no queue of the fuzz's: jobs it enqueues wait, and nothing but the
  // calls themselves writes (the fingerprint sees only what a call did).
  handle = await up(
    serviceEnv(redis, prefix, {
      JOBMESH_WORKER_QUEUES: 'fuzz-unserved',
      JOBMESH_DLQ_SWEEP_INTERVAL: '1h',
      JOBMESH_HELLO_TIMEOUT: '1s',
      LOG_LEVEL: 'silent',
    }),
    () => undefined,
  );
  raw = new RawGrpcClient(handle.grpcAddress);
  probe = connectRedis(redis.url);
  await ensureKnownQueue();
});

/** Creates KNOWN_QUEUE with a job "job-1", unless it exists. */
async function ensureKnownQueue(): Promise<void> {
  const client = new JobmeshClient({ address: handle.grpcAddress, timeoutMs: 5000 });
  try {
    await client.createQueue({ queue: { name: KNOWN_QUEUE } }).catch((err: { code?: number }) => {
      if (err.code !== status.ALREADY_EXISTS) throw err;
    });
    await client.enqueueJob({ queue: KNOWN_QUEUE, job: { name: 'x', options: { jobId: 'job-1' } } });
  } finally {
    client.close();
  }
}

afterAll(async () => {
  raw?.close();
  await probe?.quit();
  await handle?.stop();
  await redis?.stop();
});

/** Keys under the prefix that the services rewrite on their own (heartbeats, directories, figures). */
const BACKGROUND = /:(_workers|_served|_replicas|_window|_directory|_heartbeat|_wakeups|_health)\b|:stalled-check$|:meta$/;

async function fingerprint(): Promise<Record<string, string>> {
  const all = await keyspace(probe, prefix);
  return Object.fromEntries(Object.entries(all).filter(([k]) => !BACKGROUND.test(k)));
}

async function send(m: (typeof METHODS)[number], bytes: Buffer): Promise<RawOutcome> {
  if (m.stream) {
    // One frame, then half-close; a stream still open after 0.5 s is cancelled by us (not an error).
    const out = await raw.bidi(m.path, [bytes], { timeoutMs: 500 });
    return out.code === status.CANCELLED ? { ...out, code: status.OK } : out;
  }
  if (m.serverStream) {
    const out = await raw.serverStream(m.path, bytes, { timeoutMs: 500 });
    return out.code === status.CANCELLED ? { ...out, code: status.OK } : out;
  }
  return raw.unary(m.path, bytes, { timeoutMs: 15_000 });
}

it('answers every generated request with a status that is the caller’s, writes nothing when it refuses, and keeps memory bounded', async () => {
  const codes = new Map<string, number>();
  const rssStart = process.memoryUsage().rss;
  let rssPeak = rssStart;
  const arb = fc.constantFrom(...METHODS).chain((m) => request(m.request).map((r) => ({ m, ...r })));
  await fc.assert(
    fc.asyncProperty(arb, async ({ m, bytes, how }) => {
      const before = await fingerprint();
      const out = await send(m, bytes);
      const tag = `${m.path} ${status[out.code]}`;
      // The fuzz may delete the queue most requests name: it comes back, for the next run.
      if (m.path.endsWith('/DeleteQueue') && out.code === status.OK) await ensureKnownQueue();
      codes.set(tag, (codes.get(tag) ?? 0) + 1);
      rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      if (!ALLOWED.has(out.code)) throw new Error(`${m.path} (${how}, ${bytes.length} bytes) answered ${status[out.code]}: ${out.details}`);
      if (out.code !== status.OK && !m.stream) {
        // A refused call wrote nothing. (A stream may have done work before it was refused.)
        const after = await fingerprint();
        expect({ call: m.path, how, keys: after }).toEqual({ call: m.path, how, keys: before });
      }
    }),
    { seed: SEED, numRuns: RUNS, endOnFailure: true },
  );
  // The server still serves after all of it.
  const client = new JobmeshClient({ address: handle.grpcAddress, timeoutMs: 5000 });
  try {
    await expect(client.listQueues({})).resolves.toMatchObject({ queues: expect.any(Array) });
  } finally {
    client.close();
  }
  const rss = process.memoryUsage().rss;
  process.stdout.write(
    `fuzz: seed ${SEED}, ${RUNS} runs over ${METHODS.length} methods; RSS ${mb(rssStart)} → peak ${mb(rssPeak)} → ${mb(rss)} MiB (test and server in one process)\n` +
      [...codes.entries()]
        .sort()
        .map(([k, n]) => `  ${k}: ${n}`)
        .join('\n') +
      '\n',
  );
  // Bounded: the 9 MiB requests and 10,000-element lists come and go.
  expect(rss - rssStart).toBeLessThan(512 * MiB);
}, 60_000 + RUNS * 300);

const mb = (bytes: number): string => (bytes / MiB).toFixed(0);
