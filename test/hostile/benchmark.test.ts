// The benchmark is what the naive direct call would cost (the requested model at its list
// price, or BASELINE_MODEL), never the price of the route that served it: cheaper routing is
// a saving like any other, shown on the response, in the ledger and in the usage API.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const fake = await startFakeUpstream();
const cheap = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(), {
  providers: { cheap: { kind: 'openai', base_url: cheap.url, api_key: 'sk-fake-upstream' } },
  models: [
    { slug: 'openai/gpt-4o', upstream_id: 'gpt-4o', context_window: 128000, prices: { input: 2.5, cached_input: 1.25, output: 10 },
      routes: [{ provider: 'cheap', upstream_id: 'gpt-4o', prices: { input: 1, output: 4 } }] },
    testModel('m'), testModel('refused-model'),
  ],
  router: { simple: 'openai/m', medium: 'openai/m', complex: 'openai/gpt-4o' },
});
t.teardown(async () => { await gw.stop(); await fake.close(); await cheap.close(); });
const { call, tenant } = http(gw);
const num = (h: Headers, name: string) => Number(h.get(name));

t.test('a call served by a cheaper route: benchmark at list price, the difference saved as routing', async (t) => {
  const { key } = await tenant(gw.masterKey, 10, undefined, ['inference', 'usage:read']);
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  const { data, response } = await client.chat.completions.create({ model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'Hello there' }] }).withResponse();
  const h = response.headers;
  t.equal(h.get('x-gateway-decision'), 'cheap/gpt-4o', 'the cheaper route served it');
  const u = data.usage!;
  const list = (u.prompt_tokens * 2.5 + u.completion_tokens * 10) / 1e6;
  const routed = (u.prompt_tokens * 1 + u.completion_tokens * 4) / 1e6;
  t.ok(Math.abs(num(h, 'x-btl-benchmark-cost') - list) < 1e-9, `benchmark ${h.get('x-btl-benchmark-cost')} = the list price ${list}`);
  t.ok(Math.abs(num(h, 'x-gateway-cost-usd') - routed) < 1e-9, 'the cost is the route\'s');
  t.ok(num(h, 'x-btl-saved') > 0, `x-btl-saved ${h.get('x-btl-saved')} > 0`);
  const gateway = (data as unknown as { gateway: Json }).gateway;
  t.ok(Math.abs(gateway.savings_usd.routing - (list - routed)) < 1e-9, 'the gateway object names routing as where it came from');

  // A streamed call carries the same in its closing figures.
  const s = await call('/v1/chat/completions', key, { model: 'openai/gpt-4o', stream: true, messages: [{ role: 'user', content: 'Hello there' }] });
  const figures = JSON.parse(/^: gateway (.*)$/m.exec(s.text)![1]!);
  t.ok(figures.savings_usd.routing > 0 && figures.saved_usd > 0, 'streams too');

  await new Promise((r) => setTimeout(r, 300));
  const summary = await call('/v1/usage/summary', key);
  const routing = (summary.json.by_saving as Json[]).find((b) => b.mechanism === 'routing');
  t.ok(routing && routing.requests === 2 && routing.saved_usd > 0, 'the usage API reports routing as a mechanism, in dollars');
  t.ok(summary.json.saved_usd > 0);
});

t.test('the quote and the pricing page say the same', async (t) => {
  const { key } = await tenant(gw.masterKey, 10);
  const quote = await call('/v1/account/quote', key, { model: 'openai/gpt-4o', max_tokens: 100, messages: [{ role: 'user', content: 'Hello there' }] });
  const first = (quote.json.options as Json[])[0]!;
  t.equal(first.decision, 'cheap/gpt-4o');
  t.ok(first.saved_usd.min > 0 && first.saved_usd.max > 0, 'the cheaper route shows its saving in the quote');
  const pricing = await call('/v1/account/pricing', key);
  t.match(pricing.json.benchmark, /list price/);
  t.match(pricing.json.benchmark, /auto.*openai\/gpt-4o/, 'and names auto\'s benchmark model');
});

t.test('auto is benchmarked against the most capable bucket\'s model', async (t) => {
  const { key } = await tenant(gw.masterKey, 10);
  const r = await call('/v1/chat/completions', key, { model: 'auto', messages: [{ role: 'user', content: 'hi' }] });
  t.equal(r.status, 200);
  t.equal(r.headers.get('x-gateway-route-bucket'), 'simple');
  const u = r.json.usage;
  t.ok(Math.abs(num(r.headers, 'x-btl-benchmark-cost') - (u.prompt_tokens * 2.5 + u.completion_tokens * 10) / 1e6) < 1e-9, 'benchmark at gpt-4o\'s list price');
  t.ok(r.json.gateway.savings_usd.routing > 0, 'routing to the simple bucket is a saving');
});

t.test('a cache hit is benchmarked at the list price too', async (t) => {
  const { key } = await tenant(gw.masterKey, 10);
  const body = { model: 'openai/gpt-4o', temperature: 0, messages: [{ role: 'user', content: 'cache me' }] };
  await call('/v1/chat/completions', key, body);
  const hit = await call('/v1/chat/completions', key, body);
  t.equal(hit.headers.get('x-gateway-cache'), 'exact');
  const u = hit.json.usage;
  t.ok(Math.abs(num(hit.headers, 'x-btl-benchmark-cost') - (u.prompt_tokens * 2.5 + u.completion_tokens * 10) / 1e6) < 1e-9);
  t.equal(hit.json.gateway.savings_usd.exact_cache, num(hit.headers, 'x-btl-saved'));
});

t.test('refusals are counted as refusals, not as cache misses, and have no provider', async (t) => {
  const { key, ws } = await tenant(gw.masterKey, 10, { rpm: 1, models: ['openai/m'] }, ['inference', 'usage:read']);
  t.equal((await call('/v1/chat/completions', key, { model: 'openai/m', messages: [{ role: 'user', content: 'ok' }] })).status, 200);
  t.equal((await call('/v1/chat/completions', key, { model: 'openai/m', messages: [{ role: 'user', content: 'again' }] })).status, 429);
  t.equal((await call('/v1/chat/completions', key, { model: 'openai/refused-model', messages: [{ role: 'user', content: 'no' }] })).status, 403);
  const poor = await tenant(gw.masterKey, 0.0000001, undefined, ['inference', 'usage:read']);
  t.equal((await call('/v1/chat/completions', poor.key, { model: 'openai/m', messages: [{ role: 'user', content: 'x' }] })).status, 402);
  await new Promise((r) => setTimeout(r, 300));
  const s = (await call('/v1/usage/summary', key)).json;
  t.equal(s.requests, 3);
  t.equal(s.refused, 2, 'the 429 and the 403 are refusals');
  t.same(s.by_cache, { miss: 1 }, 'only the answered request is a miss');
  t.equal((await call('/v1/usage/summary', poor.key)).json.refused, 1, 'a 402 is a refusal');
  const spend = (await call('/admin/spend?by=provider', gw.masterKey)).json;
  t.notOk((spend.data as Json[]).some((d) => d.provider === ''), 'no empty-provider row in /admin/spend');
  const rows = (await call(`/v1/requests?limit=10&cache=none`, key)).json.data as Json[];
  t.equal(rows.length, 2, 'refusal rows say cache: none');
  void ws;
});
