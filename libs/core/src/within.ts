/**
 * Waits for `work` at most `ms`: true when it settled in time (its rejection, if it rejects in
 * time, is thrown), false when the time ran out first; late work goes on unawaited. The timer is
 * cleared either way and never holds the process open.
 */
export async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), Math.max(0, ms));
    (timer as { unref?: () => void }).unref?.();
  });
  try {
    return (await Promise.race([work.then(() => 'done' as const), late])) === 'done';
  } finally {
    clearTimeout(timer);
  }
}
