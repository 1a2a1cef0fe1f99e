// The dashboard's entry: hash routes, the page frame, and the settings every page reads.
import { h, render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { ApiError, get, post, setCsrfToken } from './api.js';
import { Overview } from './overview.js';
import { QueuePage } from './queue.js';
import { JobPage } from './job.js';
import { WorkersPage } from './workers.js';
import { DeadLettersPage } from './dead-letters.js';
import { FindPage } from './find.js';

const html = htm.bind(h);

/** "#/queues/q/jobs/1?x=y" → { parts: ['queues', 'q', 'jobs', '1'], query: URLSearchParams }. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, search = ''] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(search) };
}

function useRoute() {
  const [route, setRoute] = useState(parseHash);
  useEffect(() => {
    const on = () => setRoute(parseHash());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

function Page({ route, config }) {
  const [a, b, c, d] = route.parts;
  if (!a) return html`<${Overview} config=${config} />`;
  if (a === 'queues' && b && !c) return html`<${QueuePage} key=${b} queue=${b} query=${route.query} config=${config} />`;
  if (a === 'queues' && b && c === 'jobs' && d) return html`<${JobPage} key=${`${b}/${d}`} queue=${b} id=${d} config=${config} />`;
  if (a === 'workers') return html`<${WorkersPage} />`;
  if (a === 'dead-letters') return html`<${DeadLettersPage} key=${route.query.toString()} query=${route.query} config=${config} />`;
  if (a === 'find') return html`<${FindPage} key=${route.query.get('id')} id=${route.query.get('id') ?? ''} />`;
  return html`<p class="error">No such page.</p>`;
}

function FindBox() {
  const submit = (e) => {
    e.preventDefault();
    const id = new FormData(e.target).get('id').trim();
    if (id) location.hash = `#/find?id=${encodeURIComponent(id)}`;
  };
  return html`<form class="find" onSubmit=${submit} role="search">
    <input name="id" placeholder="Find a job by id" aria-label="Job id" />
    <button type="submit">Find</button>
  </form>`;
}

function App({ config }) {
  const route = useRoute();
  const here = route.parts[0] ?? '';
  const link = (href, label, key) => html`<a href=${href} class=${here === key ? 'here' : ''}>${label}</a>`;
  return html`<header>
      <a class="brand" href="#/">Jobmesh</a>
      <nav>${link('#/', 'Overview', '')} ${link('#/workers', 'Workers', 'workers')} ${link('#/dead-letters', 'Dead letters', 'dead-letters')}</nav>
      <${FindBox} />
      ${config.readOnly ? html`<span class="badge readonly" title=${config.signedIn?.role === 'viewer' ? 'a viewer key' : 'JOBMESH_DASHBOARD_READ_ONLY'}>read-only</span>` : null}
      ${config.signedIn ? html`<${SignedIn} who=${config.signedIn} />` : null}
    </header>
    <main><${Page} route=${route} config=${config} /></main>`;
}

function SignedIn({ who }) {
  const signOut = () => post('logout').finally(() => location.reload());
  return html`<span class="signed-in">${who.keyId} (${who.role}) <button type="button" onClick=${signOut}>Sign out</button></span>`;
}

/** Auth on and no session: a viewer or admin key opens one (kept server-side; the browser gets an HttpOnly cookie). */
function SignIn() {
  const [error, setError] = useState('');
  const submit = (e) => {
    e.preventDefault();
    const key = new FormData(e.target).get('key').trim();
    post('login', { key }).then(
      () => location.reload(),
      (err) => setError(err.message),
    );
  };
  return html`<main class="sign-in">
    <h1>Jobmesh</h1>
    <form onSubmit=${submit} aria-label="Sign in">
      <label>API key (viewer or admin) <input name="key" type="password" autocomplete="off" placeholder="<id>.<secret>" required /></label>
      <button type="submit">Sign in</button>
      ${error ? html`<p class="error" role="alert">${error}</p>` : null}
    </form>
  </main>`;
}

get('config')
  .then((config) => {
    setCsrfToken(config.signedIn?.csrfToken);
    render(html`<${App} config=${config} />`, document.getElementById('app'));
  })
  .catch((err) => {
    if (err instanceof ApiError && err.status === 401) render(html`<${SignIn} />`, document.getElementById('app'));
    else document.getElementById('app').textContent = `The dashboard cannot reach the monitor: ${err.message}`;
  });
