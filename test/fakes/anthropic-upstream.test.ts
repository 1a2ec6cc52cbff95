// The fake Anthropic server speaks the real wire format: the official SDK reads it.
import Anthropic from '@anthropic-ai/sdk';
import t from 'tap';
import { ANTHROPIC_WORDS, startFakeAnthropic } from './anthropic-upstream.js';

const fake = await startFakeAnthropic();
t.teardown(() => fake.close());
const client = new Anthropic({ apiKey: 'sk-ant-fake', baseURL: fake.url.replace(/\/v1$/, ''), maxRetries: 0 });

t.test('non-stream and stream text', async (t) => {
  const msg = await client.messages.create({ model: 'claude-x', max_tokens: 50, messages: [{ role: 'user', content: 'Hi' }] });
  t.equal(msg.content[0]?.type === 'text' ? msg.content[0].text : '', ANTHROPIC_WORDS.join(''));
  t.equal(msg.stop_reason, 'end_turn');
  t.equal(msg.usage.cache_read_input_tokens, 5);
  const stream = client.messages.stream({ model: 'claude-x', max_tokens: 50, messages: [{ role: 'user', content: 'Hi' }] });
  let text = '';
  stream.on('text', (d) => { text += d; });
  const final = await stream.finalMessage();
  t.equal(text, ANTHROPIC_WORDS.join(''));
  t.equal(final.usage.output_tokens, ANTHROPIC_WORDS.length);
});

t.test('tools, stream and non-stream, and errors', async (t) => {
  const tools = [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object' as const, properties: { location: { type: 'string' } } } }];
  const msg = await client.messages.create({ model: 'claude-x', max_tokens: 50, tools, messages: [{ role: 'user', content: 'Weather in Paris?' }] });
  t.equal(msg.stop_reason, 'tool_use');
  t.same(msg.content[0], { type: 'tool_use', id: 'toolu_fake1', name: 'get_weather', input: { location: 'Paris' } });
  const final = await client.messages.stream({ model: 'claude-x', max_tokens: 50, tools, messages: [{ role: 'user', content: 'Weather?' }] }).finalMessage();
  t.same(final.content[0], { type: 'tool_use', id: 'toolu_fake1', name: 'get_weather', input: { location: 'Paris' } }, 'input_json_delta pieces assemble');
  const err = await client.messages.create({ model: 'fail-529', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(err instanceof Anthropic.APIError && err.status === 529);
});
