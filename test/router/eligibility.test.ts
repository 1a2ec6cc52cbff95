// Route eligibility before anything goes upstream: capabilities the request needs, the
// context window against the tokenized prompt, and aliases ordered by their policy.
import OpenAI from 'openai';
import t from 'tap';
import { startGateway, tempDataDir } from '../helpers/gateway.js';

const gw = await startGateway({ SLUICE_SIM: 'on' }, tempDataDir(), {
  sim: { ttft_ms: 0, tokens_per_second: 5000 },
  models: [{ slug: 'openai/tiny', upstream_id: 'tiny', context_window: 60, capabilities: ['json'], prices: { input: 0.01, output: 0.02 } }],
  aliases: { fast: { models: ['openai/gpt-4.1-mini', 'openai/gpt-4.1-nano'], policy: 'cost' }, small: { models: ['openai/tiny', 'openai/gpt-4.1-nano'], policy: 'cost' } },
});
t.teardown(() => gw.stop());
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
const fail = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e as InstanceType<typeof OpenAI.APIError>);

t.test('capabilities a model lacks are refused with the param named', async (t) => {
  const tools = await fail(client.chat.completions.create({ model: 'openai/tiny', messages: [{ role: 'user', content: 'x' }],
    tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} } } }] }));
  t.equal(tools?.status, 400);
  t.equal(tools?.param, 'tools');
  const vision = await fail(client.chat.completions.create({ model: 'openai/tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }] }));
  t.equal(vision?.param, 'messages');
  const ok = await client.chat.completions.create({ model: 'openai/tiny', max_tokens: 5, messages: [{ role: 'user', content: 'Hi' }], response_format: { type: 'json_object' } });
  t.ok(ok.choices[0], 'a capability it has is fine');
});

t.test('the context window is checked against the tokenized prompt', async (t) => {
  const long = await fail(client.chat.completions.create({ model: 'openai/tiny', messages: [{ role: 'user', content: 'word '.repeat(200) }] }));
  t.equal(long?.status, 400);
  t.equal(long?.code, 'context_length_exceeded');
  t.match(long?.message, /context window is 60 tokens; the messages use \d+/);
  const asked = await fail(client.chat.completions.create({ model: 'openai/tiny', max_tokens: 55, messages: [{ role: 'user', content: 'Hello there' }] }));
  t.equal(asked?.code, 'context_length_exceeded', 'the prompt plus max_tokens must fit');
  t.match(asked?.message, /max_tokens asks for 55 more.*lower max_tokens/);
  const byNewName = await fail(client.chat.completions.create({ model: 'openai/tiny', max_completion_tokens: 55, messages: [{ role: 'user', content: 'Hello there' }] }));
  t.match(byNewName?.message, /max_completion_tokens asks for 55 more.*lower max_completion_tokens/, 'the message names the field the request set');
  const fits = await client.chat.completions.create({ model: 'openai/tiny', max_tokens: 20, messages: [{ role: 'user', content: 'Hello there' }] });
  t.ok(fits.choices[0], 'a short prompt with a small max_tokens fits');
});

t.test('the Responses API bridged: a refusal names the caller\'s field (input, max_output_tokens), not the chat body\'s', async (t) => {
  const vision = await fail(client.responses.create({ model: 'openai/tiny', input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'auto' }] }] }));
  t.equal(vision?.status, 400);
  t.equal(vision?.param, 'input');
  const long = await fail(client.responses.create({ model: 'openai/tiny', input: 'word '.repeat(200) }));
  t.equal(long?.code, 'context_length_exceeded');
  t.equal(long?.param, 'input');
});

t.test('an alias serves its cheapest route under the cost policy', async (t) => {
  const { response } = await client.chat.completions.create({ model: 'fast', messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  t.equal(response.headers.get('x-gateway-decision'), 'sim/gpt-4.1-nano');
});

t.test('an alias: its cheapest model that can take the request serves (capabilities, context window); none: refused', async (t) => {
  const plain = await client.chat.completions.create({ model: 'small', max_tokens: 5, messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  t.equal(plain.response.headers.get('x-gateway-decision'), 'sim/tiny', 'the cheapest, when it can');
  const image = await client.chat.completions.create({ model: 'small', max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'text', text: 'what is it?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] }] }).withResponse();
  t.equal(image.response.headers.get('x-gateway-decision'), 'sim/gpt-4.1-nano', 'an image: the next model, which sees (the cheapest does not)');
  const long = await client.chat.completions.create({ model: 'small', max_tokens: 5, messages: [{ role: 'user', content: 'word '.repeat(200) }] }).withResponse();
  t.equal(long.response.headers.get('x-gateway-decision'), 'sim/gpt-4.1-nano', 'a prompt beyond the cheapest\'s window: the next, whose window fits');
  const rows = await Promise.all([image, long].map((r) => fetch(`${gw.baseURL}/requests/${r.response.headers.get('x-request-id')}`, { headers: { authorization: `Bearer ${gw.masterKey}` } }).then((x) => x.json() as Promise<{ served: string; retries: number }>)));
  t.same(rows.map((r) => [r.served, r.retries]), [['sim/gpt-4.1-nano', 0], ['sim/gpt-4.1-nano', 0]], 'chosen before anything went upstream: no retry');
  const huge = await fail(client.chat.completions.create({ model: 'small', max_tokens: 5, messages: [{ role: 'user', content: 'word '.repeat(20) }], max_completion_tokens: 10_000_000 } as OpenAI.ChatCompletionCreateParamsNonStreaming));
  t.equal(huge?.code, 'context_length_exceeded', 'fits no model: refused');
  t.match(huge?.message, /context window is 1047576 tokens/, 'by the widest window it may be served with');
});

t.test('built-in aliases: frontier and fast are there without config (a config alias of the same name replaces one)', async (t) => {
  const ids = (await client.models.list()).data.map((m) => m.id);
  t.ok(ids.includes('frontier') && ids.includes('fast'), 'listed');
  const frontier = await client.chat.completions.create({ model: 'frontier', max_tokens: 5, messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  t.match(frontier.response.headers.get('x-gateway-decision'), /^sim\/(gpt-5|gemini-2\.5-pro)$/, 'frontier: its cheapest member');
  const fast = await client.chat.completions.create({ model: 'fast', max_tokens: 5, messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  t.equal(fast.response.headers.get('x-gateway-decision'), 'sim/gpt-4.1-nano', 'this config\'s own fast, not the built-in');
  const plain = await startGateway({ SLUICE_SIM: 'on' }, tempDataDir());
  try {
    const c = new OpenAI({ baseURL: plain.baseURL, apiKey: plain.masterKey, maxRetries: 0 });
    const built = await c.chat.completions.create({ model: 'fast', max_tokens: 5, messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
    t.match(built.response.headers.get('x-gateway-decision'), /^sim\//, 'the built-in fast serves with no config');
  } finally { await plain.stop(); }
});

t.test('an alias naming a model that is not in the catalog stops the start with the field named', async (t) => {
  const err = await startGateway({ SLUICE_SIM: 'on' }, tempDataDir(), { aliases: { bad: { models: ['openai/nope'] } } }).then(() => '', (e: unknown) => String(e));
  t.match(err, /aliases\.bad: 'openai\/nope' is not in the catalog/);
});
