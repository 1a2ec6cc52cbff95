// The dashboard in headless Chromium (Debian's, driven by playwright-core): sign in, a
// request made with the openai SDK appears in the table and its drill-down, the chart has
// data, the playground streams, a key is minted and revoked; the landing page and the docs
// render. Screenshots of every page go to test-artifacts/screenshots/.
import { existsSync, mkdirSync } from 'node:fs';
import OpenAI from 'openai';
import { chromium, type Browser, type Page } from 'playwright-core';
import t from 'tap';
import { FAKE_WORDS, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) {
  // CI installs it (.ci/run); elsewhere the suite says why it skipped.
  if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing: CI must install Debian's chromium`);
  t.test('dashboard in Chromium', { skip: `no Chromium at ${CHROMIUM} (apt-get install -y chromium)` }, () => undefined);
  process.exit(0);
}
const SHOTS = new URL('../../../test-artifacts/screenshots/', import.meta.url).pathname;
mkdirSync(SHOTS, { recursive: true });

const fake = await startFakeUpstream();
// The landing page's live totals are shown only when the operator makes them public.
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off', SLUICE_PUBLIC_STATS: 'on' }, tempDataDir(), {
  models: ['web-a', 'web-b'].map(testModel),
  router: { simple: 'openai/web-a', medium: 'openai/web-b', complex: 'openai/web-b', adaptive: { judge: { model: null } } },
});
const { adminJson: admin } = http(gw);
const ws = await admin('/admin/workspaces', { name: 'Acme web', credits_usd: 25 });
await admin(`/admin/workspaces/${ws.id}/topups`, { amount_usd: 5, note: 'browser test top-up' });
const key = (await admin('/admin/keys', { name: 'dashboard', workspace: ws.id, scopes: ['inference', 'usage:read', 'keys:write'] })).key as string;
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
const made = await client.chat.completions.create({ model: 'openai/web-a', temperature: 0, messages: [{ role: 'user', content: 'Hello dashboard' }] }).withResponse();
await client.chat.completions.create({ model: 'openai/web-a', temperature: 0, messages: [{ role: 'user', content: 'Hello dashboard' }] }); // an exact-cache hit
const requestId = made.response.headers.get('x-request-id')!;

const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
const page: Page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
const consoleErrors: string[] = [];
page.on('pageerror', (e) => consoleErrors.push(String(e)));
t.teardown(async () => { await browser.close(); await gw.stop(); await fake.close(); });
const shot = (name: string) => page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });

t.test('landing page and docs', async (t) => {
  await page.goto(`${gw.url}/`);
  await page.waitForFunction('document.getElementById("requests").textContent !== "–"');
  t.equal(await page.textContent('#requests'), '2', 'live totals');
  t.match(await page.textContent('.diff'), new RegExp(`${gw.url}/v1`), 'the one-line change with this gateway\'s URL');
  await shot('landing');
  await page.goto(`${gw.url}/docs`);
  await page.waitForSelector('details.op');
  t.ok(await page.locator('details.op').count() >= 30, 'operations listed');
  await page.locator('details.op', { hasText: '/v1/chat/completions' }).first().click();
  await shot('docs');
});

t.test('sign in, overview with chart data', async (t) => {
  await page.goto(`${gw.url}/app`);
  await page.fill('#key', 'sk-sluice-not-a-real-key');
  await page.click('#signin-form button');
  await page.waitForSelector('.error');
  t.match(await page.textContent('.error'), /not valid/);
  await page.fill('#key', key);
  await page.click('#signin-form button');
  await page.waitForSelector('#chart');
  await page.waitForSelector('#chart canvas');
  t.equal(await page.textContent('#total-requests'), '2');
  t.ok(Number(await page.getAttribute('#chart', 'data-points')) >= 1, 'the chart has data points');
  t.match(await page.textContent('#who'), /Acme web/);
  t.match(await page.textContent('main'), /exact_cache/, 'savings by mechanism');
  await shot('overview');
});

t.test('requests table and drill-down', async (t) => {
  await page.click('nav a[href="#requests"]');
  await page.waitForSelector(`tr[data-id="${requestId}"]`);
  t.equal(await page.locator('#requests-table tr.click').count(), 2);
  await shot('requests');
  await page.click(`tr[data-id="${requestId}"]`);
  await page.waitForSelector('#drilldown');
  const text = await page.textContent('#drilldown');
  t.match(text, /openai\/web-a/, 'route');
  t.match(text, /gateway overhead/, 'latency split');
  t.match(text, /retries/);
  await shot('request-drilldown');
  await page.goto(`${gw.url}/app#requests?cache=exact`);
  await page.waitForSelector('#requests-table');
  t.equal(await page.locator('#requests-table tr.click').count(), 1, 'filtered to the cache hit');
});

t.test('playground streams a completion', async (t) => {
  await page.click('nav a[href="#playground"]');
  await page.waitForSelector('#play');
  await page.selectOption('select[name=model]', 'openai/web-a');
  await page.click('#send');
  await page.waitForFunction(`document.getElementById('answer').textContent === ${JSON.stringify(FAKE_WORDS.join(''))}`);
  await page.waitForFunction('document.getElementById("figures").textContent.includes("served by")');
  t.match(await page.textContent('#figures'), /openai\/web-a/);
  await shot('playground');
});

t.test('mint and revoke a key', async (t) => {
  await page.click('nav a[href="#keys"]');
  await page.waitForSelector('#mint');
  await page.fill('#mint input[name=name]', 'from-the-browser');
  await page.click('#mint button');
  await page.waitForSelector('#new-secret');
  const secret = await page.textContent('#new-secret');
  t.match(secret, /^sk-/);
  const works = await new OpenAI({ baseURL: gw.baseURL, apiKey: secret!, maxRetries: 0 }).chat.completions.create({ model: 'openai/web-a', messages: [{ role: 'user', content: 'x' }] });
  t.ok(works.id, 'the minted key works');
  await shot('keys-minted');
  const row = page.locator('#keys-table tr', { hasText: 'from-the-browser' });
  await row.locator('[data-revoke]').click();
  await page.waitForSelector('#keys-table tr:has-text("from-the-browser") .bad');
  const refused = await new OpenAI({ baseURL: gw.baseURL, apiKey: secret!, maxRetries: 0 }).chat.completions.create({ model: 'openai/web-a', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(refused instanceof OpenAI.AuthenticationError, 'revoked: 401');
  await shot('keys-revoked');
});

t.test('the router page: what each task type learned; the operator\'s controls', async (t) => {
  for (const content of ['Calculate 12 * 7.', 'Summarise this: the order shipped.']) {
    await client.chat.completions.create({ model: 'auto', messages: [{ role: 'user', content }] });
  }
  await page.click('nav a[href="#router"]');
  await page.waitForSelector('#router-table >> text=arithmetic');
  t.match(await page.textContent('#router-table'), /summarisation/);
  t.equal(await page.locator('#reset').count(), 0, 'a tenant key sees no controls');
  await shot('router');
});

t.test('credits, routes, pricing, and the operator view', async (t) => {
  await page.click('nav a[href="#credits"]');
  await page.waitForSelector('text=browser test top-up');
  await shot('credits');
  await page.click('nav a[href="#routes"]');
  await page.waitForSelector('text=openai/web-a');
  await shot('routes');
  await page.click('nav a[href="#pricing"]');
  await page.selectOption('select[name=model]', 'openai/web-a');
  await page.click('#quote button');
  await page.waitForSelector('#quote-out table');
  t.match(await page.textContent('#quote-out'), /prompt tokens/);
  await shot('pricing');
  await page.click('#signout');
  await page.fill('#key', gw.masterKey);
  await page.click('#signin-form button');
  await page.waitForSelector('#nav-admin:not([hidden])');
  await page.click('#nav-admin');
  await page.waitForSelector('text=Acme web');
  await shot('operator-workspaces');
  await page.click('nav a[href="#routes"]');
  await page.click('[data-toggle="openai/web-a"]');
  await page.waitForSelector('[data-toggle="openai/web-a"][data-to="enable"]');
  const refused = await client.chat.completions.create({ model: 'openai/web-a', messages: [{ role: 'user', content: 'y' }] }).catch((e: unknown) => e);
  t.ok(refused instanceof OpenAI.APIError, 'a disabled deployment is out of routing');
  await page.click('[data-toggle="openai/web-a"]');
  await page.waitForSelector('[data-toggle="openai/web-a"][data-to="disable"]');
  await shot('operator-routes');
  await page.click('nav a[href="#router"]');
  await page.waitForSelector('#simulate');
  await page.selectOption('#simulate select[name=model]', 'openai/web-a');
  await page.fill('#simulate input[name=input]', '30');
  await page.fill('#simulate input[name=output]', '60');
  await page.click('#simulate button');
  await page.waitForSelector('#control-result >> text=Routing now prices openai/web-a');
  t.same((await admin('/v1/router')).simulated_prices, { 'openai/web-a': { input: 30, output: 60 } }, 'the operator simulated a price from the page');
  await page.waitForSelector('#router-table >> text=simulated price');
  await shot('operator-router');
  t.same(consoleErrors, [], 'no script errors in the page');
});
