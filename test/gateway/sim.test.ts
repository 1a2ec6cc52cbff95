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
