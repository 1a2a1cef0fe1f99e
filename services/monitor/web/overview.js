// Every queue on one page: counts by state, rates, workers, and live throughput and backlog charts.
import { useEffect, useState } from 'preact/hooks';
import { age, enc, get, ms, num, post, rate } from './api.js';
import { LineChart } from './charts.js';
import { ActionButton, Note, html } from './ui.js';

/** How many live samples the charts keep (one every 2 s: 10 minutes). */
const KEEP = 300;
/** The most queues drawn one by one on the backlog chart; the rest are summed as "others". */
const BACKLOG_LINES = 7;

const backlog = (s) => (s.counts?.waiting ?? 0) + (s.counts?.prioritized ?? 0) + (s.counts?.delayed ?? 0);

/** The overview's figures: the first answer of /api/overview, then each live message of /api/live (SSE). */
function useLiveStats() {
  const [state, setState] = useState({ stats: undefined, deadLetters: undefined, history: [], live: false, error: undefined });
  useEffect(() => {
    let closed = false;
    const take = (stats) =>
      setState((s) => ({ ...s, stats, error: undefined, history: [...s.history, { t: Date.now() / 1000, stats }].slice(-KEEP) }));
    get('overview').then(
      (o) => {
        if (closed) return;
        setState((s) => ({ ...s, deadLetters: o.deadLetters }));
        take(o.stats);
      },
      (error) => !closed && setState((s) => ({ ...s, error })),
    );
    const source = new EventSource('/api/live');
    source.addEventListener('stats', (e) => take(JSON.parse(e.data).stats));
    source.addEventListener('open', () => setState((s) => ({ ...s, live: true })));
    source.addEventListener('error', () => setState((s) => ({ ...s, live: false })));
    source.addEventListener('failure', (e) => setState((s) => ({ ...s, error: new Error(JSON.parse(e.data).error) })));
    return () => {
      closed = true;
      source.close();
    };
  }, []);
  return state;
}

function charts(history) {
  const t = history.map((p) => p.t);
  const throughput = [
    t,
    history.map((p) => p.stats.reduce((a, s) => a + (s.completedPerSecond ?? 0), 0)),
    history.map((p) => p.stats.reduce((a, s) => a + (s.failedPerSecond ?? 0), 0)),
  ];
  const last = history.at(-1)?.stats ?? [];
  const top = [...last].sort((a, b) => backlog(b) - backlog(a) || a.queue.localeCompare(b.queue)).slice(0, BACKLOG_LINES).map((s) => s.queue);
  top.sort();
  const others = last.length > top.length;
  const lines = top.map((q) => history.map((p) => backlog(p.stats.find((s) => s.queue === q) ?? {})));
  if (others) lines.push(history.map((p) => p.stats.filter((s) => !top.includes(s.queue)).reduce((a, s) => a + backlog(s), 0)));
  return { throughput, backlog: { series: others ? [...top, 'others'] : top, data: [t, ...lines] } };
}

function QueueRow({ s, config, onNote }) {
  const c = s.counts ?? {};
  const act = (what) => () => post(`queues/${enc(s.queue)}/${what}`);
  const done = (what) => (r) => onNote({ ok: r.ok, text: r.ok ? `Queue ${s.queue} ${what}d.` : `Could not ${what} ${s.queue}: ${r.error.message}` });
  return html`<tr data-queue=${s.queue}>
    <th scope="row"><a href=${`#/queues/${enc(s.queue)}`}>${s.queue}</a> ${s.paused ? html`<span class="badge paused">paused</span>` : null}</th>
    <td>${num(c.waiting)}</td>
    <td>${num(c.delayed)}</td>
    <td>${num(c.prioritized)}</td>
    <td>${num(c.active)}</td>
    <td>${num(c.waitingChildren)}</td>
    <td>${num(c.completed)}</td>
    <td>${num(c.failed)}</td>
    <td>${c.deadLettered ? html`<a href=${`#/dead-letters?queue=${enc(s.queue)}`}>${num(c.deadLettered)}</a>` : '0'}</td>
    <td>${num(c.waitingForProcessor)}</td>
    <td>${rate(s.completedPerSecond)}</td>
    <td>${rate(s.failedPerSecond)}</td>
    <td title="remote / in-process">${s.remoteWorkers ?? 0} / ${s.inProcessWorkers ?? 0}</td>
    <td>${age(ms(s.oldestWaitingAge))}</td>
    <td>${age(ms(s.processingP50))} / ${age(ms(s.processingP95))}</td>
    ${config.readOnly
      ? null
      : html`<td>${s.paused
          ? html`<${ActionButton} label="Resume" run=${act('resume')} onDone=${done('resume')} />`
          : html`<${ActionButton} label="Pause" run=${act('pause')} onDone=${done('pause')} />`}</td>`}
  </tr>`;
}

export function Overview({ config }) {
  const live = useLiveStats();
  const [note, setNote] = useState();
  if (live.error && !live.stats) return html`<p class="error" role="alert">${live.error.message}</p>`;
  if (!live.stats) return html`<p class="muted">Loading…</p>`;
  const c = charts(live.history);
  const dl = live.deadLetters;
  const totals = live.stats.reduce((a, s) => ({ active: a.active + (s.counts?.active ?? 0), backlog: a.backlog + backlog(s), failed: a.failed + (s.counts?.failed ?? 0) }), { active: 0, backlog: 0, failed: 0 });
  return html`<section data-samples=${live.history.length}>
    <h1>Overview <span class=${live.live ? 'badge live' : 'badge'}>${live.live ? 'live' : 'not live'}</span></h1>
    <div class="tiles">
      <div class="tile"><b>${live.stats.length}</b> queues</div>
      <div class="tile"><b>${num(totals.backlog)}</b> waiting, prioritized or delayed</div>
      <div class="tile"><b>${num(totals.active)}</b> active</div>
      <div class="tile"><b>${num(totals.failed)}</b> failed</div>
      <div class="tile"><a href="#/dead-letters"><b>${dl && !dl.error ? num(Number(dl.total ?? 0)) : '?'}</b> dead letters</a></div>
    </div>
    <div class="charts">
      <${LineChart} title="Throughput (jobs/s, last minute)" series=${['completed/s', 'failed/s']} data=${c.throughput} />
      <${LineChart} title="Backlog (waiting + prioritized + delayed)" series=${c.backlog.series} data=${c.backlog.data} />
    </div>
    <${Note} note=${note} />
    ${live.stats.length === 0
      ? html`<p class="muted">No queues yet.</p>`
      : html`<table class="queues">
          <thead>
            <tr>
              <th>Queue</th><th>Waiting</th><th>Delayed</th><th>Prioritized</th><th>Active</th><th>Waiting children</th><th>Completed</th><th>Failed</th><th>Dead letters</th>
              <th>Waiting for processor</th><th>Completed/s</th><th>Failed/s</th><th>Workers</th><th>Oldest waiting</th><th>p50 / p95</th>${config.readOnly ? null : html`<th></th>`}
            </tr>
          </thead>
          <tbody>${live.stats.map((s) => html`<${QueueRow} key=${s.queue} s=${s} config=${config} onNote=${setNote} />`)}</tbody>
        </table>`}
  </section>`;
}
