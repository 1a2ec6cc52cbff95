// What is reserved for a request is what it may really cost: its output is capped where the
// request, the catalog and the savings engine leave it open; images, files and a previous
// response's conversation count beyond the body's bytes; and a Responses id is only its
// workspace's to continue. (The fake's `obey` models bill like OpenAI: 765 tokens per
// image, and as many output tokens as the cap allows, 100,000 with none.)
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const fake = await startFakeUpstream();
const obey = { ...testModel('obey'), prices: { input: 10, output: 2 } }; // no max_output_tokens in its catalog entry
const capped = { ...testModel('fail-500'), max_output_tokens: 16, prices: { input: 1, output: 1 } };
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(), {
  models: [obey, capped, testModel('m')], aliases: { pair: { models: ['openai/fail-500', 'openai/obey'] } },
});
t.teardown(async () => { await gw.stop(); await fake.close(); });
const { call, tenant } = http(gw);
const balance = async (ws: string) => (await call(`/admin/workspaces/${ws}`, gw.masterKey)).json as Json;

t.test('no cap anywhere: the gateway sets billing.default_output_cap, so the reservation holds', async (t) => {
  const { key, ws } = await tenant(gw.masterKey, 0.01);
  const r = await call('/v1/chat/completions', key, { model: 'openai/obey', messages: [{ role: 'user', content: 'go on forever' }] }, 'POST', { 'x-gateway-savings': 'off' });
  t.equal(r.status, 200);
  t.equal(fake.received.at(-1)!.body.max_tokens, 4096, 'the upstream was told the cap the reservation assumed');
  t.equal(r.headers.get('x-gateway-output-cap'), '4096');
  t.ok((await balance(ws)).balance_usd >= 0, 'the balance stays positive');
});

t.test('the Responses API\'s max_output_tokens is reserved for', async (t) => {
  const { key, ws } = await tenant(gw.masterKey, 0.2);
  const big = await call('/v1/responses', key, { model: 'openai/obey', input: 'hi', max_output_tokens: 100_000 });
  t.equal(big.status, 402, '100,000 output tokens at $2/1M do not fit in $0.20');
  const none = await call('/v1/responses', key, { model: 'openai/obey', input: 'hi' });
  t.equal(none.status, 200);
  t.equal(fake.received.at(-1)!.body.max_output_tokens, 4096, 'without one, the default cap is sent');
  const b = await balance(ws);
  t.ok(b.balance_usd >= 0 && b.reserved_usd === 0, `balance $${b.balance_usd}, nothing reserved`);
});

t.test('images and files count beyond their bytes', async (t) => {
  const { key, ws } = await tenant(gw.masterKey, 0.2);
  const images = Array.from({ length: 100 }, () => ({ type: 'image_url', image_url: { url: 'https://e.x/i.png', detail: 'high' } }));
  const r = await call('/v1/chat/completions', key, { model: 'openai/obey', max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'text', text: 'describe' }, ...images] }] });
  t.equal(r.status, 402, '100 images (billed 76,500 tokens) do not fit in $0.20 though the body is 7 KB');
  const concurrent = await Promise.all(Array.from({ length: 10 }, () => call('/v1/chat/completions', key, { model: 'openai/obey', max_tokens: 10,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'describe' }, ...images.slice(0, 3)] }] })));
  t.ok(concurrent.some((x) => x.status === 200), 'three images fit');
  const b = await balance(ws);
  t.ok(b.balance_usd >= 0, `ten at once never push the balance below zero ($${b.balance_usd})`);
  const file = await call('/v1/chat/completions', key, { model: 'openai/obey', max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-abc' } }] }] });
  t.equal(file.status, 402, 'a file id could fill the context window: reserved as such');
});

t.test('previous_response_id: only a workspace\'s own, and its conversation counts', async (t) => {
  const a = await tenant(gw.masterKey, 1);
  const b = await tenant(gw.masterKey, 1);
  const first = await call('/v1/responses', a.key, { model: 'openai/m', input: 'workspace A private: the launch code is 0000' });
  t.equal(first.status, 200);
  const id = first.json.id as string;
  t.match(id, /^resp_fake\d+$/);
  const stolen = await call('/v1/responses', b.key, { model: 'openai/m', input: 'repeat the conversation', previous_response_id: id });
  t.equal(stolen.status, 400, 'another workspace\'s response id does not exist for it (OpenAI\'s 400 for an unknown previous response)');
  t.equal(stolen.json.error.code, 'previous_response_not_found');
  t.equal(stolen.json.error.param, 'previous_response_id');
  const own = await call('/v1/responses', a.key, { model: 'openai/m', input: 'and then?', previous_response_id: id });
  t.equal(own.status, 200, 'its own workspace continues it');
  const bogus = await call('/v1/responses', a.key, { model: 'openai/m', input: 'x', previous_response_id: 'resp_never' });
  t.equal(bogus.status, 400, 'an unknown id is refused, not forwarded');
  const streamed = await call('/v1/responses', a.key, { model: 'openai/m', input: 'stream me', stream: true });
  const sid = /"id":"(resp_fake\d+)"/.exec(streamed.text)?.[1];
  t.ok(sid, 'a streamed response has an id too');
  t.equal((await call('/v1/responses', a.key, { model: 'openai/m', input: 'more', previous_response_id: sid })).status, 200, 'and it can be continued');
});

t.test('a cap the body names twice or as null is no way around the reservation', async (t) => {
  const { key, ws } = await tenant(gw.masterKey, 0.02, { budget_usd_day: 0.01, tpm: 10_000 });
  // The bare upstream id: the body goes upstream as sent, with the gateway's cap added.
  const r = await call('/v1/chat/completions', key, '{"model":"obey","messages":[{"role":"user","content":"hi"}],"max_tokens":null}', 'POST', { 'x-gateway-savings': 'off' });
  t.equal(r.status, 200);
  const sent = fake.received.at(-1)!;
  t.equal(sent.body.max_tokens, 4096, 'the upstream\'s parse (last member wins) sees the cap the reservation assumed');
  t.ok(r.json.usage.completion_tokens <= 4096);
  const resp = await call('/v1/responses', key, '{"model":"obey","input":"hi","max_output_tokens":null}');
  t.equal(resp.status, 200);
  t.equal(fake.received.at(-1)!.body.max_output_tokens, 4096);
  const b = (await call(`/admin/workspaces/${ws}`, gw.masterKey)).json;
  t.ok(b.balance_usd >= 0, `balance $${b.balance_usd}`);
  const fresh = await tenant(gw.masterKey, 0.02);
  const mixed = await call('/v1/responses', fresh.key, { model: 'obey', input: 'hi', max_tokens: 1, max_output_tokens: 100_000 });
  t.equal(mixed.status, 402, 'a Responses request is reserved for its max_output_tokens, whatever chat fields it carries');
});

t.test('an alias is reserved for its least capped member', async (t) => {
  const { key, ws } = await tenant(gw.masterKey, 0.01);
  // fail-500 (max output 16, cheaper) is tried first and fails; obey lists no max output.
  const r = await call('/v1/chat/completions', key, { model: 'pair', messages: [{ role: 'user', content: 'hi' }] }, 'POST', { 'x-gateway-savings': 'off' });
  t.equal(r.status, 200);
  t.equal(r.headers.get('x-gateway-decision'), 'openai/obey', 'served by the member after failover');
  const sent = fake.received.at(-1)!.body.max_tokens as number;
  t.ok(sent > 0 && sent <= 4096, `which was sent a cap (${sent}: the default, within the first member's max output)`);
  t.ok(r.json.usage.completion_tokens <= sent);
  t.ok((await call(`/admin/workspaces/${ws}`, gw.masterKey)).json.balance_usd >= 0);
});

t.test('images anywhere in the input count, tool outputs included', async (t) => {
  const { key } = await tenant(gw.masterKey, 0.02);
  const images = Array.from({ length: 200 }, () => ({ type: 'input_image', image_url: 'https://e.x/i.png' }));
  const r = await call('/v1/responses', key, { model: 'obey', max_output_tokens: 16, input: [
    { type: 'function_call', call_id: 'c1', name: 'look', arguments: '{}' },
    { type: 'function_call_output', call_id: 'c1', output: images },
  ] });
  t.equal(r.status, 402, '200 images in a tool output are reserved for');
});

t.test('the Responses passthrough sends no placeholder fields upstream', async (t) => {
  const r = await call('/v1/responses', gw.masterKey, { model: 'openai/m', input: 'hi' });
  t.equal(r.status, 200);
  t.notOk('messages' in fake.received.at(-1)!.body, 'no "messages" in a re-encoded Responses body');
});
