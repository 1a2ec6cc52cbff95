// Output caps, retrieval chunk dedupe, conversation compression and provider prompt
// caching: what the upstream actually received (fewer tokens, the last turn and every
// tool-call pairing unchanged) and what the caller was told it saved.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startFakeAnthropic } from '../fakes/anthropic-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';
import { compressStale, dedupeChunks } from '../../src/savings/rewrite.js';

type Msg = OpenAI.ChatCompletionMessageParam;

const fake = await startFakeUpstream();
const anthropic = await startFakeAnthropic();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, ANTHROPIC_API_KEY: 'sk-ant-fake', ANTHROPIC_BASE_URL: anthropic.url, SLUICE_SIM: 'off' }, tempDataDir(), {
  models: [...['rag', 'chat', 'capped', 'free', 'cache-me'].map(testModel), { ...testModel('tiny'), context_window: 1400 },
    { slug: 'anthropic/claude-test', upstream_id: 'claude-test', context_window: 200000, prices: { input: 3, cached_input: 0.3, output: 15 } }],
  savings: { output_cap: { default: 1000, models: { 'openai/capped': 300 } }, compression: { budget_tokens: 1500, keep_last: 3, stale_max_chars: 400 } },
});
t.teardown(async () => { await gw.stop(); await fake.close(); await anthropic.close(); });
const { adminJson: admin } = http(gw);
const client = (key = gw.masterKey, headers: Record<string, string> = {}) => new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0, defaultHeaders: headers });
async function create(body: Json, key?: string, headers?: Record<string, string>) {
  const { data, response } = await client(key, headers).chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming).withResponse();
  return { data: data as unknown as Json, headers: response.headers, sent: fake.received.at(-1)!.body };
}

/** A pasted passage of about `n` characters, different per seed. */
const passage = (seed: string, n = 600) => `${seed}: ${Array.from({ length: Math.ceil(n / 40) }, (_, i) => `fact ${i} about ${seed} is worth knowing`).join('; ')}.`;

t.test('chunk dedupe (pure): later copies become references; the question never does', async (t) => {
  const a = passage('alpha');
  const b = passage('beta');
  const messages = [
    { role: 'system', content: 'Answer from the context.' },
    { role: 'user', content: `${a}\n\n${b}\n\nWhat is alpha?` },
    { role: 'assistant', content: `${a}` }, // assistant turns are never rewritten
    { role: 'user', content: `${b}\n\n${a}` }, // the final user turn: its last passage is its question
  ];
  const out = dedupeChunks(messages, 200);
  t.equal(out[0], messages[0]);
  t.equal(out[1], messages[1], 'first copies are kept');
  t.equal(out[2], messages[2]);
  t.equal(out[3]!.content, `[Same passage as in message 2 above.]\n\n${a}`, 'a repeat becomes a reference; the last passage of the final turn stays');
  t.equal(dedupeChunks([{ role: 'user', content: 'short\n\nshort' }], 200)[0]!.content, 'short\n\nshort', 'short passages are not compared');
});

t.test('compression (pure): stale long texts keep head and tail; system, tool calls and the latest turns are untouched', async (t) => {
  const long = 'x'.repeat(2000);
  const messages = [
    { role: 'system', content: long },
    { role: 'user', content: long },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: long },
    { role: 'user', content: long },
    { role: 'assistant', content: 'ok' },
  ];
  const out = compressStale(messages, 2, 400);
  t.equal(out[0], messages[0], 'system prompt untouched');
  t.ok((out[1]!.content as string).length < 500);
  t.match(out[1]!.content, /characters of earlier context omitted/);
  t.same(out[2], messages[2], 'the tool call is kept as it was');
  t.equal(out[3]!.tool_call_id, 'call_1', 'its result keeps its id');
  t.ok((out[3]!.content as string).length < 500, 'old tool output shortened');
  t.equal(out[4], messages[4], 'the latest turns are untouched');
  t.equal(out[5], messages[5]);
  t.same(compressStale(messages, 2, 400), out, 'deterministic');
});

t.test('output cap: applied when the caller sets none, per model, and reported', async (t) => {
  const r = await create({ model: 'openai/capped', messages: [{ role: 'user', content: 'hi' }] });
  t.equal(r.sent.max_tokens, 300, 'the per-model cap');
  t.equal(r.headers.get('x-gateway-output-cap'), '300');
  t.equal(r.data.gateway.output_cap, 300);
  t.equal((await create({ model: 'openai/free', messages: [{ role: 'user', content: 'hi' }] })).sent.max_tokens, 1000, 'the default cap');
  const own = await create({ model: 'openai/capped', messages: [{ role: 'user', content: 'hi' }], max_tokens: 50 });
  t.equal(own.sent.max_tokens, 50, "the caller's own max_tokens wins");
  t.equal(own.headers.get('x-gateway-output-cap'), null);
  t.equal((await create({ model: 'openai/capped', messages: [{ role: 'user', content: 'hi' }] }, undefined, { 'x-gateway-savings': 'off' })).sent.max_tokens, 4096,
    'off per request: not the savings cap, but billing.default_output_cap, as the model lists no max output (what its reservation assumed)');
  // ~455 prompt tokens on a 1,400-token model: with the 1,000-token default cap it would not fit, without it it does
  const near = await create({ model: 'openai/tiny', messages: [{ role: 'user', content: 'word '.repeat(450) }] });
  t.notOk('max_tokens' in near.sent, 'no cap where it could exceed the context window');
  t.equal(near.headers.get('x-gateway-output-cap'), null);
});

t.test('each mechanism off on its own per request (x-gateway-savings: a list), on chat and on the Responses API; an unknown name is a 400', async (t) => {
  const docs = ['delta', 'epsilon'].map((s) => passage(s, 1200));
  const messages: Msg[] = [
    { role: 'user', content: `Context:\n\n${docs[0]}\n\nQuestion: what is delta?` },
    { role: 'assistant', content: 'Delta is the fourth.' },
    { role: 'user', content: `Context:\n\n${docs[0]}\n\n${docs[1]}\n\nQuestion: and epsilon?` },
  ];
  const both = await create({ model: 'openai/rag', messages });
  t.equal(both.sent.max_tokens, 1000, 'both on: capped');
  const third = (r: { sent: Json }) => (r.sent.messages as Json[])[2]!.content as string;
  t.match(third(both), /Same passage/, 'both on: the repeat deduped');
  const noCap = await create({ model: 'openai/rag', messages }, undefined, { 'x-gateway-savings': 'output_cap' });
  t.equal(noCap.sent.max_tokens, 4096, 'output_cap off: the billing default, not the savings cap');
  t.match(third(noCap), /Same passage/, '…and chunk dedupe still on');
  const noDedupe = await create({ model: 'openai/rag', messages }, undefined, { 'x-gateway-savings': ' Chunk_Dedupe , compression' });
  t.equal(third(noDedupe), messages[2]!.content, 'chunk_dedupe off (names case- and space-insensitive): the repeat sent as it was');
  t.equal(noDedupe.sent.max_tokens, 1000, '…and the cap still on');
  t.notOk(noDedupe.data.gateway.saved_tokens?.chunk_dedupe, 'no chunk_dedupe saving claimed');
  const bad = await client(gw.masterKey, { 'x-gateway-savings': 'output_cap,teleport' }).chat.completions.create({ model: 'openai/rag', messages }).catch((e: unknown) => e);
  t.ok(bad instanceof OpenAI.BadRequestError && /'teleport' is not a savings mechanism/.test(bad.message), String(bad));
  for (const name of ['constructor', '__proto__', 'toString']) {
    const inherited = await client(gw.masterKey, { 'x-gateway-savings': name }).chat.completions.create({ model: 'openai/rag', messages }).catch((e: unknown) => e);
    t.ok(inherited instanceof OpenAI.BadRequestError, `'${name}' (an object's own property name) is no mechanism either: ${String(inherited)}`);
  }
  // The Responses API bridged onto the chat path (an Anthropic route) takes the same switches.
  const asked = anthropic.received.length;
  const responses = (headers: Record<string, string>) => client(gw.masterKey, headers).responses.create({ model: 'anthropic/claude-test', input: 'hello, Responses' });
  const cap = () => anthropic.received.at(-1)!.body.max_tokens;
  const first = await responses({});
  t.equal(cap(), 1000, 'the Responses API: capped by default');
  const again = await client(gw.masterKey, {}).responses.create({ model: 'anthropic/claude-test', input: 'hello, Responses', temperature: 0 }).withResponse();
  const cached = await client(gw.masterKey, {}).responses.create({ model: 'anthropic/claude-test', input: 'hello, Responses', temperature: 0 }).withResponse();
  t.equal(cached.response.headers.get('x-gateway-cache'), 'exact', 'and its repeat served from the cache');
  await responses({ 'x-gateway-savings': 'off' });
  t.equal(cap(), 4096, 'x-gateway-savings: off reaches the Responses API (the billing default, not the savings cap)');
  const off = await client(gw.masterKey, { 'x-gateway-cache': 'off' }).responses.create({ model: 'anthropic/claude-test', input: 'hello, Responses', temperature: 0 }).withResponse();
  t.equal(off.response.headers.get('x-gateway-cache'), 'miss', 'so does x-gateway-cache: off');
  await responses({ 'x-gateway-savings': 'output_cap' });
  t.equal(cap(), 4096, 'and a list does');
  t.equal(anthropic.received.length, asked + 5, 'all but the cached repeat went upstream');
  t.ok(first.id && again.data.id, 'answered');
});

t.test('chunk dedupe through the gateway: fewer tokens upstream, the question intact, the saving priced', async (t) => {
  const docs = ['alpha', 'beta', 'gamma'].map((s) => passage(s, 1200));
  const messages: Msg[] = [
    { role: 'system', content: 'Answer only from the retrieved context.' },
    { role: 'user', content: `Context:\n\n${docs[0]}\n\n${docs[1]}\n\nQuestion: what is alpha?` },
    { role: 'assistant', content: 'Alpha is the first.' },
    { role: 'user', content: `Context:\n\n${docs[1]}\n\n${docs[0]}\n\n${docs[2]}\n\nQuestion: and how does beta relate to gamma?` },
  ];
  const off = await create({ model: 'openai/rag', messages }, undefined, { 'x-gateway-savings': 'off' });
  const on = await create({ model: 'openai/rag', messages });
  const sent = on.sent.messages as Json[];
  t.equal(sent.length, 4);
  t.equal(sent[1]!.content, messages[1]!.content, 'first copies kept');
  t.match(sent[3]!.content, /^Context:\n\n\[Same passage as in message 2 above\.\]\n\n\[Same passage as in message 2 above\.\]\n\ngamma: /);
  t.ok((sent[3]!.content as string).endsWith('Question: and how does beta relate to gamma?'), 'the question is unchanged');
  t.ok(on.data.usage.prompt_tokens < off.data.usage.prompt_tokens * 0.8, `upstream prompt ${on.data.usage.prompt_tokens} vs ${off.data.usage.prompt_tokens} tokens`);
  t.ok(on.data.gateway.saved_tokens.chunk_dedupe > 300, `saved ${on.data.gateway.saved_tokens.chunk_dedupe} tokens`);
  t.ok(Number(on.headers.get('x-btl-saved')) > 0, 'the saving is in dollars too');
  t.ok(Number(on.headers.get('x-btl-benchmark-cost')) > Number(on.headers.get('x-gateway-cost-usd')));
});

t.test('compression through the gateway: over budget, stale history shrinks; tool pairing and the last turns are byte-identical', async (t) => {
  const big = (s: string) => passage(s, 3000);
  const messages: Msg[] = [
    { role: 'system', content: 'You are a careful agent.' },
    { role: 'user', content: `Investigate this log:\n${big('log')}` },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'grep', arguments: '{"q":"error"}' } }] },
    { role: 'tool', tool_call_id: 'call_a', content: big('grep output') },
    { role: 'assistant', content: `Findings so far: ${big('findings')}` },
    { role: 'user', content: 'Now check the config.' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_b', type: 'function', function: { name: 'read', arguments: '{"path":"app.yml"}' } }] },
    { role: 'tool', tool_call_id: 'call_b', content: 'port: 8080' },
  ];
  const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'grep', parameters: { type: 'object' } } }, { type: 'function', function: { name: 'read', parameters: { type: 'object' } } }];
  const r = await create({ model: 'openai/chat', messages, tools });
  const sent = r.sent.messages as Json[];
  t.equal(sent.length, messages.length, 'no message dropped');
  t.same(sent[0], messages[0], 'system prompt untouched');
  t.same(sent.slice(-3), messages.slice(-3), 'the last 3 messages untouched');
  const calls = sent.flatMap((m) => (m.tool_calls ?? []).map((c: Json) => c.id));
  const results = sent.filter((m) => m.role === 'tool').map((m) => m.tool_call_id);
  t.same(calls, ['call_a', 'call_b'], 'tool calls kept');
  t.same(results, calls, 'every tool call still has its result');
  t.same(sent[2], messages[2]);
  t.ok(sent[3]!.content.length < 500, 'stale tool output compressed');
  t.ok(r.data.gateway.saved_tokens.compression > 1000, `saved ${r.data.gateway.saved_tokens.compression} tokens`);
  const off = await create({ model: 'openai/chat', messages, tools }, undefined, { 'x-gateway-savings': 'off' });
  t.same(off.sent.messages, JSON.parse(JSON.stringify(messages)), 'off: sent as it came');
  const short = await create({ model: 'openai/chat', messages: messages.slice(0, 1).concat([{ role: 'user', content: 'hi' }]) });
  t.same(short.data.gateway.saved_tokens, {}, 'under budget nothing changes');
});

t.test('prompt caching (OpenAI): a stable prompt_cache_key per workspace and prefix; cached tokens billed at the cached price', async (t) => {
  const ws = await admin('/admin/workspaces', { name: 'pc', credits_usd: 5 });
  const key = (await admin('/admin/keys', { name: 'pc', workspace: ws.id })).key as string;
  const system = `You are the support bot for ACME. Policies:\n${passage('policy', 6000)}`;
  const ask = (q: string) => ({ model: 'openai/cache-me', messages: [{ role: 'system', content: system }, { role: 'user', content: q }] });
  const first = await create(ask('Where is my order?'), key);
  const second = await create(ask('Can I return a gift?'), key);
  t.type(first.sent.prompt_cache_key, 'string');
  t.equal(second.sent.prompt_cache_key, first.sent.prompt_cache_key, 'same stable head, same key');
  t.not((await create(ask('Where is my order?'))).sent.prompt_cache_key, first.sent.prompt_cache_key, 'another workspace gets another key');
  t.equal(first.data.usage.prompt_tokens_details.cached_tokens, 0);
  const cached = second.data.usage.prompt_tokens_details.cached_tokens as number;
  t.ok(cached > 0, `upstream served ${cached} prompt tokens from its cache`);
  t.equal(second.data.gateway.saved_tokens.prompt_cache, cached);
  const u = second.data.usage;
  const expected = ((u.prompt_tokens - cached) * 1 + cached * 0.5 + u.completion_tokens * 2) / 1e6;
  t.ok(Math.abs(second.data.gateway.cost_usd - expected) < 1e-9, 'cached tokens at the cached price');
  t.ok(second.data.gateway.saved_usd > 0);
  t.notOk('prompt_cache_key' in (await create({ model: 'openai/cache-me', messages: [{ role: 'user', content: 'short' }] })).sent, 'short prompts are left alone');
});

t.test('prompt caching (Anthropic): cache_control breakpoints on the system prompt, the tools and the conversation so far', async (t) => {
  const system = `Policies:\n${passage('policy', 6000)}`;
  await client().chat.completions.create({
    model: 'anthropic/claude-test',
    messages: [{ role: 'system', content: system }, { role: 'user', content: 'first question' }, { role: 'assistant', content: 'first answer' }, { role: 'user', content: 'second question' }],
    tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }],
  });
  const body = anthropic.received.at(-1)!.body;
  t.same(body.system, [{ type: 'text', text: system, cache_control: { type: 'ephemeral' } }]);
  t.same(body.tools.at(-1).cache_control, { type: 'ephemeral' });
  t.same(body.messages.at(-2).content.at(-1).cache_control, { type: 'ephemeral' }, 'the turn before the latest');
  t.notOk(body.messages.at(-1).content.at(-1).cache_control, 'the latest turn is not a breakpoint');
  await client(gw.masterKey, { 'x-gateway-savings': 'off' }).chat.completions.create({ model: 'anthropic/claude-test', messages: [{ role: 'system', content: system }, { role: 'user', content: 'q' }] });
  t.equal(anthropic.received.at(-1)!.body.system, system, 'off: no breakpoints');
});

t.test('odd but valid shapes pass through the rewrites; an odd x-gateway-cache value is ignored, an odd x-gateway-savings one refused (it names mechanisms)', async (t) => {
  const filler = passage('filler', 1500);
  const messages = [
    { role: 'system', content: [{ type: 'text', text: filler }] },
    { role: 'user', content: [{ type: 'text', text: filler }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }, { type: 'text' }] },
    { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] },
    { role: 'tool', tool_call_id: 'c', content: [{ type: 'text', text: filler }] },
    { role: 'user', content: `${filler}\n\n   \n\n${filler}` },
  ];
  const send = (savings: Record<string, string>) => fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json', 'x-gateway-cache': '\xff nonsense', ...savings },
    body: JSON.stringify({ model: 'openai/rag', messages }) });
  const maybe = await send({ 'x-gateway-savings': 'maybe' });
  t.equal(maybe.status, 400);
  t.match(await maybe.json(), { error: { code: 'invalid_request', message: /'maybe' is not a savings mechanism/ } });
  const res = await send({});
  t.equal(res.status, 200);
  const sent = fake.received.at(-1)!.body.messages as Json[];
  t.same(sent[0], messages[0], 'system untouched');
  t.same(sent[1]!.content[1], messages[1]!.content![1], 'image part untouched');
  t.match(sent[3]!.content[0].text, /^\[Same passage as in message 1 above\.\]$/, 'a tool result repeating the system text');
  t.ok(String(sent[4]!.content).endsWith(filler), 'the final question passage is kept even when it repeats');
  const health = await fetch(`${gw.url}/health`);
  t.equal(health.status, 200, 'still serving');
});
