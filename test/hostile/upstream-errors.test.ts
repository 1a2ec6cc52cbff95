// Every upstream error reaches the caller in OpenAI's envelope with its status, the
// upstream's Retry-After passed on and honoured (the route rests, also when it is the only
// one); a single route's passing failure is retried; no_route_available says when to retry.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const fake = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(), {
  providers: { badkey: { kind: 'openai', base_url: fake.url, api_key: 'sk-wrong' } },
  models: ['slow-down', 'flaky-1', 'flaky-9', 'fail-400', 'html-502', 'fail-500', 'm'].map(testModel)
    .concat([{ slug: 'badkey/m', upstream_id: 'm', context_window: 1000, prices: { input: 1, output: 1 } } as ReturnType<typeof testModel>]),
  upstream: { breaker_failures: 3 },
});
t.teardown(async () => { await gw.stop(); await fake.close(); });
const { call } = http(gw);
const ask = (model: string) => ({ model, messages: [{ role: 'user', content: 'hi' }] });
const isEnvelope = (body: Json) => Boolean(body && body.error && typeof body.error.message === 'string' && typeof body.error.type === 'string' && 'code' in body.error && 'param' in body.error);
const envelope = (tt: { ok: (v: unknown, m: string) => unknown }, body: Json, what: string) => tt.ok(isEnvelope(body), `${what}: OpenAI's envelope (message, type, code, param)`);

t.test('an upstream 429 with Retry-After: a 503 upstream_rate_limited in the envelope (a 429 is the key\'s own limits), Retry-After passed on, the route rests', async (t) => {
  const r = await call('/v1/chat/completions', gw.masterKey, ask('openai/slow-down'));
  t.equal(r.status, 503, 'not a 429, which a caller would read as its own key\'s limit');
  envelope(t, r.json, '503');
  t.equal(r.json.error.type, 'upstream_error', 'not the upstream\'s "requests"');
  t.equal(r.json.error.code, 'upstream_rate_limited', 'not the upstream\'s rate_limit_exceeded, which is the gateway\'s own limits\' code');
  t.notOk(r.headers.get('x-gateway-limit-kind'), 'no limit kind: no key limit was hit');
  t.match(r.json.error.message, /slow down/, 'the upstream\'s words are kept');
  t.equal(r.headers.get('retry-after'), '7', 'Retry-After passed on');
  t.equal(fake.received.filter((x) => x.body.model === 'slow-down').length, 1, 'a 7 s rest is longer than a retry may wait: one call');
  const again = await call('/v1/chat/completions', gw.masterKey, ask('openai/slow-down'));
  t.equal(again.status, 503, 'while the only route rests, the gateway does not call it');
  t.equal(again.json.error.code, 'no_route_available');
  const retry = Number(again.headers.get('retry-after'));
  t.ok(retry >= 5 && retry <= 7, `no_route_available says when: Retry-After ${retry}`);
  t.equal(fake.received.filter((x) => x.body.model === 'slow-down').length, 1);
  const deployment = (await call('/admin/deployments', gw.masterKey)).json.data.find((d: Json) => d.decision === 'openai/slow-down');
  t.ok(deployment.resting_until, 'the rest shows on the deployment');
});

t.test('a single route\'s passing failure is retried on it', async (t) => {
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
  const { data, response } = await client.chat.completions.create(ask('openai/flaky-1') as OpenAI.ChatCompletionCreateParamsNonStreaming).withResponse();
  t.ok(data.choices[0]?.message.content, 'answered');
  t.equal(response.headers.get('x-gateway-retries'), '1', 'after one retry on the same route');
  const gone = await call('/v1/chat/completions', gw.masterKey, ask('openai/flaky-9'));
  t.equal(gone.status, 503, 'an outage that outlasts the retries: its status');
  envelope(t, gone.json, '503');
  t.equal(gone.json.error.code, 'upstream_unavailable');
  t.equal(fake.received.filter((x) => x.body.model === 'flaky-9').length, 3, 'the first call and two retries');
});

t.test('4xx about the request keep their status and words; the upstream refusing the gateway\'s key is a 502', async (t) => {
  const bad = await call('/v1/chat/completions', gw.masterKey, ask('openai/fail-400'));
  t.equal(bad.status, 400);
  envelope(t, bad.json, '400');
  t.equal(bad.json.error.param, 'temperature');
  t.equal(bad.json.error.code, 'invalid_value');
  t.equal(fake.received.filter((x) => x.body.model === 'fail-400').length, 1, 'a 4xx is not retried');
  const auth = await call('/v1/chat/completions', gw.masterKey, ask('badkey/m'));
  t.equal(auth.status, 502, 'the caller\'s key was fine: not a 401');
  t.equal(auth.json.error.code, 'upstream_auth_error');
  t.match(auth.json.error.message, /operator/);
  const html = await call('/v1/chat/completions', gw.masterKey, ask('openai/html-502'));
  t.equal(html.status, 502);
  envelope(t, html.json, 'HTML error page');
  t.notMatch(html.text, /<html>/, 'no HTML reaches the caller');
});

t.test('a route whose breaker opened: 503 no_route_available with Retry-After', async (t) => {
  for (let i = 0; i < 2; i++) await call('/v1/chat/completions', gw.masterKey, ask('openai/fail-500'));
  const r = await call('/v1/chat/completions', gw.masterKey, ask('openai/fail-500'));
  t.equal(r.status, 503);
  t.equal(r.json.error.code, 'no_route_available');
  t.ok(Number(r.headers.get('retry-after')) >= 1, `Retry-After ${r.headers.get('retry-after')}`);
  await call('/admin/deployments/disable', gw.masterKey, { decision: 'openai/m' });
  const off = await call('/v1/chat/completions', gw.masterKey, ask('openai/m'));
  t.equal(off.status, 503);
  t.ok(Number(off.headers.get('retry-after')) >= 1, 'a disabled deployment: Retry-After too');
});
