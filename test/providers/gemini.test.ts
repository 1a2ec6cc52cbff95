// The OpenAI surface in front of Gemini (AI Studio, an API key) and Vertex AI (a service
// account's OAuth token), both a local fake checked by the official @google/genai SDK: text,
// SSE streams, function calls both ways, images, JSON schema output, n > 1, safety blocks,
// cached and thinking tokens in usage and cost, failover from Gemini to Vertex, errors,
// aborts, and the token's exchange and refresh, all seen through the official `openai` SDK.
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import t from 'tap';
import { GEMINI_KEY, GEMINI_WORDS, THOUGHT_SIGNATURE, startFakeGemini } from '../fakes/gemini-upstream.js';
import { startGateway, tempDataDir } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';
import { abortMidStream, answerText, eventually } from '../helpers/streams.js';

const fake = await startFakeGemini();
const dir = tempDataDir();
const keyFile = join(dir, 'service-account.json');
writeFileSync(keyFile, JSON.stringify(fake.serviceAccount));
const badKeyFile = join(dir, 'other-account.json');
writeFileSync(badKeyFile, JSON.stringify({ ...fake.serviceAccount, private_key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }));
fake.tokenLifetime = 120; // inside the 5-minute window: the gateway refreshes it ahead, in the background

const prices = { input: 1.25, cached_input: 0.125, output: 10 };
const model = (slug: string, extra: object = {}) => ({ slug, upstream_id: slug.slice(slug.indexOf('/') + 1), context_window: 1048576, capabilities: ['tools', 'vision', 'json'], prices, ...extra });
const gw = await startGateway({
  // bare origins: the API's version path is added (a proxy's path prefix would be kept)
  SLUICE_SIM: 'off', GEMINI_API_KEY: GEMINI_KEY, GEMINI_BASE_URL: fake.url,
  GOOGLE_APPLICATION_CREDENTIALS: keyFile, VERTEX_BASE_URL: fake.url, VERTEX_LOCATION: 'europe-west4',
}, dir, {
  providers: { 'vertex-hang': { kind: 'vertex', credentials_file: keyFile, base_url: fake.url }, 'vertex-wait': { kind: 'vertex', credentials_file: keyFile, base_url: fake.url }, 'vertex-bad': { kind: 'vertex', credentials_file: badKeyFile, base_url: `${fake.url}/v1` }, 'gemini-badkey': { kind: 'gemini', api_key: 'wrong', base_url: `${fake.url}/v1beta` } },
  models: [
    model('gemini/gemini-test'), model('gemini/fail-400'), model('gemini/blocked'), model('gemini/unsafe'), model('gemini/slow-stream'),
    model('gemini/huge-event'), model('gemini/finish-linger'), model('gemini/cached-over'),
    model('gemini/cut-stream'), model('gemini/bad-part'), model('gemini/parallel-calls'), model('gemini/no-usage'),
    model('gemini/error-first', { routes: [{ provider: 'vertex', upstream_id: 'gemini-test', prices: { ...prices, output: 11 } }] }),
    model('gemini/fail-429', { routes: [{ provider: 'vertex', upstream_id: 'gemini-test', prices: { ...prices, output: 11 } }] }),
    model('vertex-hang/gemini-v'), model('vertex-wait/gemini-v'), model('vertex/gemini-v', { prices: { input: 0.3, cached_input: 0.03, cache_write: 0.11333, output: 2.5 } }), model('vertex-bad/gemini-v'), model('gemini-badkey/gemini-test'),
    model('gemini/uncacheable'), model('gemini/gemini-cached', { prices: { input: 0.3, cached_input: 0.03, cache_write: 0.11333, output: 2.5 } }),
  ],
});
t.teardown(async () => { await gw.stop(); await fake.close(); });
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'], additionalProperties: false } } }];
const last = () => fake.received.at(-1)!;

t.test('non-stream: text, system instruction, settings, usage with cached and thinking tokens, cost', async (t) => {
  const { data, response } = await client.chat.completions.create({ model: 'gemini/gemini-test', max_tokens: 100, temperature: 0.3, top_p: 0.9, stop: ['END'], seed: 7,
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }] }).withResponse();
  t.equal(data.choices[0]?.message.content, GEMINI_WORDS.join(''), 'thought parts are not the answer');
  t.equal(data.choices[0]?.finish_reason, 'stop');
  const sent = last();
  t.match(sent, { api: 'gemini', path: '/v1beta/models/gemini-test:generateContent' });
  t.equal(sent.headers['x-goog-api-key'], GEMINI_KEY);
  t.same(sent.body.systemInstruction, { parts: [{ text: 'Be brief.' }] });
  t.same(sent.body.contents, [{ role: 'user', parts: [{ text: 'Hi' }] }]);
  t.same(sent.body.generationConfig, { maxOutputTokens: 100, temperature: 0.3, topP: 0.9, seed: 7, stopSequences: ['END'] });
  const u = data.usage!;
  t.equal(u.prompt_tokens_details?.cached_tokens, 4, 'cachedContentTokenCount');
  t.equal(u.completion_tokens, GEMINI_WORDS.length + 3, 'thinking tokens are billed output');
  t.equal(u.completion_tokens_details?.reasoning_tokens, 3);
  const expected = ((u.prompt_tokens - 4) * 1.25 + 4 * 0.125 + u.completion_tokens * 10) / 1e6;
  t.ok(Math.abs(Number(response.headers.get('x-gateway-cost-usd')) - expected) < 1e-9, `cost ${response.headers.get('x-gateway-cost-usd')} = ${expected}`);
  t.equal(response.headers.get('x-gateway-decision'), 'gemini/gemini-test');
});

t.test('stream: SSE events into OpenAI chunks, a finish and one usage chunk', async (t) => {
  let text = '';
  let finish: string | null = null;
  const usages: number[] = [];
  for await (const c of await client.chat.completions.create({ model: 'gemini/gemini-test', messages: [{ role: 'user', content: 'Hi' }], stream: true, stream_options: { include_usage: true } })) {
    text += c.choices[0]?.delta.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
    if (c.usage) usages.push(c.usage.completion_tokens);
  }
  t.equal(text, GEMINI_WORDS.join(''));
  t.equal(finish, 'stop');
  t.same(usages, [GEMINI_WORDS.length + 3]);
  t.match(last(), { stream: true, path: '/v1beta/models/gemini-test:streamGenerateContent?alt=sse' });
});

t.test('tools: a function call and its response, stream and non-stream', async (t) => {
  const first = await client.chat.completions.create({ model: 'gemini/gemini-test', tools, tool_choice: { type: 'function', function: { name: 'get_weather' } }, messages: [{ role: 'user', content: 'Weather in Paris?' }] });
  const call = first.choices[0]?.message.tool_calls?.[0];
  t.equal(first.choices[0]?.finish_reason, 'tool_calls');
  if (!call || call.type !== 'function') { t.fail('no function call'); return; }
  t.equal(call.function.name, 'get_weather');
  t.same(JSON.parse(call.function.arguments), { location: 'Paris' });
  t.ok(call.id, 'the call has an id to answer');
  t.same(last().body.tools, [{ functionDeclarations: [{ name: 'get_weather', description: 'Weather for a city', parametersJsonSchema: tools[0]!.type === 'function' ? tools[0]!.function.parameters : {} }] }],
    'JSON Schema as sent (additionalProperties and all)');
  t.same(last().body.toolConfig, { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['get_weather'] } });

  let args = '';
  let name = '';
  let finish: string | null = null;
  for await (const c of await client.chat.completions.create({ model: 'gemini/gemini-test', tools, stream: true, messages: [{ role: 'user', content: 'Weather?' }] })) {
    const d = c.choices[0]?.delta.tool_calls?.[0];
    if (d?.function?.name) name = d.function.name;
    args += d?.function?.arguments ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  t.equal(name, 'get_weather');
  t.same(JSON.parse(args), { location: 'Paris' });
  t.equal(finish, 'tool_calls');

  for (const stream of [false, true]) {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [call] },
      { role: 'tool', tool_call_id: call.id, content: '{"sky":"clear"}' },
    ];
    const text = await answerText(client, { model: 'gemini/gemini-test', tools, messages }, stream);
    t.equal(text, 'It is sunny.');
    t.same(last().body.contents.slice(1), [
      { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { location: 'Paris' } }, thoughtSignature: THOUGHT_SIGNATURE }] },
      { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { sky: 'clear' } } }] },
    ], 'the call (with the thought signature it came with, carried in its id) and its response, named as Gemini needs');
  }
});

t.test('images: inline data and links', async (t) => {
  await client.chat.completions.create({ model: 'gemini/gemini-test', messages: [{ role: 'user', content: [
    { type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
    { type: 'image_url', image_url: { url: 'https://example.com/cat.webp' } },
  ] }] });
  t.same(last().body.contents[0].parts, [{ text: 'What is this?' }, { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } },
    { fileData: { mimeType: 'image/webp', fileUri: 'https://example.com/cat.webp' } }]);
});

t.test('JSON output by schema, and n > 1 as candidates', async (t) => {
  const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };
  const r = await client.chat.completions.create({ model: 'gemini/gemini-test', response_format: { type: 'json_schema', json_schema: { name: 'place', schema } }, messages: [{ role: 'user', content: 'Where?' }] });
  t.same(JSON.parse(r.choices[0]?.message.content ?? ''), { city: 'Paris' });
  t.match(last().body.generationConfig, { responseMimeType: 'application/json', responseJsonSchema: schema });
  const two = await client.chat.completions.create({ model: 'gemini/gemini-test', n: 2, messages: [{ role: 'user', content: 'Hi' }] });
  t.same(two.choices.map((c) => [c.index, c.message.content]), [[0, GEMINI_WORDS.join('')], [1, GEMINI_WORDS.join('')]]);
  t.equal(last().body.generationConfig.candidateCount, 2);
  const streamed = new Map<number, string>();
  for await (const c of await client.chat.completions.create({ model: 'gemini/gemini-test', n: 2, stream: true, messages: [{ role: 'user', content: 'Hi' }] })) {
    for (const ch of c.choices) streamed.set(ch.index, (streamed.get(ch.index) ?? '') + (ch.delta.content ?? ''));
  }
  t.same([...streamed.entries()], [[0, GEMINI_WORDS.join('')], [1, GEMINI_WORDS.join('')]], 'each candidate its own choice index in the stream');
});

t.test('safety: a blocked prompt is a 400 content_filter; a blocked answer finishes content_filter', async (t) => {
  const blocked = await client.chat.completions.create({ model: 'gemini/blocked', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(blocked instanceof OpenAI.BadRequestError && blocked.code === 'content_filter' && /SAFETY/.test(blocked.message), 'a clear 400');
  const unsafe = await client.chat.completions.create({ model: 'gemini/unsafe', messages: [{ role: 'user', content: 'x' }] });
  t.equal(unsafe.choices[0]?.finish_reason, 'content_filter');
  const err = await (async () => { for await (const _ of await client.chat.completions.create({ model: 'gemini/blocked', stream: true, messages: [{ role: 'user', content: 'x' }] })) { /* drain */ } })().catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.APIError && /SAFETY/.test(err.message), 'in a stream, an error event the SDK raises');
});

t.test('a rate-limited Gemini fails over to Vertex; a bad request is the caller\'s 400', async (t) => {
  const { data, response } = await client.chat.completions.create({ model: 'gemini/fail-429', messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  t.equal(data.choices[0]?.message.content, GEMINI_WORDS.join(''));
  t.equal(response.headers.get('x-gateway-decision'), 'vertex/gemini-test');
  t.equal(response.headers.get('x-gateway-retries'), '1');
  const bad = await client.chat.completions.create({ model: 'gemini/fail-400', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(bad instanceof OpenAI.BadRequestError && /contents is not specified/.test(bad.message));
  t.equal((bad as InstanceType<typeof OpenAI.APIError>).code, 'INVALID_ARGUMENT', 'Google\'s status as the code');
});

t.test('Vertex: a token from the service account, kept, refreshed ahead of expiry; paths by project and location', async (t) => {
  const grants = fake.grants.accepted;
  const first = await client.chat.completions.create({ model: 'vertex/gemini-v', messages: [{ role: 'user', content: 'Hi' }] });
  t.equal(first.choices[0]?.message.content, GEMINI_WORDS.join(''));
  const sent = last();
  t.match(sent, { api: 'vertex', path: '/v1/projects/fake-project/locations/europe-west4/publishers/google/models/gemini-v:generateContent' });
  t.match(String(sent.headers.authorization), /^Bearer ya29\.fake-token-\d+$/);
  let text = '';
  for await (const c of await client.chat.completions.create({ model: 'vertex/gemini-v', stream: true, messages: [{ role: 'user', content: 'Hi' }] })) text += c.choices[0]?.delta.content ?? '';
  t.equal(text, GEMINI_WORDS.join(''));
  // 120 s tokens are inside the refresh window: a request goes with the token it has and a new one is fetched behind it
  t.ok(await eventually(() => fake.grants.accepted >= grants + 2), 'refreshed in the background');
  await client.chat.completions.create({ model: 'vertex/gemini-v', messages: [{ role: 'user', content: 'Hi' }] });
  t.not(last().headers.authorization, sent.headers.authorization, 'later requests carry the new token');
});

t.test('Vertex with a key Google does not accept: a 502 naming the credentials, nothing sent to the model', async (t) => {
  const before = fake.received.length;
  const err = await client.chat.completions.create({ model: 'vertex-bad/gemini-v', messages: [{ role: 'user', content: 'Hi' }] }).catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.APIError && err.status === 502 && err.code === 'upstream_auth_error', `502 upstream_auth_error (${String(err)})`);
  t.match((err as Error).message, /access token/);
  t.equal(fake.received.length, before);
});

t.test('an aborted stream closes the upstream connection', async (t) => {
  t.ok(await abortMidStream(client, 'gemini/slow-stream', () => last().aborted), 'the upstream saw its client go away before the answer finished');
});

t.test('a Gemini key Google refuses (its 400 API_KEY_INVALID) is the operator\'s 502, not the caller\'s 400', async (t) => {
  const err = await client.chat.completions.create({ model: 'gemini-badkey/gemini-test', messages: [{ role: 'user', content: 'Hi' }] }).catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.APIError && err.status === 502 && err.code === 'upstream_auth_error', String(err));
  t.match((err as Error).message, /operator must fix its provider key/);
});

t.test('/v1/providers and /v1/models show the Google routes and their prices', async (t) => {
  const providers = await (await fetch(`${gw.baseURL}/providers`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).json() as { data: Array<{ id: string; kind: string }> };
  t.match(providers.data.find((p) => p.id === 'gemini'), { kind: 'gemini' });
  t.match(providers.data.find((p) => p.id === 'vertex'), { kind: 'vertex' });
  const models = await client.models.list();
  const flash = models.data.find((m) => m.id === 'gemini/gemini-2.5-flash') as unknown as { pricing: { input: number; cached_input: number; output: number }; routes: Array<{ decision: string }> };
  t.match(flash.pricing, { input: 0.3, cached_input: 0.03, output: 2.5 }, 'the built-in catalog prices Gemini');
  t.same(flash.routes.map((r) => r.decision), ['gemini/gemini-2.5-flash', 'vertex/gemini-2.5-flash'], 'served by AI Studio, then Vertex');
  t.same((flash.routes as unknown as Array<{ region: string | null }>).map((r) => r.region), [null, 'europe-west4'], 'the Vertex route is in its location');
});

t.test('context caching: a long stable head sent twice is cached upstream; the creator pays the write, later requests the cached price', async (t) => {
  const system = 'You are a meticulous support assistant for a large retailer; answer precisely. '.repeat(250);
  const ask = (model: string, content: string) => client.chat.completions.create({ model, temperature: 0.7,
    messages: [{ role: 'system', content: system }, { role: 'user', content }] }).withResponse();
  const row = async (id: string | null) => (await fetch(`${gw.baseURL}/requests/${id}`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).json() as Promise<{ prompt_tokens: number; cached_tokens: number; cache_write_tokens: number; completion_tokens: number; cost_usd: number }>;
  const caches = fake.caches.size;

  const first = await ask('gemini/gemini-cached', 'Where is my parcel?');
  t.ok(first.data.choices[0]?.message.content);
  t.equal(fake.caches.size, caches, 'one sighting is no pattern: nothing cached');
  t.ok(last().body.systemInstruction && !last().body.cachedContent, 'the head went as it was');

  const second = await ask('gemini/gemini-cached', 'Can I change the delivery address?');
  t.equal(fake.caches.size, caches + 1, 'the second sighting created a cache');
  const [name, cache] = [...fake.caches.entries()].at(-1)!;
  t.equal(cache.model, 'models/gemini-cached');
  t.equal(last().body.cachedContent, name, 'and the request named it');
  t.notOk(last().body.systemInstruction, 'instead of sending the head');
  const written = await row(second.response.headers.get('x-request-id'));
  t.equal(written.cache_write_tokens, cache.tokens, 'the creator\'s row: the head\'s tokens written');
  t.equal(written.cached_tokens, 0);
  const writeCost = ((written.prompt_tokens - cache.tokens) * 0.3 + cache.tokens * 0.11333 + written.completion_tokens * 2.5) / 1e6;
  t.ok(Math.abs(Number(second.response.headers.get('x-gateway-cost-usd')) - writeCost) < 1e-9, 'billed at cache_write (the read plus five minutes of storage)');

  let text = '';
  const third = await client.chat.completions.create({ model: 'gemini/gemini-cached', temperature: 0.7, stream: true,
    messages: [{ role: 'system', content: system }, { role: 'user', content: 'What is your returns policy?' }] }).withResponse();
  for await (const c of third.data) text += c.choices[0]?.delta.content ?? '';
  t.ok(text);
  t.equal(last().body.cachedContent, name, 'a later request (a stream) names the same cache');
  t.equal(fake.caches.size, caches + 1, 'no second cache');
  const read = await row(third.response.headers.get('x-request-id'));
  t.equal(read.cached_tokens, cache.tokens, 'its row: the head read from the cache');
  t.equal(read.cache_write_tokens, 0);

  // Vertex: the same, under the project and location
  await ask('vertex/gemini-v', 'Where is my parcel?');
  await ask('vertex/gemini-v', 'Can I change the delivery address?');
  const [vname, vcache] = [...fake.caches.entries()].at(-1)!;
  t.match(vname, /^projects\/fake-project\/locations\/europe-west4\/cachedContents\//);
  t.equal(vcache.model, 'projects/fake-project/locations/europe-west4/publishers/google/models/gemini-v');
  t.equal(last().body.cachedContent, vname);

  // A short head is never cached; nor is one with prompt caching off for the request
  const before = fake.caches.size;
  for (const q of ['Hi there', 'Hello again']) await client.chat.completions.create({ model: 'gemini/gemini-cached', temperature: 0.7, messages: [{ role: 'system', content: 'Short.' }, { role: 'user', content: q }] });
  for (const q of ['Is the store open?', 'When does it close?']) {
    await client.chat.completions.create({ model: 'gemini/gemini-cached', temperature: 0.7, messages: [{ role: 'system', content: `${system} Other.` }, { role: 'user', content: q }] }, { headers: { 'x-gateway-savings': 'off' } });
  }
  t.equal(fake.caches.size, before, 'no cache for a short head, or with savings off');
});

t.test('a cache creation Google refuses never fails the request', async (t) => {
  const before = fake.caches.size;
  // the fake refuses caches for this model, as Gemini does a head under its minimum
  const system = 'You are a meticulous support assistant for a large retailer; answer precisely. '.repeat(250);
  for (const q of ['First?', 'Second?', 'Third?']) {
    const r = await client.chat.completions.create({ model: 'gemini/uncacheable', temperature: 0.7, messages: [{ role: 'system', content: system }, { role: 'user', content: q }] });
    t.ok(r.choices[0]?.message.content, `${q} answered`);
    t.ok(last().body.systemInstruction, 'with the head sent as it was');
  }
  t.equal(fake.caches.size, before);
});

t.test('a token endpoint that never answers: the waiting request fails in bounded time, and the next exchange starts afresh', async (t) => {
  fake.tokenHang = true;
  const started = Date.now();
  const err = await client.chat.completions.create({ model: 'vertex-hang/gemini-v', messages: [{ role: 'user', content: 'Hi' }] }).catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.APIError && err.status === 502 && err.code === 'upstream_auth_error', String(err));
  t.ok(Date.now() - started < 30_000, 'bounded by the exchange\'s timeout, not the client\'s');
  fake.tokenHang = false;
  const ok = await client.chat.completions.create({ model: 'vertex-hang/gemini-v', messages: [{ role: 'user', content: 'Hi' }] });
  t.equal(ok.choices[0]?.message.content, GEMINI_WORDS.join(''), 'the next request gets a token');
});

t.test('hostile answers: an error first fails over, a cut stream is an error, a bad part is skipped, no usage is estimated', async (t) => {
  let text = '';
  const first = await client.chat.completions.create({ model: 'gemini/error-first', stream: true, messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  for await (const c of first.data) text += c.choices[0]?.delta.content ?? '';
  t.equal(text, GEMINI_WORDS.join(''));
  t.equal(first.response.headers.get('x-gateway-decision'), 'vertex/gemini-test', 'RESOURCE_EXHAUSTED before any content: the next route served');

  const cut = await (async () => { for await (const _ of await client.chat.completions.create({ model: 'gemini/cut-stream', stream: true, messages: [{ role: 'user', content: 'Hi' }] })) { /* drain */ } })().catch((e: unknown) => e);
  t.ok(cut instanceof OpenAI.APIError && /ended before the model finished/.test(cut.message), `a cut stream is an error (${String(cut)})`);

  let kept = '';
  for await (const c of await client.chat.completions.create({ model: 'gemini/bad-part', stream: true, messages: [{ role: 'user', content: 'Hi' }] })) kept += c.choices[0]?.delta.content ?? '';
  t.equal(kept, 'Kept.', 'a part that does not fit is skipped, the rest of the event kept');

  const { response } = await client.chat.completions.create({ model: 'gemini/no-usage', messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  const row = await (await fetch(`${gw.baseURL}/requests/${response.headers.get('x-request-id')}`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).json() as { usage_source: string; cost_usd: number };
  t.equal(row.usage_source, 'estimate');
  t.ok(row.cost_usd > 0, 'estimated, not free');
});

t.test('parallel calls in separate events: distinct ids, and each result goes back under its own name', async (t) => {
  const calls: Array<{ id: string; name: string }> = [];
  for await (const c of await client.chat.completions.create({ model: 'gemini/parallel-calls', tools, stream: true, messages: [{ role: 'user', content: 'Weather and time?' }] })) {
    for (const d of c.choices[0]?.delta.tool_calls ?? []) if (d.id) calls.push({ id: d.id, name: d.function?.name ?? '' });
  }
  t.same(calls.map((c) => c.name), ['get_weather', 'get_time']);
  t.not(calls[0]!.id, calls[1]!.id);
  await client.chat.completions.create({ model: 'gemini/parallel-calls', tools, messages: [
    { role: 'user', content: 'Weather and time?' },
    { role: 'assistant', content: null, tool_calls: calls.map((c) => ({ id: c.id, type: 'function' as const, function: { name: c.name, arguments: '{}' } })) },
    { role: 'tool', tool_call_id: calls[0]!.id, content: 'sunny' },
    { role: 'tool', tool_call_id: calls[1]!.id, content: '10:00' },
  ] });
  t.same(last().body.contents[2].parts.map((p: { functionResponse: { name: string } }) => p.functionResponse.name), ['get_weather', 'get_time']);
});

t.test('a client that leaves while the Vertex token is awaited owes nothing: nothing was sent', async (t) => {
  const { tenant } = http(gw);
  const ten = await tenant(gw.masterKey, 1, undefined, ['inference', 'usage:read']);
  fake.tokenHang = true;
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 300);
  const tenantClient = new OpenAI({ baseURL: gw.baseURL, apiKey: ten.key, maxRetries: 0 });
  await tenantClient.chat.completions.create({ model: 'vertex-wait/gemini-v', messages: [{ role: 'user', content: 'Hi' }] }, { signal: ac.signal }).catch(() => null);
  fake.tokenHang = false;
  let row: { status: number; charge_usd: number } | undefined;
  for (let i = 0; i < 50 && !row; i++) {
    const list = await (await fetch(`${gw.baseURL}/requests`, { headers: { authorization: `Bearer ${ten.key}` } })).json() as { data: Array<{ status: number; charge_usd: number }> };
    row = list.data[0];
    if (!row) await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(row?.status, 499);
  t.equal(row?.charge_usd, 0, 'no charge');
});

t.test('a cache is named only for the very same head; one gone early is forgotten, and the request still answered', async (t) => {
  const system = 'You are a careful travel agent who books trains across Europe; answer precisely. '.repeat(250);
  const ask = (content: string, note?: string) => client.chat.completions.create({ model: 'gemini/gemini-cached', temperature: 0.7,
    messages: [{ role: 'system', content: system }, { role: 'user', content }, ...(note ? [{ role: 'system' as const, content: note }] : [])] }).withResponse();
  await ask('Trains to Lyon?', 'The user is Alice.');
  await ask('Trains to Nice?', 'The user is Alice.');
  const name = last().body.cachedContent as string;
  t.ok(name, 'the head with Alice\'s note is cached');
  await ask('Trains to Turin?', 'The user is Bob, an admin.');
  t.notOk(last().body.cachedContent, 'a head that differs anywhere (a later system note) never names that cache');
  t.match(JSON.stringify(last().body.systemInstruction), /Bob, an admin/, 'and goes as it is');

  fake.caches.get(name)!.expires = 0; // gone upstream before its time
  const { data, response } = await ask('Trains to Milan?', 'The user is Alice.');
  t.ok(data.choices[0]?.message.content, 'answered');
  t.equal(response.headers.get('x-gateway-retries'), '1', 'after one retry');
  t.not(last().body.cachedContent, name, 'without the cache that is gone');
  const after = await ask('Trains to Rome?', 'The user is Alice.');
  t.ok(after.data.choices[0]?.message.content, 'and the head goes on being served');
});

t.test('an event that never closes is refused past its bound; a finished answer ends though the upstream lingers; impossible usage is estimated', async (t) => {
  const huge = await (async () => { for await (const _ of await client.chat.completions.create({ model: 'gemini/huge-event', stream: true, messages: [{ role: 'user', content: 'Hi' }] })) { /* drain */ } })().catch((e: unknown) => e);
  t.ok(huge instanceof OpenAI.APIError && huge.status === 502 && huge.code === 'upstream_bad_answer', String(huge));
  const started = Date.now();
  let text = '';
  const lingering = await client.chat.completions.create({ model: 'gemini/finish-linger', stream: true, messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  for await (const c of lingering.data) text += c.choices[0]?.delta.content ?? '';
  t.equal(text, GEMINI_WORDS.join(''));
  t.ok(Date.now() - started < 5000, 'not held until the body timeout');
  const rowOf = async (id: string | null) => (await fetch(`${gw.baseURL}/requests/${id}`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).json() as Promise<{ status: number; usage_source: string; cost_usd: number }>;
  t.match(await rowOf(lingering.response.headers.get('x-request-id')), { status: 200, usage_source: 'upstream' });
  const over = await client.chat.completions.create({ model: 'gemini/cached-over', stream: true, messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  for await (const _ of over.data) { /* drain */ }
  const row = await rowOf(over.response.headers.get('x-request-id'));
  t.equal(row.usage_source, 'estimate', 'a cached count over the prompt is not believed');
  t.ok(row.cost_usd < 0.001, `billed as estimated (${row.cost_usd})`);
});

t.test('Vertex, the same adapter on its own paths: tools both ways, images and JSON output', async (t) => {
  const first = await client.chat.completions.create({ model: 'vertex/gemini-v', tools, messages: [{ role: 'user', content: 'Weather in Paris?' }] });
  const call = first.choices[0]?.message.tool_calls?.[0];
  if (!call || call.type !== 'function') { t.fail('no call'); return; }
  t.match(last(), { api: 'vertex', body: { tools: [{ functionDeclarations: [{ name: 'get_weather' }] }] } });
  for (const stream of [false, true]) {
    const text = await answerText(client, { model: 'vertex/gemini-v', tools, messages: [
      { role: 'user', content: 'Weather in Paris?' }, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: call.id, content: '{"sky":"clear"}' }] }, stream);
    t.equal(text, 'It is sunny.', `after the tool result (${stream ? 'stream' : 'non-stream'})`);
  }
  await client.chat.completions.create({ model: 'vertex/gemini-v', messages: [{ role: 'user', content: [{ type: 'text', text: 'What?' }, { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,/9j/4AAQ' } }] }] });
  t.same(last().body.contents[0].parts[1], { inlineData: { mimeType: 'image/jpeg', data: '/9j/4AAQ' } });
  const json = await client.chat.completions.create({ model: 'vertex/gemini-v', response_format: { type: 'json_schema', json_schema: { name: 'place', schema: { type: 'object', properties: { city: { type: 'string' } } } } }, messages: [{ role: 'user', content: 'Where?' }] });
  t.same(JSON.parse(json.choices[0]?.message.content ?? ''), { city: 'Paris' });
});

t.test('embeddings: batchEmbedContents on Gemini (the input counted by the gateway), predict on Vertex (its counts), through the openai SDK', async (t) => {
  const { data, response } = await client.embeddings.create({ model: 'gemini/gemini-embedding-001', input: ['first text', 'second'], dimensions: 6 }).withResponse();
  t.equal(response.headers.get('x-gateway-decision'), 'gemini/gemini-embedding-001');
  t.equal(data.data.length, 2);
  t.equal(data.data[1]!.embedding.length, 6, 'dimensions as outputDimensionality, base64 decoded by the SDK');
  const sent = fake.received.at(-1)!;
  t.match(sent, { api: 'gemini', path: '/v1beta/models/gemini-embedding-001:batchEmbedContents' });
  t.same(sent.body.requests.map((r: { content: { parts: Array<{ text: string }> } }) => r.content.parts[0]!.text), ['first text', 'second']);
  const gateway = (data as unknown as { gateway: { usage: { prompt_tokens: number } } }).gateway;
  t.ok(gateway.usage.prompt_tokens > 0, 'AI Studio counts nothing: the gateway counted the input');
  const vertex = await client.embeddings.create({ model: 'gemini/gemini-embedding-001', input: 'a text to embed', encoding_format: 'float' }, { headers: { 'x-gateway-provider': 'vertex' } });
  t.match(fake.received.at(-1)!, { api: 'vertex', path: /publishers\/google\/models\/gemini-embedding-001:predict$/ });
  t.equal(vertex.usage.prompt_tokens, 'a text to embed'.length >> 2, 'Vertex\'s own count');
  const tokens = await client.embeddings.create({ model: 'gemini/gemini-embedding-001', input: [1, 2, 3] }).catch((e: unknown) => e);
  t.ok(tokens instanceof OpenAI.BadRequestError && tokens.param === 'input', 'token ids are a 400 on Google\'s routes');
});
