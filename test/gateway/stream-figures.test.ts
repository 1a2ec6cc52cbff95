// The gateway's figures on a stream, where SDKs keep them: with stream_options.include_usage
// the final chunk (the usage chunk) carries a `gateway` member like a non-stream body's, on a
// live stream, a cache replay and the bridges; without it the figures stay in the headers and
// the SSE comment, and no chunk the caller did not ask for is added.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';

const fake = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'on' }, tempDataDir(), { models: [testModel('gpt-x')] });
t.teardown(async () => { await gw.stop(); await fake.close(); });
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });

type Figures = { request_id: string; served: string; cache: string; usage: { prompt_tokens: number }; cost_usd: number; charge_usd: number };
const figuresOf = (c: unknown) => (c as { gateway?: Figures }).gateway;

t.test('include_usage: the last chunk carries usage and the gateway figures', async (t) => {
  const chunks: OpenAI.Chat.ChatCompletionChunk[] = [];
  const stream = await client.chat.completions.create({ model: 'openai/gpt-x', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } });
  for await (const c of stream) chunks.push(c);
  const last = chunks.at(-1)!;
  t.ok(last.usage, 'the usage chunk is last');
  const g = figuresOf(last)!;
  t.match(g, { served: 'openai/gpt-x', cache: 'miss', cost_usd: Number, charge_usd: Number });
  t.equal(g.usage.prompt_tokens, last.usage!.prompt_tokens);
  t.match(g.request_id, /^req_/);
  t.equal(chunks.filter((c) => figuresOf(c)).length, 1, 'on that chunk only');
});

t.test('without include_usage no chunk is added: the figures are in the headers and the comment', async (t) => {
  const res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openai/gpt-x', messages: [{ role: 'user', content: 'hi' }], stream: true }) });
  const text = await res.text();
  t.notMatch(text, /^data: [^\n]*"usage":\{/m, "no usage chunk the caller did not ask for");
  t.notMatch(text, /data: \{[^\n]*"gateway"/);
  t.match(text, /^: gateway \{/m);
  t.ok(res.headers.get('x-gateway-decision'));
});

t.test('a cache replay and the legacy-completions bridge carry the figures the same way', async (t) => {
  const ask = () => client.chat.completions.create({ model: 'openai/gpt-x', temperature: 0, messages: [{ role: 'user', content: 'cache me' }], stream: true, stream_options: { include_usage: true } });
  for await (const _ of await ask()) void _;
  let last: unknown = null;
  for await (const c of await ask()) last = c;
  t.match(figuresOf(last), { cache: 'exact' });
  let legacy: unknown = null;
  for await (const c of await client.completions.create({ model: 'openai/gpt-x', prompt: 'hi', max_tokens: 4, stream: true, stream_options: { include_usage: true } })) legacy = c;
  t.match(figuresOf(legacy), { served: 'openai/gpt-x' });
  t.ok((legacy as OpenAI.Completion).usage);
});

t.test('a bridged Responses stream: response.completed carries them', async (t) => {
  let done: OpenAI.Responses.Response | null = null;
  for await (const e of await client.responses.create({ model: 'anthropic/claude-haiku-4-5', input: 'hi', stream: true })) if (e.type === 'response.completed') done = e.response;
  t.match(figuresOf(done), { served: 'sim/claude-haiku-4-5', cache: 'miss' });
  t.notOk('gateway' in (await client.responses.retrieve(done!.id)), 'the stored response has none');
});
