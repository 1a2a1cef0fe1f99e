import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPoolHarness } from '../harness';
it('probe', async () => {
  const h = await startPoolHarness();
  const r = h.redisClient();
  const names = async () => ((await r.client('LIST')) as string).split('\n').map((l) => / name=(\S*)/.exec(l)?.[1]).filter(Boolean).sort();
  const before = await names();
  const dir = mkdtempSync(join(tmpdir(), 'probe-'));
  writeFileSync(join(dir, 'jobmesh.config.yaml'), 'processors:\n  modules:\n    - ./nope.js\n');
  await h.startPool([], { JOBMESH_CONFIG: join(dir, 'jobmesh.config.yaml') }).catch((e) => console.log(String(e)));
  await new Promise((res) => setTimeout(res, 300));
  console.log({ before, after: await names() });
  await h.stop();
});
