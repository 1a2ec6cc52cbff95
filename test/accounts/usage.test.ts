// Usage APIs: summaries, time series and spend rollups agree with the requests' own figures
// (headers and ledger rows), stay inside the caller's workspace, and page correctly.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const fake = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(),
  { models: ['paid-model', 'other-model', 'fail-400'].map(testModel), billing: { markup: 0.2 } });
t.teardown(async () => { await gw.stop(); await fake.close(); });

const get = async (path: string, key: string) => {
  const res = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
  return { status: res.status, json: await res.json() as Json };
};
const { adminJson: post } = http(gw);
const messages = [{ role: 'user' as const, content: 'Tell me something' }];
const close = (a: number, b: number) => Math.abs(a - b) < 1e-9;

const a = await post('/admin/workspaces', { name: 'a', credits_usd: 10 });
const b = await post('/admin/workspaces', { name: 'b', credits_usd: 10 });
const key1 = await post('/admin/keys', { name: 'a1', workspace: a.id });
const key2 = await post('/admin/keys', { name: 'a2', workspace: a.id });
const reader = await post('/admin/keys', { name: 'a-reader', workspace: a.id, scopes: ['usage:read'] });
const keyB = await post('/admin/keys', { name: 'b1', workspace: b.id, scopes: ['inference', 'usage:read'] });

const charges: number[] = [];
const ids: string[] = [];
const run = async (key: string, model: string, stream = false) => {
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  if (stream) {
    const res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages, stream: true }) });
    const text = await res.text();
    const fig = JSON.parse(/^: gateway (.+)$/m.exec(text)![1]!) as { charge_usd: number };
    charges.push(fig.charge_usd);
    ids.push(res.headers.get('x-request-id')!);
    return;
  }
  const r = await client.chat.completions.create({ model, messages }).withResponse().catch((e: unknown) => e);
  if (r instanceof OpenAI.APIError) { ids.push(r.headers?.get('x-request-id') ?? ''); return; }
  const { response } = r as { response: Response };
  charges.push(Number(response.headers.get('x-btl-customer-charge')));
  ids.push(response.headers.get('x-request-id')!);
};
for (let i = 0; i < 3; i++) await run(key1.key, 'openai/paid-model');
await run(key2.key, 'openai/other-model');
await run(key2.key, 'openai/other-model', true);
await run(key2.key, 'openai/fail-400');
await run(keyB.key, 'openai/paid-model');
const aCharges = charges.slice(0, 5);

t.test('summary agrees with the requests and stays in the workspace', async (t) => {
  const s = await get('/v1/usage/summary', reader.key);
  t.equal(s.status, 200);
  t.equal(s.json.requests, 6, 'every request of the workspace, failures included');
  t.ok(close(s.json.charge_usd, aCharges.reduce((x, y) => x + y, 0)), 'charge = sum of the charges the requests reported');
  t.ok(close(s.json.saved_usd, s.json.benchmark_usd - s.json.charge_usd), 'saved = benchmark − charge');
  for (const f of ['requests', 'prompt_tokens', 'completion_tokens', 'cost_usd', 'charge_usd', 'benchmark_usd', 'saved_usd']) t.type(s.json[f], 'number', f);
  const byModel = Object.fromEntries(s.json.by_model.map((m: Json) => [m.model, m.requests]));
  t.same(byModel, { 'openai/paid-model': 3, 'openai/other-model': 2, 'openai/fail-400': 1 });
  const sb = await get('/v1/usage/summary', keyB.key);
  t.equal(sb.json.requests, 1, 'workspace b sees only its own');
  const ws = await get(`/admin/workspaces/${a.id}`, gw.masterKey);
  t.ok(close(10 - ws.json.balance_usd, s.json.charge_usd), 'what the summary says was charged is what left the balance');
});

t.test('timeseries sums to the summary', async (t) => {
  const s = await get('/v1/usage/summary', reader.key);
  const ts = await get('/v1/usage/timeseries?bucket=minute&start=' + (Math.floor(Date.now() / 1000) - 3600), reader.key);
  t.equal(ts.status, 200);
  t.ok(ts.json.data.length >= 1);
  t.equal(ts.json.data.reduce((n: number, p: Json) => n + p.requests, 0), s.json.requests);
  t.ok(close(ts.json.data.reduce((n: number, p: Json) => n + p.charge_usd, 0), s.json.charge_usd));
  t.equal((await get('/v1/usage/timeseries?bucket=week', reader.key)).status, 400);
  t.equal((await get('/v1/usage/timeseries?bucket=minute&start=0', reader.key)).json.error.param, 'bucket', 'too many points');
  t.equal((await get('/v1/usage/summary?start=200&end=100', reader.key)).json.error.param, 'start');
});

t.test('requests: pages, filters, drill-down', async (t) => {
  const page1 = await get('/v1/requests?limit=4', reader.key);
  t.equal(page1.json.data.length, 4);
  t.equal(page1.json.has_more, true);
  const page2 = await get(`/v1/requests?limit=4&cursor=${page1.json.next_cursor}`, reader.key);
  t.equal(page2.json.data.length, 2);
  t.equal(page2.json.has_more, false);
  const all = [...page1.json.data, ...page2.json.data].map((r: Json) => r.id);
  t.same(all, ids.slice(0, 6).reverse(), 'newest first, every request once');
  t.same((await get(`/v1/requests?key=${key2.id}`, reader.key)).json.data.map((r: Json) => r.id), ids.slice(3, 6).reverse());
  t.equal((await get('/v1/requests?status=400', reader.key)).json.data.length, 1);
  t.equal((await get('/v1/requests?model=openai/paid-model', reader.key)).json.data.length, 3);
  const one = await get(`/v1/requests/${ids[0]}`, reader.key);
  t.equal(one.status, 200);
  t.ok(close(one.json.charge_usd, aCharges[0]!), 'the drill-down shows the charge the response reported');
  t.ok(close(-one.json.balance_change_usd, aCharges[0]!));
  t.equal((await get(`/v1/requests/${ids[6]}`, reader.key)).status, 404, 'another workspace\'s request does not exist for it');
  t.equal((await get('/v1/requests?limit=500', reader.key)).status, 400);
  t.equal((await get('/v1/usage/summary', key1.key)).status, 403, 'an inference key cannot read usage');
});

t.test('admin spend rollups', async (t) => {
  const byWs = await get('/admin/spend?by=workspace', gw.masterKey);
  t.equal(byWs.status, 200);
  const row = (id: string) => byWs.json.data.find((d: Json) => d.workspace === id);
  t.equal(row(a.id).requests, 6);
  t.equal(row(b.id).requests, 1);
  const byKey = await get('/admin/spend?by=key', gw.masterKey);
  t.equal(byKey.json.data.find((d: Json) => d.key === key1.id).requests, 3);
  const byProvider = await get('/admin/spend?by=provider', gw.masterKey);
  t.ok(byProvider.json.data.some((d: Json) => d.provider === 'openai'));
  t.equal((await get('/admin/spend', reader.key)).status, 403);
});
