// In-flight dedupe cannot be used to get answers for free or cheaply: when the leader's
// client leaves, a follower pays, at the price of the route that really answered, and the
// last payer to leave owes what the upstream did so far (the billing rule).
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const fake = await startFakeUpstream();
const beta = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(), {
  providers: { beta: { kind: 'openai', base_url: beta.url, api_key: 'sk-fake-upstream' } },
  models: [testModel('drip-200'),
    { ...testModel('x-slow500'), routes: [{ provider: 'beta', upstream_id: 'drip-100', prices: { input: 100, output: 200 } }] }],
});
t.teardown(async () => { await gw.stop(); await fake.close(); await beta.close(); });
const { call, tenant } = http(gw);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts a request and aborts it `ms` after it was sent; resolves with its request id (null if no headers came before). */
async function leaveAfter(url: string, key: string, body: Json, ms: number): Promise<string | null> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  let id: string | null = null;
  try {
    const res = await fetch(url, { method: 'POST', signal: controller.signal, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    id = res.headers.get('x-request-id');
    const reader = res.body!.getReader();
    for (;;) { const { done } = await reader.read(); if (done) break; }
  } catch { /* aborted */ }
  clearTimeout(timer);
  return id;
}

async function rowOf(key: string, id: string): Promise<Json> {
  for (let i = 0; i < 100; i++) {
    const r = await call(`/v1/requests/${id}`, key);
    if (r.status === 200) return r.json;
    await sleep(20);
  }
  throw new Error(`no row for ${id}`);
}

t.test('leader and follower both leave a shared stream: the last payer is billed what streamed', async (t) => {
  const { key, ws } = await tenant(gw.masterKey, 1, undefined, ['inference', 'usage:read']);
  const body = { model: 'openai/drip-200', stream: true, temperature: 0, max_tokens: 50, messages: [{ role: 'user', content: 'share this stream' }] };
  const url = `${gw.baseURL}/chat/completions`;
  const leader = leaveAfter(url, key, body, 850);
  await sleep(50);
  const follower = leaveAfter(url, key, body, 1000);
  const [leaderId, followerId] = await Promise.all([leader, follower]);
  const [l, f] = [await rowOf(key, leaderId!), await rowOf(key, followerId!)];
  t.equal(l.status, 499);
  t.equal(l.charge_usd, 0, 'the leader handed its bill over');
  t.equal(f.status, 499);
  t.equal(f.usage_source, 'estimate', 'the follower, last to leave, owes what the upstream did');
  t.ok(f.prompt_tokens > 0 && f.completion_tokens >= 3, `prompt and the words streamed (${f.completion_tokens})`);
  t.ok(f.charge_usd > 0, `charged $${f.charge_usd}`);
  const balance = (await call(`/admin/workspaces/${ws}`, gw.masterKey)).json;
  t.ok(balance.balance_usd < 1, 'the balance moved');
  t.equal(balance.reserved_usd, 0);
});

t.test('a payer follower is billed at the route that answered, after failover', async (t) => {
  const { key } = await tenant(gw.masterKey, 5, undefined, ['inference', 'usage:read']);
  const body = { model: 'openai/x-slow500', temperature: 0, messages: [{ role: 'user', content: 'fail over, then hand over' }] };
  const url = `${gw.baseURL}/chat/completions`;
  const leader = leaveAfter(url, key, body, 300);
  // Long enough for the leader to be in flight on a loaded machine (its first route fails after 100 ms, the next drips for ~600 ms).
  await sleep(150);
  const follower = await call('/v1/chat/completions', key, body);
  t.equal(await leader, null, 'the leader left before its answer');
  const rows = (await call('/v1/requests?limit=5', key)).json.data as Json[];
  t.ok(rows.some((r) => r.status === 499 && r.charge_usd === 0), `its row: 499, nothing charged (handed over): ${JSON.stringify(rows.map((r) => [r.status, r.charge_usd, r.cache, r.error]))}`);
  t.equal(follower.status, 200);
  t.equal(follower.headers.get('x-gateway-decision'), 'beta/drip-100', 'the follower names the route that answered');
  const u = follower.json.usage;
  const atBeta = (u.prompt_tokens * 100 + u.completion_tokens * 200) / 1e6;
  t.ok(Math.abs(Number(follower.headers.get('x-btl-customer-charge')) - atBeta) < 1e-9, `charged at beta's prices ($${atBeta})`);
  const f = await rowOf(key, follower.headers.get('x-request-id')!);
  t.equal(f.served, 'beta/drip-100');
  t.ok(Math.abs(f.charge_usd - atBeta) < 1e-9);
});

t.test('the leader\'s client left, then the upstream failed: every follower is told, and nothing stays held', async (t) => {
  const a = await tenant(gw.masterKey, 5);
  const b = await tenant(gw.masterKey, 5);
  // Same workspace, two keys (the second one at a time).
  const second = (await call('/admin/keys', gw.masterKey, { name: 'one-at-a-time', workspace: a.ws, limits: { max_concurrency: 1 } })).json;
  void b;
  const body = { model: 'openai/drip-200', stream: true, temperature: 0, messages: [{ role: 'user', content: 'cut after the leader left' }] };
  const url = `${gw.baseURL}/chat/completions`;
  fake.setFault('cut');
  const leader = leaveAfter(url, a.key, body, 300);
  await sleep(50);
  const follower = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${second.key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await follower.text(); // must end: with an error event
  await leader;
  fake.setFault('none');
  t.match(text, /"error"/, 'the follower\'s stream ends with the error event');
  t.notMatch(text, /\[DONE\]/, 'and no [DONE]');
  await sleep(100);
  t.equal((await call('/health', '')).json.in_flight, 0, 'nothing in flight');
  t.equal((await call(`/admin/keys/${second.id}`, gw.masterKey)).json.state.in_flight, 0, 'the follower\'s slot is back');
  t.equal((await call(`/admin/workspaces/${a.ws}`, gw.masterKey)).json.reserved_usd, 0, 'no credit held');
});
