// Azure OpenAI is OpenAI's wire format on Azure's paths: a provider entry of kind `azure`
// (here from AZURE_OPENAI_* env vars) whose routes are deployment names. Bodies pass as
// bytes, so Azure's content-filter results reach the caller untouched; errors keep their
// meaning; a throttled deployment fails over; the Responses API passes through.
import OpenAI from 'openai';
import t from 'tap';
import { AZURE_KEY, AZURE_WORDS, startFakeAzure } from '../fakes/azure-upstream.js';
import { startGateway, tempDataDir } from '../helpers/gateway.js';
import { abortMidStream, answerText } from '../helpers/streams.js';

const fake = await startFakeAzure();
const prices = { input: 0.4, cached_input: 0.1, output: 1.6 };
const gw = await startGateway({
  SLUICE_SIM: 'off', AZURE_OPENAI_API_KEY: AZURE_KEY, AZURE_OPENAI_ENDPOINT: fake.url, AZURE_OPENAI_API_VERSION: '2024-10-21',
  AZURE_OPENAI_DEPLOYMENTS: 'openai/gpt-4.1-mini=prod-mini,openai/gpt-4.1-nano=filtered,openai/o4-mini=reasoning-prod',
}, tempDataDir(), {
  models: [
    { slug: 'azure/busy', upstream_id: 'fail-429', context_window: 128000, prices, routes: [{ provider: 'azure', upstream_id: 'prod-mini', prices: { ...prices, output: 2 } }] },
    { slug: 'azure/missing', upstream_id: 'missing', context_window: 128000, prices },
    { slug: 'azure/missing-then-prod', upstream_id: 'missing', context_window: 128000, prices, routes: [{ provider: 'azure', upstream_id: 'prod-mini', prices: { ...prices, output: 2 } }] },
    { slug: 'azure/slow', upstream_id: 'slow-stream', context_window: 128000, prices },
  ],
});
t.teardown(async () => { await gw.stop(); await fake.close(); });
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
const last = () => fake.received.at(-1)!;

t.test('chat on a deployment: its path, api-version and api-key; Azure\'s filter results passed on', async (t) => {
  const { data, response } = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  t.equal(data.choices[0]?.message.content, AZURE_WORDS.join(''));
  t.match(last(), { deployment: 'prod-mini', apiVersion: '2024-10-21', path: '/openai/deployments/prod-mini/chat/completions?api-version=2024-10-21' });
  t.equal(last().headers['api-key'], AZURE_KEY);
  t.notOk(last().headers.authorization, 'no bearer header');
  const body = data as unknown as { prompt_filter_results: unknown[]; choices: Array<{ content_filter_results: { violence: { filtered: boolean } } }> };
  t.equal(body.prompt_filter_results.length, 1, 'prompt_filter_results reach the caller');
  t.equal(body.choices[0]?.content_filter_results.violence.filtered, false, 'and each choice\'s content_filter_results');
  t.equal(response.headers.get('x-gateway-decision'), 'azure/prod-mini');
  t.ok(Number(response.headers.get('x-gateway-cost-usd')) > 0);
});

t.test('stream: Azure\'s chunks pass through, usage asked for and billed', async (t) => {
  let text = '';
  let filters = 0;
  const { data: stream, response } = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', stream: true, messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  for await (const c of stream) {
    text += c.choices[0]?.delta.content ?? '';
    if ((c as unknown as { prompt_filter_results?: unknown }).prompt_filter_results) filters++;
  }
  t.equal(text, AZURE_WORDS.join(''));
  t.equal(filters, 1, 'the prompt\'s filter results chunk reached the caller');
  t.equal(last().body.stream_options?.include_usage, true, 'the gateway asked for usage');
  const row = await (await fetch(`${gw.baseURL}/requests/${response.headers.get('x-request-id')}`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).json() as { completion_tokens: number; cost_usd: number };
  t.equal(row.completion_tokens, AZURE_WORDS.length, 'the ledger row has the stream\'s usage');
});

t.test('a filtered prompt is Azure\'s 400 content_filter, with its verdict', async (t) => {
  const err = await client.chat.completions.create({ model: 'openai/gpt-4.1-nano', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.BadRequestError && err.code === 'content_filter' && err.param === 'prompt', 'content_filter, param prompt');
  t.match((err as InstanceType<typeof OpenAI.APIError>).error, { innererror: { code: 'ResponsibleAIPolicyViolation', content_filter_result: { violence: { filtered: true, severity: 'high' } } } },
    'innererror.content_filter_result says which category');
});

t.test('a deployment the resource lacks is the operator\'s 502, and another route serves', async (t) => {
  const missing = await client.chat.completions.create({ model: 'azure/missing', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(missing instanceof OpenAI.APIError && missing.status === 502 && /deployment/.test(missing.message), String(missing));
  const { data, response } = await client.chat.completions.create({ model: 'azure/missing-then-prod', messages: [{ role: 'user', content: 'x' }] }).withResponse();
  t.equal(data.choices[0]?.message.content, AZURE_WORDS.join(''));
  t.equal(response.headers.get('x-gateway-decision'), 'azure/prod-mini');
});

t.test('a reasoning model\'s deployment gets max_completion_tokens, whatever the deployment is called', async (t) => {
  await client.chat.completions.create({ model: 'openai/o4-mini', messages: [{ role: 'user', content: 'x' }] });
  t.equal(last().deployment, 'reasoning-prod');
  t.ok(typeof last().body.max_completion_tokens === 'number' && last().body.max_tokens === undefined, `the output cap as max_completion_tokens (${JSON.stringify(last().body)})`);
});

t.test('a throttled deployment fails over to the next', async (t) => {
  const { data, response } = await client.chat.completions.create({ model: 'azure/busy', messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
  t.equal(data.choices[0]?.message.content, AZURE_WORDS.join(''));
  t.equal(response.headers.get('x-gateway-decision'), 'azure/prod-mini');
  t.equal(response.headers.get('x-gateway-retries'), '1');
});

t.test('the Responses API passes through to Azure\'s /openai/responses', async (t) => {
  const r = await client.responses.create({ model: 'openai/gpt-4.1-mini', input: 'Hi' });
  t.equal(r.output_text, AZURE_WORDS.join(''));
  t.match(last(), { path: '/openai/responses?api-version=2024-10-21', deployment: 'prod-mini' });
});

t.test('an aborted stream closes the upstream connection', async (t) => {
  t.ok(await abortMidStream(client, 'azure/slow', () => last().aborted), 'the upstream saw its client go away before the answer finished');
});

t.test('tools both ways, images and JSON output pass through as OpenAI\'s own bytes', async (t) => {
  const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { location: { type: 'string' } } } } }];
  const first = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', tools, messages: [{ role: 'user', content: 'Weather?' }] });
  const call = first.choices[0]?.message.tool_calls?.[0];
  t.equal(first.choices[0]?.finish_reason, 'tool_calls');
  if (!call || call.type !== 'function') { t.fail('no call'); return; }
  t.same(last().body.tools, tools, 'the tools as the caller sent them');
  let streamedArgs = '';
  for await (const c of await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', tools, stream: true, messages: [{ role: 'user', content: 'Weather?' }] })) streamedArgs += c.choices[0]?.delta.tool_calls?.[0]?.function?.arguments ?? '';
  t.same(JSON.parse(streamedArgs), { location: 'Paris' });
  for (const stream of [false, true]) {
    const text = await answerText(client, { model: 'openai/gpt-4.1-mini', tools, messages: [
      { role: 'user', content: 'Weather?' }, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: call.id, content: 'sunny' }] }, stream);
    t.equal(text, 'It is sunny.', `the answer after the tool result (${stream ? 'stream' : 'non-stream'})`);
  }
  const image = { type: 'image_url' as const, image_url: { url: 'https://example.com/cat.png' } };
  await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: [{ type: 'text', text: 'What?' }, image] }] });
  t.same(last().body.messages[0].content[1], image, 'an image part as sent');
  const json = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', response_format: { type: 'json_object' }, messages: [{ role: 'user', content: 'City as JSON' }] });
  t.same(JSON.parse(json.choices[0]?.message.content ?? ''), { city: 'Paris' });
  t.same(last().body.response_format, { type: 'json_object' });
});
