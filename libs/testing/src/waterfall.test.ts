import type { DecodedSpan } from './otlp-receiver';
import { escapeXml, formatDuration, renderWaterfall } from './waterfall';

const TRACE = 'a'.repeat(32);
const OTHER_TRACE = 'b'.repeat(32);
const ms = (n: number): bigint => 1_700_000_000_000_000_000n + BigInt(n) * 1_000_000n;

function span(s: Partial<DecodedSpan> & Pick<DecodedSpan, 'spanId' | 'name'> & { from: number; to: number }): DecodedSpan {
  const { from, to, ...rest } = s;
  return {
    traceId: TRACE,
    parentSpanId: '',
    traceState: '',
    kind: 'INTERNAL',
    startTimeUnixNano: ms(from),
    endTimeUnixNano: ms(to),
    status: { code: 'UNSET', message: '' },
    attributes: {},
    events: [],
    links: [],
    serviceName: 'scheduler',
    resource: {},
    scope: { name: 'jobmesh', version: '' },
    protocol: 'http/protobuf',
    ...rest,
  };
}

// A job enqueued on a queue whose name needs escaping, failing its first attempt, then completing.
const QUEUE = `<script>alert("q")</script> & 'co'`;
const root = span({ spanId: '0000000000000001', name: 'jobmesh.v1.SchedulerService/EnqueueJob', kind: 'SERVER', from: 0, to: 1000 });
const send = span({ spanId: '0000000000000002', parentSpanId: root.spanId, name: `send ${QUEUE}`, kind: 'PRODUCER', from: 10, to: 20, attributes: { 'messaging.destination.name': QUEUE } });
const attempt1 = span({
  spanId: '0000000000000003',
  parentSpanId: send.spanId,
  name: `process ${QUEUE}`,
  kind: 'CONSUMER',
  serviceName: 'worker-pool',
  from: 250,
  to: 500,
  status: { code: 'ERROR', message: 'boom' },
  attributes: { 'jobmesh.job.attempt': 1, 'jobmesh.job.max_attempts': 2 },
  events: [{ name: 'exception', timeUnixNano: ms(499), attributes: { 'exception.type': 'Error', 'exception.message': 'boom' } }],
});
const attempt2 = span({ spanId: '0000000000000004', parentSpanId: send.spanId, name: `process ${QUEUE}`, kind: 'CONSUMER', serviceName: 'worker-pool', from: 600, to: 900, attributes: { 'jobmesh.job.attempt': 2, 'jobmesh.job.max_attempts': 2 } });
// Another trace's span that links to the first attempt.
const replay = span({ traceId: OTHER_TRACE, spanId: '0000000000000005', name: 'replay q', kind: 'PRODUCER', serviceName: 'dead-letter', from: 2000, to: 2010, links: [{ traceId: TRACE, spanId: attempt1.spanId, traceState: '', attributes: { 'jobmesh.link': 'dead_letter' } }] });

/** The rows of a picture: each span's group, in document order. */
function rows(svg: string): { id: string; depth: number; status: string; error: boolean; body: string; bar: { x: number; width: number; stroke?: string } }[] {
  return svg
    .split('<g class="span')
    .slice(1)
    .map((chunk) => {
      const head = /^( error)?" data-span-id="([0-9a-f]+)" data-parent-span-id="[0-9a-f]*" data-depth="(\d+)" data-status="(\w+)"/.exec(chunk);
      const bar = /<rect class="bar"[^>]*\/>/.exec(chunk)?.[0];
      if (!head || !bar) throw new Error(`not a row: ${chunk.slice(0, 200)}`);
      const attr = (name: string): string | undefined => new RegExp(` ${name}="([^"]*)"`).exec(bar)?.[1];
      return { id: head[2]!, depth: Number(head[3]), status: head[4]!, error: head[1] !== undefined, body: chunk, bar: { x: Number(attr('x')), width: Number(attr('width')), stroke: attr('stroke') } };
    });
}

/** Every tag closed in order, and no `&` that does not start an entity: the XML a viewer can parse. */
function expectWellFormed(svg: string): void {
  expect(svg).not.toMatch(/&(?!(amp|lt|gt|quot|#39);)/);
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)\b[^<>]*?(\/?)>/g)) {
    const [, closing, tag, selfClosing] = m;
    if (selfClosing) continue;
    if (closing) expect(stack.pop()).toBe(tag);
    else stack.push(tag!);
  }
  expect(stack).toEqual([]);
  // What is left between the tags is text: no stray markup.
  expect(svg.replace(/<(\/?)([a-zA-Z]+)\b[^<>]*?(\/?)>/g, '')).not.toMatch(/[<>]/);
}

describe('renderWaterfall', () => {
  // Out of order, with one span sent twice, as exports from several processes arrive.
  const input = [attempt2, replay, attempt1, send, root, attempt1];
  const svg = renderWaterfall(input);

  it('draws one row per span in tree order: children under their parent, siblings by start time', () => {
    expect(rows(svg).map((r) => [r.id, r.depth])).toEqual([
      [root.spanId, 0],
      [send.spanId, 1],
      [attempt1.spanId, 2],
      [attempt2.spanId, 2],
    ]);
  });

  it("scales the bars to the trace's time span and labels their durations", () => {
    const [r, , a1, a2] = rows(svg);
    expect(r!.bar.width).toBeGreaterThan(500);
    expect(a1!.bar.x - r!.bar.x).toBeCloseTo(0.25 * r!.bar.width, 1);
    expect(a1!.bar.width).toBeCloseTo(0.25 * r!.bar.width, 1);
    expect(a2!.bar.x - r!.bar.x).toBeCloseTo(0.6 * r!.bar.width, 1);
    expect(a2!.bar.width).toBeCloseTo(0.3 * r!.bar.width, 1);
    expect(a1!.body).toContain('>250ms</text>');
    expect(a2!.body).toContain('>300ms</text>');
    expect(r!.body).toContain('>1s</text>');
  });

  it('has a header with the trace id, duration, span count and services', () => {
    expect(svg).toContain(`Trace ID ${TRACE}`);
    expect(svg).toMatch(/Duration <\/tspan><tspan[^>]*>1s</);
    expect(svg).toMatch(/Total Spans <\/tspan><tspan[^>]*>4</);
    expect(svg).toMatch(/Services <\/tspan><tspan[^>]*>2</);
    expect(svg).toContain('>scheduler</text>');
    expect(svg).toContain('>worker-pool</text>');
    expect(svg).toContain('scheduler: jobmesh.v1.SchedulerService/EnqueueJob');
  });

  it('escapes names and attribute values', () => {
    expect(svg).not.toContain('<script');
    expect(svg).toContain('send &lt;script&gt;alert(&quot;q&quot;)&lt;/script&gt; &amp; &#39;co&#39;');
    expectWellFormed(svg);
    expect(escapeXml('a\u0000b\ud800c')).toBe('a\ufffdb\ufffdc');
  });

  it('marks a failed span: a red outline, a "!" and its error', () => {
    const byId = new Map(rows(svg).map((r) => [r.id, r]));
    const failed = byId.get(attempt1.spanId)!;
    expect(failed).toMatchObject({ error: true, status: 'ERROR' });
    expect(failed.bar.stroke).toBe('#DB2828');
    expect(failed.body).toContain('class="error-mark"');
    expect(failed.body).toContain('attempt 1 of 2 · ✖ Error: boom');
    expect(failed.body).toContain('class="event"');
    for (const ok of [root, send, attempt2].map((s) => byId.get(s.spanId)!)) {
      expect(ok).toMatchObject({ error: false });
      expect(ok.bar.stroke).toBeUndefined();
      expect(ok.body).not.toContain('error-mark');
    }
  });

  it('notes links both ways, naming the span at the other end', () => {
    const failed = rows(svg).find((r) => r.id === attempt1.spanId)!;
    expect(failed.body).toContain('↩ linked from dead-letter: replay q in trace bbbbbbbb…');
    const other = renderWaterfall(input, { traceId: OTHER_TRACE });
    expect(rows(other).map((r) => r.id)).toEqual([replay.spanId]);
    expect(other).toContain(`↪ links to worker-pool: process ${escapeXml(QUEUE)} in trace aaaaaaaa… (dead_letter)`);
    expectWellFormed(other);
  });

  it('draws a span whose parent is missing as a root, saying so', () => {
    const orphan = span({ spanId: '0000000000000009', parentSpanId: 'ffffffffffffffff', name: 'lost', from: 100, to: 200 });
    const out = rows(renderWaterfall([root, orphan]));
    expect(out.map((r) => [r.id, r.depth])).toEqual([
      [root.spanId, 0],
      [orphan.spanId, 0],
    ]);
    expect(out[1]!.body).toContain('parent ffffffffffffffff not received');
  });

  it('draws a picture that says so for no spans', () => {
    const empty = renderWaterfall([]);
    expect(empty).toContain('No spans');
    expectWellFormed(empty);
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0ms'],
    [812_000, '812μs'],
    [4_213_000, '4.21ms'],
    [45_600_000, '45.6ms'],
    [1_500_000_000, '1.5s'],
    [999, '999ns'],
  ])('writes %p ns as %p', (ns, text) => expect(formatDuration(ns)).toBe(text));
});
