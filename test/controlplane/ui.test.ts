/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core (which never downloads a
 * browser). Skips when Chromium is not installed; .ci/run installs it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { PACKAGE_ROOT } from '../../src/util/package-root.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { helloBody, type HelloService, startHelloService } from '../support/upstreams.js';

const CHROMIUM = process.env.PORTICO_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_MISSING = `Chromium is not installed (${CHROMIUM}; .ci/run installs it with apt-get install chromium)`;

/** Polls `check` until it returns true, or fails naming `what`. Generous: the browser shares a busy machine. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function openDashboard(browser: Browser, gw: TestGateway): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(`http://127.0.0.1:${gw.apiPort}/`);
  await page.locator('#overview').getByText('healthy', { exact: true }).waitFor();
  return { page, errors };
}

/** The text of each cell of the mapping's row in the table. */
async function row(page: Page, name: string): Promise<string[]> {
  return page.locator(`#mappings tr[data-name="${name}"] td`).allTextContents();
}

async function fillMapping(page: Page, fields: Record<string, string>): Promise<void> {
  for (const [label, value] of Object.entries(fields)) await page.locator('#editor').getByLabel(label, { exact: true }).fill(value);
}

async function confirm(page: Page, action: string): Promise<void> {
  await page.locator('#confirm').getByRole('button', { name: action, exact: true }).click();
}

describe('the dashboard in Chromium', () => {
  let browser: Browser | undefined;
  before(async () => {
    if (!existsSync(CHROMIUM)) return;
    // Chromium's sandbox refuses to run as root.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  });
  after(async () => browser?.close());

  describe('without a token', () => {
    let gw: TestGateway;
    let hello: HelloService;
    before(async () => {
      if (!browser) return;
      hello = await startHelloService(1, { name: 'dashboard' });
      gw = await startTestGateway();
    });
    after(async () => {
      await gw?.close();
      await hello?.close();
    });

    it('creates a mapping the proxy serves, shows its stats and errors, edits, rolls back and deletes it', async (t) => {
      if (!browser) return t.skip(CHROMIUM_MISSING);
      const { page, errors } = await openDashboard(browser, gw);
      const service = `127.0.0.1:${hello.port}`;

      // create
      await page.getByRole('button', { name: 'New mapping' }).click();
      await fillMapping(page, { Name: 'hello', Prefix: '/hello/', Service: service, Labels: 'team=web' });
      await page.getByRole('button', { name: 'Save' }).click();
      await page.locator('#mappings tr[data-name="hello"]').waitFor();
      assert.deepEqual((await row(page, 'hello')).slice(0, 5), ['hello', '/hello/', service, '', 'team=web']);
      assert.match(await page.locator('#notice').innerText(), /Created Mapping\/hello: configuration version 1/);
      const served = await gw.proxy('/hello/1');
      assert.deepEqual([served.status, served.body], [200, helloBody(1, 'dashboard')]);
      assert.equal(hello.requests.at(-1)!.url, '/1');

      // per-mapping stats: 3 OK and one 404 through the proxy, shown after a refresh
      for (const path of ['/hello/1', '/hello/1', '/hello/missing']) await gw.proxy(path);
      await page.getByRole('button', { name: 'Refresh' }).click();
      await until('the row shows 3 OK, 1 4xx, 0 5xx and 1/1 healthy', async () => (await row(page, 'hello')).slice(5, 9).join() === '3,1,0,1 / 1');
      // the gateway's own data plane, connected over xDS and serving version 1, with nothing refused
      await until('the data plane serves version 1', async () =>
        (await page.locator('#nodes tr[data-node="portico"] td').allTextContents()).slice(0, 5).join() === 'portico,portico,1,1,none');

      // a bad prefix: the API's 400 next to the field, nothing changed
      await page.getByRole('button', { name: 'Edit hello' }).click();
      await fillMapping(page, { Prefix: 'hello', 'Other spec fields (JSON)': '{ "weight": 500 }' });
      await page.getByRole('button', { name: 'Save' }).click();
      const prefixError = page.locator('[data-error-for="prefix"]');
      await until('the prefix error shows', async () => (await prefixError.textContent()) !== '');
      assert.equal(await prefixError.textContent(), '"hello" must start with "/"');
      assert.equal(await page.getByLabel('Prefix', { exact: true }).getAttribute('aria-invalid'), 'true');
      assert.equal(await page.locator('[data-error-for="extra"]').textContent(), 'spec.weight: must be between 0 and 100, got 500');
      assert.equal((await gw.proxy('/hello/1')).status, 200);
      // the raw editor's own mistakes are caught before anything is sent
      await fillMapping(page, { 'Other spec fields (JSON)': '{ "weight": ' });
      await page.getByRole('button', { name: 'Validate' }).click();
      assert.match((await page.locator('[data-error-for="extra"]').textContent())!, /^not valid JSON/);

      // edit: a new prefix and rewrite, checked first with Validate
      await fillMapping(page, { Prefix: '/hi/', Rewrite: '/svc/', 'Other spec fields (JSON)': '' });
      await page.getByRole('button', { name: 'Validate' }).click();
      await page.locator('#editor-errors').getByText('Valid: would update Mapping/hello.').waitFor();
      await page.getByRole('button', { name: 'Save' }).click();
      await until('the row shows the new prefix', async () => (await row(page, 'hello'))[1] === '/hi/');
      assert.equal((await gw.proxy('/hi/1')).status, 200);
      assert.equal(hello.requests.at(-1)!.url, '/svc/1');
      assert.equal((await gw.proxy('/hello/1')).status, 404);

      // history: both versions, the current one served, with the diff of the edit
      const versions = page.locator('#history > li');
      await until('history lists 2 versions', async () => (await versions.count()) === 2);
      assert.deepEqual(await versions.evaluateAll((items) => items.map((li) => li.getAttribute('data-version'))), ['2', '1']);
      assert.equal(await versions.first().locator('.badge').textContent(), 'current · served');
      await versions.first().locator('summary').click();
      const diff = await versions.first().locator('pre.diff').innerText();
      assert.match(diff, /^- {5}"prefix": "\/hello\/",$/m);
      assert.match(diff, /^\+ {5}"prefix": "\/hi\/",$/m);
      assert.match(diff, /^\+ {5}"rewrite": "\/svc\/"$/m);

      // roll back to version 1: a new version 3 equal to it
      await page.getByRole('button', { name: 'Roll back to version 1' }).click();
      await confirm(page, 'Roll back');
      await until('the row shows the old prefix', async () => (await row(page, 'hello'))[1] === '/hello/');
      assert.match(await page.locator('#notice').innerText(), /Rolled back to version 1 as version 3: update Mapping\/hello/);
      assert.equal((await gw.proxy('/hello/1')).status, 200);
      assert.equal((await page.locator('#history > li').count()), 3);

      // delete, after confirmation (cancelling first changes nothing)
      await page.getByRole('button', { name: 'Delete hello' }).click();
      await confirm(page, 'Cancel');
      assert.equal((await gw.api('/api/v1/mappings/hello')).status, 200);
      await page.getByRole('button', { name: 'Delete hello' }).click();
      await confirm(page, 'Delete');
      await page.locator('#mappings').getByText('No mappings yet').waitFor();
      assert.equal((await gw.proxy('/hello/1')).status, 404);
      assert.equal((await gw.api('/api/v1/history')).json.version, 4);
      assert.deepEqual(errors, []);
      await page.close();
    });

    it('shows what it is given as text, never as markup', async (t) => {
      if (!browser) return t.skip(CHROMIUM_MISSING);
      const label = '<img src=x onerror=alert(1)>';
      const put = await gw.api('/api/v1/mappings/markup', {
        method: 'PUT',
        body: { kind: 'Mapping', metadata: { labels: { note: label } }, spec: { prefix: '/markup/', service: `127.0.0.1:${hello.port}` } },
      });
      assert.equal(put.status, 201);
      const { page, errors } = await openDashboard(browser, gw);
      await page.locator('#mappings tr[data-name="markup"]').waitFor();
      assert.equal((await row(page, 'markup'))[4], `note=${label}`);
      assert.equal(await page.locator('img').count(), 0);
      assert.deepEqual(errors, []);
      await page.close();
      await gw.api('/api/v1/mappings/markup', { method: 'DELETE' });
    });
  });

  describe('with an AuthService and a RateLimitService', () => {
    let gw: TestGateway;
    before(async () => {
      if (browser) gw = await startTestGateway();
    });
    after(async () => gw?.close());

    it('shows which mappings the AuthService protects and which bypass it, the Filters bound to each, and each mapping\'s rate limit labels', async (t) => {
      if (!browser) return t.skip(CHROMIUM_MISSING);
      const labels = {
        ambassador: [{ per_user: ['remote_address', { request_headers: { key: 'user', header_name: 'x-user', omit_if_not_present: true } }] }, { flat: ['api'] }],
        elsewhere: [{ unused: [{ generic_key: { value: 'x' } }] }],
      };
      const yaml = JSON.stringify([
        { kind: 'Mapping', metadata: { name: 'api' }, spec: { prefix: '/api/', service: 'api.example', labels } },
        { kind: 'Mapping', metadata: { name: 'health' }, spec: { prefix: '/health/', service: 'api.example', bypass_auth: true } },
      ]);
      assert.equal((await gw.api('/api/v1/apply', { method: 'POST', body: yaml })).status, 200);
      const { page, errors } = await openDashboard(browser, gw);
      await page.locator('#mappings tr[data-name="api"]').waitFor();
      // Without the services: no protection, and labels shown as not sent.
      assert.equal((await row(page, 'api'))[9], '–');
      assert.equal(await page.locator('#mappings tr[data-name="api"] .chip.inactive').count(), 3);
      assert.match(await page.locator('#overview').innerText(), /no AuthService: every mapping is open/);
      assert.match(await page.locator('#overview').innerText(), /no Host: every mapping serves every host name/);

      const services = JSON.stringify([
        { kind: 'Host', metadata: { name: 'shop' }, spec: { hostname: 'shop.example.com' } },
        { kind: 'AuthService', metadata: { name: 'authn' }, spec: { auth_service: 'auth.example:3000' } },
        { kind: 'RateLimitService', metadata: { name: 'limits' }, spec: { service: 'rls.example:8081' } },
      ]);
      assert.equal((await gw.api('/api/v1/apply', { method: 'POST', body: services })).status, 200);
      await page.getByRole('button', { name: 'Refresh' }).click();
      await until('the api row shows protected', async () => (await row(page, 'api'))[9] === 'protected');
      assert.equal((await row(page, 'health'))[9], 'bypass');
      assert.deepEqual(await page.locator('#mappings tr[data-name="api"] td:nth-child(11) .chip:not(.inactive)').allTextContents(), [
        'per_user: remote_address, user=header x-user?',
        'flat: "api"',
      ]);
      assert.deepEqual(await page.locator('#mappings tr[data-name="api"] .chip.inactive').allTextContents(), ['elsewhere/unused: generic_key="x"']);
      assert.equal((await row(page, 'health'))[10], '');
      const overview = await page.locator('#overview').innerText();
      assert.match(overview, /AuthService authn/);
      assert.match(overview, /http auth\.example:3000 · 1 protected, 1 bypass/);
      assert.match(overview, /RateLimitService limits/);
      assert.match(overview, /domain ambassador · 1 mappings labelled/);
      assert.match(overview, /1 hosts\s+shop\.example\.com/);

      // A FilterPolicy binding a JWT Filter to the api Mapping: shown in its Auth cell, before the AuthService's check.
      const filters = JSON.stringify([
        { kind: 'Filter', metadata: { name: 'login' }, spec: { JWT: { jwks: JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0', alg: 'HS256', kid: 'k1' }] }) } } },
        { kind: 'FilterPolicy', metadata: { name: 'edge' }, spec: { rules: [{ path: '/api/*', filters: [{ name: 'login' }] }] } },
      ]);
      assert.equal((await gw.api('/api/v1/apply', { method: 'POST', body: filters })).status, 200);
      await page.getByRole('button', { name: 'Refresh' }).click();
      const authChips = (name: string) => page.locator(`#mappings tr[data-name="${name}"] td:nth-child(10) .chip`).allTextContents();
      await until('the api row shows its JWT Filter', async () => (await authChips('api')).length === 1);
      assert.deepEqual(await authChips('api'), ['JWT login']);
      assert.match((await row(page, 'api'))[9]!, /protected$/);
      assert.deepEqual(await authChips('health'), []);
      assert.deepEqual(errors, []);
      await page.close();
    });
  });

  describe('with RateLimits', () => {
    let gw: TestGateway;
    let hello: HelloService;
    before(async () => {
      if (!browser) return;
      hello = await startHelloService(1, { name: 'limited' });
      gw = await startTestGateway();
    });
    after(async () => {
      await gw?.close();
      await hello?.close();
    });

    it('creates a rate limit, shows its hits and rejections, edits it mid-window and deletes it', async (t) => {
      if (!browser) return t.skip(CHROMIUM_MISSING);
      const labels = { ambassador: [{ per_user: [{ generic_key: { value: 'api' } }, { request_headers: { key: 'user', header_name: 'x-user' } }] }] };
      const put = await gw.api('/api/v1/mappings/limited', { method: 'PUT', body: { kind: 'Mapping', spec: { prefix: '/limited/', service: `127.0.0.1:${hello.port}`, labels } } });
      assert.equal(put.status, 201);
      const { page, errors } = await openDashboard(browser, gw);
      const cells = () => page.locator('#ratelimits tr[data-name="users"] td').allTextContents();
      const limits = (rate: number | string) => JSON.stringify([{ name: 'per-user', pattern: [{ generic_key: 'api' }, { user: '*' }], rate, unit: 'hour' }]);
      const fill = async (fields: Record<string, string>) => {
        for (const [label, value] of Object.entries(fields)) await page.locator('#rl-editor').getByLabel(label, { exact: true }).fill(value);
      };

      // create
      await page.getByRole('button', { name: 'New rate limit' }).click();
      await fill({ Name: 'users', 'Limits (JSON)': limits(2) });
      await page.locator('#rl-editor').getByRole('button', { name: 'Save' }).click();
      await page.locator('#ratelimits tr[data-name="users"]').waitFor();
      assert.match(await page.locator('#notice').innerText(), /Created RateLimit\/users: configuration version 2/);
      assert.deepEqual((await cells()).slice(0, 6), ['users', 'per-user', 'ambassador', 'generic_key=apiuser=*', '2 / hour', 'Enforce']);
      assert.deepEqual(await page.locator('#ratelimits tr[data-name="users"] .chip').allTextContents(), ['generic_key=api', 'user=*']);
      assert.match(await page.locator('#overview').innerText(), /1 limits\s+Portico's own service · domain ambassador · 1 mappings labelled/);

      // hits and rejections after requests through the proxy
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await gw.proxy('/limited/1', { 'x-user': 'alice' })).status);
      assert.deepEqual(statuses, [200, 200, 429]);
      await page.getByRole('button', { name: 'Refresh' }).click();
      await until('the row shows 3 hits, 1 rejected', async () => (await cells()).slice(6, 8).join() === '3,1');

      // a bad edit: the API's problem under the JSON field, nothing changed
      await page.getByRole('button', { name: 'Edit rate limit users' }).click();
      await fill({ 'Limits (JSON)': limits(0) });
      await page.locator('#rl-editor').getByRole('button', { name: 'Save' }).click();
      const limitsError = page.locator('#rl-editor [data-error-for="limits"]');
      await until('the limits error shows', async () => (await limitsError.textContent()) !== '');
      assert.equal(await limitsError.textContent(), 'spec.limits[0].rate: must be between 1 and 9007199254740991, got 0');
      assert.equal((await gw.proxy('/limited/1', { 'x-user': 'alice' })).status, 429);

      // edit mid-window: alice's 4 hits are kept, so a rate of 5 lets one more through
      await fill({ 'Limits (JSON)': limits(5) });
      await page.locator('#rl-editor').getByRole('button', { name: 'Save' }).click();
      await until('the row shows the new rate', async () => (await cells())[4] === '5 / hour');
      assert.deepEqual([(await gw.proxy('/limited/1', { 'x-user': 'alice' })).status, (await gw.proxy('/limited/1', { 'x-user': 'alice' })).status], [200, 429]);
      await page.getByRole('button', { name: 'Refresh' }).click();
      await until('the row shows 6 hits, 3 rejected', async () => (await cells()).slice(6, 8).join() === '6,3');

      // delete, after confirmation
      await page.getByRole('button', { name: 'Delete rate limit users' }).click();
      await confirm(page, 'Delete');
      await page.locator('#ratelimits').getByText('No rate limits').waitFor();
      assert.equal((await gw.proxy('/limited/1', { 'x-user': 'alice' })).status, 200);
      assert.deepEqual(errors, []);
      await page.close();
    });
  });

  describe('with --api-token', () => {
    let gw: TestGateway;
    before(async () => {
      if (browser) gw = await startTestGateway({ token: 's3cret' });
    });
    after(async () => gw?.close());

    it('says clearly that a change needs the token, and sends the one entered', async (t) => {
      if (!browser) return t.skip(CHROMIUM_MISSING);
      const { page, errors } = await openDashboard(browser, gw);
      await page.getByRole('button', { name: 'New mapping' }).click();
      await fillMapping(page, { Name: 'guarded', Prefix: '/guarded/', Service: 'example.com' });
      await page.getByRole('button', { name: 'Save' }).click();
      await page.locator('#editor-errors').getByText('401 Unauthorized', { exact: false }).waitFor();
      assert.match(await page.locator('#alert').innerText(), /^401 Unauthorized: this call changes the configuration and needs Authorization: Bearer <token>\. Enter the token/);
      assert.equal((await gw.api('/api/v1/mappings/guarded')).status, 404);

      await page.getByRole('button', { name: 'Cancel' }).click();
      await page.getByLabel('API token').fill('s3cret');
      await page.getByRole('button', { name: 'Use' }).click();
      assert.equal(await page.evaluate(() => sessionStorage.getItem('portico.apiToken')), 's3cret');
      assert.equal(await page.locator('#alert').isHidden(), true);
      await page.getByRole('button', { name: 'New mapping' }).click();
      await fillMapping(page, { Name: 'guarded', Prefix: '/guarded/', Service: 'example.com' });
      await page.getByRole('button', { name: 'Save' }).click();
      await page.locator('#mappings tr[data-name="guarded"]').waitFor();
      assert.equal((await gw.api('/api/v1/mappings/guarded')).status, 200);
      assert.deepEqual(errors, []);
      await page.close();
    });
  });
});

describe('the published package', () => {
  it('contains the dashboard where the server reads it', () => {
    const [pack] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: PACKAGE_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    const files = new Set((pack.files as { path: string }[]).map((f) => f.path));
    for (const file of ['bin/portico.js', 'dist/src/cli/main.js', 'dist/src/controlplane/ui/app.js', 'dist/src/controlplane/ui/assets.js', 'generated/envoy-schema.json']) {
      assert.ok(files.has(file), `${file} is not in the package`);
    }
  });
});
