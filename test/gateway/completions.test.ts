// POST /v1/completions (legacy) with the official openai SDK: a completion model passed
// through to OpenAI as bytes (stream and not), a chat model bridged onto the chat path (the
// sim, Anthropic-style routes alike) with text_completion objects and chunks back, billing
// and the ledger, and 400s for what a chat model cannot do.
import OpenAI from 'openai';
import t from 'tap';
import { FAKE_WORDS } from '../fakes/openai-upstream.js';
import { startWithFakeOpenAI } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const { fake, gw } = await startWithFakeOpenAI(t.teardown, { models: [
  // (a completion model whose upstream never reports usage, as some OpenAI-compatible servers do)
  { slug: 'openai/instruct-nousage', upstream_id: 'instruct-nousage', type: 'completion', context_window: 4096, tokenizer: 'cl100k_base', prices: { input: 1.5, output: 2 } },
] });
const api = http(gw);
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });

t.test('a completion model passes through to OpenAI, stream and not; 16 tokens when no cap is set', async (t) => {
  const { data, response } = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say hello', max_tokens: 3 }).withResponse();
  t.equal(response.headers.get('x-gateway-decision'), 'openai/gpt-3.5-turbo-instruct');
  t.equal(data.object, 'text_completion');
  t.equal(data.choices[0]!.text, FAKE_WORDS.slice(0, 3).join(''));
  t.equal(data.choices[0]!.finish_reason, 'length');
  t.ok(data.usage!.prompt_tokens > 0);
  const sent = fake.received.at(-1)!;
  t.equal(sent.raw, JSON.stringify({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say hello', max_tokens: 3 }), 'the caller\'s bytes, untouched');
  let text = '';
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const c of await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say hello', stream: true })) {
    text += c.choices[0]?.text ?? '';
    if (c.usage) usage = c.usage;
  }
  t.equal(text, FAKE_WORDS.join(''));
  t.equal(usage, undefined, 'no usage chunk the caller did not ask for');
  t.match(fake.received.at(-1)!.body, { stream_options: { include_usage: true } }, 'asked upstream for billing');
  const withUsage = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say hello', stream: true, stream_options: { include_usage: true } });
  let last: OpenAI.Completion | null = null;
  for await (const c of withUsage) last = c;
  t.ok(last?.usage && last.usage.completion_tokens === FAKE_WORDS.length);
});

t.test('include_usage against a completion upstream that reports no usage: the usage chunk, with the gateway\'s count, last before [DONE]', async (t) => {
  const chunks: Array<OpenAI.Completion & { gateway?: { usage: { prompt_tokens: number; completion_tokens: number } } }> = [];
  for await (const c of await client.completions.create({ model: 'instruct-nousage', prompt: 'Say hello', stream: true, stream_options: { include_usage: true } })) chunks.push(c);
  const last = chunks.at(-1)!;
  t.same(last.choices, [], 'the last chunk is the usage chunk');
  t.equal(last.object, 'text_completion', 'a legacy completion\'s chunk, as the others');
  t.equal(last.id, chunks[0]!.id, 'with the stream\'s own id');
  t.equal(last.model, chunks[0]!.model, 'and model');
  t.ok(last.usage && last.usage.prompt_tokens > 0 && last.usage.completion_tokens > 0, `the counted usage (${JSON.stringify(last.usage)})`);
  t.equal(last.usage!.total_tokens, last.usage!.prompt_tokens + last.usage!.completion_tokens);
  t.same(last.gateway?.usage && [last.gateway.usage.prompt_tokens, last.gateway.usage.completion_tokens], [last.usage!.prompt_tokens, last.usage!.completion_tokens], 'the figures in it say the same count');
  t.equal(chunks.filter((c) => c.usage).length, 1, 'one usage chunk');
  t.equal(chunks.slice(0, -1).map((c) => c.choices[0]?.text ?? '').join(''), FAKE_WORDS.join(''), 'after the whole answer');
  const raw = await (await fetch(`${gw.baseURL}/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'instruct-nousage', prompt: 'Say hello', stream: true }) })).text();
  t.notMatch(raw, /"choices":\[\],"usage"/, 'none for a caller that did not ask');
  t.match(raw, /data: \[DONE\]\n\n$/);
});

t.test('a chat model is bridged: text_completion back, in a stream too; the ledger calls it completions', async (t) => {
  const { key } = await api.tenant(gw.masterKey, 1, undefined, ['inference', 'usage:read']);
  const tenant = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  const { data, response } = await tenant.completions.create({ model: 'anthropic/claude-haiku-4-5', prompt: 'What is a gateway?', max_tokens: 5 }).withResponse();
  t.equal(response.headers.get('x-gateway-decision'), 'sim/claude-haiku-4-5');
  t.equal(data.object, 'text_completion');
  t.match(data.id, /^cmpl-/);
  t.equal(data.choices[0]!.finish_reason, 'length');
  t.ok(data.choices[0]!.text.length > 0);
  t.equal(data.usage!.completion_tokens, 5);
  t.match((data as unknown as { gateway: object }).gateway, { served: 'sim/claude-haiku-4-5' }, 'the gateway object kept');
  const chunks: OpenAI.Completion[] = [];
  for await (const c of await tenant.completions.create({ model: 'anthropic/claude-haiku-4-5', prompt: 'What is a gateway?', max_tokens: 5, stream: true })) chunks.push(c);
  t.ok(chunks.every((c) => c.object === 'text_completion'));
  t.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), data.choices[0]!.text, 'the same answer streamed');
  t.equal(chunks.at(-1)!.choices[0]!.finish_reason, 'length');
  const defaulted = await tenant.completions.create({ model: 'anthropic/claude-haiku-4-5', prompt: 'Write a long essay about gateways and caches and routing' });
  t.ok(defaulted.usage!.completion_tokens <= 16, 'OpenAI\'s legacy default of 16 tokens');
  const rows = (await api.call('/v1/requests?limit=5', key)).json.data as Array<{ endpoint: string; charge_usd: number }>;
  t.ok(rows.length === 3 && rows.every((r) => r.endpoint === 'completions' && r.charge_usd > 0), JSON.stringify(rows.map((r) => r.endpoint)));
});

t.test('what a chat model cannot do is a 400 naming the parameter', async (t) => {
  for (const [body, param] of [
    [{ model: 'gpt-4.1-mini', prompt: ['a', 'b'] }, 'prompt'],
    [{ model: 'gpt-4.1-mini', prompt: [1, 2, 3] }, 'prompt'],
    [{ model: 'gpt-4.1-mini', prompt: 'a', echo: true }, 'echo'],
    [{ model: 'gpt-4.1-mini', prompt: 'a', logprobs: 2 }, 'logprobs'],
    [{ model: 'gpt-4.1-mini', prompt: 'a', suffix: 'z' }, 'suffix'],
    [{ model: 'gpt-4.1-mini', prompt: 'a', best_of: 3 }, 'best_of'],
    [{ model: 'text-embedding-3-small', prompt: 'a' }, 'model'],
    [{ model: 'gpt-4.1-mini' }, 'prompt'],
  ] as const) {
    const r = await api.admin('/v1/completions', body);
    t.equal(r.status, 400, JSON.stringify(body));
    t.equal(r.json.error.param, param);
  }
  const several = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: ['one', 'two'], max_tokens: 2 });
  t.equal(several.choices.length, 2, 'a completion model takes several prompts');
  const simmed = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: ['a', 'b', 'c'], n: 3, max_tokens: 5 }, { headers: { 'x-gateway-provider': 'sim' } });
  t.same(simmed.choices.map((c) => c.index), [0, 1, 2, 3, 4, 5, 6, 7, 8], 'the sim: n answers for each prompt, in order');
  t.equal(simmed.usage!.completion_tokens, 45);
});
