// Acting on jobs: the selected ones or every one the filter selects, one outcome per job.
import { enc, post } from './api.js';
import { ActionButton, html } from './ui.js';

const PAST = { retry: 'retried', promote: 'promoted', cancel: 'cancelled' };

function summary(action, r) {
  const first = r.results.find((x) => !x.ok);
  return { ok: r.failed === 0, text: `${r.ok} job(s) ${PAST[action]}${r.failed ? `; ${r.failed} could not be (${first.id}: ${first.error})` : ''}.` };
}

/** Retry, promote and cancel buttons for `ids` (the selection) or, with `filter`, every matching job. */
export function JobActions({ queue, ids, filter, onNote, label }) {
  const run = (action) => () => post(`queues/${enc(queue)}/jobs/actions`, ids ? { action, ids } : { action, filter });
  const done = (action) => (r) => onNote(r.ok ? summary(action, r.out) : { ok: false, text: r.error.message });
  const none = ids !== undefined && ids.length === 0;
  return html`<span class="actions" role="group" aria-label=${label}>
    <span class="muted">${label}:</span>
    <${ActionButton} label="Retry" run=${run('retry')} onDone=${done('retry')} disabled=${none} />
    <${ActionButton} label="Promote" run=${run('promote')} onDone=${done('promote')} disabled=${none} />
    <${ActionButton} label="Cancel" danger run=${run('cancel')} onDone=${done('cancel')} disabled=${none} />
  </span>`;
}
