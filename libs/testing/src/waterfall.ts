// A trace drawn as Jaeger's trace view draws it, from the spans an exporter really sent (see
// otlp-receiver.ts): a header with the trace's id, start, duration, services, depth and span count;
// then one row per span in tree order (children under their parent, siblings by start time),
// indented by depth, with its service and name on the left and a bar on a time axis scaled to the
// whole trace on the right, coloured per service (Jaeger's palette), failed spans outlined in red
// with a "!" mark, events as ticks on the bar, and a note under the bar for attempts, errors and
// links. The result is one self-contained SVG: no scripts, no external fonts or images, so GitHub
// shows it in a README. Each row's <title> holds the span's full details (a tooltip in a browser).
import type { DecodedSpan, OtlpValue } from './otlp-receiver';

export interface WaterfallOptions {
  /**
   * The trace to draw when `spans` holds several. The others are only used to name the spans that
   * this trace's spans link to, or are linked from. @default the trace with the most spans (of
   * those, the one that started first)
   */
  traceId?: string;
  /** Width of the picture, px. @default 1200 */
  width?: number;
  /** The header's first line. @default "<root span's service>: <root span's name>" */
  title?: string;
}

// Jaeger UI's service colours, in the order it hands them out.
const PALETTE = ['#17B8BE', '#F8DCA1', '#B7885E', '#FFCB99', '#F89570', '#829AE3', '#E79FD5', '#1E96BE', '#89DAC1', '#B3AD9E', '#12939A', '#DDB27C', '#88572C', '#FF9833', '#EF5D28', '#162A65', '#DA70BF', '#125C77', '#4DC19C', '#776E57'];
const ERROR_RED = '#DB2828';
const FONT = "-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";

const PAD = 16;
const LABEL_WIDTH = 380;
const INDENT = 16;
const ROW_HEIGHT = 28;
const NOTE_HEIGHT = 14;
const BAR_HEIGHT = 14;
const RULER_HEIGHT = 26;
/** A rough advance of one character, as a fraction of the font size, to cut text that would not fit. */
const CHAR_WIDTH = 0.6;

/** One span's place in the drawing. */
interface Row {
  span: DecodedSpan;
  depth: number;
  /** Its parent is named but not among the spans. */
  orphan: boolean;
  notes: { text: string; error?: boolean }[];
}

/** Escapes text for SVG (XML) content and attribute values; characters XML 1.0 forbids become U+FFFD. */
export function escapeXml(text: string): string {
  return text
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')
    .replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** A duration as Jaeger writes it: 812μs, 4.21ms, 1.5s. */
export function formatDuration(ns: number): string {
  if (ns === 0) return '0ms';
  const units: [number, string][] = [
    [1e9, 's'],
    [1e6, 'ms'],
    [1e3, 'μs'],
  ];
  for (const [size, unit] of units) {
    if (Math.abs(ns) >= size) {
      const v = ns / size;
      const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
      return `${Number(v.toFixed(digits))}${unit}`;
    }
  }
  return `${Math.round(ns)}ns`;
}

/**
 * Renders one trace of `spans` (see WaterfallOptions.traceId) as an SVG document. Spans are
 * deduplicated by span id (an exporter that retried may send one twice); a span whose parent is
 * not among them is drawn as a root, with a note saying so.
 */
export function renderWaterfall(spans: DecodedSpan[], opts: WaterfallOptions = {}): string {
  const width = Math.max(opts.width ?? 1200, LABEL_WIDTH + 300);
  const all = dedupe(spans);
  const traceId = opts.traceId ?? pickTrace(all);
  const mine = all.filter((s) => s.traceId === traceId);
  if (mine.length === 0) return emptyPicture(width, traceId);

  const rows = treeOrder(mine);
  const byId = new Map(all.map((s) => [s.spanId, s]));
  for (const row of rows) row.notes = notesOf(row, all, byId);

  const start = mine.reduce((m, s) => (s.startTimeUnixNano < m ? s.startTimeUnixNano : m), mine[0]!.startTimeUnixNano);
  const end = mine.reduce((m, s) => (endOf(s) > m ? endOf(s) : m), endOf(mine[0]!));
  const totalNs = Number(end - start);
  const scaleNs = Math.max(totalNs, 1);

  const services: string[] = [];
  for (const r of rows) if (!services.includes(service(r.span))) services.push(service(r.span));
  const colour = (s: DecodedSpan): string => PALETTE[services.indexOf(service(s)) % PALETTE.length]!;

  // The time axis, in px.
  const x0 = PAD + LABEL_WIDTH + 12;
  const x1 = width - PAD - 8;
  const timelineWidth = x1 - x0;
  const xOf = (t: bigint): number => x0 + (Number(t - start) / scaleNs) * timelineWidth;

  const out: string[] = [];
  let y = PAD;

  // ---- header ----
  const root = rows[0]!.span;
  const title = opts.title ?? `${service(root)}: ${root.name}`;
  const depth = rows.reduce((m, r) => Math.max(m, r.depth + 1), 0);
  const errors = rows.filter((r) => r.span.status.code === 'ERROR').length;
  out.push(text(PAD, y + 18, fit(title, width - 2 * PAD, 17), { size: 17, weight: 600, fill: '#1F1F1F' }));
  out.push(text(PAD, y + 38, `Trace ID ${traceId}`, { size: 12, fill: '#555', family: 'monospace' }));
  const facts: [string, string][] = [
    ['Trace Start', isoOf(start)],
    ['Duration', formatDuration(totalNs)],
    ['Services', String(services.length)],
    ['Depth', String(depth)],
    ['Total Spans', String(rows.length)],
  ];
  if (errors > 0) facts.push(['Errors', String(errors)]);
  out.push(
    `<text x="${PAD}" y="${y + 58}" font-size="12" fill="#555">` +
      facts.map(([k, v], i) => `${i ? '<tspan fill="#BBB">  |  </tspan>' : ''}<tspan>${escapeXml(k)} </tspan><tspan font-weight="600" fill="#1F1F1F">${escapeXml(v)}</tspan>`).join('') +
      '</text>',
  );
  // The services, as a legend of their colours.
  let lx = PAD;
  for (const [i, name] of services.entries()) {
    out.push(`<rect x="${lx}" y="${y + 68}" width="10" height="10" rx="2" fill="${PALETTE[i % PALETTE.length]}"/>`);
    out.push(text(lx + 14, y + 77, name, { size: 12, fill: '#333' }));
    lx += 14 + textWidth(name, 12) + 18;
  }
  y += 90;

  // ---- ruler ----
  const rulerTop = y;
  out.push(`<rect x="${PAD}" y="${y}" width="${width - 2 * PAD}" height="${RULER_HEIGHT}" fill="#ECECEC"/>`);
  out.push(text(PAD + 8, y + 17, 'Service &amp; Operation', { size: 12, weight: 600, fill: '#333', raw: true }));
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  for (const f of ticks) {
    const x = x0 + f * timelineWidth;
    const anchor = f === 1 ? 'end' : 'start';
    out.push(text(f === 1 ? x - 4 : x + 4, y + 17, formatDuration(f * totalNs), { size: 11, fill: '#555', anchor }));
  }
  y += RULER_HEIGHT;

  // ---- rows ----
  const rowsTop = y;
  const body: string[] = [];
  for (const [i, row] of rows.entries()) {
    const s = row.span;
    const h = ROW_HEIGHT + row.notes.length * NOTE_HEIGHT + (row.notes.length ? 2 : 0);
    const failed = s.status.code === 'ERROR';
    const g: string[] = [];
    g.push(`<title>${escapeXml(details(s, start))}</title>`);
    g.push(`<rect x="${PAD}" y="${y}" width="${width - 2 * PAD}" height="${h}" fill="${failed ? '#FFF6F6' : i % 2 ? '#FAFAFA' : '#FFFFFF'}"/>`);

    // Left: tree guides, the service's colour, the "!" of a failed span, service and name.
    const indentX = PAD + 8 + row.depth * INDENT;
    for (let level = 0; level < row.depth; level++) {
      const gx = PAD + 8 + level * INDENT + 4;
      g.push(`<line x1="${gx}" y1="${y}" x2="${gx}" y2="${y + h}" stroke="#D8D8D8" stroke-width="1"/>`);
    }
    g.push(`<rect x="${indentX}" y="${y + 5}" width="4" height="${ROW_HEIGHT - 10}" rx="1" fill="${colour(s)}"/>`);
    let tx = indentX + 10;
    if (failed) {
      g.push(`<g class="error-mark"><circle cx="${tx + 6}" cy="${y + ROW_HEIGHT / 2}" r="6.5" fill="${ERROR_RED}"/>` + `<text x="${tx + 6}" y="${y + ROW_HEIGHT / 2 + 4}" font-size="11" font-weight="700" fill="#FFF" text-anchor="middle">!</text></g>`);
      tx += 17;
    }
    const room = PAD + LABEL_WIDTH - tx;
    const svcName = fit(service(s), room, 12.5);
    const svcWidth = textWidth(svcName, 12.5);
    const spanName = fit(s.name, room - svcWidth - 8, 12.5);
    g.push(
      `<text x="${tx}" y="${y + ROW_HEIGHT / 2 + 4.5}" font-size="12.5"><tspan font-weight="600" fill="#1F1F1F">${escapeXml(svcName)}</tspan>` +
        (spanName ? `<tspan dx="6" fill="#555">${escapeXml(spanName)}</tspan>` : '') +
        '</text>',
    );

    // Right: the bar, its events, its duration.
    const bx = xOf(s.startTimeUnixNano);
    const bw = Math.max(xOf(endOf(s)) - bx, 2);
    const by = y + (ROW_HEIGHT - BAR_HEIGHT) / 2;
    g.push(
      `<rect class="bar" x="${num(bx)}" y="${by}" width="${num(bw)}" height="${BAR_HEIGHT}" rx="2" fill="${colour(s)}"` +
        (failed ? ` stroke="${ERROR_RED}" stroke-width="2"` : '') +
        '/>',
    );
    for (const e of s.events) {
      const ex = num(xOf(e.timeUnixNano));
      g.push(`<line class="event" x1="${ex}" y1="${by - 2}" x2="${ex}" y2="${by + BAR_HEIGHT + 2}" stroke="${e.name === 'exception' ? '#7A0000' : '#333'}" stroke-width="1.5"/>`);
    }
    const label = formatDuration(Number(endOf(s) - s.startTimeUnixNano));
    const lw = textWidth(label, 11);
    const ly = y + ROW_HEIGHT / 2 + 4;
    if (bx + bw + 5 + lw <= x1) g.push(text(bx + bw + 5, ly, label, { size: 11, fill: '#555', cls: 'duration' }));
    else if (bx - 5 - lw >= x0) g.push(text(bx - 5, ly, label, { size: 11, fill: '#555', anchor: 'end', cls: 'duration' }));
    else g.push(text(bx + bw - 5, ly, label, { size: 11, fill: '#1F1F1F', anchor: 'end', cls: 'duration' }));

    // Under the bar: the notes, from the bar's start, moved left to fit.
    for (const [n, note] of row.notes.entries()) {
      const t = fit(note.text, timelineWidth, 11);
      const nx = Math.max(x0, Math.min(bx, x1 - textWidth(t, 11)));
      g.push(text(nx, y + ROW_HEIGHT + 4 + n * NOTE_HEIGHT, t, { size: 11, fill: note.error ? '#B71C1C' : '#666', cls: 'note' }));
    }

    const attrs = [`class="span${failed ? ' error' : ''}"`, `data-span-id="${escapeXml(s.spanId)}"`, `data-parent-span-id="${escapeXml(s.parentSpanId)}"`, `data-depth="${row.depth}"`, `data-status="${s.status.code}"`];
    body.push(`<g ${attrs.join(' ')}>${g.join('')}</g>`);
    y += h;
  }

  // Grid lines at the ticks, over the rows' backgrounds and under nothing else that matters.
  const grid = ticks
    .slice(1, -1)
    .map((f) => {
      const x = num(x0 + f * timelineWidth);
      return `<line x1="${x}" y1="${rulerTop}" x2="${x}" y2="${y}" stroke="#000" stroke-opacity="0.08" stroke-width="1"/>`;
    })
    .join('');
  const divider = `<line x1="${x0 - 6}" y1="${rulerTop}" x2="${x0 - 6}" y2="${y}" stroke="#CCC" stroke-width="1"/>`;
  const frame = `<rect x="${PAD}" y="${rulerTop}" width="${width - 2 * PAD}" height="${y - rulerTop}" fill="none" stroke="#DDD"/>`;
  const height = y + PAD;

  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${escapeXml(FONT)}" role="img" aria-label="${escapeXml(`Trace ${traceId}: ${rows.length} spans, ${formatDuration(totalNs)}`)}">`,
    `<rect width="${width}" height="${height}" fill="#FFFFFF"/>`,
    ...out,
    `<g class="rows" data-top="${rowsTop}">`,
    ...body,
    '</g>',
    grid,
    divider,
    frame,
    '</svg>',
    '',
  ].join('\n');
}

// ---- the tree ----

function dedupe(spans: DecodedSpan[]): DecodedSpan[] {
  const seen = new Set<string>();
  return spans.filter((s) => {
    const key = `${s.traceId}/${s.spanId}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function pickTrace(spans: DecodedSpan[]): string {
  const traces = new Map<string, { count: number; start: bigint }>();
  for (const s of spans) {
    const t = traces.get(s.traceId);
    if (!t) traces.set(s.traceId, { count: 1, start: s.startTimeUnixNano });
    else {
      t.count += 1;
      if (s.startTimeUnixNano < t.start) t.start = s.startTimeUnixNano;
    }
  }
  let best: [string, { count: number; start: bigint }] | undefined;
  for (const entry of traces) {
    if (!best || entry[1].count > best[1].count || (entry[1].count === best[1].count && entry[1].start < best[1].start)) best = entry;
  }
  return best?.[0] ?? '';
}

const bySpanStart = (a: DecodedSpan, b: DecodedSpan): number =>
  a.startTimeUnixNano < b.startTimeUnixNano ? -1 : a.startTimeUnixNano > b.startTimeUnixNano ? 1 : a.name.localeCompare(b.name) || a.spanId.localeCompare(b.spanId);

/** Depth-first: each span, then its children by start time. Roots (and orphans) by start time. */
function treeOrder(spans: DecodedSpan[]): Row[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string, DecodedSpan[]>();
  const roots: DecodedSpan[] = [];
  for (const s of spans) {
    if (s.parentSpanId && ids.has(s.parentSpanId) && s.parentSpanId !== s.spanId) {
      const list = children.get(s.parentSpanId) ?? [];
      list.push(s);
      children.set(s.parentSpanId, list);
    } else roots.push(s);
  }
  const rows: Row[] = [];
  const placed = new Set<string>();
  const visit = (s: DecodedSpan, depth: number): void => {
    if (placed.has(s.spanId)) return;
    placed.add(s.spanId);
    rows.push({ span: s, depth, orphan: depth === 0 && s.parentSpanId !== '', notes: [] });
    for (const c of (children.get(s.spanId) ?? []).sort(bySpanStart)) visit(c, depth + 1);
  };
  for (const r of roots.sort(bySpanStart)) visit(r, 0);
  // A cycle of parents has no root; draw what it left out at the top level rather than lose it.
  for (const s of [...spans].sort(bySpanStart)) visit(s, 0);
  return rows;
}

// ---- what the notes say ----

function notesOf(row: Row, all: DecodedSpan[], byId: Map<string, DecodedSpan>): Row['notes'] {
  const s = row.span;
  const notes: Row['notes'] = [];
  const facts: string[] = [];
  const attempt = s.attributes['jobmesh.job.attempt'];
  if (attempt !== undefined) {
    const max = s.attributes['jobmesh.job.max_attempts'];
    facts.push(`attempt ${show(attempt)}${max !== undefined ? ` of ${show(max)}` : ''}`);
  }
  const waited = s.attributes['jobmesh.job.wait_ms'];
  if (typeof waited === 'number') facts.push(`waited ${formatDuration(waited * 1e6)}`);
  const outcome = s.attributes['jobmesh.attempt.outcome'];
  if (outcome !== undefined) facts.push(show(outcome));
  if (s.attributes['jobmesh.attempt.final'] === true) facts.push('final');
  const category = s.attributes['jobmesh.dead_letter.category'];
  if (category !== undefined) facts.push(show(category));
  if (row.orphan) facts.push(`parent ${s.parentSpanId} not received`);
  if (s.status.code === 'ERROR') {
    const exception = s.events.find((e) => e.name === 'exception');
    const type = exception ? exception.attributes['exception.type'] : undefined;
    const message = s.status.message || (exception ? show(exception.attributes['exception.message'] ?? '') : '');
    const what = [type !== undefined ? show(type) : '', message].filter(Boolean).join(': ');
    notes.push({ text: [...facts, `✖ ${what || 'ERROR'}`].join(' · '), error: true });
  } else if (facts.length) notes.push({ text: facts.join(' · ') });

  const links: string[] = [];
  for (const l of s.links) {
    const target = byId.get(l.spanId);
    const kind = l.attributes['jobmesh.link'];
    const label = target ? `${service(target)}: ${target.name}` : `span ${l.spanId}`;
    const where = l.traceId !== s.traceId ? ` in trace ${l.traceId.slice(0, 8)}…` : '';
    links.push(`↪ links to ${label}${where}${kind !== undefined ? ` (${show(kind)})` : ''}`);
  }
  for (const other of all) {
    for (const l of other.links) {
      if (l.spanId !== s.spanId || l.traceId !== s.traceId) continue;
      const where = other.traceId !== s.traceId ? ` in trace ${other.traceId.slice(0, 8)}…` : '';
      links.push(`↩ linked from ${service(other)}: ${other.name}${where}`);
    }
  }
  if (links.length) notes.push({ text: links.join(' · ') });
  return notes;
}

/** A row's tooltip: everything the span carried. */
function details(s: DecodedSpan, traceStart: bigint): string {
  const lines = [
    `${service(s)}: ${s.name}`,
    `kind ${s.kind}, status ${s.status.code}${s.status.message ? ` (${s.status.message})` : ''}`,
    `start +${formatDuration(Number(s.startTimeUnixNano - traceStart))}, duration ${formatDuration(Number(endOf(s) - s.startTimeUnixNano))}`,
    `span ${s.spanId}${s.parentSpanId ? `, parent ${s.parentSpanId}` : ''}`,
    ...Object.entries(s.attributes).map(([k, v]) => `${k} = ${show(v)}`),
    ...s.events.map((e) => `event +${formatDuration(Number(e.timeUnixNano - traceStart))} ${e.name}${Object.keys(e.attributes).length ? ` ${Object.entries(e.attributes).map(([k, v]) => `${k}=${show(v)}`).join(' ')}` : ''}`),
    ...s.links.map((l) => `link ${l.traceId}/${l.spanId}${Object.keys(l.attributes).length ? ` ${Object.entries(l.attributes).map(([k, v]) => `${k}=${show(v)}`).join(' ')}` : ''}`),
  ];
  return lines.join('\n');
}

// ---- small helpers ----

const service = (s: DecodedSpan): string => s.serviceName ?? 'unknown service';

/** A span's end, never before its start. */
const endOf = (s: DecodedSpan): bigint => (s.endTimeUnixNano > s.startTimeUnixNano ? s.endTimeUnixNano : s.startTimeUnixNano);

function show(v: OtlpValue): string {
  if (v === null) return 'null';
  if (Buffer.isBuffer(v)) return `0x${v.toString('hex')}`;
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  if (typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${k}: ${show(x)}`).join(', ')}}`;
  return String(v);
}

function isoOf(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', ' UTC');
}

const num = (n: number): string => String(Math.round(n * 100) / 100);

const textWidth = (t: string, size: number): number => [...t].length * size * CHAR_WIDTH;

/** `t`, cut with an ellipsis to about `width` px at `size`. */
function fit(t: string, width: number, size: number): string {
  const chars = [...t];
  const max = Math.floor(width / (size * CHAR_WIDTH));
  if (chars.length <= max) return t;
  return max <= 1 ? '' : `${chars.slice(0, max - 1).join('')}…`;
}

function text(x: number, y: number, t: string, o: { size: number; fill: string; weight?: number; anchor?: 'start' | 'end'; family?: string; cls?: string; raw?: boolean }): string {
  const attrs = [
    o.cls ? `class="${o.cls}"` : '',
    `x="${num(x)}"`,
    `y="${num(y)}"`,
    `font-size="${o.size}"`,
    `fill="${o.fill}"`,
    o.weight ? `font-weight="${o.weight}"` : '',
    o.anchor && o.anchor !== 'start' ? `text-anchor="${o.anchor}"` : '',
    o.family ? `font-family="${o.family}"` : '',
  ].filter(Boolean);
  return `<text ${attrs.join(' ')}>${o.raw ? t : escapeXml(t)}</text>`;
}

function emptyPicture(width: number, traceId: string): string {
  const what = traceId ? `No spans of trace ${traceId}` : 'No spans';
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="60" viewBox="0 0 ${width} 60" font-family="${escapeXml(FONT)}">`,
    `<rect width="${width}" height="60" fill="#FFFFFF"/>`,
    text(PAD, 36, what, { size: 14, fill: '#555' }),
    '</svg>',
    '',
  ].join('\n');
}
