// Dead letters, filtered by queue, category, job name and time; replay (with a data patch and a
// target queue), quarantine, release and purge, on the selected ones or on the filter.
import { useState } from 'preact/hooks';
import { enc, get, post, time } from './api.js';
import { ActionButton, Json, Loading, Note, Pager, html, useLoad } from './ui.js';

const FIELDS = ['queue', 'category', 'jobName', 'since', 'until'];
const PAGE = 25;

const SEVERITY = (s) => (s ?? '').replace(/^SEVERITY_/, '').toLowerCase();

/** datetime-local's "2026-12-01T14:00" in local time → ISO, and back. */
const toIso = (v) => (v ? new Date(v).toISOString() : '');
const toLocal = (iso) => {
  if (!iso) return '';
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};

function Filter({ filter, stats }) {
  const queues = [...new Set((stats.counts ?? []).map((c) => c.queue))].sort();
  const categories = [...new Set((stats.counts ?? []).map((c) => c.category))].sort();
  const submit = (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const q = new URLSearchParams();
    for (const f of FIELDS) {
      const v = String(form.get(f) ?? '').trim();
      if (v) q.set(f, f === 'since' || f === 'until' ? toIso(v) : v);
    }
    location.hash = `#/dead-letters${q.size ? `?${q}` : ''}`;
  };
  return html`<form class="filter" onSubmit=${submit} aria-label="Filter dead letters">
    <label>Queue <select name="queue" value=${filter.queue ?? ''}><option value="">all</option>${queues.map((q) => html`<option value=${q}>${q}</option>`)}</select></label>
    <label>Category <select name="category" value=${filter.category ?? ''}><option value="">all</option>${categories.map((c) => html`<option value=${c}>${c}</option>`)}</select></label>
    <label>Job name <input name="jobName" value=${filter.jobName ?? ''} /></label>
    <label>Since <input type="datetime-local" name="since" value=${toLocal(filter.since)} /></label>
    <label>Until <input type="datetime-local" name="until" value=${toLocal(filter.until)} /></label>
    <button type="submit">Filter</button>
    <a href="#/dead-letters">Clear</a>
  </form>`;
}

function Actions({ selected, filter, onNote }) {
  const [patch, setPatch] = useState('');
  const [target, setTarget] = useState('');
  const [reason, setReason] = useState('');
  const scope = (ids) => (ids ? { ids } : { filter });
  const replay = (ids) => () => {
    let dataPatch;
    if (patch.trim()) {
      try {
        dataPatch = JSON.parse(patch);
      } catch {
        return Promise.reject(new Error('The data patch is not JSON.'));
      }
    }
    return post('dead-letters/replay', { ...scope(ids), dataPatch, targetQueue: target.trim() || undefined });
  };
  const replayed = (r) =>
    onNote(
      r.ok
        ? { ok: true, text: `${(r.out.replayed ?? []).length} replayed${r.out.skippedQuarantined ? `, ${r.out.skippedQuarantined} quarantined skipped` : ''}${r.out.skippedReplayed ? `, ${r.out.skippedReplayed} replayed before skipped` : ''}: ${(r.out.replayed ?? []).map((x) => `${x.job.queue}/${x.job.id}`).join(', ')}` }
        : { ok: false, text: r.error.message },
    );
  const quarantine = (ids, quarantined) => () => post('dead-letters/quarantine', { ...scope(ids), quarantined, reason });
  const quarantined = (what) => (r) => onNote(r.ok ? { ok: true, text: `${r.out.updated ?? 0} ${what}.` } : { ok: false, text: r.error.message });
  const purge = (ids) => () => (confirm(ids ? `Delete ${ids.length} dead letter(s)?` : 'Delete every dead letter the filter selects?') ? post('dead-letters/purge', scope(ids)) : Promise.resolve(undefined));
  const purged = (r) => r.out !== undefined && onNote(r.ok ? { ok: true, text: `${r.out.purged ?? 0} purged.` } : { ok: false, text: r.error.message });
  const ids = [...selected];
  const none = ids.length === 0;
  return html`<div class="dl-actions">
    <label>Data patch (JSON, merged into each job's data)<textarea name="dataPatch" rows="2" placeholder='{"fixed": true}' value=${patch} onInput=${(e) => setPatch(e.target.value)}></textarea></label>
    <label>Target queue <input name="targetQueue" placeholder="the original queue" value=${target} onInput=${(e) => setTarget(e.target.value)} /></label>
    <label>Quarantine reason <input name="reason" value=${reason} onInput=${(e) => setReason(e.target.value)} /></label>
    <div class="actions" role="group" aria-label="Selected">
      <span class="muted">Selected (${ids.length}):</span>
      <${ActionButton} label="Replay" run=${replay(ids)} onDone=${replayed} disabled=${none} />
      <${ActionButton} label="Quarantine" run=${quarantine(ids, true)} onDone=${quarantined('quarantined')} disabled=${none} />
      <${ActionButton} label="Release" run=${quarantine(ids, false)} onDone=${quarantined('released')} disabled=${none} />
      <${ActionButton} label="Purge" danger run=${purge(ids)} onDone=${purged} disabled=${none} />
    </div>
    <div class="actions" role="group" aria-label="Matching the filter">
      <span class="muted">All matching the filter:</span>
      <${ActionButton} label="Replay" run=${replay()} onDone=${replayed} title="Skips quarantined dead letters and those replayed before" />
      <${ActionButton} label="Quarantine" run=${quarantine(undefined, true)} onDone=${quarantined('quarantined')} />
      <${ActionButton} label="Release" run=${quarantine(undefined, false)} onDone=${quarantined('released')} />
      <${ActionButton} label="Purge" danger run=${purge()} onDone=${purged} />
    </div>
  </div>`;
}

function Row({ d, selected, toggle, readOnly }) {
  const [open, setOpen] = useState(false);
  const job = d.job ?? {};
  const last = (d.errors ?? []).at(-1);
  return html`<tbody>
    <tr data-dead-letter=${d.id}>
      ${readOnly ? null : html`<td><input type="checkbox" aria-label=${`Select ${d.id}`} checked=${selected} onChange=${toggle} /></td>`}
      <td><button type="button" class="link" onClick=${() => setOpen(!open)} aria-expanded=${open}>${d.id}</button></td>
      <td><a href=${`#/queues/${enc(job.queue)}`}>${job.queue}</a></td>
      <td>${job.name}</td>
      <td>${d.category}</td>
      <td>${SEVERITY(d.severity)}</td>
      <td>${time(d.deadLetteredAt)}</td>
      <td>${d.quarantined ? html`<span class="badge paused" title=${d.quarantineReason}>quarantined</span>` : ''}</td>
      <td>${(d.replays ?? []).map((r) => html`<a href=${`#/queues/${enc(r.job.queue)}/jobs/${enc(r.job.id)}`}>${r.job.id}</a> `)}</td>
      <td class="data">${last ? `${last.errorName ? `${last.errorName}: ` : ''}${last.message}` : ''}</td>
    </tr>
    ${open
      ? html`<tr class="detail"><td colspan="10">
          ${d.traceUrl ? html`<p><a href=${d.traceUrl} target="_blank" rel="noopener">Trace ${d.traceId}</a></p>` : d.traceId ? html`<p>Trace <code>${d.traceId}</code></p>` : null}
          <div class="panes"><div><h3>Data</h3><${Json} value=${job.data ?? {}} /></div><div><h3>Options</h3><${Json} value=${job.options ?? {}} /></div></div>
          ${(d.errors ?? []).map((e) => html`<details><summary>Attempt ${e.attempt}: ${e.errorName} ${e.message}</summary><pre class="stack">${(e.stacktrace ?? []).join('\n')}</pre></details>`)}
        </td></tr>`
      : null}
  </tbody>`;
}

export function DeadLettersPage({ query, config }) {
  const filter = Object.fromEntries(FIELDS.map((f) => [f, query.get(f) ?? '']).filter(([, v]) => v));
  const key = JSON.stringify(filter);
  const [tokens, setTokens] = useState(['']);
  const [selected, setSelected] = useState(new Set());
  const [note, setNote] = useState();
  const token = tokens.at(-1);
  const page = useLoad(() => get('dead-letters', { ...filter, pageSize: PAGE, pageToken: token }), [key, token]);
  const onNote = (n) => {
    setNote(n);
    setSelected(new Set());
    page.reload();
  };
  const toggle = (id) => () => setSelected((s) => {
    const n = new Set(s);
    n.has(id) ? n.delete(id) : n.add(id);
    return n;
  });
  return html`<section>
    <h1>Dead letters</h1>
    <${Loading} state=${page}>
      ${(p) => html`<div>
        <p class="muted">${Number(p.stats.total ?? 0)} stored in all.</p>
        <${Filter} key=${key} filter=${filter} stats=${p.stats} />
        ${config.readOnly ? null : html`<${Actions} selected=${selected} filter=${filter} onNote=${onNote} />`}
        <${Note} note=${note} />
        <table class="dead-letters">
          <thead><tr>${config.readOnly ? null : html`<th></th>`}<th>Id</th><th>Queue</th><th>Job</th><th>Category</th><th>Severity</th><th>Dead-lettered</th><th></th><th>Replays</th><th>Last error</th></tr></thead>
          ${p.deadLetters.length === 0 ? html`<tbody><tr><td colspan="10" class="muted">No dead letters.</td></tr></tbody>` : null}
          ${p.deadLetters.map((d) => html`<${Row} key=${d.id} d=${d} selected=${selected.has(d.id)} toggle=${toggle(d.id)} readOnly=${config.readOnly} />`)}
        </table>
        <${Pager} tokens=${tokens} setTokens=${setTokens} next=${p.nextPageToken} />
      </div>`}
    <//>
  </section>`;
}
