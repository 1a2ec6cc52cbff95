// POST /v1/embeddings through the whole pipeline: the official openai SDK (which asks for
// base64 by default and decodes it), LangChain's OpenAIEmbeddings and the AI SDK's embedMany,
// against the sim and against fakes of OpenAI and Azure; the exact cache, billing, the
// ledger, and bad bodies.
import { createOpenAI } from '@ai-sdk/openai';
import { OpenAIEmbeddings } from '@langchain/openai';
import { embed, embedMany } from 'ai';
import OpenAI, { AzureOpenAI } from 'openai';
import t from 'tap';
import { FAKE_DIMENSIONS } from '../fakes/embeddings.js';
import { startFakeAzure, AZURE_KEY } from '../fakes/azure-upstream.js';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const fake = await startFakeUpstream();
const azure = await startFakeAzure();
t.teardown(() => Promise.all([fake.close(), azure.close()]));
const gw = await startGateway({ SLUICE_SIM: 'on' }, undefined, {
  providers: {
    openai: { kind: 'openai', base_url: fake.url, api_key: 'sk-fake-upstream' },
    az: { kind: 'azure', base_url: azure.url, api_key: AZURE_KEY, api_version: '2024-10-21' },
  },
  models: [
    { slug: 'az/embed-small', upstream_id: 'embed-deployment', type: 'embedding', dimensions: 8, context_window: 300000, tokenizer: 'cl100k_base', prices: { input: 0.02, output: 0 } },
    { slug: 'openai/embed-flaky', upstream_id: 'fail-500', type: 'embedding', dimensions: 8, context_window: 300000, tokenizer: 'cl100k_base', prices: { input: 0.02, output: 0 } },
  ],
});
t.teardown(() => gw.stop());
const api = http(gw);
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });

const cosine = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0) / Math.sqrt(a.reduce((s, x) => s + x * x, 0) * b.reduce((s, x) => s + x * x, 0));

t.test('the sim: deterministic unit vectors with some meaning, base64 as the SDK asks, dimensions', async (t) => {
  const texts = ['the cat sat on the mat', 'a cat sat on a mat', 'quarterly revenue grew in Europe'];
  const r = await client.embeddings.create({ model: 'openai/text-embedding-3-small', input: texts }, { headers: { 'x-gateway-provider': 'sim' } });
  t.equal(r.data.length, 3);
  t.equal(r.data[0]!.embedding.length, 1536, 'the catalog\'s size for the model');
  t.ok(Math.abs(cosine(r.data[0]!.embedding, r.data[0]!.embedding) - 1) < 1e-6);
  t.ok(cosine(r.data[0]!.embedding, r.data[1]!.embedding) > cosine(r.data[0]!.embedding, r.data[2]!.embedding) + 0.3, 'texts that share words are closer');
  t.ok(r.usage.prompt_tokens >= 14 && r.usage.prompt_tokens <= 20, `counted by the tokenizer (${r.usage.prompt_tokens})`);
  const short = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'the cat sat on the mat', dimensions: 256, encoding_format: 'float' }, { headers: { 'x-gateway-provider': 'sim' } });
  t.equal(short.data[0]!.embedding.length, 256);
  const tokens = await client.embeddings.create({ model: 'openai/text-embedding-3-small', input: [[1, 2, 3], [4, 5]], encoding_format: 'float' }, { headers: { 'x-gateway-provider': 'sim' } });
  t.equal(tokens.usage.prompt_tokens, 5, 'token arrays count as they are');
  // A member these endpoints do not read is ignored, `messages` (which the pipeline gives such requests itself) included.
  const stray = await client.embeddings.create({ model: 'openai/text-embedding-3-small', input: 'x', messages: [{ role: 'user', content: 'y' }] } as OpenAI.EmbeddingCreateParams, { headers: { 'x-gateway-provider': 'sim' } });
  t.equal(stray.data.length, 1, 'a stray messages member is ignored');
  const big = await client.embeddings.create({ model: 'openai/text-embedding-3-small', input: 'x', dimensions: 4096 }, { headers: { 'x-gateway-provider': 'sim' } }).catch((e: unknown) => e);
  t.ok(big instanceof OpenAI.BadRequestError && big.param === 'dimensions', 'more dimensions than the model has is a 400');
});

t.test('through OpenAI: the caller\'s bytes go on, usage is billed, a repeat is an exact-cache hit', async (t) => {
  const { key, ws } = await api.tenant(gw.masterKey, 1, undefined, ['inference', 'usage:read']);
  const tenant = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  const before = fake.received.length;
  const { data, response } = await tenant.embeddings.create({ model: 'openai/text-embedding-3-small', input: ['alpha beta', 'gamma'] }).withResponse();
  t.equal(response.headers.get('x-gateway-decision'), 'openai/text-embedding-3-small');
  t.equal(response.headers.get('x-gateway-cache'), 'miss');
  t.equal(data.data[0]!.embedding.length, FAKE_DIMENSIONS, 'the upstream\'s vectors, decoded from base64 by the SDK');
  const sent = fake.received[before]!;
  t.equal(sent.body.model, 'text-embedding-3-small');
  t.equal(sent.body.encoding_format, 'base64');
  t.notOk('messages' in sent.body || 'stream_options' in sent.body, 'nothing added to an embeddings body');
  const gateway = (data as unknown as { gateway: { cost_usd: number; cache: string } }).gateway;
  t.match(gateway, { cache: 'miss' });
  const again = await tenant.embeddings.create({ model: 'openai/text-embedding-3-small', input: ['alpha beta', 'gamma'] }).withResponse();
  t.equal(again.response.headers.get('x-gateway-cache'), 'exact');
  t.equal(fake.received.length, before + 1, 'the hit never reached the upstream');
  t.same(again.data.data[1]!.embedding, data.data[1]!.embedding);
  const other = await tenant.embeddings.create({ model: 'openai/text-embedding-3-small', input: ['alpha beta', 'gamma'], encoding_format: 'float' }).withResponse();
  t.equal(other.response.headers.get('x-gateway-cache'), 'miss', 'another encoding is another answer');
  // Billing: prompt tokens × $0.02/M, on the ledger as an embeddings row.
  const rows = (await api.call('/v1/requests?limit=10', key)).json.data as Array<{ endpoint: string; cache: string; prompt_tokens: number; completion_tokens: number; charge_usd: number }>;
  const own = rows.filter((r) => r.endpoint === 'embeddings');
  t.equal(own.length, 3, `three embeddings rows (${JSON.stringify(rows.map((r) => r.endpoint))})`);
  const miss = own.find((r) => r.cache === 'miss')!;
  t.equal(miss.prompt_tokens, data.usage.prompt_tokens);
  t.equal(miss.completion_tokens, 0);
  t.ok(own.some((r) => r.cache === 'exact'), 'the hit is an exact-cache row');
  t.ok(miss.charge_usd > 0);
  const wsView = (await api.admin(`/admin/workspaces/${ws}`)).json;
  t.ok(wsView.balance_usd < 1 && wsView.balance_usd > 0.99, 'the workspace paid for what it used');
  const metrics = await api.admin('/metrics');
  t.match(metrics.text, /sluice_requests_total\{endpoint="embeddings",status="200",cache="exact"\} 1/);
});

t.test('Azure: the deployment\'s embeddings path', async (t) => {
  const r = await client.embeddings.create({ model: 'az/embed-small', input: 'hello', encoding_format: 'float' }).withResponse();
  t.equal(r.response.headers.get('x-gateway-decision'), 'az/embed-deployment');
  t.match(azure.received.at(-1)!.path, /^\/openai\/deployments\/embed-deployment\/embeddings\?api-version=2024-10-21$/);
  t.equal(r.data.data[0]!.embedding.length, FAKE_DIMENSIONS);
  // And the SDK's own Azure client, pointed at the gateway as an OpenAI base URL works too.
  void AzureOpenAI;
});

t.test('a failing route fails over to the next one (here the sim)', async (t) => {
  const r = await client.embeddings.create({ model: 'openai/embed-flaky', input: 'x', encoding_format: 'float' }).withResponse();
  t.equal(r.response.headers.get('x-gateway-decision'), 'sim/embed-flaky');
  t.equal(r.data.data[0]!.embedding.length, 8);
});

t.test('models of the wrong type and bad bodies are 400s naming the parameter', async (t) => {
  const chatModel = await client.embeddings.create({ model: 'openai/gpt-4.1-mini', input: 'x' }).catch((e: unknown) => e);
  t.ok(chatModel instanceof OpenAI.BadRequestError && chatModel.param === 'model' && /chat model/.test(chatModel.message), String(chatModel));
  const embedChat = await client.chat.completions.create({ model: 'text-embedding-3-small', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(embedChat instanceof OpenAI.BadRequestError && /embedding model: it is served on \/v1\/embeddings/.test(embedChat.message), String(embedChat));
  for (const [body, param] of [
    [{ model: 'text-embedding-3-small', input: '' }, 'input'],
    [{ model: 'text-embedding-3-small', input: [] }, 'input'],
    [{ model: 'text-embedding-3-small', input: [1, 'a'] }, 'input'],
    [{ model: 'text-embedding-3-small', input: Array.from({ length: 2049 }, () => 'a') }, 'input'],
    [{ model: 'text-embedding-3-small', input: 'a', encoding_format: 'hex' }, 'encoding_format'],
    [{ model: 'text-embedding-3-small', input: 'a', dimensions: 0 }, 'dimensions'],
    [{ input: 'a' }, 'model'],
  ] as const) {
    const r = await api.admin('/v1/embeddings', body);
    t.equal(r.status, 400, JSON.stringify(body).slice(0, 80));
    t.equal(r.json.error.param, param);
    if (Array.isArray(body.input) && body.input.length > 2048) t.match(r.json.error.message, /at most 2048 inputs/);
  }
  t.equal((await api.admin('/v1/embeddings', '{"model":')).json.error.code, 'invalid_json');
  t.equal((await fetch(`${gw.url}/health`)).status, 200, 'still serving');
});

t.test('LangChain OpenAIEmbeddings and the AI SDK embedMany work unchanged', async (t) => {
  const lc = new OpenAIEmbeddings({ model: 'text-embedding-3-small', apiKey: gw.masterKey, configuration: { baseURL: gw.baseURL, defaultHeaders: { 'x-gateway-provider': 'sim' } } });
  const docs = await lc.embedDocuments(['first chunk', 'second chunk']);
  t.equal(docs.length, 2);
  t.equal(docs[0]!.length, 1536);
  const q = await lc.embedQuery('first chunk');
  t.same(q, docs[0], 'the same text, the same vector');
  const provider = createOpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, headers: { 'x-gateway-provider': 'sim' } });
  const many = await embedMany({ model: provider.embedding('text-embedding-3-small'), values: ['first chunk', 'other text'] });
  t.equal(many.embeddings.length, 2);
  t.ok(Math.abs(cosine(many.embeddings[0]!, docs[0]!) - 1) < 1e-6, 'the AI SDK gets the same vectors');
  t.ok(many.usage.tokens > 0);
  const one = await embed({ model: provider.embedding('text-embedding-3-small'), value: 'other text' });
  t.equal(one.embedding.length, 1536);
});
