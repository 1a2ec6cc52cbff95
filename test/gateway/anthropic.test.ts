// The OpenAI surface in front of Anthropic's Messages API (a local fake of it, validated
// by the official Anthropic SDK): text, streams, tools and tool results, images, system
// prompts, cache-token usage and errors, all seen through the official `openai` SDK.
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import t from 'tap';
import { ANTHROPIC_WORDS, startFakeAnthropic } from '../fakes/anthropic-upstream.js';
import { startGateway, tempDataDir } from '../helpers/gateway.js';

const fake = await startFakeAnthropic();
const model = (id: string) => ({ slug: `anthropic/${id}`, upstream_id: id, context_window: 200000, prices: { input: 3, cached_input: 0.3, output: 15 } });
const gw = await startGateway({ ANTHROPIC_API_KEY: 'sk-ant-fake', ANTHROPIC_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(),
  { models: [...['claude-test', 'fail-400', 'fail-529'].map(model), { ...model('cache-writer'), prices: { input: 3, cached_input: 0.3, cache_write: 3.75, output: 15 } }] });
t.teardown(async () => { await gw.stop(); await fake.close(); });
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } } }];

t.test('non-stream: text, system prompt, usage with cache reads, headers', async (t) => {
  const { data, response } = await client.chat.completions.create({ model: 'anthropic/claude-test', max_tokens: 100, temperature: 0.2,
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }] }).withResponse();
  t.equal(data.choices[0]?.message.content, ANTHROPIC_WORDS.join(''));
  t.equal(data.choices[0]?.finish_reason, 'stop');
  t.equal(data.usage?.prompt_tokens_details?.cached_tokens, 5, 'cache reads are cached tokens');
  const sent = fake.received.at(-1)!;
  t.equal(sent.body.system, 'Be brief.', 'system prompt moved to the system field');
  t.same(sent.body.messages, [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }]);
  t.equal(sent.body.max_tokens, 100);
  t.equal(sent.headers['x-api-key'], 'sk-ant-fake');
  t.equal(sent.headers['anthropic-version'], '2023-06-01');
  t.equal(response.headers.get('x-gateway-decision'), 'anthropic/claude-test');
  t.ok(Number(response.headers.get('x-gateway-cost-usd')) > 0, 'billed from the translated usage');
});

t.test('stream: OpenAI chunks from Messages events, usage and figures', async (t) => {
  let text = '';
  let finish: string | null = null;
  const usages: number[] = [];
  for await (const c of await client.chat.completions.create({ model: 'anthropic/claude-test', messages: [{ role: 'user', content: 'Hi' }], stream: true, stream_options: { include_usage: true } })) {
    text += c.choices[0]?.delta.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
    if (c.usage) usages.push(c.usage.completion_tokens);
  }
  t.same(usages, [ANTHROPIC_WORDS.length], 'one usage chunk, with the translated output tokens');
  t.equal(text, ANTHROPIC_WORDS.join(''));
  t.equal(finish, 'stop');
  t.equal(fake.received.at(-1)!.body.stream, true);
});

t.test('tools: a tool call, then the tool result, stream and non-stream', async (t) => {
  const first = await client.chat.completions.create({ model: 'anthropic/claude-test', tools, tool_choice: 'auto', messages: [{ role: 'user', content: 'Weather in Paris?' }] });
  const call = first.choices[0]?.message.tool_calls?.[0];
  t.equal(first.choices[0]?.finish_reason, 'tool_calls');
  t.ok(call && call.type === 'function');
  if (!call || call.type !== 'function') return;
  t.equal(call.function.name, 'get_weather');
  t.same(JSON.parse(call.function.arguments), { location: 'Paris' });
  t.same(fake.received.at(-1)!.body.tools, [{ name: 'get_weather', description: 'Weather for a city', input_schema: tools[0]!.type === 'function' ? tools[0]!.function.parameters : {} }]);
  t.same(fake.received.at(-1)!.body.tool_choice, { type: 'auto' });

  // the same call streamed: tool_calls deltas assemble into the arguments
  let args = '';
  let name = '';
  for await (const c of await client.chat.completions.create({ model: 'anthropic/claude-test', tools, stream: true, messages: [{ role: 'user', content: 'Weather?' }] })) {
    const d = c.choices[0]?.delta.tool_calls?.[0];
    if (d?.function?.name) name = d.function.name;
    args += d?.function?.arguments ?? '';
  }
  t.equal(name, 'get_weather');
  t.same(JSON.parse(args), { location: 'Paris' });

  const second = await client.chat.completions.create({ model: 'anthropic/claude-test', tools, messages: [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: null, tool_calls: [call] },
    { role: 'tool', tool_call_id: call.id, content: '{"sky":"clear"}' },
  ] });
  t.equal(second.choices[0]?.message.content, 'It is sunny.');
  const sent = fake.received.at(-1)!.body;
  t.same(sent.messages[1], { role: 'assistant', content: [{ type: 'tool_use', id: call.id, name: 'get_weather', input: { location: 'Paris' } }] });
  t.same(sent.messages[2], { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: '{"sky":"clear"}' }] });
});

t.test('images become image blocks', async (t) => {
  await client.chat.completions.create({ model: 'anthropic/claude-test', messages: [{ role: 'user', content: [
    { type: 'text', text: 'What is this?' },
    { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
    { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
  ] }] });
  t.same(fake.received.at(-1)!.body.messages[0].content, [
    { type: 'text', text: 'What is this?' },
    { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
    { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
  ]);
});

t.test('errors keep their meaning in OpenAI\'s envelope', async (t) => {
  const bad = await client.chat.completions.create({ model: 'anthropic/fail-400', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(bad instanceof OpenAI.BadRequestError);
  t.match((bad as InstanceType<typeof OpenAI.APIError>).message, /roles must alternate/);
  const overloaded = await client.chat.completions.create({ model: 'anthropic/fail-529', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(overloaded instanceof OpenAI.APIError && overloaded.status === 503 && (overloaded.error as { code?: string }).code === 'upstream_unavailable',
    'an overloaded Anthropic (529) is a 503 upstream_unavailable once the retries are spent');
});

t.test('cache writes are billed at the cache-write price', async (t) => {
  const { data, response } = await client.chat.completions.create({ model: 'anthropic/cache-writer', max_tokens: 20, messages: [{ role: 'system', content: 'A long, stable system prompt.' }, { role: 'user', content: 'Hi' }] }).withResponse();
  const u = data.usage!;
  const written = 100;
  const read = u.prompt_tokens_details?.cached_tokens ?? 0;
  const expected = ((u.prompt_tokens - read - written) * 3 + read * 0.3 + written * 3.75 + u.completion_tokens * 15) / 1e6;
  t.ok(Math.abs(Number(response.headers.get('x-gateway-cost-usd')) - expected) < 1e-9, `cost ${response.headers.get('x-gateway-cost-usd')} = ${expected}: 100 written tokens at $3.75/M`);
  const row = await (await fetch(`${gw.baseURL}/requests/${response.headers.get('x-request-id')}`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).json() as { cache_write_tokens: number };
  t.equal(row.cache_write_tokens, written, 'the row says how many were written');
});

t.test('JSON output on Claude: a forced tool whose input is the content; chat.completions.parse works', async (t) => {
  const Place = z.object({ location: z.string() });
  const parsed = await client.chat.completions.parse({ model: 'anthropic/claude-test', response_format: zodResponseFormat(Place, 'place'), messages: [{ role: 'user', content: 'Where?' }] });
  t.same(parsed.choices[0]?.message.parsed, { location: 'Paris' });
  t.equal(parsed.choices[0]?.finish_reason, 'stop');
  t.notOk(parsed.choices[0]?.message.tool_calls?.length, 'the JSON tool is not a tool call');
  const sent = fake.received.at(-1)!.body;
  t.match(sent.tools, [{ name: 'place', input_schema: { type: 'object', properties: { location: { type: 'string' } } } }]);
  t.same(sent.tool_choice, { type: 'tool', name: 'place' });
  let text = '';
  let finish: string | null = null;
  for await (const c of await client.chat.completions.create({ model: 'anthropic/claude-test', stream: true, response_format: { type: 'json_object' }, messages: [{ role: 'user', content: 'Where, as JSON?' }] })) {
    text += c.choices[0]?.delta.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
    t.notOk(c.choices[0]?.delta.tool_calls, 'no tool_calls delta');
  }
  t.same(JSON.parse(text), { location: 'Paris' }, 'json_object streamed as content');
  t.equal(finish, 'stop');
});

t.test('n > 1 is a clear 400, never one choice in silence', async (t) => {
  const before = fake.received.length;
  const err = await client.chat.completions.create({ model: 'anthropic/claude-test', n: 2, messages: [{ role: 'user', content: 'Hi' }] }).catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.BadRequestError && err.param === 'n', String(err));
  t.equal(fake.received.length, before, 'nothing sent');
});
