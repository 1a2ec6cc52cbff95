// Pricing and quotes: prices with the markup, a quote that sends nothing upstream, and a
// real charge inside the quote's bounds for the same request.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const request = (url: string, key: string, path: string, body?: unknown) => fetch(`${url}${path}`, {
  method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  ...(body === undefined ? {} : { body: JSON.stringify(body) }),
}).then(async (r) => ({ status: r.status, json: await r.json() as Json }));

t.test('a quote bounds the real charge of the same request (sim route)', async (t) => {
  const gw = await startGateway({ SLUICE_SIM: 'on' }, tempDataDir(), { billing: { markup: 0.25 }, sim: { ttft_ms: 0, tokens_per_second: 5000 } });
  t.teardown(() => gw.stop());
  const body = { model: 'openai/gpt-4.1-mini', max_tokens: 30, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Explain what a gateway does, in two sentences.' }] };
  const quote = await request(gw.url, gw.masterKey, '/v1/account/quote', body);
  t.equal(quote.status, 200);
  t.ok(quote.json.prompt_tokens > 10);
  t.same(quote.json.completion_tokens, { min: 0, max: 30 });
  const option = quote.json.options[0];
  t.equal(option.provider, 'sim');
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
  const { data, response } = await client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming).withResponse();
  t.equal(data.usage!.prompt_tokens, quote.json.prompt_tokens, 'the quote counted the prompt exactly');
  const charge = Number(response.headers.get('x-btl-customer-charge'));
  t.ok(charge >= option.charge_usd.min && charge <= option.charge_usd.max, `charge ${charge} within [${option.charge_usd.min}, ${option.charge_usd.max}]`);
  const pricing = await request(gw.url, gw.masterKey, '/v1/account/pricing');
  t.equal(pricing.status, 200);
  t.equal(pricing.json.markup, 0.25);
  const m = pricing.json.models.find((x: Json) => x.model === 'openai/gpt-4.1-mini');
  t.ok(Math.abs(m.your_prices.input - m.list_prices.input * 1.25) < 1e-9, 'prices with the markup');
  t.equal((await request(gw.url, gw.masterKey, '/v1/account/quote', { model: 'nope/nope', messages: body.messages })).status, 404);
  t.equal((await request(gw.url, gw.masterKey, '/v1/account/quote', { model: 'openai/gpt-4.1-mini' })).json.error.param, 'messages');
});

t.test('a quote sends nothing upstream', async (t) => {
  const fake = await startFakeUpstream();
  const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(), { models: [testModel('paid-model')] });
  t.teardown(async () => { await gw.stop(); await fake.close(); });
  const quote = await request(gw.url, gw.masterKey, '/v1/account/quote', { model: 'openai/paid-model', messages: [{ role: 'user', content: 'Hi' }] });
  t.equal(quote.status, 200);
  t.equal(quote.json.options[0].provider, 'openai');
  t.equal(fake.received.length, 0);
});
