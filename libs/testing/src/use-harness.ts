/**
 * A harness started in beforeAll and stopped in afterAll of the calling file or describe block,
 * returned at once as a stand-in that reads the running one: declare it at the top, use it in
 * tests and hooks. Reading it outside them (before beforeAll ran) throws, saying so.
 */
export function useHarness<H extends { stop(): Promise<void> }>(what: string, start: () => Promise<H>): H {
  let current: H | undefined;
  beforeAll(async () => {
    current = await start();
  });
  afterAll(async () => {
    await current?.stop();
  });
  return new Proxy({} as H, {
    get(_, key) {
      if (!current) throw new Error(`the ${what} harness starts in beforeAll; read "${String(key)}" inside a test or a hook`);
      return current[key as keyof H];
    },
  });
}
