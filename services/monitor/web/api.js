// The dashboard's JSON API (services/monitor/src/dashboard/dashboard.ts), and small formatting helpers.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function answer(res) {
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, body.error || res.statusText);
  return body;
}

/** GET /api/<path> with the query's defined, non-empty values. */
export async function get(path, query = {}) {
  const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ''));
  return answer(await fetch(`/api/${path}${q.size ? `?${q}` : ''}`));
}

let csrfToken = '';
/** The signed-in session's CSRF token (from /api/config), sent with every POST. */
export const setCsrfToken = (t) => (csrfToken = t ?? '');

/** POST /api/<path> with a JSON body (and the session's CSRF token, when signed in). */
export async function post(path, body = {}) {
  const headers = { 'content-type': 'application/json' };
  if (csrfToken) headers['x-jobmesh-csrf'] = csrfToken;
  return answer(await fetch(`/api/${path}`, { method: 'POST', headers, body: JSON.stringify(body) }));
}

export const enc = encodeURIComponent;

/** A protobuf Duration as JSON ({seconds, nanos}) in ms. */
export const ms = (d) => (d ? (d.seconds ?? 0) * 1000 + (d.nanos ?? 0) / 1e6 : 0);

export function age(msValue) {
  if (!msValue) return '–';
  if (msValue < 1000) return `${Math.round(msValue)} ms`;
  const s = msValue / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export const time = (iso) => (iso ? new Date(iso).toLocaleString() : '–');

/** "JOB_STATE_WAITING_CHILDREN" → "waiting-children" (the names the API's state filter takes). */
export const stateName = (s) => (s ? s.replace(/^JOB_STATE_/, '').toLowerCase().replaceAll('_', '-') : 'unknown');

export const num = (n) => (n ?? 0).toLocaleString();
export const rate = (r) => (r ? r.toFixed(r < 10 ? 2 : 0) : '0');

export const json = (v) => JSON.stringify(v ?? null, null, 2);
