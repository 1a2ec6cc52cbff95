// Anthropic's Messages API in front of every route, driven by the official @anthropic-ai/sdk
// (its key sent as x-api-key): create and stream, tools both ways, images, count_tokens, errors
// in Anthropic's envelope, and the ledger; through the sim, an OpenAI route and an Anthropic
// route (each checked on the wire by its fake).
import Anthropic from '@anthropic-ai/sdk';
import t from 'tap';
import { ANTHROPIC_WORDS, startFakeAnthropic } from '../fakes/anthropic-upstream.js';
import { FAKE_WORDS, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const openai = await startFakeUpstream();
const anthropic = await startFakeAnthropic();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: openai.url, ANTHROPIC_API_KEY: 'sk-ant-fake', ANTHROPIC_BASE_URL: anthropic.url, SLUICE_SIM: 'on' }, tempDataDir(), {
  models: [testModel('gpt-x'), { slug: 'anthropic/claude-test', upstream_id: 'claude-test', context_window: 200000, capabilities: ['tools', 'vision'], prices: { input: 3, output: 15 } }],
});
t.teardown(async () => { await gw.stop(); await openai.close(); await anthropic.close(); });
const api = http(gw);
const { key } = await api.tenant(gw.masterKey, 1, undefined, ['inference', 'usage:read']);
const client = new Anthropic({ baseURL: gw.url, apiKey: key, maxRetries: 0 });
/** The same key, pinned to the sim (the catalog's Claude models route to the fake Anthropic first). */
const sim = new Anthropic({ baseURL: gw.url, apiKey: key, maxRetries: 0, defaultHeaders: { 'x-gateway-provider': 'sim' } });
const textOf = (m: Anthropic.Message) => m.content.map((b) => (b.type === 'text' ? b.text : '')).join('');

t.test('create and stream on the sim: a message back, the same text streamed, usage and figures', async (t) => {
  const msg = await sim.messages.create({ model: 'claude-haiku-4-5', max_tokens: 64, system: 'Be brief.', messages: [{ role: 'user', content: 'Hello there' }] });
  t.equal(msg.type, 'message');
  t.equal(msg.role, 'assistant');
  t.match(msg.id, /^msg_/);
  t.equal(msg.stop_reason, 'end_turn');
  t.match(textOf(msg), /^Simulated reply/);
  t.ok(msg.usage.input_tokens > 0 && msg.usage.output_tokens > 0);
  t.match((msg as unknown as { gateway: object }).gateway, { served: 'sim/claude-haiku-4-5' });
  const stream = sim.messages.stream({ model: 'claude-haiku-4-5', max_tokens: 64, system: 'Be brief.', messages: [{ role: 'user', content: 'Hello there' }] });
  const types: string[] = [];
  stream.on('streamEvent', (e) => types.push(e.type));
  const final = await stream.finalMessage();
  t.match(textOf(final), /^Simulated reply/, 'the text deltas put back together');
  t.ok(final.usage.output_tokens > 0);
  t.equal(final.usage.input_tokens, msg.usage.input_tokens, 'input tokens from the final message_delta');
  t.same([types[0], types[1], types.at(-1)], ['message_start', 'content_block_start', 'message_stop']);
  const capped = await sim.messages.create({ model: 'claude-haiku-4-5', max_tokens: 3, messages: [{ role: 'user', content: 'Write a long story' }] });
  t.equal(capped.stop_reason, 'max_tokens');
});

t.test('tools both ways: a tool_use block, then a tool_result answered in words (stream and not)', async (t) => {
  const tools: Anthropic.Tool[] = [{ name: 'get_weather', description: 'Weather for a city', input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];
  const first = await sim.messages.create({ model: 'claude-haiku-4-5', max_tokens: 200, tools, messages: [{ role: 'user', content: 'Weather in Paris?' }] });
  t.equal(first.stop_reason, 'tool_use');
  const use = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')!;
  t.equal(use.name, 'get_weather');
  t.match(use.input, { city: String });
  const streamed = await sim.messages.stream({ model: 'claude-haiku-4-5', max_tokens: 200, tools, messages: [{ role: 'user', content: 'Weather in Paris?' }] }).finalMessage();
  t.same(streamed.content.find((b) => b.type === 'tool_use')?.type === 'tool_use' ? (streamed.content.find((b) => b.type === 'tool_use') as Anthropic.ToolUseBlock).input : null, use.input, 'input_json_delta put back together');
  const second = await sim.messages.create({ model: 'claude-haiku-4-5', max_tokens: 200, tools, messages: [
    { role: 'user', content: 'Weather in Paris?' }, { role: 'assistant', content: first.content },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '21C and sunny' }] }] });
  t.equal(second.stop_reason, 'end_turn');
  t.ok(textOf(second).length > 0);
});

t.test('an OpenAI route gets a chat request (images as data URLs); an Anthropic route gets Anthropic\'s format back', async (t) => {
  const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
  const viaOpenAI = await client.messages.create({ model: 'openai/gpt-x', max_tokens: 50, messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } }] }] });
  t.equal(textOf(viaOpenAI), FAKE_WORDS.join(''));
  const sent = openai.received.at(-1)!;
  t.equal(sent.url, '/v1/chat/completions');
  t.match(JSON.stringify(sent.body.messages), /data:image\/png;base64,iVBOR/);
  const viaAnthropic = await client.messages.create({ model: 'anthropic/claude-test', max_tokens: 50, system: 'Be brief.', stop_sequences: ['END'], messages: [{ role: 'user', content: 'Hi' }] });
  t.equal(textOf(viaAnthropic), ANTHROPIC_WORDS.join(''));
  const got = anthropic.received.at(-1)!.body;
  t.match(got, { model: 'claude-test', max_tokens: 50, stop_sequences: ['END'] });
  t.match(JSON.stringify(got.system), /Be brief/);
  t.ok(viaAnthropic.usage.cache_read_input_tokens! > 0, 'the upstream\'s cache reads come back as Anthropic reports them');
});

t.test('a key limit refused in Anthropic\'s envelope keeps its kind and wait (the SDK\'s RateLimitError)', async (t) => {
  const limited = await api.tenant(gw.masterKey, 1, { rpm: 1 });
  const c = new Anthropic({ baseURL: gw.url, apiKey: limited.key, maxRetries: 0, defaultHeaders: { 'x-gateway-provider': 'sim' } });
  await c.messages.create({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] });
  const refused = await c.messages.create({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'y' }] }).catch((e: unknown) => e);
  t.ok(refused instanceof Anthropic.RateLimitError, String(refused));
  const e = refused as InstanceType<typeof Anthropic.RateLimitError>;
  t.match(e.error, { type: 'error', error: { type: 'rate_limit_error', code: 'rate_limit_exceeded', kind: 'rpm' } });
  const wait = (e.error as { error: { retry_after_seconds: number } }).error.retry_after_seconds;
  t.ok(wait >= 1 && String(wait) === e.headers?.get('retry-after'), `retry_after_seconds ${wait} = Retry-After`);
  t.equal(e.headers?.get('x-gateway-limit-kind'), 'rpm');
});

t.test('count_tokens holds a key to its models, as /v1/messages does (a 403)', async (t) => {
  const made = (await api.admin('/admin/keys', { name: 'openai-only', limits: { models: ['openai/*'] } })).json as { key: string };
  const only = new Anthropic({ baseURL: gw.url, apiKey: made.key, maxRetries: 0 });
  const refused = await only.messages.countTokens({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'Hello' }] }).catch((e: unknown) => e);
  t.ok(refused instanceof Anthropic.PermissionDeniedError && /may not use 'claude-haiku-4-5'/.test(refused.message), String(refused));
  t.ok((await client.messages.countTokens({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'Hello' }] })).input_tokens > 0, 'a key without constraints counts');
});

t.test('count_tokens, errors in Anthropic\'s envelope, and the ledger', async (t) => {
  const count = await client.messages.countTokens({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'Hello there, how are you today?' }] });
  t.ok(count.input_tokens > 5 && count.input_tokens < 30, String(count.input_tokens));
  const bad = await client.messages.create({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'x' }] } as unknown as Anthropic.MessageCreateParamsNonStreaming).catch((e: unknown) => e);
  t.ok(bad instanceof Anthropic.BadRequestError, String(bad));
  t.match((bad as InstanceType<typeof Anthropic.BadRequestError>).error, { type: 'error', error: { type: 'invalid_request_error', message: /max_tokens/ } });
  const document = { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user' as const, content: [{ type: 'document' as const, source: { type: 'text' as const, media_type: 'text/plain' as const, data: 'x' } }] }] };
  const doc = await sim.messages.create(document).catch((e: unknown) => e);
  t.ok(doc instanceof Anthropic.BadRequestError && /not supported/.test(doc.message), 'what a bridged route cannot carry is said, not dropped');
  t.equal((await client.messages.create(document)).type, 'message', 'an Anthropic route takes it as it is');
  const noKey = await new Anthropic({ baseURL: gw.url, apiKey: 'sk-wrong', maxRetries: 0 }).messages.create({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(noKey instanceof Anthropic.AuthenticationError, 'a wrong x-api-key is a 401 the SDK knows');
  const missing = await client.messages.create({ model: 'claude-nope', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(missing instanceof Anthropic.NotFoundError);
  const wrongPath = await fetch(`${gw.url}/v1/messages/nope`, { method: 'POST', headers: { 'x-api-key': key } });
  t.match(await wrongPath.json(), { type: 'error', error: { type: 'not_found_error' } }, 'a wrong path under /v1/messages answers in Anthropic\'s envelope too');
  const empty = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: [] }] }).catch((e: unknown) => e);
  t.ok(empty instanceof Anthropic.BadRequestError && /at least one content block/.test(empty.message), String(empty));
  const rows = (await api.call('/v1/requests?limit=20', key)).json.data as Array<{ endpoint: string; status: number }>;
  t.ok(rows.length > 5 && rows.every((r) => r.endpoint === 'messages'), 'every request a messages row');
});

t.test('an Anthropic route takes the caller\'s bytes: thinking and cache_control reach it untouched; usage billed as Anthropic counts it', async (t) => {
  const body = { model: 'anthropic/claude-test', max_tokens: 2048, thinking: { type: 'enabled', budget_tokens: 1024 },
    system: [{ type: 'text', text: 'A long stable prefix.', cache_control: { type: 'ephemeral' } }], messages: [{ role: 'user', content: 'Hi' }] };
  const res = await fetch(`${gw.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'anthropic-beta': 'interleaved-thinking-2025-05-14', 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const msg = await res.json() as Anthropic.Message & { gateway: { usage: { prompt_tokens: number; cached_tokens: number } } };
  t.equal(res.status, 200);
  t.equal(res.headers.get('x-gateway-decision'), 'anthropic/claude-test');
  const got = anthropic.received.at(-1)!.body;
  t.same(got, { ...body, model: 'claude-test' }, 'the same request, the route\'s model id in it');
  t.equal(anthropic.received.at(-1)!.headers['anthropic-beta'], 'interleaved-thinking-2025-05-14', 'the caller\'s beta features go along');
  t.equal(msg.id, 'msg_fake1', 'Anthropic\'s own message');
  t.equal(msg.gateway.usage.prompt_tokens, msg.usage.input_tokens + (msg.usage.cache_read_input_tokens ?? 0) + (msg.usage.cache_creation_input_tokens ?? 0), 'cache reads and writes are prompt tokens too');
  t.equal(msg.gateway.usage.cached_tokens, 5);
  // Streamed: Anthropic's events as it sent them (its ping included), the usage read from message_start and message_delta.
  const raw = await fetch(`${gw.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
  const text = await raw.text();
  t.match(text, /event: ping/);
  t.match(text, /^: gateway \{.*"cached_tokens":5/m, 'the figures before message_stop');
  t.ok(text.indexOf(': gateway') < text.indexOf('event: message_stop'));
  const streamed = await client.messages.stream({ model: 'anthropic/claude-test', max_tokens: 64, messages: [{ role: 'user', content: 'Hi' }] }).finalMessage();
  t.equal(textOf(streamed), ANTHROPIC_WORDS.join(''));
  const id = raw.headers.get('x-request-id')!;
  const row = (await api.call(`/v1/requests/${id}`, key)).json;
  t.match(row, { endpoint: 'messages', stream: true, cached_tokens: 5, completion_tokens: ANTHROPIC_WORDS.length, usage_source: 'upstream' });
  // Anthropic's own errors come back in its envelope.
  const refused = await client.messages.create({ model: 'anthropic/claude-test', max_tokens: 10, messages: [{ role: 'user', content: 'x' }], provider: 'anthropic' } as Anthropic.MessageCreateParamsNonStreaming);
  t.ok(refused, 'the pin field is dropped before it goes upstream');
  t.notOk('provider' in anthropic.received.at(-1)!.body);
});

