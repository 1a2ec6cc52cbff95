// The fake must speak OpenAI's real wire format: the official SDK is the judge.
import OpenAI from 'openai';
import t from 'tap';
import { FAKE_WORDS, startFakeUpstream } from './openai-upstream.js';

t.test('the official openai SDK accepts the fake upstream', async (t) => {
  const fake = await startFakeUpstream();
  t.teardown(() => fake.close());
  const client = new OpenAI({ baseURL: fake.url, apiKey: 'sk-fake-upstream', maxRetries: 0 });
  const r = await client.chat.completions.create({ model: 'gpt-4.1-mini', messages: [{ role: 'user', content: 'hi' }] });
  t.equal(r.choices[0]?.message.content, FAKE_WORDS.join(''));
  t.ok(r.usage && r.usage.prompt_tokens > 0);
  const stream = await client.chat.completions.create({ model: 'gpt-4.1-mini', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'hi' }] });
  let text = '';
  let usage = null;
  for await (const c of stream) { text += c.choices[0]?.delta.content ?? ''; if (c.usage) usage = c.usage; }
  t.equal(text, FAKE_WORDS.join(''));
  t.equal(usage?.completion_tokens, FAKE_WORDS.length);
  const status = await new OpenAI({ baseURL: fake.url, apiKey: 'wrong', maxRetries: 0 }).chat.completions
    .create({ model: 'gpt-4.1-mini', messages: [{ role: 'user', content: 'hi' }] })
    .then(() => 0, (err: unknown) => (err instanceof OpenAI.AuthenticationError ? err.status : -1));
  t.equal(status, 401, 'the SDK reads the fake error envelope as an AuthenticationError');
});

t.test('the SDK reads the fake embeddings, as floats and as base64 (its default)', async (t) => {
  const fake = await startFakeUpstream();
  t.teardown(() => fake.close());
  const client = new OpenAI({ baseURL: fake.url, apiKey: 'sk-fake-upstream', maxRetries: 0 });
  const floats = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['one', 'two'], encoding_format: 'float' });
  const decoded = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['one', 'two'] });
  t.equal(floats.data.length, 2);
  t.equal(fake.received[1]!.body.encoding_format, 'base64', 'the SDK asks for base64 by default');
  t.same(decoded.data.map((d) => d.embedding.map((x) => Math.round(x * 1e5))), floats.data.map((d) => d.embedding.map((x) => Math.round(x * 1e5))));
  t.match(floats.usage, { prompt_tokens: Number, total_tokens: Number });
});

