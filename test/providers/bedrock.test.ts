// The OpenAI surface in front of Bedrock's Converse API (a local fake of it, checked by the
// official AWS SDK, which also recomputes every SigV4 signature): text, streams from binary
// event-stream frames, tools both ways, images, JSON output, cache-token usage and cost,
// failover on throttling, errors and aborts, all seen through the official `openai` SDK.
import OpenAI from 'openai';
import t from 'tap';
import { AWS_CREDENTIALS, BEDROCK_WORDS, startFakeBedrock } from '../fakes/bedrock-upstream.js';
import { startGateway, tempDataDir } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';
import { abortMidStream, answerText } from '../helpers/streams.js';

const east = await startFakeBedrock('us-east-1');
const west = await startFakeBedrock('us-west-2');
const frankfurt = await startFakeBedrock('eu-central-1');
const prices = { input: 3, cached_input: 0.3, cache_write: 3.75, output: 15 };
const model = (id: string, extra: object = {}) => ({ slug: `bedrock/${id}`, upstream_id: id, context_window: 200000, capabilities: ['tools', 'vision', 'json'], prices, ...extra });
const creds = { access_key_id: AWS_CREDENTIALS.accessKeyId, secret_access_key: AWS_CREDENTIALS.secretAccessKey };
const gw = await startGateway({ SLUICE_SIM: 'off' }, tempDataDir(), {
  providers: {
    bedrock: { kind: 'bedrock', base_url: east.url, region: 'us-east-1', ...creds },
    'bedrock-west': { kind: 'bedrock', base_url: west.url, region: 'us-west-2', ...creds },
    'bedrock-forged': { kind: 'bedrock', base_url: east.url, region: 'us-east-1', ...creds, secret_access_key: 'not-the-secret' },
    'bedrock-eu': { kind: 'bedrock', base_url: frankfurt.url, region: 'eu-central-1', ...creds },
  },
  models: [
    model('anthropic.claude-test-v1:0'), model('fail-validation'), model('slow-stream'), model('stream-throttled'),
    model('cut'), model('big-text'), model('no-usage'), model('huge-usage'), model('zero-usage'), model('linger'),
    model('throttle-first', { routes: [{ provider: 'bedrock-west', upstream_id: 'anthropic.claude-test-v1:0', prices: { ...prices, output: 16 } }] }),
    // throttled in us-east-1; the same model in us-west-2 (dearer, so tried second)
    { ...model('claude-forged'), slug: 'bedrock-forged/claude-forged' },
    // a route whose credentials AWS refuses, then a good one (dearer)
    { ...model('claude-forged'), slug: 'bedrock-forged/with-fallback', routes: [{ provider: 'bedrock', upstream_id: 'anthropic.claude-test-v1:0', prices: { ...prices, output: 16 } }] },
    // the catalog's US inference profile, called from Frankfurt
    { ...model('us.anthropic.claude-test-v1:0'), slug: 'bedrock-eu/claude-test' },
    model('fail-throttle', { routes: [{ provider: 'bedrock-west', upstream_id: 'anthropic.claude-test-v1:0', prices: { ...prices, output: 16 } }] }),
  ],
});
t.teardown(async () => { await gw.stop(); await east.close(); await west.close(); await frankfurt.close(); });
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
const MODEL = 'bedrock/anthropic.claude-test-v1:0';
const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } } }];

t.test('non-stream: text, system prompt, signed request, usage and cost headers', async (t) => {
  const { data, response } = await client.chat.completions.create({ model: MODEL, max_tokens: 100, temperature: 0.2, stop: ['END'],
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }] }).withResponse();
  t.equal(data.choices[0]?.message.content, BEDROCK_WORDS.join(''));
  t.equal(data.choices[0]?.finish_reason, 'stop');
  t.equal(data.usage?.completion_tokens, BEDROCK_WORDS.length);
  const sent = east.received.at(-1)!;
  t.ok(sent.signed, 'the gateway\'s SigV4 signature is the one the fake recomputes');
  t.equal(sent.path, '/model/anthropic.claude-test-v1%3A0/converse');
  t.same(sent.body.system, [{ text: 'Be brief.' }]);
  t.same(sent.body.messages, [{ role: 'user', content: [{ text: 'Hi' }] }]);
  t.same(sent.body.inferenceConfig, { maxTokens: 100, temperature: 0.2, stopSequences: ['END'] });
  t.equal(response.headers.get('x-gateway-decision'), 'bedrock/anthropic.claude-test-v1:0');
  const u = data.usage!;
  const expected = (u.prompt_tokens * 3 + u.completion_tokens * 15) / 1e6;
  t.ok(Math.abs(Number(response.headers.get('x-gateway-cost-usd')) - expected) < 1e-9, `cost ${response.headers.get('x-gateway-cost-usd')} is the usage at the catalog's prices (${expected})`);
});

t.test('stream: OpenAI chunks from binary event-stream frames cut at odd places', async (t) => {
  let text = '';
  let finish: string | null = null;
  const usages: number[] = [];
  for await (const c of await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], stream: true, stream_options: { include_usage: true } })) {
    text += c.choices[0]?.delta.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
    if (c.usage) usages.push(c.usage.completion_tokens);
  }
  t.equal(text, BEDROCK_WORDS.join(''));
  t.equal(finish, 'stop');
  t.same(usages, [BEDROCK_WORDS.length], 'one usage chunk, from the metadata event');
  t.match(east.received.at(-1)!, { stream: true, signed: true, path: '/model/anthropic.claude-test-v1%3A0/converse-stream' });
});

t.test('tools: a call and its result, stream and non-stream', async (t) => {
  const first = await client.chat.completions.create({ model: MODEL, tools, tool_choice: 'required', messages: [{ role: 'user', content: 'Weather in Paris?' }] });
  const call = first.choices[0]?.message.tool_calls?.[0];
  t.equal(first.choices[0]?.finish_reason, 'tool_calls');
  if (!call || call.type !== 'function') { t.fail('no function call'); return; }
  t.equal(call.function.name, 'get_weather');
  t.same(JSON.parse(call.function.arguments), { location: 'Paris' });
  t.same(east.received.at(-1)!.body.toolConfig, { tools: [{ toolSpec: { name: 'get_weather', description: 'Weather for a city', inputSchema: { json: tools[0]!.type === 'function' ? tools[0]!.function.parameters : {} } } }], toolChoice: { any: {} } });

  let args = '';
  let name = '';
  let id = '';
  for await (const c of await client.chat.completions.create({ model: MODEL, tools, stream: true, messages: [{ role: 'user', content: 'Weather?' }] })) {
    const d = c.choices[0]?.delta.tool_calls?.[0];
    if (d?.function?.name) name = d.function.name;
    if (d?.id) id = d.id;
    args += d?.function?.arguments ?? '';
  }
  t.equal(name, 'get_weather');
  t.equal(id, 'tooluse_fake1');
  t.same(JSON.parse(args), { location: 'Paris' }, 'toolUse input pieces assemble into the arguments');

  for (const stream of [false, true]) {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [call] },
      { role: 'tool', tool_call_id: call.id, content: '{"sky":"clear"}' },
    ];
    const text = await answerText(client, { model: MODEL, tools, messages }, stream);
    t.equal(text, 'It is sunny.', `the answer after the tool result (${stream ? 'stream' : 'non-stream'})`);
    const sent = east.received.at(-1)!.body;
    t.same(sent.messages[1], { role: 'assistant', content: [{ toolUse: { toolUseId: call.id, name: 'get_weather', input: { location: 'Paris' } } }] });
    t.same(sent.messages[2], { role: 'user', content: [{ toolResult: { toolUseId: call.id, content: [{ text: '{"sky":"clear"}' }] } }] });
  }
});

t.test('images: data URLs become image blocks; a link is a clear 400', async (t) => {
  await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: [
    { type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
  ] }] });
  t.same(east.received.at(-1)!.body.messages[0].content, [{ text: 'What is this?' }, { image: { format: 'png', source: { bytes: 'iVBORw0KGgo=' } } }]);
  const before = east.received.length;
  const link = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } }] }] }).catch((e: unknown) => e);
  t.ok(link instanceof OpenAI.BadRequestError && /data: URLs/.test(link.message), 'a link is refused, saying what Bedrock takes');
  t.equal(east.received.length, before, 'nothing was sent upstream');
});

t.test('JSON output: a forced tool whose input is the content, stream and non-stream', async (t) => {
  const schema = { type: 'object', properties: { city: { type: 'string' }, temperature_c: { type: 'number' } }, required: ['city', 'temperature_c'] };
  const response_format = { type: 'json_schema' as const, json_schema: { name: 'weather', schema, strict: true } };
  const r = await client.chat.completions.create({ model: MODEL, response_format, messages: [{ role: 'user', content: 'Weather in Paris as JSON' }] });
  t.same(JSON.parse(r.choices[0]?.message.content ?? ''), { city: 'Paris', temperature_c: 21 });
  t.equal(r.choices[0]?.finish_reason, 'stop');
  t.notOk(r.choices[0]?.message.tool_calls, 'the JSON tool is not shown as a tool call');
  t.match(east.received.at(-1)!.body.toolConfig, { tools: [{ toolSpec: { name: 'weather', inputSchema: { json: schema } } }], toolChoice: { tool: { name: 'weather' } } });
  let text = '';
  let finish: string | null = null;
  for await (const c of await client.chat.completions.create({ model: MODEL, response_format, stream: true, messages: [{ role: 'user', content: 'Weather in Paris as JSON' }] })) {
    text += c.choices[0]?.delta.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
    t.notOk(c.choices[0]?.delta.tool_calls, 'no tool_calls delta');
  }
  t.same(JSON.parse(text), { city: 'Paris', temperature_c: 21 });
  t.equal(finish, 'stop');
});

t.test('prompt caching: cache points on a long stable head, cached tokens billed at the cached price', async (t) => {
  const system = 'You are a meticulous assistant. '.repeat(200);
  const { data, response } = await client.chat.completions.create({ model: MODEL, max_tokens: 20, messages: [
    { role: 'system', content: system }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!' }, { role: 'user', content: 'Bye' },
  ] }).withResponse();
  const sent = east.received.at(-1)!.body;
  t.same(sent.system, [{ text: system }, { cachePoint: { type: 'default' } }], 'a cache point after the system prompt');
  t.same(sent.messages[1].content.at(-1), { cachePoint: { type: 'default' } }, 'and after the turn before the latest');
  const u = data.usage!;
  t.equal(u.prompt_tokens_details?.cached_tokens, 7);
  const expected = ((u.prompt_tokens - 7) * 3 + 7 * 0.3 + u.completion_tokens * 15) / 1e6;
  t.ok(Math.abs(Number(response.headers.get('x-gateway-cost-usd')) - expected) < 1e-9, 'cache reads at the cached price');
});

t.test('a throttled region fails over to the next route; a validation error is the caller\'s 400', async (t) => {
  const { data, response } = await client.chat.completions.create({ model: 'bedrock/fail-throttle', messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  t.equal(data.choices[0]?.message.content, BEDROCK_WORDS.join(''));
  t.equal(response.headers.get('x-gateway-decision'), 'bedrock-west/anthropic.claude-test-v1:0');
  t.equal(response.headers.get('x-gateway-retries'), '1');
  t.ok(west.received.at(-1)!.signed, 'signed for us-west-2 (the fake checks the region in the scope)');

  const bad = await client.chat.completions.create({ model: 'bedrock/fail-validation', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(bad instanceof OpenAI.BadRequestError, 'a 400 in OpenAI\'s envelope');
  t.match((bad as InstanceType<typeof OpenAI.APIError>).message, /model identifier is invalid/);
  t.equal(east.received.filter((r) => r.model === 'fail-validation').length, 1, 'not retried');
});

t.test('an exception mid-stream reaches the client as a stream error', async (t) => {
  const err = await (async () => {
    let text = '';
    for await (const c of await client.chat.completions.create({ model: 'bedrock/stream-throttled', messages: [{ role: 'user', content: 'Hi' }], stream: true })) text += c.choices[0]?.delta.content ?? '';
    return text;
  })().catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.APIError && /Too many tokens/.test(err.message), 'the SDK raises the exception\'s message');
});

t.test('an aborted stream closes the upstream connection', async (t) => {
  t.ok(await abortMidStream(client, 'bedrock/slow-stream', () => east.received.at(-1)!.aborted), 'the upstream saw its client go away before the answer finished');
});

t.test('credentials AWS refuses (403 InvalidSignatureException) are the operator\'s 502, not the caller\'s 403', async (t) => {
  const err = await client.chat.completions.create({ model: 'bedrock-forged/claude-forged', messages: [{ role: 'user', content: 'Hi' }] }).catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.APIError && err.status === 502 && err.code === 'upstream_auth_error', String(err));
  t.match((err as Error).message, /signature we calculated does not match/);
  t.equal(east.received.at(-1)!.signed, false);
});

t.test('/v1/providers and /v1/models show Bedrock, and Claude\'s second route through it', async (t) => {
  const providers = await (await fetch(`${gw.baseURL}/providers`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).json() as { data: Array<{ id: string; kind: string }> };
  t.match(providers.data.find((p) => p.id === 'bedrock'), { kind: 'bedrock' });
  const models = await client.models.list();
  const find = (id: string) => models.data.find((m) => m.id === id) as unknown as { pricing: Record<string, number>; routes: Array<{ decision: string }> };
  t.match(find('bedrock/nova-lite').pricing, { input: 0.06, output: 0.24 }, 'a non-Anthropic family, priced');
  t.match(find('bedrock/llama-3-3-70b').pricing, { input: 0.72, output: 0.72 });
  t.same(find('anthropic/claude-sonnet-4-5').routes.map((r) => r.decision), ['bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0'], 'with no Anthropic key, Claude goes through Bedrock');
});

t.test('refused credentials on one route fail over to the next; never the same route again', async (t) => {
  const { data, response } = await client.chat.completions.create({ model: 'bedrock-forged/with-fallback', messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  t.equal(data.choices[0]?.message.content, BEDROCK_WORDS.join(''));
  t.equal(response.headers.get('x-gateway-decision'), 'bedrock/anthropic.claude-test-v1:0');
  t.equal(response.headers.get('x-gateway-retries'), '1');
});

t.test('an entry in an EU region calls the EU inference profile, and its routes are in its region', async (t) => {
  const r = await client.chat.completions.create({ model: 'bedrock-eu/claude-test', messages: [{ role: 'user', content: 'Hi' }] });
  t.equal(r.choices[0]?.message.content, BEDROCK_WORDS.join(''));
  t.match(frankfurt.received.at(-1)!, { path: '/model/eu.anthropic.claude-test-v1%3A0/converse', signed: true });
  const { tenant, call } = http(gw);
  const eu = await tenant(gw.masterKey, 1, { regions: ['eu-central-1'] });
  const euOk = await call('/v1/chat/completions', eu.key, { model: 'bedrock-eu/claude-test', messages: [{ role: 'user', content: 'Hi' }] });
  t.equal(euOk.status, 200, 'a key held to eu-central-1 may use it');
  const us = await call('/v1/chat/completions', eu.key, { model: MODEL, messages: [{ role: 'user', content: 'Hi' }] });
  t.equal(us.status, 403, 'and not a route in us-east-1');
});

t.test('tool_choice none with no tool use so far: no tools are declared, so none can be called', async (t) => {
  const r = await client.chat.completions.create({ model: MODEL, tools, tool_choice: 'none', messages: [{ role: 'user', content: 'Weather in Paris?' }] });
  t.equal(r.choices[0]?.finish_reason, 'stop');
  t.notOk(r.choices[0]?.message.tool_calls);
  t.notOk(east.received.at(-1)!.body.toolConfig);
});

const rowOf = async (id: string | null) => (await fetch(`${gw.baseURL}/requests/${id}`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).json() as Promise<{ status: number; usage_source: string; cost_usd: number; prompt_tokens: number; completion_tokens: number }>;
const drain = async (model: string) => {
  const { data, response } = await client.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  let text = '';
  for await (const c of data) text += c.choices[0]?.delta.content ?? '';
  return { text, id: response.headers.get('x-request-id') };
};

t.test('a stream whose first frame is an exception is an error answer: it fails over', async (t) => {
  let text = '';
  const { data, response } = await client.chat.completions.create({ model: 'bedrock/throttle-first', stream: true, messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  for await (const c of data) text += c.choices[0]?.delta.content ?? '';
  t.equal(text, BEDROCK_WORDS.join(''));
  t.equal(response.headers.get('x-gateway-decision'), 'bedrock-west/anthropic.claude-test-v1:0', 'served by the next route');
  t.equal(response.headers.get('x-gateway-retries'), '1');
});

t.test('answers whose usage is missing or impossible are estimated, never billed as nothing or as anything', async (t) => {
  for (const model of ['bedrock/no-usage', 'bedrock/huge-usage', 'bedrock/zero-usage']) {
    const { text, id } = await drain(model);
    t.equal(text, BEDROCK_WORDS.join(''));
    const row = await rowOf(id);
    t.equal(row.usage_source, 'estimate', `${model}: estimated`);
    t.ok(row.cost_usd > 0 && row.cost_usd < 0.01, `${model}: a charge the request could have cost (${row.cost_usd})`);
  }
});

t.test('a stream cut before the model finished ends with an error event; a frame of 1 MiB in 1 KiB pieces is read whole', async (t) => {
  const cut = await drain('bedrock/cut').catch((e: unknown) => e);
  t.ok(cut instanceof OpenAI.APIError && /ended before the model finished/.test(cut.message), String(cut));
  const big = await drain('bedrock/big-text');
  t.equal(big.text.length, 1 << 20);
});

t.test('a complete answer ends for the client at once, even when the upstream keeps its connection open', async (t) => {
  const started = Date.now();
  const { text, id } = await drain('bedrock/linger');
  t.equal(text, BEDROCK_WORDS.join(''));
  t.ok(Date.now() - started < 5000, 'not held until the body timeout');
  const row = await rowOf(id);
  t.equal(row.status, 200);
  t.equal(row.usage_source, 'upstream');
});

t.test('requests the adapter cannot send as they are: a clear 400, nothing sent upstream', async (t) => {
  const before = east.received.length;
  const bad = async (messages: unknown[]) => {
    const r = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, messages }) });
    return { status: r.status, body: await r.json() as { error: { message: string; param: string | null } } };
  };
  const file = await bad([{ role: 'user', content: [{ type: 'text', text: 'Summarise' }, { type: 'file', file: { file_id: 'f1' } }] }]);
  t.match(file, { status: 400, body: { error: { message: /'file' part cannot be sent/, param: 'messages' } } });
  const args = await bad([{ role: 'user', content: 'x' }, { role: 'assistant', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '[1,2]' } }] }, { role: 'tool', tool_call_id: 'c1', content: 'r' }]);
  t.match(args, { status: 400, body: { error: { message: /must be a JSON object/ } } });
  const orphan = await bad([{ role: 'user', content: 'x' }, { role: 'tool', tool_call_id: 'nobody', content: 'r' }]);
  t.match(orphan, { status: 400, body: { error: { message: /no earlier assistant message called/ } } });
  const systemOnly = await bad([{ role: 'system', content: 'Be brief.' }]);
  t.match(systemOnly, { status: 400, body: { error: { message: /add a user message/ } } });
  const noUrl = await bad([{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }]);
  t.match(noUrl, { status: 400, body: { error: { message: /has no url/ } } });
  t.equal(east.received.length, before);
  await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;charset=binary;base64,iVBORw0KGgo=' } }] }] });
  t.same(east.received.at(-1)!.body.messages[0].content, [{ image: { format: 'png', source: { bytes: 'iVBORw0KGgo=' } } }], 'a data URL with a parameter is still data');
});

t.test('a stream that breaks after it began: an error event, and a row that says so', async (t) => {
  const { data, response } = await client.chat.completions.create({ model: 'bedrock/stream-throttled', stream: true, messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  const err = await (async () => { for await (const _ of data) { /* drain */ } })().catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.APIError && /Too many tokens/.test(err.message));
  const row = await rowOf(response.headers.get('x-request-id'));
  t.equal(row.status, 503, 'the row has the stream\'s error (Bedrock throttling: upstream_rate_limited), not a 200');
});

t.test('the Responses API bridged onto Bedrock: streamed function calls and text.format', async (t) => {
  const fn = { type: 'function' as const, name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { location: { type: 'string' } } }, strict: false };
  const stream = await client.responses.create({ model: MODEL, input: 'Weather in Paris?', tools: [fn], tool_choice: 'required', stream: true });
  let final: OpenAI.Responses.Response | null = null;
  for await (const e of stream) if (e.type === 'response.completed') final = e.response;
  const call = final?.output.find((o) => o.type === 'function_call');
  t.match(call, { type: 'function_call', name: 'get_weather', call_id: 'tooluse_fake1' }, 'a function_call item');
  t.same(JSON.parse((call as { arguments: string }).arguments), { location: 'Paris' });
  t.same(east.received.at(-1)!.body.toolConfig.toolChoice, { any: {} }, 'tool_choice reached Converse');
  const json = await client.responses.create({ model: MODEL, input: 'Weather in Paris as JSON', text: { format: { type: 'json_schema', name: 'weather', schema: { type: 'object', properties: { city: { type: 'string' }, temperature_c: { type: 'number' } } } } } });
  t.same(JSON.parse(json.output_text), { city: 'Paris', temperature_c: 21 }, 'text.format is JSON output');
});

t.test('embeddings on Titan: one signed InvokeModel per input (at most 8 at a time), the vectors and counts gathered; a throttled input fails the request', async (t) => {
  const inputs = Array.from({ length: 20 }, (_, i) => `text number ${i}`);
  const before = east.received.length;
  const { data, response } = await client.embeddings.create({ model: 'bedrock/titan-embed-text-v2', input: inputs, dimensions: 256 }).withResponse();
  t.equal(response.headers.get('x-gateway-decision'), 'bedrock/amazon.titan-embed-text-v2:0');
  t.equal(data.data.length, 20);
  t.same(data.data.map((d) => d.index), inputs.map((_, i) => i), 'in input order');
  t.equal(data.data[7]!.embedding.length, 256, 'dimensions sent, base64 decoded by the SDK');
  const calls = east.received.slice(before);
  t.equal(calls.length, 20);
  t.ok(calls.every((c) => c.signed && c.path === '/model/amazon.titan-embed-text-v2%3A0/invoke'), 'each call signed');
  t.same(calls.map((c) => c.body.inputText).sort(), [...inputs].sort());
  t.equal(data.usage.prompt_tokens, inputs.reduce((n, s) => n + Math.max(1, s.length >> 2), 0), 'Titan\'s own counts, summed');
  const throttled = await client.embeddings.create({ model: 'bedrock/titan-embed-text-v2', input: ['fine', 'throttle me', 'fine too'] }).catch((e: unknown) => e);
  t.ok(throttled instanceof OpenAI.APIError && throttled.status === 503 && throttled.code === 'upstream_rate_limited', `a 503, not the 429 of the key's own limits: ${String(throttled)}`);
  const ids = await client.embeddings.create({ model: 'bedrock/titan-embed-text-v2', input: [[1, 2]] }).catch((e: unknown) => e);
  t.ok(ids instanceof OpenAI.BadRequestError && ids.param === 'input');
});
