// Scopes, self-serve keys, self-registration, and per-key limits (429 with the right
// headers, rolling windows, budgets, concurrency, allowed models, counters surviving a restart).
import OpenAI from 'openai';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel, type Gateway } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const fake = await startFakeUpstream();
const dataDir = tempDataDir();
const env = { OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' };
const config = { models: ['paid-model', 'other-model', 'drip-300'].map(testModel), billing: { starter_credits: 1 } };
let gw: Gateway = await startGateway(env, dataDir, config);
t.teardown(async () => { await gw.stop(); await fake.close(); });

// (gw is replaced by a restart below: the helper reads its url each call)
const { call } = http({ get url() { return gw.url; } });
const messages = [{ role: 'user' as const, content: 'Hi' }];
const chat = (key: string, model = 'openai/paid-model') => call('/v1/chat/completions', key, { model, messages });

async function keyWith(limits: object, workspace?: string): Promise<string> {
  const ws = workspace ?? (await call('/admin/workspaces', gw.masterKey, { name: 'limits', credits_usd: 5 })).json.id as string;
  const made = await call('/admin/keys', gw.masterKey, { name: 'limited', workspace: ws, limits });
  return made.json.key as string;
}

t.test('scopes and self-serve keys stay inside their workspace', async (t) => {
  const ws = (await call('/admin/workspaces', gw.masterKey, { name: 'team-a', credits_usd: 5 })).json.id as string;
  const other = (await call('/admin/workspaces', gw.masterKey, { name: 'team-b', credits_usd: 5 })).json.id as string;
  const writer = (await call('/admin/keys', gw.masterKey, { name: 'writer', workspace: ws, scopes: ['inference', 'keys:write'] })).json;
  const otherKey = (await call('/admin/keys', gw.masterKey, { name: 'b', workspace: other })).json;
  const reader = (await call('/v1/api-keys', writer.key, { name: 'reader', scopes: ['usage:read'] }));
  t.equal(reader.status, 403, 'cannot mint a scope it lacks');
  t.equal(reader.json.error.param, 'scopes');
  const minted = await call('/v1/api-keys', writer.key, { name: 'app', scopes: ['inference'] });
  t.equal(minted.status, 201);
  t.equal(minted.json.workspace, ws, 'minted in the caller\'s workspace');
  t.equal(minted.json.created_by, writer.id);
  const list = await call('/v1/api-keys', writer.key);
  t.same(list.json.data.map((k: Json) => k.workspace).filter((w: string) => w !== ws), [], 'lists only its own workspace');
  t.notOk(JSON.stringify(list.json).includes('hash'), 'never shows hashes');
  t.equal((await call(`/v1/api-keys/${otherKey.id}`, writer.key, undefined, 'DELETE')).status, 404, 'another workspace\'s key does not exist for it');
  t.equal((await call('/v1/api-keys', minted.json.key)).status, 403, 'an inference key cannot list keys');
  const usageOnly = (await call('/admin/keys', gw.masterKey, { name: 'u', workspace: ws, scopes: ['usage:read'] })).json.key as string;
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: usageOnly, maxRetries: 0 });
  const denied = await client.chat.completions.create({ model: 'openai/paid-model', messages }).catch((e: unknown) => e);
  t.ok(denied instanceof OpenAI.APIError && denied.status === 403, 'a usage:read key cannot infer');
  t.equal((await chat(minted.json.key)).status, 200);
  t.equal((await call(`/v1/api-keys/${minted.json.id}`, writer.key, undefined, 'DELETE')).status, 200);
  t.equal((await chat(minted.json.key)).status, 401, 'revocation bites on the next request');
});

t.test('self-registration', async (t) => {
  const reg = await call('/v1/register', '', { email: 'New.User@Example.com' });
  t.equal(reg.status, 201);
  t.equal(reg.json.workspace.balance_usd, 1, 'starter credits');
  t.same(reg.json.key.scopes, ['inference', 'usage:read', 'keys:write']);
  t.equal((await call('/v1/register', '', { email: 'new.user@example.com' })).status, 409, 'one workspace per email');
  t.equal((await call('/v1/register', '', { email: 'nope' })).status, 400);
  const r = await chat(reg.json.key.key);
  t.equal(r.status, 200);
  t.equal(r.headers.get('x-ratelimit-limit-requests'), '50', 'registered keys: 50 per 6 h');
  t.equal(r.headers.get('x-ratelimit-remaining-requests'), '49');
});

t.test('rpm: 429 with Retry-After, kind, and OpenAI-style headers', async (t) => {
  const key = await keyWith({ rpm: 3 });
  const remaining: Array<string | null> = [];
  for (let i = 0; i < 3; i++) {
    const r = await chat(key);
    t.equal(r.status, 200);
    t.equal(r.headers.get('x-ratelimit-limit-requests'), '3');
    remaining.push(r.headers.get('x-ratelimit-remaining-requests'));
  }
  t.same(remaining, ['2', '1', '0']);
  const limited = await chat(key);
  t.equal(limited.status, 429);
  t.equal(limited.headers.get('x-gateway-limit-kind'), 'rpm');
  const retry = Number(limited.headers.get('retry-after'));
  t.ok(retry >= 1 && retry <= 20, `Retry-After ${retry}s (one request refills in 20 s)`);
  t.equal(limited.json.error.kind, 'rpm');
  t.equal(limited.json.error.retry_after_seconds, retry);
  t.equal(limited.json.error.code, 'rate_limit_exceeded');
  t.match(limited.headers.get('x-ratelimit-reset-requests'), /^\d+(\.\d)?s$|^\d+m\d+s$/);
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  const e = await client.chat.completions.create({ model: 'openai/paid-model', messages }).catch((x: unknown) => x);
  t.ok(e instanceof OpenAI.RateLimitError, 'the SDK sees a RateLimitError');

  // counters survive a restart
  t.equal(await gw.stop(), 0);
  gw = await startGateway(env, dataDir, config);
  t.equal((await chat(key)).status, 429, 'still limited after a restart');
});

t.test('rolling window, tpm, budget, concurrency, allowed models', async (t) => {
  const windowed = await keyWith({ windows: [{ requests: 2, seconds: 3600 }] });
  t.equal((await chat(windowed)).status, 200);
  t.equal((await chat(windowed)).status, 200);
  const w = await chat(windowed);
  t.equal(w.status, 429);
  t.equal(w.json.error.kind, 'window');
  t.equal(w.json.error.window_seconds, 3600, 'which window, in its own field');
  t.equal(w.headers.get('x-gateway-limit-kind'), 'window');
  t.ok(w.json.error.retry_after_seconds > 3000 && w.json.error.retry_after_seconds <= 3600, 'waits for the oldest slice to expire');

  const tpm = await keyWith({ tpm: 10 });
  t.equal((await chat(tpm)).status, 200, 'the first request spends more than 10 tokens');
  const tl = await chat(tpm);
  t.equal(tl.status, 429);
  t.equal(tl.json.error.kind, 'tpm');
  t.equal(tl.headers.get('x-ratelimit-limit-tokens'), '10');

  const budget = await keyWith({ budget_usd_day: 0.000001 });
  t.equal((await chat(budget)).status, 200, 'nothing spent yet');
  const bl = await chat(budget);
  t.equal(bl.status, 429);
  t.equal(bl.json.error.kind, 'budget');
  t.equal(bl.json.error.period, 'day', 'which budget, in its own field');
  t.ok(bl.json.error.retry_after_seconds <= 86400, 'until the next UTC day');

  const allowed = await keyWith({ models: ['openai/paid-model'] });
  t.equal((await chat(allowed)).status, 200);
  const notAllowed = await chat(allowed, 'openai/other-model');
  t.equal(notAllowed.status, 403);
  t.equal(notAllowed.json.error.code, 'model_not_allowed');

  const single = await keyWith({ max_concurrency: 1 });
  // Its stream's headers mean it was admitted and holds the slot until its body ends (no guessed sleep).
  const slow = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${single}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openai/drip-300', messages, stream: true }) });
  t.equal(slow.status, 200);
  const busy = await chat(single);
  t.equal(busy.status, 429);
  t.equal(busy.json.error.kind, 'concurrency');
  await slow.text();
  t.equal((await chat(single)).status, 200, 'the slot is free once the first finished');
});

t.test('windows of one length are one limit, the strictest, counted once per request', async (t) => {
  const ws = (await call('/admin/workspaces', gw.masterKey, { name: 'same-length', credits_usd: 5 })).json.id as string;
  const made = await call('/admin/keys', gw.masterKey, { name: 'three windows', workspace: ws, limits: { windows: [{ requests: 3, seconds: 3600 }, { requests: 5, seconds: 3600 }, { requests: 3, seconds: 3600 }] } });
  t.same((made.json.limits as Json).windows, [{ requests: 3, seconds: 3600 }], 'kept once, with the fewest requests');
  const key = made.json.key as string;
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await chat(key)).status);
  t.same(statuses, [200, 200, 200, 429], '3 an hour: each request counted once');
});

t.test('PATCH /admin/keys changes limits from the next request', async (t) => {
  const key = await keyWith({ rpm: 1 });
  const id = (await call('/admin/keys', gw.masterKey)).json.data.find((k: Json) => k.limits?.rpm === 1 && k.name === 'limited').id as string;
  t.equal((await chat(key)).status, 200);
  t.equal((await chat(key)).status, 429);
  const patched = await call(`/admin/keys/${id}`, gw.masterKey, { limits: null }, 'PATCH');
  t.equal(patched.status, 200);
  t.equal(patched.json.limits, null);
  t.equal((await chat(key)).status, 200, 'unlimited now');
  t.equal((await call(`/admin/keys/${id}`, gw.masterKey, { limits: { rpm: -1 } }, 'PATCH')).status, 400);
});
