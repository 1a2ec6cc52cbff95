// With no provider keys, `npm start` serves everything from the sim provider.
import OpenAI from 'openai';
import t from 'tap';
import { startGateway } from '../helpers/gateway.js';

const gw = await startGateway();
t.teardown(() => gw.stop());
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });

t.test('health, models and a chat completion with only the generated key', async (t) => {
  t.equal((await fetch(`${gw.url}/health`)).status, 200);
  t.match(gw.output(), /master key: in .*master\.key/);
  const models = await client.models.list();
  t.ok(models.data.some((m) => m.id === 'openai/gpt-4.1-mini'));
  const detail = await (await fetch(`${gw.baseURL}/models/anthropic/claude-haiku-4-5`)).json() as { routes: Array<{ provider: string }>; context_window: number };
  t.equal(detail.routes[0]!.provider, 'sim');
  t.equal(detail.context_window, 200000);
  const { data, response } = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini',
    messages: [{ role: 'user', content: 'Hello from Gateway' }], max_tokens: 8 }).withResponse();
  t.equal(response.headers.get('x-gateway-decision'), 'sim/gpt-4.1-mini');
  t.equal(data.usage?.completion_tokens, 8);
  t.equal(data.choices[0]?.finish_reason, 'length');
  t.ok((data.usage?.prompt_tokens ?? 0) > 3, 'prompt tokens from the real tokenizer');
  const again = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'Hello from Gateway' }], max_tokens: 8 });
  t.equal(again.choices[0]?.message.content, data.choices[0]?.message.content, 'deterministic');
});

t.test('models.retrieve: the SDK\'s encoded slug, bare ids, aliases and auto; an unknown id is a 404', async (t) => {
  const bySlug = await client.models.retrieve('openai/gpt-4.1-mini'); // sent as /v1/models/openai%2Fgpt-4.1-mini
  t.match(bySlug, { id: 'openai/gpt-4.1-mini', object: 'model', context_window: 1047576 });
  t.match(await client.models.retrieve('gpt-4.1-mini'), { id: 'openai/gpt-4.1-mini' }, 'a bare id, as chat takes it');
  t.match(await client.models.retrieve('auto'), { id: 'auto', router: { simple: String } });
  t.match(await client.models.retrieve('bedrock/nova-lite'), { id: 'bedrock/nova-lite', pricing: { input: 0.06 } });
  const missing = await client.models.retrieve('openai/gpt-99').catch((e: unknown) => e);
  t.ok(missing instanceof OpenAI.NotFoundError && missing.code === 'model_not_found');
  const bad = await fetch(`${gw.baseURL}/models/%E0%A4%A`);
  t.equal(bad.status, 400, 'a broken percent-encoding is a 400');
});

t.test('sim streams in OpenAI chunk format', async (t) => {
  let text = '';
  let chunks = 0;
  for await (const c of await client.chat.completions.create({ model: 'anthropic/claude-haiku-4-5', messages: [{ role: 'user', content: 'Hi' }], stream: true })) {
    text += c.choices[0]?.delta.content ?? '';
    chunks++;
  }
  t.ok(chunks > 5);
  t.match(text, /^Simulated reply/);
});

t.test('the sim follows the request\'s shape: tools, structured output and n, so SDK helpers work on npm start alone', async (t) => {
  const tools: OpenAI.Chat.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 1 }, unit: { type: 'string', enum: ['c', 'f'] } }, required: ['city', 'days', 'unit'] } } }];
  const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather in Paris?' }];
  const first = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages, tools });
  const call = first.choices[0]!.message.tool_calls?.[0];
  t.equal(first.choices[0]!.finish_reason, 'tool_calls');
  t.ok(call && call.type === 'function' && call.function.name === 'get_weather');
  const args = JSON.parse(call!.type === 'function' ? call!.function.arguments : '{}') as { city: string; days: number; unit: string };
  t.match(args, { city: String, days: 1, unit: 'c' }, 'arguments that fit the schema');
  const second = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', tools,
    messages: [...messages, first.choices[0]!.message, { role: 'tool', tool_call_id: call!.id, content: '21C and sunny' }] });
  t.equal(second.choices[0]!.finish_reason, 'stop', 'after the tool result, words');
  t.ok(second.choices[0]!.message.content);
  const none = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages, tools, tool_choice: 'none' });
  t.notOk(none.choices[0]!.message.tool_calls, "tool_choice 'none' calls nothing");
  // Streamed: the SDK's helper puts the call back together.
  const stream = client.chat.completions.stream({ model: 'openai/gpt-4.1-mini', messages, tools });
  const final = await stream.finalChatCompletion();
  const streamed = final.choices[0]!.message.tool_calls?.[0];
  t.same(JSON.parse(streamed?.type === 'function' ? streamed.function.arguments : 'null'), args, 'the same call, streamed');
  // Structured output through the SDK's parse helper, with a zod schema.
  const { zodResponseFormat } = await import('openai/helpers/zod');
  const { z } = await import('zod');
  const Event = z.object({ name: z.string(), attendees: z.array(z.string()), day: z.enum(['mon', 'tue']), online: z.boolean() });
  const parsed = await client.chat.completions.parse({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'Alice and Bob meet on Monday' }], response_format: zodResponseFormat(Event, 'event') });
  const event = parsed.choices[0]!.message.parsed;
  t.ok(event && Event.safeParse(event).success, `a value of the schema: ${JSON.stringify(event)}`);
  const json = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'hi' }], response_format: { type: 'json_object' } });
  t.doesNotThrow(() => JSON.parse(json.choices[0]!.message.content!), 'JSON mode gives JSON');
  // A schema that asks for 16^8 items or a billion-character string: the sim's example is bounded, the gateway keeps serving.
  let nested: object = { type: 'integer' };
  for (let i = 0; i < 8; i++) nested = { type: 'array', minItems: 16, items: nested };
  for (const schema of [nested, { type: 'string', minLength: 1_000_000_000 }, { type: 'array', minItems: 100_000_000, items: { type: 'string', minLength: 100_000_000 } }]) {
    const bounded = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'x' }], max_tokens: 100_000, response_format: { type: 'json_schema', json_schema: { name: 'r', schema: schema as Record<string, unknown> } } });
    t.ok(bounded.choices[0]!.message.content!.length < 100_000, `bounded: ${bounded.choices[0]!.message.content!.length} characters`);
  }
  const three = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'Tell me something' }], n: 3 });
  t.equal(three.choices.length, 3, 'n choices, not one');
  t.same(three.choices.map((c) => c.index), [0, 1, 2]);
  t.ok(new Set(three.choices.map((c) => c.message.content)).size > 1, 'each its own draw');
  const indices = new Set<number>();
  for await (const c of await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'Tell me something' }], n: 2, stream: true })) for (const ch of c.choices) indices.add(ch.index);
  t.same([...indices].sort(), [0, 1], 'and streamed');
});

t.test('a second gateway on a port in use fails to start instead of sharing it', async (t) => {
  const first = await startGateway({ SLUICE_SIM: 'on' });
  t.teardown(() => first.stop());
  const port = new URL(first.url).port;
  const second = await startGateway({ SLUICE_SIM: 'on', PORT: port }).then(
    async (gw) => { await gw.stop(); return 'started'; },
    (err: unknown) => String(err),
  );
  t.match(second, /could not listen on 127\.0\.0\.1:\d+/);
});
