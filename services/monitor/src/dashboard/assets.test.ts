import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Assets } from './assets';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-assets-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('dashboard assets', () => {
  it('serves a file that appears after a miss: a miss is not cached', async () => {
    const assets = new Assets(dir);
    await expect(assets.get('/web/late.js')).resolves.toBeUndefined();
    writeFileSync(join(dir, 'late.js'), 'export {};');
    await expect(assets.get('/web/late.js')).resolves.toMatchObject({ contentType: 'text/javascript; charset=utf-8', body: Buffer.from('export {};') });
  });

  it('rejects a read that fails, and reads again on the next request instead of keeping the failure', async () => {
    const assets = new Assets(dir);
    // A directory where the file should be: readFile fails with EISDIR, which is no "missing".
    mkdirSync(join(dir, 'app.js'));
    await expect(assets.get('/web/app.js')).rejects.toMatchObject({ code: 'EISDIR' });
    rmSync(join(dir, 'app.js'), { recursive: true });
    writeFileSync(join(dir, 'app.js'), 'export const ok = 1;');
    await expect(assets.get('/web/app.js')).resolves.toMatchObject({ body: Buffer.from('export const ok = 1;') });
  });

  it('keeps a file it found: a later change on disk is not read again', async () => {
    const assets = new Assets(dir);
    writeFileSync(join(dir, 'index.html'), '<p>one</p>');
    const first = await assets.get('/');
    writeFileSync(join(dir, 'index.html'), '<p>two</p>');
    expect(await assets.get('/')).toBe(first);
    expect(first!.body.toString()).toBe('<p>one</p>');
  });
});
