import { gzipSync } from 'node:zlib';
import { type OtlpReceiver, startOtlpReceiver } from '../src';

// The receiver's own edges; that real exporters' requests decode is shown by libs/telemetry's
// tracing.int.test.ts, which exports over all three protocols.

let receiver: OtlpReceiver;
beforeEach(async () => {
  receiver = await startOtlpReceiver();
});
afterEach(async () => {
  await receiver.close();
});

const post = (path: string, type: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(`${receiver.httpUrl}${path}`, { method: 'POST', headers: { 'content-type': type, ...headers }, body });

/** A hand-written OTLP/JSON request: ids in hex, 64-bit integers as decimal strings, enums as integers. */
const JSON_REQUEST = {
  resourceSpans: [
    {
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'hand-made' } }] },
      scopeSpans: [
        {
          scope: { name: 'scope', version: '1' },
          spans: [
            {
              traceId: '5b8efff798038103d269b633813fc60c',
              spanId: 'eee19b7ec3c1b174',
              parentSpanId: 'eee19b7ec3c1b173',
              name: 'hand-made span',
              kind: 4,
              startTimeUnixNano: '1544712660000000001',
              endTimeUnixNano: '1544712661000000002',
              attributes: [
                { key: 'big', value: { intValue: '9007199254740993' } },
                { key: 'nested', value: { kvlistValue: { values: [{ key: 'a', value: { doubleValue: 1.5 } }] } } },
              ],
              status: { code: 2, message: 'bad' },
            },
          ],
        },
      ],
    },
  ],
};

it('decodes OTLP/JSON with hex ids and exact 64-bit integers, also gzipped', async () => {
  expect((await post('/v1/traces', 'application/json', gzipSync(JSON.stringify(JSON_REQUEST)), { 'content-encoding': 'gzip' })).status).toBe(200);
  const [span] = await receiver.waitForSpans((s) => s.length === 1, 5000);
  expect(span).toMatchObject({
    traceId: '5b8efff798038103d269b633813fc60c',
    spanId: 'eee19b7ec3c1b174',
    parentSpanId: 'eee19b7ec3c1b173',
    kind: 'PRODUCER',
    startTimeUnixNano: 1544712660000000001n,
    endTimeUnixNano: 1544712661000000002n,
    status: { code: 'ERROR', message: 'bad' },
    attributes: { big: 9007199254740993n, nested: { a: 1.5 } },
    serviceName: 'hand-made',
    protocol: 'http/json',
  });
  expect(receiver.requests).toBe(1);
});

it('answers an undecodable body with 400 and an unknown content type with 415, counting both as trace requests', async () => {
  expect((await post('/v1/traces', 'application/x-protobuf', Buffer.from([0xff, 0xff, 0xff]))).status).toBe(400);
  expect((await post('/v1/traces', 'text/plain', 'hello')).status).toBe(415);
  expect(receiver.requests).toBe(2);
  expect(receiver.spans()).toEqual([]);
});

it('answers anything but POST /v1/traces with 404 and lists it in otherRequests', async () => {
  expect((await post('/v1/metrics', 'application/x-protobuf', Buffer.alloc(0))).status).toBe(404);
  expect(receiver.otherRequests).toEqual(['POST /v1/metrics']);
  expect(receiver.requests).toBe(0);
});

it('rejects waitForSpans after its deadline, saying what had arrived', async () => {
  await expect(receiver.waitForSpans((s) => s.length > 0, 50)).rejects.toThrow('timed out after 50 ms waiting for spans; 0 requests, spans: none');
});
