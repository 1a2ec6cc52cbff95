// Deeply nested JSON, everywhere a body is read: a clear 400 (never a crash, never a 500),
// and nothing left behind: no credit held, no concurrency slot, nothing in flight.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeAnthropic } from '../fakes/anthropic-upstream.js';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const fake = await startFakeUpstream();
const anthropic = await startFakeAnthropic();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, ANTHROPIC_API_KEY: 'sk-ant-fake', ANTHROPIC_BASE_URL: anthropic.url, SLUICE_SIM: 'off' }, tempDataDir(),
  { models: [testModel('m'), { slug: 'anthropic/claude-test', upstream_id: 'claude-test', context_window: 200000, prices: { input: 3, output: 15 } }],
    registration: { per_address_per_hour: 100 } });
t.teardown(async () => { await gw.stop(); await fake.close(); await anthropic.close(); });
const { call, tenant } = http(gw);

const arrays = (n: number) => '['.repeat(n) + ']'.repeat(n);
const objects = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
const chat = (extra: string, content = 'hi') => `{"model":"openai/m","messages":[{"role":"user","content":${JSON.stringify(content)}}],${extra}}`;

t.test('depth 10,000 on every JSON endpoint: 400 json_too_deep, and the gateway goes on', async (t) => {
  const { ws, key, id } = await tenant(gw.masterKey, 10, { max_concurrency: 3 }, ['inference', 'usage:read', 'keys:write']);
  const bodies: Array<[string, string, string, Record<string, string>?]> = [
    ['/v1/chat/completions', chat(`"x":${arrays(10_000)}`), 'arrays, small enough for the main thread'],
    ['/v1/chat/completions', chat(`"x":${arrays(10_000)}`, 'long '.repeat(600)), 'arrays, a body the worker pool rewrites'],
    ['/v1/chat/completions', chat(`"x":${arrays(10_000)}`), 'savings off', { 'x-gateway-savings': 'off' }],
    ['/v1/chat/completions', chat(`"x":${objects(10_000)}`), 'objects'],
    ['/v1/chat/completions', `{"model":"openai/m","messages":[{"role":"user","content":[{"type":"text","text":"hi","x":${arrays(5_000)}}]}]}`, 'inside a message'],
    ['/v1/chat/completions', chat(`"stream":true,"x":${arrays(10_000)}`), 'a stream'],
    ['/v1/responses', `{"model":"openai/m","input":"hi","x":${arrays(10_000)}}`, 'the Responses passthrough'],
    ['/v1/account/quote', chat(`"x":${arrays(10_000)}`), 'a quote'],
    ['/v1/api-keys', `{"name":"k","limits":${objects(10_000)}}`, 'minting a key'],
    // (read from its bytes before JSON.parse, which took ~1.5 s building these levels, the event loop held)
    ['/v1/chat/completions', chat(`"x":${arrays(2_000_000)}`), '2,000,000 levels in 4 MB'],
  ];
  for (const [path, body, what, headers] of bodies) {
    const r = await call(path, key, body, 'POST', headers);
    t.equal(r.status, 400, `${what}: 400`);
    t.equal(r.json?.error?.code, 'json_too_deep', `${what}: json_too_deep in OpenAI's envelope`);
  }
  const reg = await call('/v1/register', '', `{"email":"deep@example.com","x":${arrays(10_000)}}`);
  t.equal(reg.status, 400, 'registration: 400');
  const admin = await call('/admin/workspaces', gw.masterKey, `{"name":"x","x":${objects(10_000)}}`);
  t.equal(admin.status, 400, 'admin: 400');

  // The same key (3 at a time) still works, 5 times over, and nothing is held.
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  for (let i = 0; i < 5; i++) {
    const r = await client.chat.completions.create({ model: 'openai/m', messages: [{ role: 'user', content: `after ${i}` }] });
    t.ok(r.choices[0]?.message.content, `request ${i} after the hostile ones is served`);
  }
  const health = await call('/health', '');
  t.equal(health.json.in_flight, 0, 'nothing in flight');
  t.equal((await call(`/admin/workspaces/${ws}`, gw.masterKey)).json.reserved_usd, 0, 'no credit held');
  t.equal((await call(`/admin/keys/${id}`, gw.masterKey)).json.state.in_flight, 0, 'no concurrency slot held');
  // Every refusal is a request with its row.
  const rows = (await call('/v1/requests?status=400&limit=100', key)).json.data as Array<{ error: string; cache: string }>;
  t.ok(rows.filter((r) => r.error === 'json_too_deep').length >= 8, 'the refusals are in the ledger');
  t.ok(rows.every((r) => r.cache === 'none'), 'as refusals (cache: none), not as misses');
});

t.test('nesting up to the bound is fine', async (t) => {
  const deepSchema = (n: number): unknown => (n === 0 ? { type: 'string' } : { type: 'object', properties: { a: deepSchema(n - 1) } });
  const body = { model: 'openai/m', messages: [{ role: 'user', content: 'hi' }],
    tools: [{ type: 'function', function: { name: 'f', parameters: deepSchema(28) } }] };
  const r = await call('/v1/chat/completions', gw.masterKey, body);
  t.equal(r.status, 200, 'a tool schema nested 60 levels deep is served');
  t.equal(fake.received.at(-1)?.raw.includes('"properties":{"a":{"type":"object"'), true, 'and forwarded');
});

t.test('an adapter that cannot translate a request: a 400, and its slot and credit are back', async (t) => {
  const { ws, key, id } = await tenant(gw.masterKey, 10, { max_concurrency: 1 });
  const deepArgs = arrays(8_000);
  for (let i = 0; i < 3; i++) {
    const r = await call('/v1/chat/completions', key, { model: 'anthropic/claude-test', messages: [
      { role: 'user', content: 'weather?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'w', arguments: deepArgs } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny' }] });
    t.equal(r.status, 400, `attempt ${i}: 400`);
    t.equal(r.json.error.code, 'json_too_deep');
  }
  const ok = await call('/v1/chat/completions', key, { model: 'anthropic/claude-test', messages: [{ role: 'user', content: 'hi' }] });
  t.equal(ok.status, 200, 'the key (one at a time) is not locked');
  t.equal((await call(`/admin/keys/${id}`, gw.masterKey)).json.state.in_flight, 0);
  t.equal((await call(`/admin/workspaces/${ws}`, gw.masterKey)).json.reserved_usd, 0);
});
