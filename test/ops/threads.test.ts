// SLUICE_THREADS: several event-loop threads on one port behave as one gateway. Limits and
// credits are exact across threads under load (one thread keeps them), a key minted or
// revoked is in force on every thread at once, what a thread hands to the main thread comes
// back as the main thread answered it (streams, errors, CORS, HEAD, compressed bodies), and
// a graceful stop or a kill -9 loses no acknowledged row. Which thread served a request is
// read from its request id (each thread's ids carry their own tag).
import t from 'tap';
import { request as httpRequest } from 'node:http';
import { gzipSync } from 'node:zlib';
import { Agent, fetch, type Response } from 'undici';
import OpenAI from 'openai';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel, type Gateway } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const fake = await startFakeUpstream();
t.teardown(() => fake.close());
const config = {
  models: [testModel('m'), testModel('drip-20'), testModel('drip-250'), { ...testModel('pricey'), prices: { input: 10, output: 20 } }],
  http: { cors_origins: ['https://app.example'] },
  registration: { per_address_per_hour: 3 },
};
const env = { OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off', SLUICE_THREADS: '2' };
const dataDir = tempDataDir();
let gw: Gateway = await startGateway(env, dataDir, config);
t.teardown(() => gw.stop());
const ask = (content: string, extra: Json = {}) => ({ model: 'openai/m', messages: [{ role: 'user', content }], ...extra });
/** The tag of the RequestIds that made an id: one per thread. */
const tagOf = (id: string | null) => (id ?? '').slice(13, 19);

/** `n` requests at once, each on a connection of its own (so the kernel spreads them over the threads). */
async function burst(n: number, send: (i: number, dispatcher: Agent) => Promise<Response>): Promise<Response[]> {
  const agents = Array.from({ length: n }, () => new Agent({ connections: 1 }));
  try {
    return await Promise.all(agents.map((a, i) => send(i, a)));
  } finally {
    await Promise.all(agents.map((a) => a.close()));
  }
}
const post = (path: string, key: string, body: unknown, dispatcher: Agent, headers: Record<string, string> = {}) => fetch(`${gw.url}${path}`, {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), dispatcher,
});

t.test('both threads serve the port', async (t) => {
  const answers = await burst(40, (i, d) => post('/v1/chat/completions', gw.masterKey, ask(`spread ${i}`), d));
  t.ok(answers.every((r) => r.status === 200), 'every request answered');
  const tags = new Set(answers.map((r) => tagOf(r.headers.get('x-request-id'))));
  t.equal(tags.size, 2, 'answered by two threads');
  await Promise.all(answers.map((r) => r.text()));
  t.match(gw.output(), /event-loop threads: 2/);
});

t.test('rpm is exact across threads under load, and every hold comes back', async (t) => {
  const { call, tenant } = http(gw);
  const { key, id } = await tenant(gw.masterKey, 100, { rpm: 40 }, ['inference', 'usage:read']);
  const answers = await burst(160, (i, d) => post('/v1/chat/completions', key, ask(`rpm ${i}`), d));
  const served = answers.filter((r) => r.status === 200);
  const refused = answers.filter((r) => r.status === 429);
  t.equal(served.length, 40, 'exactly the rpm served');
  t.equal(refused.length, 120, 'the rest refused');
  t.ok(refused.every((r) => r.headers.get('x-gateway-limit-kind') === 'rpm'), 'refused for rpm');
  t.equal(new Set(served.map((r) => tagOf(r.headers.get('x-request-id')))).size, 2, 'served by both threads');
  t.equal(new Set(refused.map((r) => tagOf(r.headers.get('x-request-id')))).size, 2, 'refused by both threads');
  const refusal = await refused[0]!.json() as Json;
  t.equal(refusal.error.kind, 'rpm', "the refusal's envelope crosses threads whole");
  await Promise.all(answers.map((r) => r.bodyUsed ? null : r.text()));
  const view = (await call(`/admin/keys/${id}`, gw.masterKey)).json;
  t.equal(view.state.in_flight, 0, 'no slot held');
  t.equal(view.state.reserved_usd, 0, 'no reservation held');
  const rows: Json[] = [];
  for (let cursor: string | null = null, i = 0; i < 10; i++) {
    const page: Json = (await call(`/v1/requests?limit=100${cursor ? `&cursor=${cursor}` : ''}`, key)).json;
    rows.push(...(page.data as Json[]));
    cursor = page.next_cursor as string | null;
    if (!cursor) break;
  }
  t.equal(rows.length, 160, 'a row for every request, whichever thread served it');
  t.equal(rows.filter((r) => r.status === 200).length, 40);
});

t.test('a slot is free for the next request the moment an answer ends, whichever thread takes it', async (t) => {
  const { key } = await http(gw).tenant(gw.masterKey, 10, { max_concurrency: 1 });
  const tags = new Set<string>();
  for (let i = 0; i < 30; i++) {
    // (each on a new connection: the kernel picks the thread)
    const [r] = await burst(1, (_i, d) => post('/v1/chat/completions', key, ask(`one at a time ${i}`), d));
    t.equal(r!.status, 200, `request ${i} served`);
    tags.add(tagOf(r!.headers.get('x-request-id')));
    await r!.text();
  }
  t.equal(tags.size, 2, 'both threads took some');
});

t.test('credits are exact across threads: a burst never overdraws', async (t) => {
  const { call, tenant } = http(gw);
  // $0.002 at $10/$20 per 1M: room for a handful of short answers
  const { key, ws } = await tenant(gw.masterKey, 0.002, undefined, ['inference', 'usage:read']);
  const answers = await burst(80, (i, d) => post('/v1/chat/completions', key, { ...ask(`credits ${i}`), model: 'openai/pricey', max_tokens: 20 }, d));
  const served = answers.filter((r) => r.status === 200);
  t.ok(served.length > 0, `some served (${served.length})`);
  t.ok(answers.every((r) => r.status === 200 || r.status === 402), 'each served or refused for credits');
  let charged = 0;
  for (const r of served) charged += ((await r.json()) as Json).gateway.charge_usd as number;
  await Promise.all(answers.filter((r) => !r.bodyUsed).map((r) => r.text()));
  const view = (await call(`/admin/workspaces/${ws}`, gw.masterKey)).json;
  t.ok(view.balance_usd >= 0, `never below zero (${view.balance_usd})`);
  t.equal(view.reserved_usd, 0, 'no hold left');
  t.ok(Math.abs(view.balance_usd - (0.002 - charged)) < 1e-9, 'the balance moved by exactly what the answers say they charged');
});

t.test('a key minted or revoked is in force on every thread at once', async (t) => {
  const { call, tenant } = http(gw);
  for (let round = 0; round < 3; round++) {
    const { key, id } = await tenant(gw.masterKey, 10);
    const first = await burst(20, (i, d) => post('/v1/chat/completions', key, ask(`fresh ${round} ${i}`), d));
    t.ok(first.every((r) => r.status === 200), `a new key works on every thread (round ${round})`);
    await Promise.all(first.map((r) => r.text()));
    t.equal((await call(`/admin/keys/${id}`, gw.masterKey, undefined, 'DELETE')).status, 200);
    const after = await burst(20, (i, d) => post('/v1/chat/completions', key, ask(`revoked ${round} ${i}`), d));
    t.ok(after.every((r) => r.status === 401), `a revoked key is refused on every thread (round ${round})`);
    await Promise.all(after.map((r) => r.text()));
  }
});

t.test("the operator's deployment switch is thrown on every thread once it answers", async (t) => {
  const { adminJson } = http(gw);
  const list = (await adminJson('/admin/deployments')).data as Json[];
  const decision = list.find((d) => (d.models as string[]).includes('openai/m'))!.decision as string;
  for (let round = 0; round < 3; round++) {
    t.equal((await adminJson('/admin/deployments/disable', { decision })).enabled, false);
    const off = await burst(16, (i, d) => post('/v1/chat/completions', gw.masterKey, ask(`off ${round} ${i}`), d));
    t.ok(off.every((r) => r.status === 503), `disabled on every thread (round ${round})`);
    await Promise.all(off.map((r) => r.text()));
    t.equal((await adminJson('/admin/deployments/enable', { decision })).enabled, true);
    const on = await burst(16, (i, d) => post('/v1/chat/completions', gw.masterKey, ask(`on ${round} ${i}`), d));
    t.ok(on.every((r) => r.status === 200), `enabled on every thread (round ${round})`);
    await Promise.all(on.map((r) => r.text()));
  }
});

t.test("/health, /metrics and /admin/deployments count every thread's requests", async (t) => {
  const { adminJson } = http(gw);
  const deployment = async (model: string) => ((await adminJson('/admin/deployments')).data as Json[]).find((d) => (d.models as string[]).includes(model))!;
  const before = await deployment('openai/m');
  const answers = await burst(30, (i, d) => post('/v1/chat/completions', gw.masterKey, ask(`counted ${i}`), d));
  t.ok(answers.every((r) => r.status === 200), 'every request answered');
  t.equal(new Set(answers.map((r) => tagOf(r.headers.get('x-request-id')))).size, 2, 'by both threads');
  await Promise.all(answers.map((r) => r.text()));
  const after = await deployment('openai/m');
  t.equal((after.requests as number) - (before.requests as number), 30, "the deployment's request count has every thread's");
  t.ok(typeof after.latency_ewma_ms === 'number', 'and its latency');
  // Twelve slow requests (1.5 s each) at once: in flight on both threads, counted where the operator looks.
  const agents = Array.from({ length: 12 }, () => new Agent({ connections: 1 }));
  const slow = agents.map((a, i) => post('/v1/chat/completions', gw.masterKey, { ...ask(`slow ${i}`), model: 'openai/drip-250' }, a));
  const inFlight = async () => ((await (await fetch(`${gw.url}/health`)).json()) as Json).in_flight as number;
  const gauge = async () => Number(/^sluice_in_flight_requests (\d+)$/m.exec(await (await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).text())?.[1]);
  let seen = 0;
  for (let i = 0; i < 50 && seen < 12; i++) { await new Promise((r) => setTimeout(r, 20)); seen = await inFlight(); }
  t.equal(seen, 12, '/health: in_flight 12 (each thread says within a quarter second)');
  t.equal(await gauge(), 12, '/metrics: sluice_in_flight_requests 12');
  const done = await Promise.all(slow);
  t.ok(done.every((r) => r.status === 200), 'the slow ones answered');
  t.equal(new Set(done.map((r) => tagOf(r.headers.get('x-request-id')))).size, 2, 'by both threads');
  await Promise.all(done.map((r) => r.text()));
  await Promise.all(agents.map((a) => a.close()));
  for (let i = 0; i < 50 && seen > 0; i++) { await new Promise((r) => setTimeout(r, 20)); seen = await inFlight(); }
  t.equal(seen, 0, 'and none once they are answered');
});

t.test('each thread logs the requests it served: one whole JSON line per request, none twice, none lost', async (t) => {
  const answers = await burst(60, (i, d) => post('/v1/chat/completions', gw.masterKey, ask(`logged ${i}`), d));
  t.ok(answers.every((r) => r.status === 200), 'every request answered');
  const ids = answers.map((r) => r.headers.get('x-request-id')!);
  t.equal(new Set(ids.map(tagOf)).size, 2, 'by both threads');
  await Promise.all(answers.map((r) => r.text()));
  const logged = () => gw.output().split('\n').filter((l) => l.startsWith('{"level"'));
  for (let i = 0; i < 40 && ids.some((id) => !logged().some((l) => l.includes(id))); i++) await new Promise((r) => setTimeout(r, 50));
  const lines = logged();
  const parsed = lines.map((l) => { try { return JSON.parse(l) as Json; } catch { return null; } });
  t.equal(parsed.filter((l) => l === null).length, 0, `every line is whole JSON (${lines.length} lines)`);
  for (const id of ids) t.equal(parsed.filter((l) => l?.request_id === id).length, 1, `${id} logged once`);
});

t.test('what a thread hands over comes back as the main thread answered it', async (t) => {
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
  // temperature 0: the caches' (kept by the main thread); the repeat is an exact hit, whichever thread takes it
  const body = { model: 'openai/m', temperature: 0, messages: [{ role: 'user' as const, content: 'cached across threads' }] };
  await client.chat.completions.create(body);
  const hits = await burst(10, (_i, d) => post('/v1/chat/completions', gw.masterKey, body, d));
  t.ok(hits.every((r) => r.status === 200 && r.headers.get('x-gateway-cache') === 'exact'), 'a hit on every thread');
  await Promise.all(hits.map((r) => r.text()));
  // a stream handed over streams through
  const streamed = await burst(10, (i, d) => post('/v1/chat/completions', gw.masterKey, { ...body, stream: true, messages: [{ role: 'user', content: `stream ${i}` }] }, d));
  for (const r of streamed) {
    const text = await r.text();
    t.ok(r.status === 200 && text.includes('data: [DONE]') && r.headers.get('content-type')?.startsWith('text/event-stream'), 'an SSE stream, whole');
  }
  // the SDK's stream through whichever thread
  let chunks = 0;
  for await (const c of await client.chat.completions.create({ ...body, stream: true, messages: [{ role: 'user', content: 'sdk stream' }] })) chunks += c.choices.length;
  t.ok(chunks > 1, 'the SDK reads the stream');
  // admin, errors, HEAD, CORS and a gzip body, each on fresh connections so both threads take some
  const plain = (path: string, init: Parameters<typeof fetch>[1]) => burst(8, (_i, d) => fetch(`${gw.url}${path}`, { ...init, dispatcher: d }));
  for (const r of await plain('/admin/workspaces', { headers: { authorization: `Bearer ${gw.masterKey}` } })) t.equal((await r.json() as Json).object, 'list');
  for (const r of await plain('/v1/nowhere', {})) { t.equal(r.status, 404); t.equal((await r.json() as Json).error.code, 'not_found'); }
  for (const r of await plain('/v1/chat/completions', { method: 'GET' })) { t.equal(r.status, 405); await r.text(); }
  for (const r of await plain('/health', { method: 'HEAD' })) { t.equal(r.status, 200); t.equal(await r.text(), ''); }
  for (const r of await plain('/v1/models', { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' } })) {
    t.equal(r.status, 204); t.equal(r.headers.get('access-control-allow-origin'), 'https://app.example');
  }
  for (const r of await plain('/v1/models', { headers: { origin: 'https://app.example' } })) {
    t.equal(r.headers.get('access-control-allow-origin'), 'https://app.example', 'CORS on a handed-over answer, once');
    await r.text();
  }
  const zipped = gzipSync(JSON.stringify({ model: 'openai/m', temperature: 0, messages: [{ role: 'user', content: 'gzip body' }] }));
  for (const r of await plain('/v1/chat/completions', { method: 'POST', body: zipped, headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json', 'content-encoding': 'gzip' } })) {
    t.equal(r.status, 200, 'a gzip body, inflated once'); await r.text();
  }
  const tooBig = JSON.stringify({ model: 'openai/m', messages: [{ role: 'user', content: 'x'.repeat(11 * 1024 * 1024) }] });
  for (const r of await plain('/v1/chat/completions', { method: 'POST', body: tooBig, headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' } })) {
    t.equal(r.status, 413); await r.text();
  }
  // Registration is throttled per caller address (3 an hour here): the main thread sees the
  // address a thread took the request from, so 16 from one address, over both threads, get 3.
  const registered = await burst(16, (i, d) => fetch(`${gw.url}/v1/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: `someone${i}@example.com` }), dispatcher: d }));
  const codes = registered.map((r) => r.status);
  t.equal(codes.filter((c) => c === 201).length, 3, `3 registered (${codes.join(',')})`);
  t.equal(codes.filter((c) => c === 429).length, 13, 'the rest throttled');
  await Promise.all(registered.map((r) => r.text()));
  const rows = (await http(gw).call('/v1/requests?limit=5', gw.masterKey)).json.data as Json[];
  t.ok(rows.length > 0, 'handed-over requests have their rows');
  // Expect: 100-continue (curl sends it with any body over 1 MiB): uWS answers it on the client's connection; the hand-over goes on without it.
  const expecting = await Promise.all(Array.from({ length: 8 }, (_, i) => new Promise<number>((resolve, reject) => {
    const req = httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', agent: false, headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json', expect: '100-continue' } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
    req.on('continue', () => req.end(JSON.stringify({ model: 'openai/m', temperature: 0, messages: [{ role: 'user', content: `expecting ${i}` }] })));
    req.on('error', reject);
  })));
  t.same(expecting, Array(8).fill(200), 'Expect: 100-continue, handed over');
  // Clients that leave mid-answer, on both paths: a handed-over stream and one served in a thread.
  for (const cacheable of [true, false]) {
    await burst(12, async (i, d) => {
      const abort = new AbortController();
      const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', dispatcher: d, signal: abort.signal,
        headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'openai/drip-20', stream: true, ...(cacheable ? { temperature: 0 } : {}), messages: [{ role: 'user', content: `leave ${cacheable} ${i}` }] }) });
      const reader = r.body!.getReader();
      await reader.read();
      abort.abort();
      await reader.read().catch(() => undefined);
      return r;
    });
  }
  const after = await burst(8, (i, d) => post('/v1/chat/completions', gw.masterKey, ask(`after leaving ${i}`), d));
  t.ok(after.every((r) => r.status === 200), 'every thread still serves');
  await Promise.all(after.map((r) => r.text()));
  t.notMatch(gw.output(), /thread \d+ (exited|:)/, 'no thread failed');
});

t.test('SLUICE_THREADS_MAIN_HTTP takes on or off, saying so', async (t) => {
  const bad = await startGateway({ ...env, SLUICE_THREADS_MAIN_HTTP: 'maybe' }, tempDataDir(), config).then(() => null, (err: Error) => err.message);
  t.match(bad, /SLUICE_THREADS_MAIN_HTTP=maybe: must be on or off/);
});

t.test('a graceful stop under load loses no acknowledged row; so does kill -9', async (t) => {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    const { tenant } = http(gw);
    const { key } = await tenant(gw.masterKey, 100, undefined, ['inference', 'usage:read']);
    const answered: string[] = [];
    let stopping = false;
    const agents = Array.from({ length: 16 }, () => new Agent({ connections: 1 }));
    const load = Promise.all(agents.map(async (d, c) => {
      for (let i = 0; !stopping || i < 3; i++) {
        const r = await post('/v1/chat/completions', key, ask(`${signal} ${c} ${i}`), d).catch(() => null);
        if (!r) return;
        if (r.status === 200) { await r.json().then(() => answered.push(r.headers.get('x-request-id')!), () => undefined); } else { await r.text().catch(() => ''); if (stopping) return; }
        if (stopping) return;
      }
    }));
    for (let i = 0; i < 300 && answered.length < 60; i++) await new Promise((r) => setTimeout(r, 10));
    stopping = true;
    const code = await gw.stop(signal);
    await load;
    await Promise.all(agents.map((a) => a.close()));
    if (signal === 'SIGTERM') t.equal(code, 0, 'a graceful stop exits 0');
    t.ok(answered.length >= 40, `load was served (${answered.length} answered)`);
    gw = await startGateway(env, dataDir, config);
    let missing = 0;
    for (const id of answered) if ((await http(gw).call(`/v1/requests/${id}`, key)).status !== 200) missing++;
    t.equal(missing, 0, `every answered request has its row after ${signal}`);
  }
});
