// Find a job by id on every queue.
import { enc, get, stateName, time } from './api.js';
import { Loading, html, useLoad } from './ui.js';

export function FindPage({ id }) {
  const found = useLoad(() => (id ? get('find', { id }) : Promise.resolve({ jobs: [] })), [id]);
  return html`<section>
    <h1>Jobs with id <code>${id}</code></h1>
    <${Loading} state=${found}>
      ${({ jobs }) => {
        if (jobs.length === 1) location.replace(`#/queues/${enc(jobs[0].queue)}/jobs/${enc(jobs[0].id)}`);
        return jobs.length === 0
          ? html`<p class="muted">No queue holds a job with this id.</p>`
          : html`<ul>${jobs.map((j) => html`<li><a href=${`#/queues/${enc(j.queue)}/jobs/${enc(j.id)}`}>${j.queue}/${j.id}</a> ${j.name} — ${stateName(j.state)}, created ${time(j.createdAt)}</li>`)}</ul>`;
      }}
    <//>
  </section>`;
}
