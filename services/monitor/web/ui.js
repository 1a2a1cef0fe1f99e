// Pieces every page uses: the html tag, loading and error states, a busy action button, a result note.
import { h } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import htm from 'htm';

export const html = htm.bind(h);

/** Runs `load` on mount and whenever `deps` change; `reload()` runs it again. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ loading: true });
  const run = useCallback(() => {
    let live = true;
    load().then(
      (data) => live && setState({ data }),
      (error) => live && setState({ error }),
    );
    return () => {
      live = false;
    };
  }, deps);
  useEffect(run, [run]);
  return { ...state, reload: run };
}

export function Loading({ state, children }) {
  if (state.error) return html`<p class="error" role="alert">${state.error.message}</p>`;
  if (!state.data) return html`<p class="muted">Loading…</p>`;
  return children(state.data);
}

/** A button that runs an async action, shows it running, and reports the outcome through `onDone`. */
export function ActionButton({ label, run, onDone, danger, disabled, title }) {
  const [busy, setBusy] = useState(false);
  const click = async () => {
    setBusy(true);
    try {
      const out = await run();
      onDone?.({ ok: true, out });
    } catch (error) {
      onDone?.({ ok: false, error });
    } finally {
      setBusy(false);
    }
  };
  return html`<button type="button" class=${danger ? 'danger' : ''} disabled=${busy || disabled} onClick=${click} title=${title}>${busy ? `${label}…` : label}</button>`;
}

/** The last action's outcome, as a line that says what happened. */
export function Note({ note }) {
  if (!note) return null;
  return html`<p class=${note.ok ? 'note ok' : 'note error'} role="status">${note.text}</p>`;
}

export function Json({ value }) {
  return html`<pre class="json">${JSON.stringify(value ?? null, null, 2)}</pre>`;
}

/**
 * Previous/next through a paged list. `tokens` holds the page token of every page so far (the
 * first is ''); `next` is the current page's next token, or empty on the last page.
 */
export function Pager({ tokens, setTokens, next }) {
  return html`<div class="pager">
    <button type="button" disabled=${tokens.length < 2} onClick=${() => setTokens((t) => t.slice(0, -1))}>Previous</button>
    <span class="muted">page ${tokens.length}</span>
    <button type="button" disabled=${!next} onClick=${() => setTokens((t) => [...t, next])}>Next</button>
  </div>`;
}
