// Stored responses with the official openai SDK: a bridged response (here on Anthropic) is
// kept by the gateway, so responses.retrieve returns it and previous_response_id continues
// it on any route; store: false keeps nothing; a passthrough response's retrieve and delete
// are relayed to the upstream that holds it; ids are per workspace; unknown ids are refused.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeAnthropic } from '../fakes/anthropic-upstream.js';
import { FAKE_WORDS, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const openai = await startFakeUpstream();
const anthropic = await startFakeAnthropic();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: openai.url, ANTHROPIC_API_KEY: 'sk-ant-fake', ANTHROPIC_BASE_URL: anthropic.url, SLUICE_SIM: 'off' }, tempDataDir(), {
  models: [testModel('gpt-x'), { slug: 'anthropic/claude-test', upstream_id: 'claude-test', context_window: 200000, prices: { input: 3, output: 15 } }],
});
t.teardown(async () => { await gw.stop(); await openai.close(); await anthropic.close(); });
const api = http(gw);
const { key } = await api.tenant(gw.masterKey, 1);
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });

const outputText = (r: OpenAI.Responses.Response) => r.output.flatMap((i) => (i.type === 'message' ? i.content : [])).map((c) => (c.type === 'output_text' ? c.text : '')).join('');

t.test('a bridged response is kept: retrieve returns it, previous_response_id continues it', async (t) => {
  const first = await client.responses.create({ model: 'anthropic/claude-test', instructions: 'Be brief.', input: 'My name is Ada.' });
  t.match(first.id, /^resp_/);
  const got = await client.responses.retrieve(first.id);
  t.equal(got.id, first.id);
  t.equal(got.status, 'completed');
  t.equal(outputText(got), outputText(first));
  t.notOk('gateway' in got, 'the stored object carries no per-request figures');
  const second = await client.responses.create({ model: 'anthropic/claude-test', input: 'What is my name?', previous_response_id: first.id });
  t.equal(second.previous_response_id, first.id);
  const sent = anthropic.received.at(-1)!.body;
  t.same(sent.messages.map((m: { role: string }) => m.role), ['user', 'assistant', 'user'], 'the previous turn and its answer go first');
  t.match(JSON.stringify(sent.messages[0]), /My name is Ada/);
  t.match(JSON.stringify(sent.messages[1]), new RegExp(outputText(first).slice(0, 10)));
  t.notOk(sent.system, 'instructions are not carried over from the previous response (as on OpenAI)');
  // A chain: the third continues the second, so it carries both earlier turns.
  await client.responses.create({ model: 'anthropic/claude-test', input: 'And again?', previous_response_id: second.id });
  t.equal(anthropic.received.at(-1)!.body.messages.length, 5);
});

t.test('a streamed bridged response is kept too', async (t) => {
  const stream = await client.responses.create({ model: 'anthropic/claude-test', input: 'Stream this.', stream: true });
  let id = '';
  for await (const e of stream) if (e.type === 'response.completed') id = e.response.id;
  t.match(id, /^resp_/);
  t.equal((await client.responses.retrieve(id)).status, 'completed');
});

t.test('store: false keeps nothing; delete forgets; unknown and foreign ids are refused', async (t) => {
  const unstored = await client.responses.create({ model: 'anthropic/claude-test', input: 'Forget me.', store: false });
  const missing = await client.responses.retrieve(unstored.id).catch((e: unknown) => e);
  t.ok(missing instanceof OpenAI.NotFoundError, 'not stored, not found');
  const cont = await client.responses.create({ model: 'anthropic/claude-test', input: 'x', previous_response_id: unstored.id }).catch((e: unknown) => e);
  t.ok(cont instanceof OpenAI.BadRequestError && cont.code === 'previous_response_not_found' && cont.param === 'previous_response_id', String(cont));
  const bogus = await client.responses.create({ model: 'anthropic/claude-test', input: 'x', previous_response_id: 'resp_bogus' }).catch((e: unknown) => e);
  t.ok(bogus instanceof OpenAI.BadRequestError && bogus.code === 'previous_response_not_found', 'a bogus id is a 400, never ignored');
  const kept = await client.responses.create({ model: 'anthropic/claude-test', input: 'Keep me.' });
  const other = new OpenAI({ baseURL: gw.baseURL, apiKey: (await api.tenant(gw.masterKey, 1)).key, maxRetries: 0 });
  t.ok(await other.responses.retrieve(kept.id).catch((e: unknown) => e) instanceof OpenAI.NotFoundError, 'another workspace\'s response does not exist for it');
  t.ok(await other.responses.delete(kept.id).catch((e: unknown) => e) instanceof OpenAI.NotFoundError, 'nor can it delete it');
  await client.responses.delete(kept.id);
  t.ok(await client.responses.retrieve(kept.id).catch((e: unknown) => e) instanceof OpenAI.NotFoundError, 'deleted');
});

t.test('passthrough: the caller\'s bytes go on untouched; retrieve and delete are relayed to the upstream', async (t) => {
  const body = { model: 'gpt-x', input: 'hello', store: true };
  const made = await client.responses.create(body);
  // (the model lists no max output, so billing.default_output_cap is spliced in: what is reserved is what may be generated)
  t.equal(openai.received.at(-1)!.raw, JSON.stringify({ ...body, max_output_tokens: 4096 }), 'the caller\'s bytes, no messages placeholder added');
  const got = await client.responses.retrieve(made.id);
  t.equal(got.id, made.id);
  t.equal(outputText(got), FAKE_WORDS.join(''));
  t.equal(openai.received.at(-1)!.headers.authorization, 'Bearer sk-fake-upstream', 'relayed with the gateway\'s credentials');
  await client.responses.delete(made.id);
  t.ok(await client.responses.retrieve(made.id).catch((e: unknown) => e) instanceof OpenAI.NotFoundError);
  // store: false keeps nothing here either: the id is unknown to a retrieve and to a continuation, as on OpenAI.
  const unstored = await client.responses.create({ model: 'gpt-x', input: 'forget me', store: false });
  const asked = openai.received.length;
  t.ok(await client.responses.retrieve(unstored.id).catch((e: unknown) => e) instanceof OpenAI.NotFoundError, 'store: false, passed through: not found');
  t.equal(openai.received.length, asked, 'and not relayed: the gateway knows it keeps nothing');
  const cont = await client.responses.create({ model: 'gpt-x', input: 'x', previous_response_id: unstored.id }).catch((e: unknown) => e);
  t.ok(cont instanceof OpenAI.BadRequestError && cont.code === 'previous_response_not_found', String(cont));
  // A member the Responses API does not have is ignored on the way through, `messages` included.
  const stray = await client.responses.create({ model: 'gpt-x', input: 'hi', messages: [] } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
  t.match(stray.id, /^resp_/, 'a stray messages member is ignored');
  const elsewhere = await client.responses.create({ model: 'anthropic/claude-test', input: 'x', previous_response_id: (await client.responses.create({ model: 'gpt-x', input: 'y' })).id }).catch((e: unknown) => e);
  t.ok(elsewhere instanceof OpenAI.BadRequestError && /kept by the upstream that made it/.test(elsewhere.message), 'an OpenAI-held conversation cannot continue on Anthropic: said, not ignored');
});
