import { UnrecoverableError } from '@jobmesh/core';
import type { z } from 'zod';

/**
 * Validates a built-in's job data. Bad data fails the job at once (no attempt can fix it), with a
 * reason that names each offending field, e.g.
 * `http.request: invalid job data: url: must be an absolute http:// or https:// URL`.
 */
export function parseJobData<S extends z.ZodType>(processor: string, schema: S, data: unknown): z.output<S> {
  const parsed = schema.safeParse(data, { error: (issue) => (issue.input === undefined ? 'is required' : undefined) });
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => `${issue.path.map(String).join('.') || 'data'}: ${issue.message}`);
  throw new UnrecoverableError(`${processor}: invalid job data: ${problems.join('; ')}`);
}
