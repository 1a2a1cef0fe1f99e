// One queue: its figures, pause/resume, its jobs by state (paged), search by name or data, find by id, actions.
import { useEffect, useState } from 'preact/hooks';
import { age, enc, get, ms, num, post, stateName, time } from './api.js';
import { JobActions } from './actions.js';
import { ActionButton, Loading, Note, Pager, html, useLoad } from './ui.js';

const STATES = ['all', 'waiting', 'delayed', 'prioritized', 'active', 'waiting-children', 'completed', 'failed', 'dead-lettered', 'cancelled'];
const COUNT_OF = { waiting: 'waiting', delayed: 'delayed', prioritized: 'prioritized', active: 'active', 'waiting-children': 'waitingChildren', completed: 'completed', failed: 'failed', 'dead-lettered': 'deadLettered' };

const PAGE = 25;

function setQuery(queue, changes) {
  const q = new URLSearchParams(location.hash.split('?')[1] ?? '');
  for (const [k, v] of Object.entries(changes)) v ? q.set(k, v) : q.delete(k);
  location.hash = `#/queues/${enc(queue)}${q.size ? `?${q}` : ''}`;
}

function Header({ queue, info, config, onNote, reload }) {
  const s = info.stats ?? {};
  const paused = info.queue.paused;
  const act = (what) => () => post(`queues/${enc(queue)}/${what}`);
  const done = (what) => (r) => {
    onNote({ ok: r.ok, text: r.ok ? `Queue ${queue} ${what}d.` : r.error.message });
    reload();
  };
  return html`<div class="queue-head">
    <h1>${queue} ${paused ? html`<span class="badge paused">paused</span>` : html`<span class="badge">running</span>`}</h1>
    ${config.readOnly
      ? null
      : paused
        ? html`<${ActionButton} label="Resume queue" run=${act('resume')} onDone=${done('resume')} />`
        : html`<${ActionButton} label="Pause queue" run=${act('pause')} onDone=${done('pause')} />`}
    <p class="muted">${`concurrency ${info.queue.concurrency ?? '–'} · workers ${s.remoteWorkers ?? 0} remote, ${s.inProcessWorkers ?? 0} in-process · oldest waiting ${age(ms(s.oldestWaitingAge))} · waiting for a processor ${num(s.counts?.waitingForProcessor)}`}</p>
  </div>`;
}

function FindById({ queue }) {
  const [error, setError] = useState();
  const submit = async (e) => {
    e.preventDefault();
    const id = new FormData(e.target).get('id').trim();
    if (!id) return;
    try {
      await get(`queues/${enc(queue)}/jobs/${enc(id)}`);
      location.hash = `#/queues/${enc(queue)}/jobs/${enc(id)}`;
    } catch (err) {
      setError(err.status === 404 ? `No job ${id} in ${queue}.` : err.message);
    }
  };
  return html`<form class="inline" onSubmit=${submit}>
    <input name="id" placeholder="Job id" aria-label="Job id in this queue" />
    <button type="submit">Open job</button>
    ${error ? html`<span class="error">${error}</span>` : null}
  </form>`;
}

function Search({ queue, search }) {
  const submit = (e) => {
    e.preventDefault();
    setQuery(queue, { search: new FormData(e.target).get('search').trim(), page: '' });
  };
  return html`<form class="inline" onSubmit=${submit} role="search">
    <input name="search" value=${search} placeholder="Name or data contains…" aria-label="Search jobs by name or data" />
    <button type="submit">Search</button>
    ${search ? html`<button type="button" onClick=${() => setQuery(queue, { search: '', page: '' })}>Clear</button>` : null}
  </form>`;
}

function Jobs({ queue, state, search, config, onNote, counts }) {
  // Tokens of the pages before this one, so "Previous" goes back.
  const [tokens, setTokens] = useState(['']);
  const [selected, setSelected] = useState(new Set());
  const token = tokens.at(-1);
  const page = useLoad(() => get(`queues/${enc(queue)}/jobs`, { state, search, pageSize: PAGE, pageToken: token }), [queue, state, search, token]);
  const toggle = (id) => setSelected((s) => {
    const n = new Set(s);
    n.has(id) ? n.delete(id) : n.add(id);
    return n;
  });
  const note = (n) => {
    onNote(n);
    setSelected(new Set());
    page.reload();
  };
  const filter = { state: state === 'all' ? '' : state, search };
  return html`<div>
    <nav class="tabs" aria-label="States">
      ${STATES.map((s) => html`<a href="#" class=${s === state ? 'here' : ''} onClick=${(e) => (e.preventDefault(), setTokens(['']), setSelected(new Set()), setQuery(queue, { state: s === 'all' ? '' : s }))}>
        ${s}${COUNT_OF[s] ? html` <span class="count">${num(counts?.[COUNT_OF[s]])}</span>` : null}</a>`)}
    </nav>
    ${config.readOnly
      ? null
      : html`<div class="toolbar">
          <${JobActions} queue=${queue} ids=${[...selected]} onNote=${note} label=${`Selected (${selected.size})`} />
          <${JobActions} queue=${queue} filter=${filter} onNote=${note} label=${`All ${state === 'all' ? '' : state} jobs${search ? ` matching “${search}”` : ''}`} />
        </div>`}
    <${Loading} state=${page}>
      ${(p) => html`<div>
        ${search ? html`<p class="muted">${p.jobs.length} match(es) among ${num(p.scanned)} jobs read.</p>` : null}
        <table class="jobs">
          <thead><tr>${config.readOnly ? null : html`<th><input type="checkbox" aria-label="Select all" checked=${p.jobs.length > 0 && p.jobs.every((j) => selected.has(j.id))} onChange=${(e) => setSelected(new Set(e.target.checked ? p.jobs.map((j) => j.id) : []))} /></th>`}<th>Id</th><th>Name</th><th>State</th><th>Attempts</th><th>Created</th><th>Data</th></tr></thead>
          <tbody>
            ${p.jobs.length === 0 ? html`<tr><td colspan="7" class="muted">No jobs.</td></tr>` : null}
            ${p.jobs.map((j) => html`<tr key=${j.id} data-job=${j.id}>
              ${config.readOnly ? null : html`<td><input type="checkbox" aria-label=${`Select ${j.id}`} checked=${selected.has(j.id)} onChange=${() => toggle(j.id)} /></td>`}
              <td><a href=${`#/queues/${enc(queue)}/jobs/${enc(j.id)}`}>${j.id}</a></td>
              <td>${j.name}</td>
              <td><span class=${`state ${stateName(j.state)}`}>${stateName(j.state)}</span></td>
              <td>${j.attemptsMade ?? 0}</td>
              <td>${time(j.createdAt)}</td>
              <td class="data"><code>${JSON.stringify(j.data ?? {}).slice(0, 120)}</code></td>
            </tr>`)}
          </tbody>
        </table>
        <${Pager} tokens=${tokens} setTokens=${setTokens} next=${p.nextPageToken} />
      </div>`}
    <//>
  </div>`;
}

/** The queue's figures as they change (SSE from WatchQueueStats), on top of what the page loaded. */
function useLiveQueueStats(queue) {
  const [stats, setStats] = useState();
  useEffect(() => {
    const source = new EventSource(`/api/live?queue=${enc(queue)}`);
    source.addEventListener('stats', (e) => setStats(JSON.parse(e.data).stats[0]));
    return () => source.close();
  }, [queue]);
  return stats;
}

export function QueuePage({ queue, query, config }) {
  const [note, setNote] = useState();
  const loaded = useLoad(() => get(`queues/${enc(queue)}`), [queue]);
  const live = useLiveQueueStats(queue);
  // The newer figures win: live ones as they come, the loaded ones just after an action here.
  // (Paused is in both, so a pause from elsewhere shows too.)
  const newer = live && loaded.data && (!loaded.data.stats || new Date(live.observedAt) > new Date(loaded.data.stats.observedAt));
  const info = newer ? { ...loaded, data: { queue: { ...loaded.data.queue, paused: live.paused }, stats: live } } : loaded;
  const state = query.get('state') || 'all';
  const search = query.get('search') || '';
  const onNote = (n) => {
    setNote(n);
    loaded.reload();
  };
  return html`<section>
    <p><a href="#/">← Overview</a></p>
    <${Loading} state=${info}>
      ${(i) => html`<div>
        <${Header} queue=${queue} info=${i} config=${config} onNote=${setNote} reload=${loaded.reload} />
        <${Note} note=${note} />
        <div class="toolbar"><${FindById} queue=${queue} /><${Search} queue=${queue} search=${search} /></div>
        ${state === 'dead-lettered' ? html`<p class="muted">Dead letters can be replayed on the <a href=${`#/dead-letters?queue=${enc(queue)}`}>dead letters page</a>.</p>` : null}
        <${Jobs} key=${`${state}|${search}`} queue=${queue} state=${state} search=${search} config=${config} onNote=${onNote} counts=${i.stats?.counts} />
      </div>`}
    <//>
  </section>`;
}
