// POST /v1/moderations through the pipeline with the official openai SDK: the sim's verdicts
// out of the box, OpenAI's passed through as bytes, the default model, free rows on the ledger.
import OpenAI from 'openai';
import t from 'tap';
import { startWithFakeOpenAI } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const { fake, gw } = await startWithFakeOpenAI(t.teardown);
const api = http(gw);
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });

t.test('the sim flags what it should, one result per string, in omni-moderation\'s shape', async (t) => {
  const sim = { headers: { 'x-gateway-provider': 'sim' } };
  const r = await client.moderations.create({ model: 'omni-moderation-latest', input: ['I will kill you', 'What a lovely day'] }, sim);
  t.equal(r.results.length, 2);
  t.equal(r.results[0]!.flagged, true);
  t.equal(r.results[0]!.categories.violence, true);
  t.ok(r.results[0]!.category_scores.violence > 0.9);
  t.equal(r.results[1]!.flagged, false);
  t.same(r.results[1]!.category_applied_input_types.violence, ['text']);
  const parts = await client.moderations.create({ model: 'omni-moderation-latest', input: [{ type: 'text', text: 'hello' }, { type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }, sim);
  t.equal(parts.results.length, 1, 'a list of parts is one input');
  t.same(parts.results[0]!.category_applied_input_types.violence, ['text', 'image']);
});

t.test('through OpenAI: no model means OpenAI\'s default; the verdict passes through; the row is free', async (t) => {
  const { key } = await api.tenant(gw.masterKey, 1, undefined, ['inference', 'usage:read']);
  const tenant = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  const { data, response } = await tenant.moderations.create({ input: 'attack at dawn' } as OpenAI.ModerationCreateParams).withResponse();
  t.equal(response.headers.get('x-gateway-decision'), 'openai/omni-moderation-latest');
  t.equal(data.results[0]!.flagged, true);
  t.equal(data.model, 'omni-moderation-latest-2024-09-26', 'the upstream\'s answer');
  t.equal(fake.received.at(-1)!.body.model, 'omni-moderation-latest', 'the default model is named upstream');
  const again = await tenant.moderations.create({ input: 'attack at dawn' } as OpenAI.ModerationCreateParams).withResponse();
  t.equal(again.response.headers.get('x-gateway-cache'), 'exact', 'the same input, the same verdict: from the cache');
  const rows = (await api.call('/v1/requests?limit=5', key)).json.data as Array<{ endpoint: string; charge_usd: number; prompt_tokens: number; status: number; cache: string; usage_source: string }>;
  t.ok(rows.length === 2 && rows.every((r) => r.endpoint === 'moderations' && r.charge_usd === 0 && r.status === 200));
  const miss = rows.find((r) => r.cache === 'miss')!;
  t.ok(miss.prompt_tokens > 0 && miss.usage_source === 'estimate', 'the input is counted by the gateway (OpenAI reports none), though free');
});

t.test('bad bodies and the wrong model type are 400s', async (t) => {
  t.equal((await api.admin('/v1/moderations', { input: [] })).json.error.param, 'input');
  t.equal((await api.admin('/v1/moderations', { input: 5 })).json.error.param, 'input');
  t.equal((await api.admin('/v1/moderations', { input: [{ type: 'audio' }] })).json.error.param, 'input');
  const wrong = await api.admin('/v1/moderations', { model: 'text-embedding-3-small', input: 'x' });
  t.equal(wrong.status, 400);
  t.match(wrong.json.error.message, /embedding model: it is served on \/v1\/embeddings, not on \/v1\/moderations/);
});
