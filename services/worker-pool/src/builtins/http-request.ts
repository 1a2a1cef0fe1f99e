import { RateLimitError, UnrecoverableError } from '@jobmesh/core';
import { defineProcessor, type ProcessorDefinition } from '@jobmesh/sdk';
import { z } from 'zod';
import { parseJobData } from './job-data';

/** The most response body a job result keeps; the rest is dropped and `truncated` set. */
export const MAX_STORED_BODY_BYTES = 64 * 1024;
/** @default 30 s per request, unless the job sets `timeout_ms`. */
const DEFAULT_TIMEOUT_MS = 30_000;
/** A 429 (or a 503 with Retry-After) whose Retry-After is missing or unreadable backs off this long. */
const DEFAULT_RETRY_AFTER_MS = 1_000;
/** How much of an error response's body goes into the failure reason. */
const EXCERPT_CHARS = 200;

/**
 * 4xx statuses that are worth another attempt; every other 4xx fails the job at once.
 * 408: the server gave up waiting for the request, which says nothing against sending it again.
 */
const RETRYABLE_CLIENT_STATUSES = new Set([408]);

const parseUrl = (v: string): URL | undefined => {
  try {
    return new URL(v);
  } catch {
    return undefined;
  }
};

const httpUrl = z
  .string()
  .refine((v) => ['http:', 'https:'].includes(parseUrl(v)?.protocol ?? ''), 'must be an absolute http:// or https:// URL')
  // fetch refuses such URLs, and failure reasons (which quote the URL) would show the password.
  .refine((v) => !parseUrl(v)?.username && !parseUrl(v)?.password, 'must not contain credentials; send them in an authorization header');

/** The job data of `http.request`. Unknown fields are errors, so a misspelt `header` does not pass silently. */
const httpRequestData = z
  .strictObject({
    url: httpUrl,
    /** @default POST when there is a body, else GET */
    method: z
      .string()
      .regex(/^[A-Za-z]+$/, 'must be an HTTP method such as GET or POST')
      .transform((m) => m.toUpperCase())
      .optional(),
    headers: z.record(z.string(), z.string()).optional(),
    /** A string is sent as is; an object or array as JSON. */
    body: z.union([z.string(), z.array(z.unknown()), z.record(z.string(), z.unknown())], { error: 'must be a string, an object or an array' }).optional(),
    timeout_ms: z.number().int().positive().optional(),
  })
  .refine((d) => d.body === undefined || (d.method !== 'GET' && d.method !== 'HEAD'), {
    message: 'a GET or HEAD request cannot have a body',
    path: ['method'],
  });

export type HttpRequestData = z.input<typeof httpRequestData>;

export interface HttpRequestResult {
  status: number;
  /** Response headers, names lower-cased. */
  headers: Record<string, string>;
  /** Parsed JSON when the response is JSON (and complete), else text. */
  body: unknown;
  /** Set when the body was longer than {@link MAX_STORED_BODY_BYTES} and was cut. */
  truncated?: true;
}

/**
 * `http.request`: makes one HTTP request. 2xx completes the job with the response; 5xx, 408 and
 * network errors are retried; 429 (and 503 with Retry-After) back the queue off as the server
 * asks without using an attempt; any other status fails the job at once.
 */
export function httpRequestProcessor(): ProcessorDefinition {
  return defineProcessor({
    queue: '*',
    name: 'http.request',
    async process(job, ctx): Promise<HttpRequestResult> {
      const data = parseJobData('http.request', httpRequestData, job.data);
      const method = data.method ?? (data.body === undefined ? 'GET' : 'POST');
      const what = `${method} ${data.url}`;
      const timeoutMs = data.timeout_ms ?? DEFAULT_TIMEOUT_MS;
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = AbortSignal.any([ctx.signal, timeout]);

      const headers = new Headers(data.headers);
      let body: string | undefined;
      if (typeof data.body === 'string') body = data.body;
      else if (data.body !== undefined) {
        body = JSON.stringify(data.body);
        if (!headers.has('content-type')) headers.set('content-type', 'application/json');
      }

      // A network failure is retryable. Aborts by the job (cancel, job timeout, shutdown) keep their
      // own reason, which the runner acts on; our own timeout is a retryable failure like any other.
      const failed = (doing: string, err: unknown): never => {
        if (ctx.signal.aborted) throw ctx.signal.reason;
        if (timeout.aborted) throw new Error(`http.request: ${what} timed out after ${timeoutMs} ms`, { cause: err });
        throw new Error(`http.request: ${what} failed${doing}: ${describeCause(err)}`, { cause: err });
      };

      let res: Response;
      try {
        res = await fetch(data.url, { method, headers, body, signal });
      } catch (err) {
        return failed('', err);
      }

      if (res.status >= 200 && res.status < 300) {
        const read = await readCapped(res, MAX_STORED_BODY_BYTES).catch((err: unknown) => failed(' while reading the response', err));
        return {
          status: res.status,
          headers: Object.fromEntries(res.headers),
          body: decodeBody(res, read.text, read.truncated),
          ...(read.truncated && { truncated: true as const }),
        };
      }

      const retryAfter = res.headers.get('retry-after');
      if (res.status === 429 || (res.status === 503 && retryAfter !== null)) {
        await discard(res);
        const ms = parseRetryAfter(retryAfter) ?? DEFAULT_RETRY_AFTER_MS;
        throw new RateLimitError(ms, `http.request: ${what} returned ${res.status}; retry after ${ms} ms`);
      }
      if (res.status >= 500 || RETRYABLE_CLIENT_STATUSES.has(res.status)) {
        await discard(res);
        throw new Error(`http.request: ${what} returned ${res.status} ${res.statusText}`.trimEnd());
      }
      // 4xx, and the 1xx/3xx fetch does not resolve itself: sending the same request again gets the same answer.
      const excerpt = await readCapped(res, EXCERPT_CHARS * 4)
        .then((r) => oneLine(r.text).slice(0, EXCERPT_CHARS))
        // The status already decided the outcome; the excerpt is a courtesy.
        .catch(() => '');
      throw new UnrecoverableError(`http.request: ${what} returned ${res.status} ${res.statusText}`.trimEnd() + (excerpt ? `: ${excerpt}` : ''));
    },
  });
}

/**
 * Retry-After as ms from now: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the
 * past is 0; anything unreadable is undefined.
 */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  // All three HTTP-date forms start with the day name; Date.parse alone would take "-5" as a year.
  if (!/^[A-Za-z]{3,9},? /.test(v)) return undefined;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Reads up to `max` bytes of the body, then cancels the rest. */
async function readCapped(res: Response, max: number): Promise<{ text: string; truncated: boolean }> {
  if (!res.body) return { text: '', truncated: false };
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { text: text + decoder.decode(), truncated: false };
    const room = max - size;
    if (value.byteLength > room) {
      text += decoder.decode(value.subarray(0, room));
      // Enough was read; cancelling only frees the connection.
      await reader.cancel().catch(() => undefined);
      return { text, truncated: true };
    }
    size += value.byteLength;
    text += decoder.decode(value, { stream: true });
  }
}

/** JSON responses (application/json, application/*+json) become values; the rest, and cut JSON, stay text. */
function decodeBody(res: Response, text: string, truncated: boolean): unknown {
  const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  const json = type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'));
  if (!json || truncated || text === '') return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Frees the connection of a response whose body is not wanted. */
async function discard(res: Response): Promise<void> {
  // An error freeing a body nobody reads loses nothing.
  await res.body?.cancel().catch(() => undefined);
}

/**
 * undici reports "fetch failed" with the useful part (ECONNREFUSED, DNS, TLS) in `cause`. Duck-typed:
 * fetch's errors may come from another realm (a test VM), where `instanceof Error` is false.
 */
function describeCause(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; isErrorLike(e) && parts.length < 4; e = e.cause) parts.push(e.message);
  return parts.join(': ') || String(err);
}

function isErrorLike(e: unknown): e is { message: string; cause?: unknown } {
  return typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string';
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}
