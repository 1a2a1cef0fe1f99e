import type { HttpRequestSettingsConfig } from '@jobmesh/config';
import { RateLimitError, UnrecoverableError } from '@jobmesh/core';
import { defineProcessor, type ProcessorDefinition } from '@jobmesh/sdk';
import type { Response } from 'undici';
import { z } from 'zod';
import { HttpDestinations, type Resolver, undici } from './http-guard';
import { parseJobData } from './job-data';

/** The most response body a job result keeps; the rest is dropped and `truncated` set. */
export const MAX_STORED_BODY_BYTES = 64 * 1024;
/** @default 30 s per request, unless the job sets `timeout_ms`. */
const DEFAULT_TIMEOUT_MS = 30_000;
/** A 429 (or a 503 with Retry-After) whose Retry-After is missing or unreadable backs off this long. */
const DEFAULT_RETRY_AFTER_MS = 1_000;
/** How much of an error response's body goes into the failure reason. */
const EXCERPT_CHARS = 200;
/** @default 5 redirects per attempt (`processors.http_request.max_redirects`). */
export const DEFAULT_MAX_REDIRECTS = 5;
/** @default 1 MiB read per response at most (`processors.http_request.max_response_bytes`). */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;
/** The statuses whose Location is followed; 303 (and 301/302 after a POST) turn the request into a GET. */
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Headers not sent on to another origin: credentials meant for the first one. */
const ORIGIN_BOUND_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];

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

export interface HttpRequestSettings {
  /**
   * Refuse destinations that resolve to loopback, private, link-local, unique-local or cloud
   * metadata addresses unless the queue's allow-list opens them. On in production mode.
   * @default false
   */
  guard?: boolean;
  /** `processors.http_request` of the config file: the caps and the per-queue allow-list. */
  config?: HttpRequestSettingsConfig;
  /** How the guard resolves host names. @default dns.lookup (hosts file, then DNS) */
  resolve?: Resolver;
}

/**
 * `http.request`: makes one HTTP request. 2xx completes the job with the response; 5xx, 408 and
 * network errors are retried; 429 (and 503 with Retry-After) back the queue off as the server
 * asks without using an attempt; any other status fails the job at once. Redirects are followed
 * up to `max_redirects`; a body over `max_response_bytes` fails the job. With `guard`, a
 * connection to an internal address fails the job (unrecoverably) before it is opened.
 */
export function httpRequestProcessor(settings: HttpRequestSettings = {}): ProcessorDefinition {
  const maxRedirects = settings.config?.max_redirects ?? DEFAULT_MAX_REDIRECTS;
  const maxResponseBytes = settings.config?.max_response_bytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const destinations = new HttpDestinations({ guard: settings.guard ?? false, allow: settings.config?.allow ?? [], resolve: settings.resolve });
  return defineProcessor({
    queue: '*',
    name: 'http.request',
    async process(job, ctx): Promise<HttpRequestResult> {
      const data = parseJobData('http.request', httpRequestData, job.data);
      const dispatcher = destinations.dispatcherFor(job.queue);
      const { fetch, Headers } = undici();
      let method = data.method ?? (data.body === undefined ? 'GET' : 'POST');
      let url = data.url;
      let what = `${method} ${data.url}`;
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
      // A refused destination or an oversized body fails for good: another attempt meets the same.
      const failed = (doing: string, err: unknown): never => {
        if (ctx.signal.aborted) throw ctx.signal.reason;
        if (timeout.aborted) throw new Error(`http.request: ${what} timed out after ${timeoutMs} ms`, { cause: err });
        const refused = findCause(err, (e) => e.name === 'DestinationRefusedError');
        if (refused) throw new UnrecoverableError(`http.request: ${what} refused: ${refused.message}`);
        throw new Error(`http.request: ${what} failed${doing}: ${describeCause(err)}`, { cause: err });
      };

      let res: Response;
      for (let redirects = 0; ; redirects++) {
        try {
          res = await fetch(url, { method, headers, body, signal, dispatcher, redirect: 'manual' });
        } catch (err) {
          return failed('', err);
        }
        const location = REDIRECT_STATUSES.has(res.status) ? res.headers.get('location') : null;
        if (location === null) break;
        await discard(res);
        if (redirects >= maxRedirects) {
          throw new UnrecoverableError(`http.request: ${what} was redirected more than ${maxRedirects} times (processors.http_request.max_redirects)`);
        }
        const next = redirectTarget(location, url);
        if (typeof next === 'string') throw new UnrecoverableError(`http.request: ${what} returned ${res.status} with a Location that ${next}`);
        if (res.status === 303 ? method !== 'HEAD' : (res.status === 301 || res.status === 302) && method === 'POST') {
          method = 'GET';
          body = undefined;
          headers.delete('content-type');
        }
        if (next.origin !== new URL(url).origin) for (const h of ORIGIN_BOUND_HEADERS) headers.delete(h);
        url = next.href;
        what = `${method} ${url} (redirected from ${data.url})`;
      }

      if (res.status >= 200 && res.status < 300) {
        // Declared too large: failed without reading a byte of it.
        const declared = Number(res.headers.get('content-length') ?? NaN);
        if (declared > maxResponseBytes) {
          await discard(res);
          throw tooLarge(what, maxResponseBytes, declared);
        }
        const read = await readCapped(res, MAX_STORED_BODY_BYTES, maxResponseBytes).catch((err: unknown) =>
          err instanceof ResponseTooLarge ? Promise.reject(tooLarge(what, maxResponseBytes)) : failed(' while reading the response', err),
        );
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
      const excerpt = await readCapped(res, EXCERPT_CHARS * 4, EXCERPT_CHARS * 4)
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

/** Thrown by readCapped when the body goes past its limit. */
class ResponseTooLarge extends Error {}

function tooLarge(what: string, max: number, declared?: number): UnrecoverableError {
  const size = declared === undefined ? `more than ${max} bytes` : `${declared} bytes (Content-Length)`;
  return new UnrecoverableError(`http.request: ${what} returned a body of ${size}; the limit is ${max} bytes (processors.http_request.max_response_bytes)`);
}

/**
 * Reads the body and keeps its first `keep` bytes (`truncated` when there was more). Reading stops
 * as soon as `limit` bytes have gone by (ResponseTooLarge), so a huge or endless body costs at
 * most that much; with `limit` equal to `keep` it stops at `keep` and only truncates.
 */
async function readCapped(res: Response, keep: number, limit: number): Promise<{ text: string; truncated: boolean }> {
  if (!res.body) return { text: '', truncated: false };
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const stopAtKeep = limit <= keep;
  let text = '';
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { text: text + decoder.decode(), truncated: size > keep };
    const room = Math.max(0, keep - size);
    if (stopAtKeep && value.byteLength > room) {
      text += decoder.decode(value.subarray(0, room));
      // Enough was read; cancelling only frees the connection.
      await reader.cancel().catch(() => undefined);
      return { text, truncated: true };
    }
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw new ResponseTooLarge();
    }
    if (room > 0) text += decoder.decode(value.byteLength > room ? value.subarray(0, room) : value, { stream: value.byteLength <= room });
  }
}

/** Where a Location header points, resolved against the URL that answered; or why it cannot be followed. */
function redirectTarget(location: string, from: string): URL | string {
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    return 'is not a URL';
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') return `is not http(s) (${next.protocol})`;
  if (next.username || next.password) return 'contains credentials';
  return next;
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

/** The first error along the `cause` chain that `test` picks. */
function findCause(err: unknown, test: (e: { name?: unknown; message: string }) => boolean): { message: string } | undefined {
  for (let e: unknown = err, n = 0; isErrorLike(e) && n < 8; e = e.cause, n++) if (test(e)) return e;
  return undefined;
}

function isErrorLike(e: unknown): e is { message: string; cause?: unknown } {
  return typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string';
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}
