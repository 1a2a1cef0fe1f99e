import { parseDuration } from '@jobmesh/core';
import { z } from 'zod';

/** A duration: "500ms", "30s", "5m", "1h", "7d", or a number of milliseconds. Parsed to ms. */
export const durationMs = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message.replace(/^duration: /, '') });
    return z.NEVER;
  }
});
