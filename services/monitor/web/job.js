// One job: data, options, progress, result, every failed attempt's error and stack, its events and
// logs (stored, and live from WatchJob), its flow parent and children, the trace link, and the
// actions that apply.
import { useEffect, useState } from 'preact/hooks';
import { enc, get, post, stateName, time } from './api.js';
import { ActionButton, Json, Loading, Note, html, useLoad } from './ui.js';

const DONE = { retry: 'Retried: the job waits to run again.', promote: 'Promoted: the job waits to run now.', cancel: 'Cancelled (an active job stops when its worker aborts it).' };

const EVENT = (t) => (t ?? '').replace(/^JOB_EVENT_TYPE_/, '').toLowerCase().replaceAll('_', ' ');

/** WatchJob's events as they come (SSE): the job's current state first, then each step until it finishes. */
function useEvents(queue, id) {
  const [events, setEvents] = useState([]);
  useEffect(() => {
    const source = new EventSource(`/api/queues/${enc(queue)}/jobs/${enc(id)}/events`);
    source.addEventListener('event', (e) => setEvents((list) => [...list, JSON.parse(e.data)]));
    // The stream ends when the job is finished; do not reconnect and replay it.
    source.addEventListener('error', () => source.close());
    return () => source.close();
  }, [queue, id]);
  return events;
}

function Field({ name, children }) {
  return html`<tr><th scope="row">${name}</th><td>${children}</td></tr>`;
}

function Attempts({ job }) {
  const stacks = job.stacktrace ?? [];
  if (!job.failureReason && !stacks.length) return html`<p class="muted">No failed attempt.</p>`;
  return html`<div>
    ${job.failureReason ? html`<p><b>Last error:</b> <span class="error">${job.failureReason}</span></p>` : null}
    ${stacks.map((s, i) => html`<details open=${i === stacks.length - 1}><summary>Failed attempt ${i + 1}</summary><pre class="stack">${s}</pre></details>`)}
  </div>`;
}

export function JobPage({ queue, id, config }) {
  const [note, setNote] = useState();
  const loaded = useLoad(() => get(`queues/${enc(queue)}/jobs/${enc(id)}`), [queue, id]);
  const events = useEvents(queue, id);
  const logs = events.filter((e) => e.type === 'JOB_EVENT_TYPE_LOG');
  const act = (action) => () => post(`queues/${enc(queue)}/jobs/actions`, { action, ids: [id] });
  const done = (action) => (r) => {
    const failed = r.ok && r.out.failed ? r.out.results[0].error : undefined;
    setNote({ ok: r.ok && !failed, text: r.ok ? (failed ? `Could not ${action}: ${failed}` : DONE[action]) : r.error.message });
    loaded.reload();
  };
  return html`<section>
    <p><a href=${`#/queues/${enc(queue)}`}>← ${queue}</a></p>
    <${Loading} state=${loaded}>
      ${({ job, parent, traceUrl, logs: stored = [], logsTotal = 0, children = [] }) => {
        const state = stateName(job.state);
        return html`<div>
          <h1>Job ${job.id} <span class=${`state ${state}`}>${state}</span></h1>
          ${config.readOnly
            ? null
            : html`<div class="toolbar">
                ${state === 'failed' ? html`<${ActionButton} label="Retry" run=${act('retry')} onDone=${done('retry')} />` : null}
                ${state === 'delayed' ? html`<${ActionButton} label="Promote" run=${act('promote')} onDone=${done('promote')} />` : null}
                ${['waiting', 'delayed', 'prioritized', 'active', 'waiting-children'].includes(state) ? html`<${ActionButton} label="Cancel" danger run=${act('cancel')} onDone=${done('cancel')} />` : null}
                ${state === 'dead-lettered' ? html`<a href=${`#/dead-letters?queue=${enc(queue)}`}>Replay from dead letters →</a>` : null}
              </div>`}
          <${Note} note=${note} />
          <table class="fields">
            <tbody>
              <${Field} name="Name">${job.name}<//>
              <${Field} name="Queue"><a href=${`#/queues/${enc(job.queue)}`}>${job.queue}</a><//>
              <${Field} name="Attempts made">${job.attemptsMade ?? 0} of ${job.options?.attempts ?? '–'}<//>
              <${Field} name="Created">${time(job.createdAt)}<//>
              <${Field} name="Started">${time(job.processedAt)}<//>
              <${Field} name="Finished">${time(job.finishedAt)}<//>
              ${job.runAt ? html`<${Field} name="Run at">${time(job.runAt)}<//>` : null}
              ${job.processorWaitUntil ? html`<${Field} name="Waits for a processor until">${time(job.processorWaitUntil)}<//>` : null}
              ${job.idempotencyKey ? html`<${Field} name="Idempotency key">${job.idempotencyKey}<//>` : null}
              <${Field} name="Flow parent">${job.parent?.id
                ? html`<a href=${`#/queues/${enc(job.parent.queue)}/jobs/${enc(job.parent.id)}`}>${job.parent.queue}/${job.parent.id}</a>${parent ? ` (${stateName(parent.state)})` : ' (no longer kept)'}`
                : '–'}<//>
              <${Field} name="Flow children">${children.length
                ? html`<ul class="children">${children.map((c) => html`<li><a href=${`#/queues/${enc(c.queue)}/jobs/${enc(c.id)}`}>${c.queue}/${c.id}</a></li>`)}</ul>`
                : '–'}<//>
              <${Field} name="Trace">${job.traceId
                ? traceUrl
                  ? html`<a href=${traceUrl} target="_blank" rel="noopener" class="trace">${job.traceId}</a>`
                  : html`<code>${job.traceId}</code> <span class="muted">(set JOBMESH_TRACE_UI_URL to link it)</span>`
                : '–'}<//>
              ${job.options?.replayOf ? html`<${Field} name="Replay of">${job.options.replayOf}<//>` : null}
            </tbody>
          </table>
          <div class="panes">
            <div><h2>Data</h2><${Json} value=${job.data ?? {}} /></div>
            <div><h2>Options</h2><${Json} value=${job.options ?? {}} /></div>
            <div><h2>Progress</h2><${Json} value=${job.progress} /></div>
            <div><h2>Result</h2><${Json} value=${job.result} /></div>
          </div>
          <h2>Errors</h2>
          <${Attempts} job=${job} />
          <h2>Logs</h2>
          ${stored.length ? html`<pre class="logs stored">${stored.join('\n')}</pre>${logsTotal > stored.length ? html`<p class="muted">The newest ${stored.length} of ${logsTotal} lines.</p>` : null}` : null}
          ${logs.length ? html`<p class="muted">Since this page opened:</p><pre class="logs">${logs.map((l) => `${time(l.at)}  ${l.message}`).join('\n')}</pre>` : null}
          ${!stored.length && !logs.length ? html`<p class="muted">No log lines.</p>` : null}
          <h2>Events</h2>
          <ol class="events">${events.map((e) => html`<li>${time(e.at)} <b>${EVENT(e.type)}</b>${e.attempt ? ` (attempt ${e.attempt})` : ''}${e.reason ? ` — ${e.reason}` : ''}</li>`)}</ol>
        </div>`;
      }}
    <//>
  </section>`;
}
