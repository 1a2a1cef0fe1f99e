// The dashboard with auth on, in a real Chromium (Debian's, driven by playwright-core) against
// `jobmesh up` with a keys file: it asks for a viewer or admin key, keeps an HttpOnly,
// SameSite=Strict session cookie, shows a viewer everything read-only (actions hidden and refused),
// lets an admin act with the session's key, and refuses actions without the session's CSRF token
// or from another site's page.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type UpHandle, up } from '@jobmesh/cli';
import { hashSecret } from '@jobmesh/core';
import { JobmeshClient } from '@jobmesh/sdk';
import { eventually, type RedisHandle, serviceEnv, startRedis, uniquePrefix, uniqueQueue } from '@jobmesh/testing';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(__dirname, '..', '..', 'test-artifacts', 'dashboard');
const KEYS = { viewer: 'viewer.viewer-secret', admin: 'admin.admin-secret', producer: 'producer.producer-secret' };

let redis: RedisHandle;
let dir: string;
let handle: UpHandle;
let base: string;
let admin: JobmeshClient;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  redis = await startRedis();
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-dash-auth-'));
  const file = join(dir, 'keys.yaml');
  writeFileSync(
    file,
    `keys:\n${Object.entries(KEYS)
      .map(([role, key]) => `  - { id: ${role}, hash: "${hashSecret(key.split('.')[1]!)}", role: ${role}, queues: ["*"] }`)
      .join('\n')}\n`,
  );
  handle = await up(serviceEnv(redis, uniquePrefix(), { JOBMESH_API_KEYS_FILE: file, LOG_LEVEL: 'silent' }), () => undefined);
  base = `http://${handle.httpAddress}`;
  admin = new JobmeshClient({ address: handle.grpcAddress, apiKey: KEYS.admin });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
});
afterAll(async () => {
  await browser?.close();
  admin?.close();
  await handle?.stop();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
});
afterEach(async () => {
  await page?.close();
});

const visible = (l: Locator): Promise<void> => l.first().waitFor({ state: 'visible', timeout: 10_000 });

async function signIn(key: string): Promise<void> {
  await page.goto(base);
  await page.getByLabel('API key (viewer or admin)').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** POST to the dashboard's API as a script would, with `cookie` and `headers`. */
const post = (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(`${base}/api/${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

async function session(key: string): Promise<{ cookie: string; csrf: string; setCookie: string }> {
  const res = await post('login', { key });
  expect(res.status).toBe(200);
  const setCookie = res.headers.get('set-cookie') ?? '';
  const cookie = setCookie.split(';')[0]!;
  const config = (await (await fetch(`${base}/api/config`, { headers: { cookie } })).json()) as { signedIn: { csrfToken: string } };
  return { cookie, csrf: config.signedIn.csrfToken, setCookie };
}

it('asks for a key: the API answers 401 without a session, and the page shows the sign-in form', async () => {
  expect((await fetch(`${base}/api/overview`)).status).toBe(401);
  expect((await fetch(`${base}/api/config`)).status).toBe(401);
  await page.goto(base);
  await visible(page.getByRole('button', { name: 'Sign in' }));
  await page.screenshot({ path: join(ARTIFACTS, 'sign-in.png') });
});

it('refuses a wrong key and a producer key at sign-in, saying why', async () => {
  await signIn('viewer.not-the-secret');
  await visible(page.getByRole('alert').getByText(/API key not recognised/));
  const res = await post('login', { key: KEYS.producer });
  expect(res.status).toBe(403);
  expect(((await res.json()) as { error: string }).error).toContain('needs a viewer or admin key');
});

it('keeps the key server-side behind an HttpOnly, SameSite=Strict cookie', async () => {
  const s = await session(KEYS.viewer);
  expect(s.setCookie).toMatch(/^jobmesh_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
  expect(s.setCookie).not.toContain('viewer-secret');
  expect((await fetch(`${base}/api/overview`, { headers: { cookie: s.cookie } })).status).toBe(200);
  expect((await fetch(`${base}/api/overview`, { headers: { cookie: 'jobmesh_session=forged' } })).status).toBe(401);
});

it('shows a viewer everything read-only: actions hidden in the page and refused by the server', async () => {
  const queue = uniqueQueue('dash-view');
  await admin.createQueue({ queue: { name: queue } });
  await signIn(KEYS.viewer);
  await visible(page.getByText('viewer (viewer)'));
  await visible(page.getByText('read-only', { exact: true }));
  await visible(page.locator(`tr[data-queue="${queue}"]`));
  await page.screenshot({ path: join(ARTIFACTS, 'viewer-overview.png') });
  await page.goto(`${base}/#/queues/${queue}`);
  await visible(page.getByRole('heading', { name: queue }));
  expect(await page.getByRole('button', { name: /Pause|Resume|Retry|Promote|Cancel/ }).count()).toBe(0);

  const s = await session(KEYS.viewer);
  const refused = await post(`queues/${queue}/pause`, {}, { cookie: s.cookie, 'x-jobmesh-csrf': s.csrf });
  expect(refused.status).toBe(403);
  expect(((await refused.json()) as { error: string }).error).toContain('read-only');
  expect((await admin.getQueue(queue)).paused).toBe(false);
});

it('lets an admin pause a queue from the page, the service called with the session`s key', async () => {
  const queue = uniqueQueue('dash-admin');
  await admin.createQueue({ queue: { name: queue } });
  await signIn(KEYS.admin);
  await visible(page.getByText('admin (admin)'));
  await page.goto(`${base}/#/queues/${queue}`);
  await page.getByRole('button', { name: 'Pause queue' }).click();
  await visible(page.getByRole('heading', { name: queue }).getByText('paused', { exact: true }));
  expect((await admin.getQueue(queue)).paused).toBe(true);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await visible(page.getByRole('button', { name: 'Sign in' }));
});

it('refuses an admin session`s action without its CSRF token, or from another site', async () => {
  const queue = uniqueQueue('dash-csrf');
  await admin.createQueue({ queue: { name: queue } });
  const s = await session(KEYS.admin);
  const noToken = await post(`queues/${queue}/pause`, {}, { cookie: s.cookie });
  expect(noToken.status).toBe(403);
  expect(((await noToken.json()) as { error: string }).error).toContain('x-jobmesh-csrf');
  const wrongToken = await post(`queues/${queue}/pause`, {}, { cookie: s.cookie, 'x-jobmesh-csrf': 'x'.repeat(43) });
  expect(wrongToken.status).toBe(403);
  const evil = await post(`queues/${queue}/pause`, {}, { cookie: s.cookie, 'x-jobmesh-csrf': s.csrf, origin: 'http://evil.example' });
  expect(evil.status).toBe(403);
  const evilLogin = await post('login', { key: KEYS.admin }, { origin: 'http://evil.example' });
  expect(evilLogin.status).toBe(403);
  expect((await admin.getQueue(queue)).paused).toBe(false);
  const own = await post(`queues/${queue}/pause`, {}, { cookie: s.cookie, 'x-jobmesh-csrf': s.csrf, origin: base });
  expect(own.status).toBe(200);
  await eventually(async () => (await admin.getQueue(queue)).paused, 5000, 'the queue to be paused');
  // Signed out: the cookie opens nothing any more.
  expect((await post('logout', {}, { cookie: s.cookie, 'x-jobmesh-csrf': s.csrf })).status).toBe(200);
  expect((await fetch(`${base}/api/overview`, { headers: { cookie: s.cookie } })).status).toBe(401);
});
