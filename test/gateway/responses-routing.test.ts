// Which way a /v1/responses request goes when its model has both kinds of route (an alias
// over an OpenAI-kind and an Anthropic route): passthrough to the route that speaks the
// Responses API itself, unless the pin or the key's constraints rule it out; then bridged
// onto the chat path, where every route the key may use applies.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeAnthropic } from '../fakes/anthropic-upstream.js';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';

const openai = await startFakeUpstream();
const anthropic = await startFakeAnthropic();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: openai.url, ANTHROPIC_API_KEY: 'sk-ant-fake', ANTHROPIC_BASE_URL: anthropic.url, SLUICE_SIM: 'off' }, tempDataDir(), {
  // `local`: an OpenAI-compatible server without the Responses API (vLLM, llama.cpp); `hosted`: one whose entry says it has it.
  providers: { local: { kind: 'openai', base_url: openai.url, api_key: 'sk-fake-upstream' }, hosted: { kind: 'openai', base_url: openai.url, api_key: 'sk-fake-upstream', responses_api: true } },
  models: [testModel('gpt-x'), { slug: 'anthropic/claude-test', upstream_id: 'claude-test', context_window: 200000, prices: { input: 3, output: 15 } },
    { slug: 'local/small', upstream_id: 'small', context_window: 32000, prices: { input: 0.1, output: 0.1 } },
    { slug: 'hosted/big', upstream_id: 'big', context_window: 32000, prices: { input: 0.1, output: 0.1 } }],
  aliases: { both: { models: ['openai/gpt-x', 'anthropic/claude-test'] } },
});
t.teardown(async () => { await gw.stop(); await openai.close(); await anthropic.close(); });

const post = (key: string, body: object, headers: Record<string, string> = {}) => fetch(`${gw.baseURL}/responses`, {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body),
}).then(async (r) => ({ status: r.status, decision: r.headers.get('x-gateway-decision'), json: await r.json() as { error?: { param?: string } } }));

t.test('an OpenAI-kind route takes the Responses body itself', async (t) => {
  const before = openai.received.length;
  const r = await post(gw.masterKey, { model: 'both', input: 'hi' });
  t.equal(r.status, 200);
  t.equal(r.decision, 'openai/gpt-x');
  t.equal(openai.received.length, before + 1);
  t.ok('input' in openai.received.at(-1)!.body, 'the Responses body, passed through');
});

t.test("the body's provider pin is honoured on the bridged path, like the header", async (t) => {
  for (const [body, headers] of [[{ provider: 'anthropic' }, {}], [{}, { 'x-gateway-provider': 'anthropic' }]] as const) {
    const r = await post(gw.masterKey, { model: 'both', input: 'hi', ...body }, headers);
    t.equal(r.status, 200);
    t.equal(r.decision, 'anthropic/claude-test');
  }
  const bad = await post(gw.masterKey, { model: 'both', input: 'hi', provider: 5 });
  t.equal(bad.status, 400, 'a pin that is not a provider name is refused, as on chat');
  t.equal(bad.json.error?.param, 'provider');
});

t.test('a key held to Anthropic is bridged there, not refused for the route it may not use', async (t) => {
  const minted = await fetch(`${gw.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'anthropic-only', limits: { providers: ['anthropic'] } }) }).then((r) => r.json()) as { key: string };
  const before = openai.received.length;
  const r = await post(minted.key, { model: 'both', input: 'hi' });
  t.equal(r.status, 200);
  t.equal(r.decision, 'anthropic/claude-test');
  t.equal(openai.received.length, before, 'nothing went to the route the key may not use');
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: minted.key, maxRetries: 0 });
  t.ok((await client.responses.create({ model: 'both', input: 'hi' })).output_text, 'through the SDK too');
});

t.test('an OpenAI-compatible upstream without the Responses API gets it bridged onto chat; one that has it, passed through', async (t) => {
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
  const bridged = await client.responses.create({ model: 'local/small', input: 'hi' });
  t.equal(openai.received.at(-1)!.url, '/v1/chat/completions', 'asked on its chat endpoint');
  t.equal(bridged.object, 'response');
  t.equal(bridged.output_text, 'Hello from the fake upstream.');
  await client.responses.create({ model: 'hosted/big', input: 'hi' });
  t.equal(openai.received.at(-1)!.url, '/v1/responses', 'responses_api: true passes through');
});

