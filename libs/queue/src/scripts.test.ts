// A script's file name says how many keys it takes ("-<n>.lua"), and its caller's key tuple
// says how many it passes. A mismatch only shows when the script runs, as an error that
// recheck-parked once raised on every job parked for a processor: so both are checked here.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const LUA = join(__dirname, '..', 'lua');
const SRC = __dirname;

const scripts = readdirSync(LUA).filter((f) => f.endsWith('.lua'));
const suffix = (file: string): number => Number(/-(\d+)(?:\.lua)?$/.exec(file)![1]);

it.each(scripts)('%s uses no key beyond the count its name gives, and the last one it names', (file) => {
  const used = [...readFileSync(join(LUA, file), 'utf8').matchAll(/KEYS\[(\d+)\]/g)].map((m) => Number(m[1]));
  // A script that hands KEYS on whole (dlq-store) names none itself.
  if (used.length) expect(Math.max(...used)).toBe(suffix(file));
});

/** Every `new LuaScript<[k1: string, ...], ...>('name-n')` in src: the tuple's length and n. */
function callers(): Array<{ where: string; file: string; keys: number }> {
  const out: Array<{ where: string; file: string; keys: number }> = [];
  for (const f of readdirSync(SRC).filter((x) => x.endsWith('.ts') && !x.endsWith('.test.ts'))) {
    const text = readFileSync(join(SRC, f), 'utf8');
    for (const m of text.matchAll(/new LuaScript<\s*\[([^\]]*)\][\s\S]*?>\('([a-z0-9-]+)'\)/g)) {
      out.push({ where: f, file: m[2]!, keys: m[1]!.split(',').filter((k) => k.trim()).length });
    }
  }
  return out;
}

it('every script a caller names exists, and the caller passes as many keys as its name gives', () => {
  const found = callers();
  expect(found.length).toBeGreaterThan(10);
  const wrong = found.filter((c) => !scripts.includes(`${c.file}.lua`) || c.keys !== suffix(c.file));
  expect(wrong).toEqual([]);
});
