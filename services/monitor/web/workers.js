// Every worker: remote ones (stream or unary) and worker-pool replicas running queues in-process.
import { useEffect } from 'preact/hooks';
import { enc, get, time } from './api.js';
import { Loading, html, useLoad } from './ui.js';

const KIND = { WORKER_KIND_IN_PROCESS: 'in-process', WORKER_KIND_STREAM: 'remote (stream)', WORKER_KIND_UNARY: 'remote (unary)' };

function Table({ workers }) {
  if (!workers.length) return html`<p class="muted">None.</p>`;
  return html`<table class="workers">
    <thead><tr><th>Worker</th><th>Kind</th><th>Replica</th><th>Queues</th><th>In flight</th><th>SDK</th><th>Since</th><th>Labels</th></tr></thead>
    <tbody>${workers.map((w) => html`<tr key=${w.workerId}>
      <td>${w.workerId}</td>
      <td>${KIND[w.kind] ?? w.kind}</td>
      <td>${w.replica}</td>
      <td>${(w.queues ?? []).map((q) => html`<a href=${`#/queues/${enc(q)}`}>${q}</a> `)}</td>
      <td>${w.inFlight ?? 0} / ${w.maxInFlight ?? 0}</td>
      <td>${w.sdk ?? ''}</td>
      <td>${time(w.connectedAt)}</td>
      <td>${Object.entries(w.labels ?? {}).map(([k, v]) => html`<code>${k}=${v}</code> `)}</td>
    </tr>`)}</tbody>
  </table>`;
}

export function WorkersPage() {
  const list = useLoad(() => get('workers'), []);
  // In flight changes by the second: read again every 5 s.
  useEffect(() => {
    const t = setInterval(list.reload, 5000);
    return () => clearInterval(t);
  }, [list.reload]);
  return html`<section>
    <h1>Workers</h1>
    <${Loading} state=${list}>
      ${({ workers }) => html`<div>
        <h2>Remote</h2>
        <${Table} workers=${workers.filter((w) => w.kind !== 'WORKER_KIND_IN_PROCESS')} />
        <h2>In-process (worker-pool replicas)</h2>
        <${Table} workers=${workers.filter((w) => w.kind === 'WORKER_KIND_IN_PROCESS')} />
      </div>`}
    <//>
  </section>`;
}
