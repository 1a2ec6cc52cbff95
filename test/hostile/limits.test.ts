// Limits under concurrency and through key families: a burst cannot overshoot a budget or a
// tpm beyond the one request admitted in good faith, a minted key is never looser than its
// parent and shares its quota, and a key a request may fail over to is held to the key's
// route constraints.
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const fake = await startFakeUpstream();
const second = await startFakeUpstream();
// A pricey model so that a cent goes quickly; 'dual' has a route on a second provider.
const pricey = { ...testModel('drip-20'), prices: { input: 10, output: 20 } };
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(), {
  providers: { beta: { kind: 'openai', base_url: second.url, api_key: 'sk-fake-upstream' } },
  models: [pricey, testModel('m'), testModel('b-fails'),
    { ...testModel('fail-500'), routes: [{ provider: 'beta', upstream_id: 'dual-ok', prices: { input: 5, output: 9 } }] },
    { ...testModel('both-ok'), prices: { input: 3, output: 3 }, routes: [{ provider: 'beta', upstream_id: 'both-ok', prices: { input: 1, output: 1 } }] }],
  aliases: { pair: { models: ['openai/b-fails', 'openai/m'] } },
  registration: { per_address_per_hour: 50 },
  keys: { max_per_workspace: 12 },
});
t.teardown(async () => { await gw.stop(); await fake.close(); await second.close(); });
const { call, tenant } = http(gw);
const ask = (model: string, content = 'Say hello', extra: Json = {}) => ({ model, messages: [{ role: 'user', content }], ...extra });
const rowsOf = async (key: string) => (await call('/v1/requests?limit=100', key)).json.data as Json[];

t.test('200 concurrent requests against a $0.01 daily budget', async (t) => {
  const { key, id } = await tenant(gw.masterKey, 100, { budget_usd_day: 0.01 }, ['inference', 'usage:read']);
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => call('/v1/chat/completions', key, ask('openai/drip-20', `budget ${i}`, { max_tokens: 10 }))));
  const served = results.filter((r) => r.status === 200);
  const refused = results.filter((r) => r.status === 429);
  t.equal(served.length + refused.length, 200, 'each is served or refused');
  t.ok(refused.every((r) => r.json.error.kind === 'budget' && r.headers.get('x-gateway-limit-kind') === 'budget'), 'refused for the budget');
  // Then one at a time until the budget refuses: what a burst reserved came back.
  for (let i = 0; i < 200; i++) {
    const r = await call('/v1/chat/completions', key, ask('openai/drip-20', `then ${i}`, { max_tokens: 10 }));
    if (r.status !== 200) { t.equal(r.json.error.kind, 'budget'); break; }
    served.push(r);
  }
  const spent = served.reduce((a, r) => a + Number(r.headers.get('x-btl-customer-charge')), 0);
  // One request's most: its prompt bound (body bytes) at the input price and max_tokens at the output price.
  const oneMax = (Buffer.byteLength(JSON.stringify(ask('openai/drip-20', 'budget 199', { max_tokens: 10 }))) * 10 + 10 * 20) / 1e6;
  t.ok(spent <= 0.01 + oneMax, `spend $${spent.toFixed(6)} ≤ budget + one request's maximum ($${(0.01 + oneMax).toFixed(6)})`);
  t.ok(spent >= 0.01, `and the whole budget could be used ($${spent.toFixed(6)} of $0.01, ${served.length} requests)`);
  const state = (await call(`/admin/keys/${id}`, gw.masterKey)).json.state;
  t.equal(state.in_flight, 0, 'nothing in flight afterwards');
  t.equal(state.reserved_usd, 0, 'no reservation left behind');
  t.ok(Math.abs(state.spent_today_usd - spent) < 1e-9, 'the counter agrees with the charges');
});

t.test('100 concurrent requests against tpm 1000', async (t) => {
  const { key } = await tenant(gw.masterKey, 100, { tpm: 1000 }, ['inference', 'usage:read']);
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => call('/v1/chat/completions', key, ask('openai/drip-20', `tokens ${i}`, { max_tokens: 10 }))));
  const served = results.filter((r) => r.status === 200);
  const used = served.reduce((a, r) => a + r.json.usage.prompt_tokens + r.json.usage.completion_tokens, 0);
  const oneMax = Buffer.byteLength(JSON.stringify(ask('openai/drip-20', 'tokens 99', { max_tokens: 10 }))) + 10;
  t.ok(used <= 1000 + oneMax, `${used} tokens ≤ tpm + one request's reservation (${1000 + oneMax})`);
  t.ok(results.filter((r) => r.status === 429).every((r) => r.json.error.kind === 'tpm'), 'the rest refused for tpm');
  t.ok(served.length > 1, `${served.length} served`);
});

t.test('minted keys: never looser than the parent, sharing its quota', async (t) => {
  const parent = await tenant(gw.masterKey, 10, { rpm: 10, max_concurrency: 4, models: ['openai/*'] }, ['inference', 'keys:write', 'usage:read']);
  const looser: Array<[Json | null, string]> = [
    [{ rpm: 20 }, 'limits.rpm'], [{ max_concurrency: 50 }, 'limits.max_concurrency'], [{ models: ['anthropic/claude-sonnet-4-5'] }, 'limits.models'], [null, 'limits'],
  ];
  for (const [limits, param] of looser) {
    const r = await call('/v1/api-keys', parent.key, { name: 'child', limits });
    t.equal(r.status, 403, `${JSON.stringify(limits)} is refused`);
    t.equal(r.json.error.param, param, `naming ${param}`);
  }
  const inherit = await call('/v1/api-keys', parent.key, { name: 'child', limits: {} });
  t.equal(inherit.status, 201);
  t.same(inherit.json.limits, { rpm: 10, max_concurrency: 4, models: ['openai/*'] }, '`{}` inherits every limit');
  const stricter = await call('/v1/api-keys', parent.key, { name: 'child', limits: { rpm: 5 } });
  t.same(stricter.json.limits, { rpm: 5, max_concurrency: 4, models: ['openai/*'] }, 'a stricter limit is kept, the rest inherited');
  const omitted = await call('/v1/api-keys', parent.key, { name: 'child' });
  t.equal(omitted.json.limits.rpm, 10, 'no limits given: the parent\'s');

  // The family shares the parent's rpm: 10 requests across parent and children, then 429 for all.
  const children = [inherit.json.key as string, omitted.json.key as string];
  let ok = 0;
  for (let i = 0; i < 14; i++) {
    const r = await call('/v1/chat/completions', i % 3 === 0 ? parent.key : children[i % 2]!, ask('openai/m', `family ${i}`));
    if (r.status === 200) ok++;
    else t.equal(r.json.error.kind, 'rpm');
  }
  t.equal(ok, 10, 'ten requests a minute for the whole family, not ten per key');
  // A grandchild cannot escape either.
  const child = await call('/v1/api-keys', parent.key, { name: 'writer', scopes: ['inference', 'keys:write'] });
  const grandchild = await call('/v1/api-keys', child.json.key, { name: 'grandchild' });
  t.equal(grandchild.status, 201);
  t.equal((await call('/v1/chat/completions', grandchild.json.key, ask('openai/m'))).status, 429, 'a grandchild is held to the grandparent\'s quota');
});

t.test('a registered key\'s window cannot be reset by minting', async (t) => {
  const reg = await call('/v1/register', '', { email: 'window@example.com' });
  t.equal(reg.status, 201);
  const registered = reg.json.key.key as string;
  // Registered workspaces start without credits unless the operator opts in: top this one up.
  await call(`/admin/workspaces/${reg.json.workspace.id}/topups`, gw.masterKey, { amount_usd: 5 });
  let ok = 0;
  for (let i = 0; i < 45; i++) if ((await call('/v1/chat/completions', registered, ask('openai/m', `r ${i}`))).status === 200) ok++;
  const child = await call('/v1/api-keys', registered, { name: 'fresh', limits: {} });
  t.equal(child.status, 201);
  t.same(child.json.limits.windows, [{ requests: 50, seconds: 21600 }, { requests: 600, seconds: 604800 }], 'the child has the parent\'s windows');
  for (let i = 0; i < 10; i++) if ((await call('/v1/chat/completions', child.json.key, ask('openai/m', `c ${i}`))).status === 200) ok++;
  t.equal(ok, 50, '50 per 6 h for the registered key and its children together');
  const refused = await call('/v1/chat/completions', child.json.key, ask('openai/m'));
  t.equal(refused.json.error.kind, 'window');
  t.equal(refused.json.error.window_seconds, 21600);
});

t.test('revocation: a child cannot revoke its parent; revoking a parent revokes its children', async (t) => {
  const root = await tenant(gw.masterKey, 5, undefined, ['inference', 'keys:write']);
  const a = (await call('/v1/api-keys', root.key, { name: 'a', scopes: ['inference', 'keys:write'] })).json;
  const b = (await call('/v1/api-keys', root.key, { name: 'b', scopes: ['inference', 'keys:write'] })).json;
  const a1 = (await call('/v1/api-keys', a.key, { name: 'a1' })).json;
  t.equal((await call(`/v1/api-keys/${root.id}`, a.key, undefined, 'DELETE')).status, 403, 'a child cannot revoke its parent');
  t.equal((await call(`/v1/api-keys/${root.id}`, a1.key, undefined, 'DELETE')).status, 403, 'nor its grandparent');
  t.equal((await call(`/v1/api-keys/${b.id}`, a.key, undefined, 'DELETE')).status, 403, 'nor a sibling');
  t.equal((await call(`/v1/api-keys/${a.id}`, root.key, undefined, 'DELETE')).status, 200, 'the parent revokes a child');
  t.equal((await call('/v1/chat/completions', a1.key, ask('openai/m'))).status, 401, 'and the child\'s own children go with it');
  t.equal((await call('/v1/chat/completions', b.key, ask('openai/m'))).status, 200, 'a sibling is untouched');
});

t.test('operator PATCH: a minted key stays within its parent; a parent that tightens clamps its children', async (t) => {
  const parent = await tenant(gw.masterKey, 5, { rpm: 100 }, ['inference', 'keys:write']);
  const child = (await call('/v1/api-keys', parent.key, { name: 'c', limits: { rpm: 50 } })).json;
  t.equal((await call(`/admin/keys/${child.id}`, gw.masterKey, { limits: { rpm: 500 } }, 'PATCH')).status, 403, 'not looser than its parent, even for the operator');
  await call(`/admin/keys/${parent.id}`, gw.masterKey, { limits: { rpm: 20 } }, 'PATCH');
  t.equal((await call(`/admin/keys/${child.id}`, gw.masterKey)).json.limits.rpm, 20, 'the child is clamped to the parent\'s new rpm');
});

t.test('route constraints hold on every route a request may fail over to', async (t) => {
  // openai/fail-500: its openai route answers 500; its beta route would answer.
  const onlyOpenai = await tenant(gw.masterKey, 5, { providers: ['openai'] });
  const r = await call('/v1/chat/completions', onlyOpenai.key, ask('openai/fail-500'));
  t.equal(r.status, 502, 'the allowed route failed: the caller sees the failure');
  t.notOk(second.received.length, 'and the other provider never got the request');
  const pinned = await call('/v1/chat/completions', onlyOpenai.key, ask('openai/fail-500', 'x', { provider: 'beta' }));
  t.equal(pinned.status, 403, 'pinning it directly is a 403');
  const anyProvider = await tenant(gw.masterKey, 5);
  const failover = await call('/v1/chat/completions', anyProvider.key, ask('openai/fail-500'));
  t.equal(failover.status, 200, 'a key without the constraint fails over');
  t.equal(failover.headers.get('x-gateway-decision'), 'beta/dual-ok');

  // An alias whose cheaper member the key may not use: that member is never tried.
  const onlyM = await tenant(gw.masterKey, 5, { models: ['openai/m'] });
  const before = fake.received.filter((x) => x.body.model === 'b-fails').length;
  const viaAlias = await call('/v1/chat/completions', onlyM.key, ask('pair'));
  t.equal(viaAlias.status, 200);
  t.equal(viaAlias.headers.get('x-gateway-decision'), 'openai/m');
  t.equal(fake.received.filter((x) => x.body.model === 'b-fails').length, before, 'the disallowed member got nothing');
  t.equal((await call('/v1/chat/completions', onlyM.key, ask('openai/b-fails'))).status, 403);
  void rowsOf;
});

t.test('a constrained key is not served another route\'s cached answer', async (t) => {
  const free = await tenant(gw.masterKey, 5);
  const onlyOpenai = await tenant(gw.masterKey, 5, { providers: ['openai'] });
  const body = ask('openai/both-ok', 'cached across keys?', { temperature: 0 });
  const first = await call('/v1/chat/completions', free.key, body);
  t.equal(first.headers.get('x-gateway-decision'), 'beta/both-ok', 'the cheaper route answered and the answer was cached');
  t.equal((await call('/v1/chat/completions', free.key, body)).headers.get('x-gateway-cache'), 'exact');
  const constrained = await call('/v1/chat/completions', onlyOpenai.key, body);
  t.equal(constrained.status, 200);
  t.equal(constrained.headers.get('x-gateway-decision'), 'openai/both-ok', 'served by its own provider');
  t.equal(constrained.headers.get('x-gateway-cache'), 'miss', 'not from the other provider\'s cached answer');
});

/** OpenAI's duration style back to milliseconds: 120ms, 1.5s, 6m0s, 1h2m3s. */
function durationMs(v: string | null): number {
  const m = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:([\d.]+)s)?(?:(\d+)ms)?$/.exec(v ?? '');
  if (!m || !v) return Number.NaN;
  return (Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0)) * 1000 + Number(m[4] ?? 0);
}

t.test('a refusal\'s x-ratelimit-* agree with its Retry-After, for every kind', async (t) => {
  const cases: Array<[Json, string, string | null]> = [
    [{ rpm: 1 }, 'rpm', 'requests'], [{ windows: [{ requests: 1, seconds: 600 }] }, 'window', 'requests'],
    [{ rpm: 100, windows: [{ requests: 1, seconds: 600 }] }, 'window', 'requests'], [{ tpm: 5 }, 'tpm', 'tokens'],
    [{ budget_usd_month: 0.0000001 }, 'budget', null],
  ];
  for (const [limits, kind, family] of cases) {
    const { key } = await tenant(gw.masterKey, 5, limits);
    await call('/v1/chat/completions', key, ask('openai/m'));
    const r = await call('/v1/chat/completions', key, ask('openai/m'));
    t.equal(r.status, 429, `${JSON.stringify(limits)}: refused`);
    t.equal(r.headers.get('x-gateway-limit-kind'), kind);
    t.equal(r.json.error.kind, kind);
    const retry = Number(r.headers.get('retry-after'));
    t.equal(r.json.error.retry_after_seconds, retry);
    t.equal(Math.ceil(Number(r.headers.get('retry-after-ms')) / 1000), retry, 'retry-after-ms is the exact wait');
    if (family) {
      t.equal(r.headers.get(`x-ratelimit-remaining-${family}`), '0');
      t.equal(Math.ceil(durationMs(r.headers.get(`x-ratelimit-reset-${family}`)) / 1000), retry, `x-ratelimit-reset-${family} ${r.headers.get(`x-ratelimit-reset-${family}`)} agrees with Retry-After ${retry}`);
    }
    if (kind === 'budget') t.equal(r.json.error.period, 'month');
  }
});

t.test('self-serve minting stops at keys.max_per_workspace live keys', async (t) => {
  const root = await tenant(gw.masterKey, 1, undefined, ['inference', 'keys:write']);
  const statuses: number[] = [];
  for (let i = 0; i < 14; i++) statuses.push((await call('/v1/api-keys', root.key, { name: `k${i}` })).status);
  t.same(statuses.slice(0, 11), Array(11).fill(201), 'the root key and 11 minted: 12 live');
  t.same(statuses.slice(11), [403, 403, 403], 'then 403');
  const listed = (await call('/v1/api-keys', root.key)).json.data as Json[];
  await call(`/v1/api-keys/${listed.find((k) => k.name === 'k0')!.id}`, root.key, undefined, 'DELETE');
  t.equal((await call('/v1/api-keys', root.key, { name: 'again' })).status, 201, 'a revoked key frees its place');
});

t.test('a refund of unused tpm never fills the bucket past its size', async (t) => {
  const { Limits } = await import('../../src/accounts/limits.js');
  const store = { limits: { getKeys: () => [], put: () => Promise.resolve(true) } } as unknown as ConstructorParameters<typeof Limits>[0];
  const limits = new Limits(store);
  const key = { id: 'key_t', kind: 'minted', limits: { tpm: 1000 } } as unknown as Parameters<typeof limits.admit>[0][number];
  const t0 = 1_000_000;
  const a = limits.admit([key], { tokens: 600, nano: 0 }, t0)!;
  // A minute later the bucket has refilled; the request finishes having used 10 of its 600.
  limits.finish(key, a, 10, 0, t0 + 60_000);
  const b = limits.admit([key], { tokens: 0, nano: 0 }, t0 + 60_000)!;
  const remaining = Number(b.headers.find(([k]) => k === 'x-ratelimit-remaining-tokens')?.[1]);
  t.ok(remaining <= 1000, `remaining ${remaining} ≤ the tpm of 1000`);
});

t.test('concurrent self-serve mints cannot pass the cap together', async (t) => {
  const { request } = await import('node:http');
  const root = await tenant(gw.masterKey, 1, undefined, ['inference', 'keys:write']);
  const url = new URL(`${gw.url}/v1/api-keys`);
  const mint = (i: number) => new Promise<number>((resolve) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent: false, // a connection each
      headers: { authorization: `Bearer ${root.key}`, 'content-type': 'application/json' } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
    req.end(JSON.stringify({ name: `race${i}` }));
  });
  const statuses = await Promise.all(Array.from({ length: 40 }, (_, i) => mint(i)));
  t.equal(statuses.filter((s) => s === 201).length, 11, `the root key and 11 minted: the cap of 12 holds (${statuses.join(',')})`);
  const listed = (await call('/v1/api-keys', root.key)).json.data as Json[];
  t.equal(listed.filter((k) => k.revoked_at === null).length, 12);
});

t.test('a minted key cannot turn back on what its parent turned off', async (t) => {
  const parent = await tenant(gw.masterKey, 1, { savings_off: ['exact_cache', 'dedupe'] }, ['inference', 'keys:write']);
  const looserChild = await call('/v1/api-keys', parent.key, { name: 'c', limits: { savings_off: ['compression'] } });
  t.equal(looserChild.status, 403);
  t.equal(looserChild.json.error.param, 'limits.savings_off');
  const child = await call('/v1/api-keys', parent.key, { name: 'c', limits: { savings_off: ['exact_cache', 'dedupe', 'compression'] } });
  t.equal(child.status, 201, 'more off is fine');
  const inherited = await call('/v1/api-keys', parent.key, { name: 'c', limits: {} });
  t.same(inherited.json.limits.savings_off, ['exact_cache', 'dedupe']);
});
