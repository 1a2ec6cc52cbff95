// POST /v1/responses through the official `openai` SDK: bridged onto the chat path for an
// Anthropic route (the fake Messages API) and the sim, stream and non-stream, with tools.
import OpenAI from 'openai';
import t from 'tap';
import { ANTHROPIC_WORDS, startFakeAnthropic } from '../fakes/anthropic-upstream.js';
import { startGateway, tempDataDir } from '../helpers/gateway.js';

const fake = await startFakeAnthropic();
const gw = await startGateway({ ANTHROPIC_API_KEY: 'sk-ant-fake', ANTHROPIC_BASE_URL: fake.url, SLUICE_SIM: 'on' }, tempDataDir(), {
  sim: { ttft_ms: 0, tokens_per_second: 5000 },
  models: [{ slug: 'anthropic/claude-test', upstream_id: 'claude-test', context_window: 200000, prices: { input: 3, output: 15 } }],
});
t.teardown(async () => { await gw.stop(); await fake.close(); });
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });

t.test('non-stream through Anthropic: output_text, usage, instructions, headers', async (t) => {
  const { data, response } = await client.responses.create({ model: 'anthropic/claude-test', instructions: 'Be brief.', input: 'Hi', max_output_tokens: 50 }).withResponse();
  t.equal(data.output_text, ANTHROPIC_WORDS.join(''));
  t.equal(data.status, 'completed');
  t.ok(data.usage && data.usage.output_tokens === ANTHROPIC_WORDS.length && data.usage.input_tokens > 0);
  t.equal(fake.received.at(-1)!.body.system, 'Be brief.');
  t.equal(fake.received.at(-1)!.body.max_tokens, 50);
  t.equal(response.headers.get('x-gateway-decision'), 'anthropic/claude-test');
  t.ok(Number(response.headers.get('x-btl-customer-charge')) > 0);
  const row = await (await fetch(`${gw.baseURL}/requests/${response.headers.get('x-request-id')}`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).json() as { endpoint: string };
  t.equal(row.endpoint, 'responses', 'a bridged Responses call is recorded as one');
});

t.test('stream: Responses events with text deltas and a completed response', async (t) => {
  let text = '';
  let completed: OpenAI.Responses.Response | null = null;
  const types = new Set<string>();
  for await (const event of await client.responses.create({ model: 'anthropic/claude-test', input: [{ role: 'user', content: 'Hi' }], stream: true })) {
    types.add(event.type);
    if (event.type === 'response.output_text.delta') text += event.delta;
    if (event.type === 'response.completed') completed = event.response;
  }
  t.equal(text, ANTHROPIC_WORDS.join(''));
  t.ok(types.has('response.created') && types.has('response.output_item.done'));
  t.equal(completed?.output_text ?? (completed?.output[0] as { content?: Array<{ text: string }> } | undefined)?.content?.[0]?.text, ANTHROPIC_WORDS.join(''));
  t.equal(completed?.usage?.output_tokens, ANTHROPIC_WORDS.length);
});

t.test('function calls round-trip', async (t) => {
  const tools: OpenAI.Responses.Tool[] = [{ type: 'function', name: 'get_weather', description: 'Weather', strict: false, parameters: { type: 'object', properties: { location: { type: 'string' } } } }];
  const first = await client.responses.create({ model: 'anthropic/claude-test', tools, input: 'Weather in Paris?' });
  const call = first.output.find((o) => o.type === 'function_call');
  t.ok(call && call.type === 'function_call');
  if (!call || call.type !== 'function_call') return;
  t.equal(call.name, 'get_weather');
  t.same(JSON.parse(call.arguments), { location: 'Paris' });
  const second = await client.responses.create({ model: 'anthropic/claude-test', tools, input: [
    { role: 'user', content: 'Weather in Paris?' },
    { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
    { type: 'function_call_output', call_id: call.call_id, output: '{"sky":"clear"}' },
  ] });
  t.equal(second.output_text, 'It is sunny.');
});

t.test('the sim route and bad input', async (t) => {
  const r = await client.responses.create({ model: 'openai/gpt-4.1-mini', input: 'Hello there', max_output_tokens: 8 });
  t.ok(r.output_text.length > 0, 'the sim answers through the bridge');
  const bad = await client.responses.create({ model: 'openai/gpt-4.1-mini' } as OpenAI.Responses.ResponseCreateParamsNonStreaming).catch((e: unknown) => e);
  t.ok(bad instanceof OpenAI.BadRequestError && bad.param === 'input');
});

t.test('an OpenAI-kind route gets the Responses request as sent, billed from its usage', async (t) => {
  const { startFakeUpstream } = await import('../fakes/openai-upstream.js');
  const { FAKE_WORDS } = await import('../fakes/openai-upstream.js');
  const oa = await startFakeUpstream();
  const g = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: oa.url, SLUICE_SIM: 'off' }, tempDataDir(),
    { models: [{ slug: 'openai/resp-model', upstream_id: 'resp-model', context_window: 128000, max_output_tokens: 16384, prices: { input: 1, output: 2 } }] });
  t.teardown(async () => { await g.stop(); await oa.close(); });
  const c = new OpenAI({ baseURL: g.baseURL, apiKey: g.masterKey, maxRetries: 0 });
  const { data, response } = await c.responses.create({ model: 'resp-model', input: 'Hi', instructions: 'Be brief.', store: false }).withResponse();
  t.equal(data.output_text, FAKE_WORDS.join(''));
  const sent = oa.received.at(-1)!;
  t.same(sent.body, { model: 'resp-model', input: 'Hi', instructions: 'Be brief.', store: false }, 'passed through as sent');
  t.ok(Number(response.headers.get('x-gateway-cost-usd')) > 0, 'billed from the Responses usage');
  let text = '';
  let usage: OpenAI.Responses.ResponseUsage | null | undefined = null;
  for await (const e of await c.responses.create({ model: 'resp-model', input: 'Hi', stream: true })) {
    if (e.type === 'response.output_text.delta') text += e.delta;
    if (e.type === 'response.completed') usage = e.response.usage;
  }
  t.equal(text, FAKE_WORDS.join(''));
  t.equal(usage?.output_tokens, FAKE_WORDS.length);
  const row = await (await fetch(`${g.baseURL}/requests/${response.headers.get('x-request-id')}`, { headers: { authorization: `Bearer ${g.masterKey}` } })).json() as { endpoint: string; completion_tokens: number };
  t.equal(row.endpoint, 'responses');
  t.equal(row.completion_tokens, FAKE_WORDS.length);
});
