// Exact cache and in-flight dedupe, through the official `openai` SDK against the fake
// upstream: what the upstream received (how many calls) and what each caller got (the
// same content, streamed when asked, with its own figures and ledger row).
import OpenAI from 'openai';
import { Stream } from 'openai/streaming';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const fake = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(),
  { models: ['seq-a', 'seq-b', 'seq-c', 'seq-d-slow500', 'seq-drip-100', 'seq-drip-101', 'seq-drip-102', 'seq-drip-103'].map(testModel), billing: { markup: 0.1 } });
t.teardown(async () => { await gw.stop(); await fake.close(); });

const { adminJson: admin } = http(gw);
const wsA = await admin('/admin/workspaces', { name: 'a', credits_usd: 10 });
const wsB = await admin('/admin/workspaces', { name: 'b', credits_usd: 10 });
const keyA = (await admin('/admin/keys', { name: 'a', workspace: wsA.id })).key as string;
const keyA2 = (await admin('/admin/keys', { name: 'a2', workspace: wsA.id })).key as string;
const readerA = (await admin('/admin/keys', { name: 'reader', workspace: wsA.id, scopes: ['usage:read'] })).key as string;
const keyB = (await admin('/admin/keys', { name: 'b', workspace: wsB.id })).key as string;
const keyNoCache = (await admin('/admin/keys', { name: 'nocache', workspace: wsA.id, limits: { savings_off: ['exact_cache', 'dedupe', 'semantic_cache'] } })).key as string;
const client = (key: string, headers: Record<string, string> = {}) => new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0, defaultHeaders: headers });
const calls = (model: string) => fake.received.filter((r) => r.body.model === model).length;
const ask = (model: string, extra: Record<string, unknown> = {}) => ({ model: `openai/${model}`, messages: [{ role: 'user' as const, content: 'What is 6 times 7?' }], temperature: 0, ...extra });

async function create(key: string, body: Json, headers: Record<string, string> = {}) {
  const { data, response } = await client(key, headers).chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming).withResponse();
  return { data: data as unknown as Json, headers: response.headers };
}

/** A streamed request through the SDK: the text, the gateway comment's figures and the headers. */
async function stream(key: string, body: Json, headers: Record<string, string> = {}) {
  const res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ ...body, stream: true }) });
  const raw = await res.text();
  // the same bytes through the SDK's own stream parser
  const parsed = Stream.fromSSEResponse<Json>(new Response(raw, { headers: { 'content-type': 'text/event-stream' } }), new AbortController());
  let text = '';
  let usage: Json | null = null;
  for await (const chunk of parsed) {
    text += chunk.choices?.[0]?.delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  const gateway = JSON.parse(/^: gateway (.+)$/m.exec(raw)?.[1] ?? 'null') as Json | null;
  return { text, usage, gateway, headers: res.headers, raw, dones: raw.split('data: [DONE]').length - 1 };
}

t.test('exact cache: a repeated deterministic request is answered without an upstream call, stream or not', async (t) => {
  const first = await create(keyA, ask('seq-a'));
  t.equal(first.headers.get('x-gateway-cache'), 'miss');
  t.equal(calls('seq-a'), 1);
  const again = await create(keyA2, ask('seq-a')); // another key of the same workspace
  t.equal(again.headers.get('x-gateway-cache'), 'exact');
  t.equal(calls('seq-a'), 1, 'the upstream was not called again');
  t.equal(again.data.choices[0].message.content, first.data.choices[0].message.content, 'same answer');
  t.same(again.data.usage, first.data.usage, 'the usage the answer represents');
  t.equal(Number(again.headers.get('x-btl-customer-charge')), 0, 'a hit is not charged');
  t.equal(Number(again.headers.get('x-btl-saved')), Number(again.headers.get('x-btl-benchmark-cost')), 'saved = benchmark');
  t.ok(Number(again.headers.get('x-btl-benchmark-cost')) > 0);
  t.equal(again.data.gateway.cache, 'exact');
  t.equal(again.data.gateway.saved_tokens.exact_cache, first.data.usage.prompt_tokens + first.data.usage.completion_tokens);
  // key order and whitespace do not matter; delivery fields do not either
  const reordered = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${keyA}`, 'content-type': 'application/json' },
    body: `{ "temperature": 0,  "messages": [{"content": "What is 6 times 7?", "role": "user"}], "model": "openai/seq-a", "user": "someone" }` });
  t.equal(reordered.headers.get('x-gateway-cache'), 'exact');
  // streamed: replayed as SSE that the SDK reads like any stream
  const s = await stream(keyA, ask('seq-a', { stream_options: { include_usage: true } }));
  t.equal(s.headers.get('x-gateway-cache'), 'exact');
  t.equal(s.text, first.data.choices[0].message.content);
  t.same(s.usage, first.data.usage);
  t.equal(s.gateway?.cache, 'exact');
  t.equal(s.dones, 1);
  t.equal(calls('seq-a'), 1);
  // known before the first byte, so in the stream's headers too, as the closing figures say
  t.equal(Number(s.headers.get('x-btl-customer-charge')), 0, 'a streamed hit: its charge in the headers');
  t.equal(Number(s.headers.get('x-gateway-cost-usd')), 0);
  t.equal(Number(s.headers.get('x-btl-benchmark-cost')), s.gateway?.benchmark_usd, 'the benchmark, as the closing figures have it');
  t.equal(Number(s.headers.get('x-btl-saved')), s.gateway?.saved_usd);
});

t.test('a large request (hashed in the worker pool with the rewrites) hits the exact cache too', async (t) => {
  const big = { ...ask('seq-c'), messages: [{ role: 'system' as const, content: `Policies:\n${'clause about refunds and returns. '.repeat(200)}` }, { role: 'user' as const, content: 'Summarize the policies.' }] };
  const first = await create(keyA, big);
  t.equal(first.headers.get('x-gateway-cache'), 'miss');
  const again = await create(keyA, { ...big, messages: [...big.messages] });
  t.equal(again.headers.get('x-gateway-cache'), 'exact');
  t.equal(again.data.choices[0].message.content, first.data.choices[0].message.content);
});

t.test('a streamed miss is cached too, and served to a non-streaming caller', async (t) => {
  const s = await stream(keyA, ask('seq-b'));
  t.equal(s.headers.get('x-gateway-cache'), 'miss');
  t.match(s.text, /^Answer number \d+\.$/);
  await new Promise((r) => setTimeout(r, 100)); // assembled in the pool after the response
  const again = await create(keyA, ask('seq-b'));
  t.equal(again.headers.get('x-gateway-cache'), 'exact');
  t.equal(again.data.choices[0].message.content, s.text);
  t.equal(calls('seq-b'), 1);
});

t.test('what is not cached: other workspaces, sampled requests, other parameters, switches off', async (t) => {
  await create(keyA, ask('seq-c'));
  const b = await create(keyB, ask('seq-c'));
  t.equal(b.headers.get('x-gateway-cache'), 'miss', 'never across workspaces');
  t.not(b.data.choices[0].message.content, 'never another workspace\'s answer');
  const sampled = { ...ask('seq-c'), temperature: 0.7 };
  await create(keyA, sampled);
  t.equal((await create(keyA, sampled)).headers.get('x-gateway-cache'), 'miss', 'temperature > 0 is not cached by default');
  await create(keyA, sampled, { 'x-gateway-cache': 'on' });
  t.equal((await create(keyA, sampled, { 'x-gateway-cache': 'on' })).headers.get('x-gateway-cache'), 'exact', 'unless the caller opts in');
  t.equal((await create(keyA, { ...ask('seq-c'), max_tokens: 5 })).headers.get('x-gateway-cache'), 'miss', 'a parameter that changes the answer');
  t.equal((await create(keyA, ask('seq-c'), { 'x-gateway-cache': 'off' })).headers.get('x-gateway-cache'), 'miss', 'x-gateway-cache: off');
  t.equal((await create(keyA, ask('seq-c'), { 'x-gateway-savings': 'off' })).headers.get('x-gateway-cache'), 'miss', 'x-gateway-savings: off');
  t.equal((await create(keyNoCache, ask('seq-c'))).headers.get('x-gateway-cache'), 'miss', 'a key with savings_off');
  t.equal((await create(keyA, ask('seq-c'))).headers.get('x-gateway-cache'), 'exact', 'and the entry is still there for others');
});

t.test('in-flight dedupe: identical concurrent requests share one upstream call', async (t) => {
  const results = await Promise.all([0, 1, 2, 3].map(async (i) => {
    if (i) await new Promise((r) => setTimeout(r, 40 * i)); // followers join while the leader is on its way
    return create(i % 2 ? keyA2 : keyA, ask('seq-drip-100'), { 'x-gateway-cache': 'on' });
  }));
  t.equal(calls('seq-drip-100'), 1, 'one upstream call for four requests');
  const kinds = results.map((r) => r.headers.get('x-gateway-cache')).sort();
  t.same(kinds, ['dedupe', 'dedupe', 'dedupe', 'miss']);
  t.equal(new Set(results.map((r) => r.data.choices[0].message.content)).size, 1, 'identical content');
  // A follower's wait for the shared call is upstream wait, not the gateway's overhead (total − upstream wait).
  for (const r of results.filter((x) => x.headers.get('x-gateway-cache') === 'dedupe')) {
    const row = (await fetch(`${gw.baseURL}/requests/${r.headers.get('x-request-id')}`, { headers: { authorization: `Bearer ${gw.masterKey}` } }).then((x) => x.json())) as Json;
    t.ok(row.overhead_ms >= 0 && row.overhead_ms < row.total_ms - 150, `a follower's overhead (${row.overhead_ms} ms of ${row.total_ms}) leaves out the ${(row.total_ms - row.overhead_ms).toFixed(0)} ms it waited for the shared call`);
  }
  t.equal(new Set(results.map((r) => r.headers.get('x-request-id'))).size, 4, 'each its own request id');
  for (const r of results.filter((x) => x.headers.get('x-gateway-cache') === 'dedupe')) t.equal(Number(r.headers.get('x-btl-customer-charge')), 0);
});

t.test('dedupe for streams: followers get the bytes so far, then live; one [DONE] each', async (t) => {
  const all = await Promise.all([0, 1, 2].map(async (i) => {
    if (i) await new Promise((r) => setTimeout(r, 150 * i)); // join mid-stream
    return stream(keyA, ask('seq-drip-101'));
  }));
  t.equal(calls('seq-drip-101'), 1);
  t.equal(new Set(all.map((s) => s.text)).size, 1, 'every stream carries the same text');
  t.match(all[0]!.text, /^Answer number \d+\.$/);
  t.same(all.map((s) => s.headers.get('x-gateway-cache')).sort(), ['dedupe', 'dedupe', 'miss']);
  t.same(all.map((s) => s.dones), [1, 1, 1]);
  t.same(all.map((s) => s.gateway?.cache).sort(), ['dedupe', 'dedupe', 'miss'], 'each its own gateway comment');
});

t.test('a follower that disconnects does not cancel the call; a leader that disconnects hands it over', async (t) => {
  const body = JSON.stringify({ ...ask('seq-drip-102'), stream: true });
  const req = (signal?: AbortSignal) => fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', signal,
    headers: { authorization: `Bearer ${keyA}`, 'content-type': 'application/json' }, body });
  const leaderAbort = new AbortController();
  const leader = req(leaderAbort.signal).then((r) => r.text()).catch(() => 'aborted');
  await new Promise((r) => setTimeout(r, 50));
  const followerAbort = new AbortController();
  const quitter = req(followerAbort.signal).then((r) => r.text()).catch(() => 'aborted');
  const stayer = req().then((r) => r.text());
  await new Promise((r) => setTimeout(r, 100));
  followerAbort.abort();
  await new Promise((r) => setTimeout(r, 50));
  leaderAbort.abort(); // the remaining follower still waits: the upstream call goes on
  const [l, q, s] = await Promise.all([leader, quitter, stayer]);
  t.equal(l, 'aborted');
  t.equal(q, 'aborted');
  t.match(s, /Answer/);
  t.match(s, /data: \[DONE\]/);
  t.equal(calls('seq-drip-102'), 1);
  t.notOk(fake.received.find((r) => r.body.model === 'seq-drip-102')!.aborted, 'the upstream call was never cancelled');
  const comment = JSON.parse(/^: gateway (.+)$/m.exec(s)![1]!) as Json;
  t.equal(comment.cache, 'miss', 'the remaining client took the call over');
  t.ok(comment.charge_usd > 0, 'and pays for it');
});

t.test('a dedupe leader that fails fails its followers with the same error', async (t) => {
  const results = await Promise.all([0, 1].map(async (i) => {
    if (i) await new Promise((r) => setTimeout(r, 30));
    return fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${keyA}`, 'content-type': 'application/json' },
      body: JSON.stringify(ask('seq-d-slow500')) });
  }));
  t.equal(calls('seq-d-slow500'), 3, 'one upstream exchange for both (its only route tried 1 + 2 times)');
  t.same(results.map((r) => r.status), [502, 502]);
  const bodies = await Promise.all(results.map((r) => r.json() as Promise<Json>));
  t.ok(bodies.every((b) => typeof b.error?.message === 'string'));
  const again = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${keyA}`, 'content-type': 'application/json' },
    body: JSON.stringify(ask('seq-d-slow500')) });
  t.equal(again.headers.get('x-gateway-cache'), 'miss', 'a failure is not cached');
  t.equal(calls('seq-d-slow500'), 5, 'its own call: two attempts, then the breaker (5 failures in a row) opens and rests the route');
});

t.test('a shared stream that breaks ends every client with an error event', async (t) => {
  fake.setFault('cut');
  const all = await Promise.all([0, 1].map(async (i) => {
    if (i) await new Promise((r) => setTimeout(r, 60)); // joins while the leader streams
    const res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${keyA}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...ask('seq-drip-103'), stream: true }) });
    return { status: res.status, cache: res.headers.get('x-gateway-cache'), text: await res.text() };
  }));
  fake.setFault('none');
  t.equal(calls('seq-drip-103'), 1, 'one upstream call');
  t.same(all.map((r) => r.cache).sort(), ['dedupe', 'miss']);
  for (const r of all) {
    t.equal(r.status, 200, 'headers were already sent');
    t.match(r.text, /data: \{"error":\{[^\n]*\}\}\n\n$/, 'the stream ends with an error event, not a silent cut');
    t.notMatch(r.text, /\[DONE\]/);
  }
  t.equal((await fetch(`${gw.url}/health`)).status, 200, 'still serving');
});

t.test('the ledger and usage API show each request with its cache status and savings', async (t) => {
  const res = await fetch(`${gw.baseURL}/requests?limit=100`, { headers: { authorization: `Bearer ${readerA}` } });
  const page = await res.json() as Json;
  const rows = page.data as Json[];
  const hits = rows.filter((r) => r.cache === 'exact');
  t.ok(hits.length >= 4);
  for (const r of hits) {
    t.equal(r.charge_usd, 0);
    t.equal(r.prompt_tokens, 0, 'no tokens billed upstream');
    t.ok(r.saved_tokens.exact_cache > 0);
    t.equal(r.saved_usd, r.benchmark_usd);
  }
  t.ok(rows.some((r) => r.cache === 'dedupe' && r.saved_tokens.dedupe > 0));
  const summary = await (await fetch(`${gw.baseURL}/usage/summary`, { headers: { authorization: `Bearer ${readerA}` } })).json() as Json;
  t.ok(summary.saved_tokens.exact_cache > 0, 'the summary reports tokens saved per mechanism');
  t.ok(summary.saved_tokens.dedupe > 0);
  t.ok(summary.by_cache.exact >= 4, 'and requests per cache status');
});
