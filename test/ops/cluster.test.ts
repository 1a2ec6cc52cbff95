// Cluster mode end to end: Debian's redis-server, a throwaway Postgres, three gateway
// processes on them, and clients spreading requests across the three. N replicas must
// behave as one: limits exact cluster-wide, changes to keys in force everywhere within the
// documented bound, no acknowledged row lost when a replica is killed, balances in Postgres
// equal to their rows, and a clean refusal (then recovery) when Redis goes away.
import pg from 'pg';
import { Redis } from 'ioredis';
import t from 'tap';
import { startPostgres, startRedis } from '../helpers/cluster.js';
import { skipWithoutClusterServers } from '../helpers/cluster-skip.js';
import { startGateway, tempDataDir, type Gateway } from '../helpers/gateway.js';
import { SharedSemanticCache } from '../../src/savings/shared-semantic.js';
import { ResponseCache } from '../../src/savings/cache.js';
import type { Cluster } from '../../src/store/cluster.js';
import { openStore } from '../../src/store/lmdb.js';

skipWithoutClusterServers('cluster mode');

const redis = await startRedis();
const postgres = await startPostgres();
t.teardown(async () => { await redis.stop(); await postgres.stop(); });
const db = new pg.Pool({ connectionString: postgres.url, max: 2 });
db.on('error', () => undefined); // (Postgres is stopped on purpose in one test)
t.teardown(() => db.end());

const MASTER = 'sk-sluice-master-cluster-test-0123456789abcdef';
const env = { SLUICE_SIM: 'on', SLUICE_MASTER_KEY: MASTER, SLUICE_REDIS_URL: redis.url, SLUICE_POSTGRES_URL: postgres.url };
const config = { sim: { ttft_ms: 150, tokens_per_second: 100 }, cluster: { sync_ms: 500, ship_ms: 100, lease_ms: 5000 }, keys: { max_per_workspace: 4 } };
const dirs = [tempDataDir(), tempDataDir(), tempDataDir()];
const gws: Gateway[] = [];
for (const dir of dirs) gws.push(await startGateway(env, dir, config));
t.teardown(async () => { await Promise.all(gws.map((g) => g.stop('SIGKILL'))); });

const post = (gw: Gateway, path: string, body: unknown, key = MASTER) => fetch(`${gw.url}${path}`, {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
});
const chat = (gw: Gateway, key: string, content: string) => post(gw, '/v1/chat/completions', { model: 'openai/gpt-4.1-mini', max_tokens: 8, messages: [{ role: 'user', content }] }, key);

/** Once a live semantic entry of `ws` is in Postgres (written by the replica that stored it), and the others had time to read it (sync_ms, 500 ms here). */
async function sharedSemantic(ws: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await db.query('SELECT 1 FROM sluice_semantic WHERE ws = $1 AND entry IS NOT NULL', [ws])).rowCount) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 1200));
}

/** A deterministic (so cacheable) question: how it was served, its answer and its request id. */
async function cacheable(gw: Gateway, key: string, system: string, q: string): Promise<{ cache: string | null; text: string; id: string }> {
  const res = await post(gw, '/v1/chat/completions', { model: 'openai/gpt-4.1-mini', temperature: 0, messages: [{ role: 'system', content: system }, { role: 'user', content: q }] }, key);
  const body = (await res.json()) as { choices: Array<{ message: { content: string } }> };
  return { cache: res.headers.get('x-gateway-cache'), text: body.choices[0]!.message.content, id: res.headers.get('x-request-id')! };
}

async function workspace(name: string, credits: number): Promise<string> {
  const res = await post(gws[0]!, '/admin/workspaces', { name, credits_usd: credits });
  if (res.status !== 201) throw new Error(`workspace: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

async function mint(gw: Gateway, body: object): Promise<{ id: string; key: string }> {
  const res = await post(gw, '/admin/keys', body);
  if (res.status !== 201) throw new Error(`mint: ${res.status} ${await res.text()}`);
  return (await res.json()) as { id: string; key: string };
}

/** Waits until every gateway answers the key's request with `status` (returns how long that took, ms). */
async function everywhere(key: string, status: number, boundMs: number): Promise<number> {
  const t0 = Date.now();
  for (const gw of gws) {
    for (;;) {
      const res = await fetch(`${gw.url}/v1/account/pricing`, { headers: { authorization: `Bearer ${key}` } });
      await res.arrayBuffer();
      if (res.status === status) break;
      if (Date.now() - t0 > boundMs) throw new Error(`${gw.url} still answers ${res.status}, not ${status}, after ${boundMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return Date.now() - t0;
}

/** Waits for every replica's outbox to be in Postgres, then checks every balance against its rows. */
async function reconciled(t: { same(a: unknown, b: unknown, m: string): void }): Promise<void> {
  // Every replica's outbox empty (its /health says), twice in a row.
  for (let i = 0, empty = 0; i < 300 && empty < 2; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const waiting = await Promise.all(gws.map((g) => fetch(`${g.url}/health`).then((r) => r.json() as Promise<{ cluster?: { outbox: number } }>).then((h) => h.cluster?.outbox ?? -1, () => -1)));
    empty = waiting.every((n) => n === 0) ? empty + 1 : 0;
  }
  const off = await db.query(`SELECT w.id, w.balance_nano, coalesce(sum(l.delta_nano), 0) AS rows FROM sluice_workspaces w
    LEFT JOIN sluice_ledger l ON l.workspace = w.id GROUP BY w.id, w.balance_nano HAVING w.balance_nano <> coalesce(sum(l.delta_nano), 0)`);
  t.same(off.rows, [], 'every balance in Postgres equals the sum of its ledger rows');
}

const live = new Redis(redis.url);
live.on('error', () => undefined); // (Redis is stopped on purpose in the last test)
t.teardown(() => live.disconnect());

/** 500 requests at once, spread over the three replicas: their statuses, and how long the burst took (ms). */
async function burst(key: string, tag: string): Promise<{ count: (s: number) => number; spanMs: number; summary: string }> {
  const t0 = Date.now();
  const statuses = await Promise.all(Array.from({ length: 500 }, (_, i) => chat(gws[i % 3]!, key, `${tag} ${i}`).then(async (r) => { await r.arrayBuffer(); return r.status; })));
  const spanMs = Date.now() - t0;
  const count = (s: number) => statuses.filter((x) => x === s).length;
  return { count, spanMs, summary: JSON.stringify(Object.fromEntries([...new Set(statuses)].map((s) => [s, count(s)]))) };
}

t.test('rpm 100 and a window of 100, 500 concurrent requests across three replicas: 100 served', async (t) => {
  const ws = await workspace('rpm', 50);
  // A rolling window does not refill within its length: exactly 100, however long the burst takes.
  const windowed = await mint(gws[0]!, { name: 'window-100', workspace: ws, limits: { windows: [{ requests: 100, seconds: 600 }] } });
  await everywhere(windowed.key, 200, 3000);
  const w = await burst(windowed.key, 'window');
  t.equal(w.count(200), 100, `exactly 100 (${w.summary})`);
  t.equal(w.count(429), 400, 'the rest refused with 429');
  // rpm is a token bucket (as OpenAI's): it refills 100/60 per second while the burst runs.
  const rpm = await mint(gws[1]!, { name: 'rpm-100', workspace: ws, limits: { rpm: 100 } });
  await everywhere(rpm.key, 200, 3000);
  const r = await burst(rpm.key, 'rpm');
  const refill = Math.floor((r.spanMs * 100) / 60_000);
  t.ok(r.count(200) >= 100 && r.count(200) <= 100 + refill, `100 plus what refilled in ${r.spanMs} ms (at most ${refill}): ${r.summary}`);
  t.equal(r.count(200) + r.count(429), 500, 'the rest refused with 429');
  await reconciled(t);
  const held = await live.hget('sluice:w:' + ws, 'h');
  t.equal(Number(held), 0, 'no credit still held once every request finished');
  const slots = await live.hget(`sluice:k:${rpm.id}`, 'fl');
  t.equal(Number(slots), 0, 'no request still counted in flight');
});

t.test('concurrency across replicas, and the rate-limit headers as on one node', async (t) => {
  const ws = await workspace('concurrency', 50);
  const { key, id } = await mint(gws[2]!, { name: 'three-at-a-time', workspace: ws, limits: { max_concurrency: 3, windows: [{ requests: 1000, seconds: 3600 }] } });
  await everywhere(key, 200, 3000);
  // Each answer takes 0.27 to 0.67 s (150 ms to the first token, then 12 to 52 at 100/s): all 30 arrive while the first three run.
  const long = (gw: Gateway, i: number) => post(gw, '/v1/chat/completions', { model: 'openai/gpt-4.1-mini', max_tokens: 1000, messages: [{ role: 'user', content: `write at length ${i}` }] }, key);
  const results = await Promise.all(Array.from({ length: 30 }, (_, i) => long(gws[i % 3]!, i).then(async (r) => { await r.arrayBuffer(); return { status: r.status, kind: r.headers.get('x-gateway-limit-kind') }; })));
  t.equal(results.filter((r) => r.status === 200).length, 3, 'three at a time, across the replicas');
  t.ok(results.filter((r) => r.status === 429).every((r) => r.kind === 'concurrency'), 'the rest refused for concurrency');
  // (an answer's last bytes go once Redis has its slot back: read at once)
  t.equal(Number(await live.hget(`sluice:k:${id}`, 'fl')), 0, 'every slot given back before its answer ended');
  // One request at a time, each sent the instant the last ended, through another replica: never refused.
  const one = await mint(gws[0]!, { name: 'one-at-a-time', workspace: ws, limits: { max_concurrency: 1 } });
  await everywhere(one.key, 200, 3000);
  const sequential: number[] = [];
  for (let i = 0; i < 30; i++) { const r = await chat(gws[i % 3]!, one.key, `one at a time ${i}`); await r.arrayBuffer(); sequential.push(r.status); }
  t.same([...new Set(sequential)], [200], `a key with max_concurrency 1, one request at a time across replicas: every one served (${sequential.join(',')})`);
  const res = await chat(gws[0]!, key, 'headers');
  await res.arrayBuffer();
  t.equal(res.headers.get('x-ratelimit-limit-requests'), '1000');
  // (a rolling window does not refill: what remains is exactly what the three replicas admitted)
  t.equal(res.headers.get('x-ratelimit-remaining-requests'), '996', 'remaining requests counted cluster-wide: 1000 less the 4 admitted through three replicas');
  // (between 59 and 60 minutes; in the first second of a slice it rounds up to the hour: 1/60 of runs)
  t.match(res.headers.get('x-ratelimit-reset-requests'), /^(59m\d+s|1h0m0s)$/, `full again once the newest slice leaves the hour (OpenAI's duration style: ${res.headers.get('x-ratelimit-reset-requests')})`);
});

t.test('a budget across replicas overshoots by at most one request', async (t) => {
  const ws = await workspace('budget', 50);
  const { id, key } = await mint(gws[1]!, { name: 'budget', workspace: ws, limits: { budget_usd_day: 0.0005 } });
  await everywhere(key, 200, 3000);
  const results = await Promise.all(Array.from({ length: 120 }, (_, i) => chat(gws[i % 3]!, key, `budget ${i} ${'word '.repeat(40)}`)
    .then(async (r) => { await r.arrayBuffer(); return { status: r.status, charge: Number(r.headers.get('x-btl-customer-charge') ?? 0) }; })));
  const spent = results.reduce((a, r) => a + (r.status === 200 ? r.charge : 0), 0);
  const most = Math.max(...results.map((r) => r.charge));
  t.ok(results.some((r) => r.status === 429), 'the budget refuses once spent or reserved');
  t.ok(spent <= 0.0005 + most + 1e-12, `spent ${spent} ≤ the budget plus one request (${most})`);
  await reconciled(t);
  const rows = await db.query("SELECT coalesce(sum(charge_usd), 0) AS s FROM sluice_ledger WHERE key_id = $1 AND kind = 'request'", [id]);
  t.ok(Math.abs(Number(rows.rows[0].s) - spent) < 1e-9, 'Postgres has exactly what the clients were charged');
});

t.test('an answer cached through one replica is an exact-cache hit through another', async (t) => {
  const ws = await workspace('cache', 5);
  const { key } = await mint(gws[0]!, { name: 'cache', workspace: ws });
  await everywhere(key, 200, 3000);
  const body = { model: 'openai/gpt-4.1-mini', temperature: 0, max_tokens: 16, messages: [{ role: 'user', content: 'What is the capital of France? (cluster cache)' }] };
  const first = await post(gws[0]!, '/v1/chat/completions', body, key);
  const a = (await first.json()) as { choices: Array<{ message: { content: string } }> };
  t.equal(first.headers.get('x-gateway-cache'), 'miss');
  for (const gw of [gws[1]!, gws[2]!]) {
    const res = await post(gw, '/v1/chat/completions', body, key);
    const b = (await res.json()) as { choices: Array<{ message: { content: string } }> };
    t.equal(res.headers.get('x-gateway-cache'), 'exact', `a hit through ${gw.url}`);
    t.equal(b.choices[0]!.message.content, a.choices[0]!.message.content, 'the same answer');
    t.equal(res.headers.get('x-btl-customer-charge'), '0', 'at no charge');
  }
  // Another workspace asking the same is not served from it.
  const other = await mint(gws[0]!, { name: 'other', workspace: await workspace('cache-other', 5) });
  await everywhere(other.key, 200, 3000);
  const res = await post(gws[2]!, '/v1/chat/completions', body, other.key);
  await res.arrayBuffer();
  t.equal(res.headers.get('x-gateway-cache'), 'miss', "a workspace never gets another's entries");
});

t.test('an eviction or a purge through any replica reaches Redis and every replica\'s copies', async (t) => {
  const ws = await workspace('evictions', 5);
  const { key } = await mint(gws[0]!, { name: 'evictions', workspace: ws });
  await everywhere(key, 200, 3000);
  const ask = (gw: Gateway, q: string) => cacheable(gw, key, 'You answer in one word.', q);
  /**
   * How `q` is answered through `gw` once what was evicted had a moment to reach it: exact and
   * semantic copies go on a notice (milliseconds; the semantic tombstone, two `sync_ms`, is for
   * a replica that missed it); a stale copy answers until then, and a miss stores it again.
   */
  const settled = async (gw: Gateway, q: string, system = 'You answer in one word.') => {
    let got = await cacheable(gw, key, system, q);
    for (let i = 0; i < 20 && got.cache !== 'miss'; i++) { await new Promise((r) => setTimeout(r, 50)); got = await cacheable(gw, key, system, q); }
    return got.cache;
  };
  // Stored through A, copied by B and C (hits there), reported bad through `by`, asked again through `check`.
  const rounds: Array<[number, number]> = [[2, 1], [1, 2], [2, 0]];
  for (const [n, [by, check]] of rounds.entries()) {
    const q = `Name a colour of the rainbow (${n}).`;
    const first = await ask(gws[0]!, q);
    t.equal(first.cache, 'miss');
    t.same([(await ask(gws[1]!, q)).cache, (await ask(gws[2]!, q)).cache], ['exact', 'exact'], 'a hit through B and C (each keeps a copy)');
    const fb = await post(gws[by]!, '/v1/feedback', { request_id: first.id, score: 0 }, key);
    const body = (await fb.json()) as { evicted: { exact: boolean } | null };
    t.equal(fb.status, 200);
    t.equal(body.evicted?.exact, true, `feedback through replica ${by}, which did not serve it, evicts it`);
    t.equal(await settled(gws[check]!, q), 'miss', `replica ${check}'s copy is gone too`);
  }
  // A delete by request id through a replica that did not serve it.
  const stored = await ask(gws[0]!, 'Name a planet.');
  const del = await fetch(`${gws[1]!.url}/v1/cache/requests/${stored.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${MASTER}` } });
  t.equal(del.status, 200, `DELETE /v1/cache/requests through another replica: ${await del.text()}`);
  // (settled: C may copy A's semantic entry from Postgres after the notice, until B's tombstone reaches it)
  t.equal(await settled(gws[2]!, 'Name a planet.'), 'miss', 'gone');
  // A purge through C: what A stored, and B copied, answers nowhere.
  for (const q of ['Name a metal.', 'Name a gas.']) { await ask(gws[0]!, q); t.equal((await ask(gws[1]!, q)).cache, 'exact'); }
  const purge = await fetch(`${gws[2]!.url}/v1/cache/workspaces/${ws}`, { method: 'DELETE', headers: { authorization: `Bearer ${MASTER}` } });
  const purged = (await purge.json()) as { purged: { exact: number } };
  t.equal(purge.status, 200);
  t.ok(purged.purged.exact >= 3, `the purge counts what Redis held (${JSON.stringify(purged)})`);
  t.same([await settled(gws[1]!, 'Name a metal.'), await settled(gws[0]!, 'Name a gas.')], ['miss', 'miss'], "B's copy and A's are gone");
  // The semantic cache too: what A stored, B had read (a paraphrase hit there), purged through C, answers nowhere.
  const stored2 = await cacheable(gws[0]!, key, 'You are concise.', 'What is the boiling point of water at sea level?');
  t.equal(stored2.cache, 'miss');
  let para = { cache: null as string | null };
  const paraphrases = ['At sea level, what is the boiling point of water?', "What's the boiling point of water at sea level?", 'What is the boiling point of water at sea level, please?'];
  for (let i = 0; i < 30 && para.cache !== 'semantic'; i++) { await new Promise((r) => setTimeout(r, 200)); para = await cacheable(gws[1]!, key, 'You are concise.', paraphrases[i % 2]!); }
  t.equal(para.cache, 'semantic', 'B answers a paraphrase from it');
  const purge2 = await fetch(`${gws[2]!.url}/v1/cache/workspaces/${ws}`, { method: 'DELETE', headers: { authorization: `Bearer ${MASTER}` } });
  t.equal(purge2.status, 200, await purge2.text());
  t.equal(await settled(gws[1]!, paraphrases[2]!, 'You are concise.'), 'miss', "B's semantic copy is gone");
  const pattern = await fetch(`${gws[2]!.url}/v1/cache/workspaces/ws_*`, { method: 'DELETE', headers: { authorization: `Bearer ${MASTER}` } });
  t.equal(pattern.status, 400, 'a workspace id that is a pattern is refused');
});

t.test('the same request in flight through another replica is answered by that call, not a second one', async (t) => {
  const ws = await workspace('flights', 5);
  const { key } = await mint(gws[0]!, { name: 'flights', workspace: ws });
  await everywhere(key, 200, 3000);
  const body = { model: 'openai/gpt-4.1-mini', temperature: 0, messages: [{ role: 'user', content: 'Name three rivers in Europe. (flight)' }] };
  const first = post(gws[0]!, '/v1/chat/completions', body, key);
  // Once the first is upstream (marked in flight; 150 ms to its first token from there), the second.
  for (let i = 0; i < 400 && (await live.keys(`sluice:f:${ws}:*`)).length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  const [a, b] = await Promise.all([first, post(gws[1]!, '/v1/chat/completions', body, key)]);
  const [ja, jb] = (await Promise.all([a.json(), b.json()])) as Array<{ choices: Array<{ message: { content: string } }> }>;
  t.equal(a.headers.get('x-gateway-cache'), 'miss', 'the first goes upstream');
  t.equal(b.headers.get('x-gateway-cache'), 'exact', 'the second waits for its answer, through the other replica');
  t.equal(jb!.choices[0]!.message.content, ja!.choices[0]!.message.content, 'the same answer');
  await reconciled(t);
  const misses = await db.query("SELECT count(*) AS n FROM sluice_ledger WHERE workspace = $1 AND kind = 'request' AND row->>'cache' = 'miss'", [ws]);
  t.equal(Number(misses.rows[0].n), 1, `one upstream call for the two (${misses.rows[0].n} misses)`);
});

t.test('an answer stored through one replica answers a paraphrase through another (the semantic cache, shared through Postgres)', async (t) => {
  const ws = await workspace('semantic', 5);
  const { key } = await mint(gws[0]!, { name: 'semantic', workspace: ws });
  await everywhere(key, 200, 3000);
  const ask = (gw: Gateway, q: string) => cacheable(gw, key, 'You are concise.', q);
  const first = await ask(gws[0]!, 'What is the capital of France?');
  t.equal(first.cache, 'miss');
  await sharedSemantic(ws);
  const para = await ask(gws[1]!, "What's the capital of France?");
  t.equal(para.cache, 'semantic', 'a paraphrase through another replica is a semantic hit');
  t.equal(para.text, first.text, 'with the answer stored through the first');
  // Reported bad through the first replica: evicted on every one.
  const feedback = await post(gws[0]!, '/v1/feedback', { request_id: first.id, score: 0 }, key);
  t.equal(feedback.status, 200, await feedback.text());
  await new Promise((r) => setTimeout(r, 1700));
  const after = await ask(gws[2]!, 'What is the capital of France, please?');
  t.equal(after.cache, 'miss', 'the evicted entry answers nowhere');
});

t.test('an entry stored and evicted within one sync interval does not stop its replica sharing the semantic cache', async (t) => {
  const ws = await workspace('semantic churn', 5);
  const { key } = await mint(gws[0]!, { name: 'semantic churn', workspace: ws });
  await everywhere(key, 200, 3000);
  const ask = (gw: Gateway, q: string) => cacheable(gw, key, 'You are brief.', q);
  // Stored, and reported bad at once: the put and its tombstone are two changes to one row in one batch.
  const churned = await ask(gws[0]!, 'Which ocean is the largest?');
  t.equal(churned.cache, 'miss');
  const feedback = await post(gws[0]!, '/v1/feedback', { request_id: churned.id, score: 0 }, key);
  t.equal(feedback.status, 200, await feedback.text());
  // What this replica stores afterwards still reaches the others.
  const first = await ask(gws[0]!, 'What is the tallest mountain on Earth?');
  t.equal(first.cache, 'miss');
  await sharedSemantic(ws);
  t.equal((await ask(gws[2]!, "What's the tallest mountain on Earth?")).cache, 'semantic', 'a paraphrase through another replica is a semantic hit');
  t.equal((await ask(gws[1]!, 'Which ocean is the largest, please?')).cache, 'miss', 'and the evicted one answers nowhere');
  t.notMatch(gws[0]!.output(), /semantic cache could not sync/, 'no sync failure logged');
});

t.test('a semantic tombstone is final: an entry evicted through another replica before its own batch landed stays evicted', async (t) => {
  // This replica's batch (an entry it stored) reaches Postgres after another replica's tombstone for it.
  const applied: string[] = [];
  const cache = { applySemantic: (_ws: string, _c: string, _b: number, id: string) => { applied.push(id); } } as unknown as ResponseCache;
  const shared = new SharedSemanticCache({ pg: db, replica: 'replica-late' } as unknown as Cluster, cache, 60_000);
  await db.query("INSERT INTO sluice_semantic (id, ws, context, bucket, exp, entry, replica) VALUES ('req_raced', 'ws_race', 'ctx', 7, $1, NULL, 'replica-quick')", [Date.now() + 86_400_000]);
  shared.put('ws_race', 'ctx', 7, 'req_raced', { exp: Date.now() + 60_000 });
  shared.put('ws_race', 'ctx', 7, 'req_other', { exp: Date.now() + 60_000 });
  await (shared as unknown as { sync(): Promise<void> }).sync();
  const rows = await db.query("SELECT id, entry IS NULL AS tomb, replica FROM sluice_semantic WHERE ws = 'ws_race' ORDER BY id");
  t.same(rows.rows, [{ id: 'req_other', tomb: false, replica: 'replica-late' }, { id: 'req_raced', tomb: true, replica: 'replica-quick' }], 'the tombstone stays; the other entry is written');
  shared.stop();
});

t.test('a purge heard from another replica drops what this one had not yet sent: it never comes back live', async (t) => {
  // Replica A stored entries of two workspaces, not yet sent; C purges ws_purged (its tombstones
  // are in Postgres) and A hears of it before its next batch.
  const store = await openStore(tempDataDir(), { fsync: false });
  t.teardown(() => store.close());
  const cache = new ResponseCache(store);
  const shared = new SharedSemanticCache({ pg: db, replica: 'replica-slow' } as unknown as Cluster, cache, 60_000);
  cache.semanticShared = shared;
  shared.put('ws_purged', 'ctx', 3, 'req_unsent', { exp: Date.now() + 60_000 });
  shared.put('ws_kept', 'ctx', 3, 'req_kept', { exp: Date.now() + 60_000 });
  cache.heard('purge:ws_purged'); // (the notice C sent)
  await (shared as unknown as { sync(): Promise<void> }).sync();
  const rows = await db.query("SELECT id FROM sluice_semantic WHERE ws IN ('ws_purged', 'ws_kept') AND entry IS NOT NULL ORDER BY id");
  t.same(rows.rows, [{ id: 'req_kept' }], 'the purged workspace\'s entry never reached Postgres; the other did');
  shared.stop();
});

t.test('a request served through one replica is refunded through another, once', async (t) => {
  const ws = await workspace('refund', 5);
  const { key } = await mint(gws[0]!, { name: 'refund', workspace: ws, scopes: ['inference', 'usage:read'] });
  await everywhere(key, 200, 3000);
  const res = await chat(gws[1]!, key, 'to be refunded');
  await res.arrayBuffer();
  const id = res.headers.get('x-request-id')!;
  await reconciled(t);
  const refund = await post(gws[0]!, `/admin/workspaces/${ws}/refunds`, { request_id: id });
  t.equal(refund.status, 201, `refunded through another replica: ${await refund.text()}`);
  await reconciled(t);
  const again = await post(gws[2]!, `/admin/workspaces/${ws}/refunds`, { request_id: id });
  await again.arrayBuffer();
  t.equal(again.status, 409, 'and not again through a third');
  // Every replica shows the same account: the live balance, and every credit row wherever it was made.
  const accounts = await Promise.all(gws.map((g) => fetch(`${g.url}/v1/account`, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.json() as Promise<{ balance_usd: number; credits: Array<{ kind: string }> }>)));
  for (const a of accounts) {
    t.equal(a.balance_usd, accounts[0]!.balance_usd, 'the same balance through each replica');
    t.same(a.credits.map((c) => c.kind).sort(), ['refund', 'topup'], 'its top-up and its refund, made through different replicas');
  }
});

t.test('usage through any replica counts the requests every replica served', async (t) => {
  const ws = await workspace('usage', 5);
  const { key } = await mint(gws[0]!, { name: 'usage', workspace: ws, scopes: ['inference', 'usage:read'] });
  await everywhere(key, 200, 3000);
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) { const r = await chat(gws[i % 3]!, key, `usage ${i}`); await r.arrayBuffer(); t.equal(r.status, 200); ids.push(r.headers.get('x-request-id')!); }
  await reconciled(t);
  for (const gw of gws) {
    let summary = { requests: 0 };
    for (let i = 0; i < 40 && summary.requests < 6; i++) {
      summary = (await (await fetch(`${gw.url}/v1/usage/summary`, { headers: { authorization: `Bearer ${key}` } })).json()) as { requests: number };
      if (summary.requests < 6) await new Promise((r) => setTimeout(r, 100));
    }
    t.equal(summary.requests, 6, `${gw.url}: all six requests, wherever they were served`);
    const list = (await (await fetch(`${gw.url}/v1/requests?limit=100`, { headers: { authorization: `Bearer ${key}` } })).json()) as { data: Array<{ id: string }> };
    t.same(list.data.map((r) => r.id).sort(), [...ids].sort(), 'and lists each of them');
  }
});

t.test('a row committed late, below rows already read back, is still read back by every replica', async (t) => {
  const ws = await workspace('late', 5);
  const { key } = await mint(gws[0]!, { name: 'late', workspace: ws, scopes: ['inference', 'usage:read'] });
  await everywhere(key, 200, 3000);
  const first = await chat(gws[0]!, key, 'late 0');
  await first.arrayBuffer();
  const firstId = first.headers.get('x-request-id')!;
  let template: { row: Record<string, unknown> } | undefined;
  for (let i = 0; i < 50 && !template; i++) {
    template = (await db.query('SELECT row FROM sluice_ledger WHERE id = $1', [firstId])).rows[0] as typeof template;
    if (!template) await new Promise((r) => setTimeout(r, 100));
  }
  // A replica's shipping transaction takes its seq now and commits after others' rows have been read back.
  const lateId = `req_late${firstId.slice(8)}`;
  const slow = await db.connect();
  try {
    await slow.query('BEGIN');
    await slow.query(`INSERT INTO sluice_ledger (id, workspace, key_id, ts, kind, delta_nano, charge_usd, replica, epoch, row, status, admitted)
      VALUES ($1, $2, $3, $4, 'request', 0, 0, 'a-slow-replica', NULL, $5, 200, true)`, [lateId, ws, template!.row.key_id, Date.now(), { ...template!.row, id: lateId, delta_nano: 0, charge_usd: 0, balance_nano: null }]);
    // Rows with higher seqs, read back by every replica meanwhile.
    for (let i = 1; i < 4; i++) { const r = await chat(gws[i % 3]!, key, `late ${i}`); await r.arrayBuffer(); }
    await reconciled(t);
    await new Promise((r) => setTimeout(r, 800));
    await slow.query('COMMIT');
  } finally {
    slow.release();
  }
  for (const gw of gws) {
    let ids: string[] = [];
    for (let i = 0; i < 50 && !ids.includes(lateId); i++) {
      ids = ((await (await fetch(`${gw.url}/v1/requests?limit=100`, { headers: { authorization: `Bearer ${key}` } })).json()) as { data: Array<{ id: string }> }).data.map((r) => r.id);
      if (!ids.includes(lateId)) await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(ids.includes(lateId), `${gw.url} read back the late row`);
    t.equal(ids.length, 5, 'and the four requests, each once');
  }
});

t.test('the adaptive router learns as one: signals, simulated prices and resets through any replica reach every one', async (t) => {
  type View = { simulated_prices: Record<string, unknown>; task_types: Array<{ task_type: string; choice: string; signals: number; candidates: Array<{ model: string; signals: number; quality: number }> }> };
  const view = (gw: Gateway) => fetch(`${gw.url}/v1/router`, { headers: { authorization: `Bearer ${MASTER}` } }).then((r) => r.json() as Promise<View>);
  /** The learned quality and signals (pulls and costs follow the rows, shipped separately), and the simulated prices. */
  const learned = (v: View) => JSON.stringify({ prices: v.simulated_prices, tasks: v.task_types.map((x) => ({ task: x.task_type, c: x.candidates.map((c) => [c.model, c.signals, c.quality]) })) });
  /** Waits until the three replicas agree (the bound: sync_ms, 500 ms here, plus a read); returns what they agree on. */
  const agreed = async (what: string): Promise<View> => {
    const t0 = Date.now();
    for (;;) {
      const views = await Promise.all(gws.map(view));
      if (views.every((v) => learned(v) === learned(views[0]!))) return views[0]!;
      if (Date.now() - t0 > 5000) { t.fail(`${what}: the replicas still disagree after 5 s: ${views.map(learned).join(' | ')}`); return views[0]!; }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const ask = async (gw: Gateway, content: string) => {
    const res = await post(gw, '/v1/chat/completions', { model: 'auto', max_tokens: 8, messages: [{ role: 'user', content }] });
    await res.arrayBuffer();
    return { id: res.headers.get('x-request-id')!, task: res.headers.get('x-gateway-route-task')!, model: res.headers.get('x-gateway-route-model')! };
  };
  // Answered through A, scored through B (A's row, read from Postgres), through each replica in turn.
  const scored: Array<{ task: string; model: string }> = [];
  for (let i = 0; i < 6; i++) {
    const r = await ask(gws[i % 3]!, `Hey, how is your day going? Tell me one nice thing, number ${i}.`);
    // (at once: the row may still be in the answering replica's outbox)
    const fb = await post(gws[(i + 1) % 3]!, '/v1/feedback', { request_id: r.id, score: i % 2 });
    t.equal(fb.status, 200, `feedback through another replica than the one that answered: ${await fb.text()}`);
    scored.push({ task: r.task, model: r.model });
    const again = await post(gws[(i + 2) % 3]!, '/v1/feedback', { request_id: r.id, score: 1 });
    t.equal(again.status, 409, `a second signal for the request through a third replica is refused: ${await again.text()}`);
  }
  const state = await agreed('after six signals through three replicas');
  const chat = state.task_types.find((x) => x.task_type === scored[0]!.task);
  const mine = (m: string) => scored.filter((s) => s.model === m).length;
  t.ok(chat && chat.candidates.every((c) => c.signals >= mine(c.model)), `every replica holds each signal: ${learned(state)}`);
  // Two operators set a price at once through two replicas: every replica ends with the one Postgres took last.
  const [first, second] = await Promise.all([
    post(gws[0]!, '/v1/simulate-price', { model: chat!.candidates[0]!.model, prices: { input: 1, output: 1 } }),
    post(gws[1]!, '/v1/simulate-price', { model: chat!.candidates[0]!.model, prices: { input: 2, output: 2 } }),
  ]);
  t.same([first.status, second.status], [200, 200]);
  const priced = await agreed('after two prices at once');
  t.equal(Object.keys(priced.simulated_prices).length, 1, 'one simulated price, the same everywhere');
  // A replica killed and restarted on its data dir applies nothing twice.
  gws[2]!.proc.kill('SIGKILL');
  gws[2] = await startGateway(env, dirs[2]!, config);
  const restarted = await agreed('after a restart');
  t.equal(learned(restarted), learned(priced), 'the restarted replica holds what the others hold, no more');
  // A reset through C is a reset everywhere; a signal about a request answered before it moves nothing.
  const before = await ask(gws[0]!, 'Hey, how is your day going? One more nice thing.');
  const reset = await post(gws[2]!, '/v1/reset', {});
  t.equal(reset.status, 200, await reset.text());
  await reconciled(t);
  const late = await post(gws[1]!, '/v1/feedback', { request_id: before.id, score: 1 });
  const lateBody = (await late.json()) as { applied_to: unknown };
  t.equal(lateBody.applied_to, null, 'a signal about a request answered before the reset is kept, and moves nothing');
  const cleared = await agreed('after a reset');
  t.same(cleared.simulated_prices, {}, 'no simulated price anywhere');
  t.ok(cleared.task_types.every((x) => x.candidates.every((c) => c.signals === 0)), `no signal counts anywhere: ${learned(cleared)}`);
  // Records no replica can apply (one that does not validate, a task name too long for a key, a
  // reset stamped in the year 3000): skipped once with a log line; the log goes on past them, and a
  // replica restarted on them starts.
  const forged = (id: string, body: unknown) => db.query("INSERT INTO sluice_router (id, replica, body) VALUES ($1, 'forged', $2)", [id, JSON.stringify(body)]);
  await forged('forged:1', { kind: 'price', model: 42 });
  await forged('forged:2', { kind: 'signal', request_id: 'req_forged', source: 'app', signal: { workspace: 'default', score: 1, comment: null, task: 'x'.repeat(100_000), model: chat!.candidates[0]!.model, ts: 0, judge_request: null, trusted: true, served_at: Date.now() } });
  await forged('forged:3', { kind: 'reset', at: Date.UTC(3000, 0, 1) });
  const later = await post(gws[0]!, '/v1/simulate-price', { model: chat!.candidates[1]!.model, prices: { input: 3, output: 3 } });
  t.equal(later.status, 200, 'a price after them is taken');
  gws[1]!.proc.kill('SIGKILL');
  gws[1] = await startGateway(env, dirs[1]!, config);
  const past = await agreed('after records no replica can apply');
  t.same(Object.keys(past.simulated_prices), [chat!.candidates[1]!.model], 'and applied everywhere, the restarted replica included');
  const learning = await ask(gws[2]!, 'Hey, how is your day going? Still learning?');
  await reconciled(t);
  const fbLearning = await post(gws[0]!, '/v1/feedback', { request_id: learning.id, score: 1 });
  const fbText = await fbLearning.text();
  t.ok((JSON.parse(fbText) as { applied_to: unknown }).applied_to, `the reset from the future was not trusted: signals still move the policy (${fbText})`);
  const resetAgain = await post(gws[1]!, '/v1/reset', {});
  t.equal(resetAgain.status, 200);
  const clearedAgain = await agreed('after a reset that follows one from the future');
  t.same([clearedAgain.simulated_prices, clearedAgain.task_types.flatMap((x) => x.candidates.filter((c) => c.signals > 0))], [{}, []], 'and a reset after it still resets everywhere');
  // Postgres stalls longer than a publisher's wait (10 s): the write waits for it, then applies; no replica falls over.
  const stalled = await ask(gws[0]!, 'Hey, how is your day going? Scored while Postgres stalls.');
  await reconciled(t);
  const holder = await db.connect();
  await holder.query("SELECT pg_advisory_lock(hashtext('sluice_router'))");
  const slow = post(gws[0]!, '/v1/feedback', { request_id: stalled.id, score: 1 });
  await new Promise((r) => setTimeout(r, 11_000));
  await holder.query("SELECT pg_advisory_unlock(hashtext('sluice_router'))");
  holder.release();
  const slowRes = await slow;
  t.equal(slowRes.status, 200, `a write held up 11 s answers once it is in: ${await slowRes.text()}`);
  for (const gw of gws) t.equal(gw.proc.exitCode, null, `${gw.url} still running`);
});

t.test('a stored response is continued, read and deleted through any replica', async (t) => {
  const ws = await workspace('responses', 5);
  const { key } = await mint(gws[0]!, { name: 'responses', workspace: ws });
  await everywhere(key, 200, 3000);
  const first = await post(gws[0]!, '/v1/responses', { model: 'openai/gpt-4.1-mini', input: 'Remember the word walnut.' }, key);
  const made = (await first.json()) as { id: string };
  t.equal(first.status, 200);
  // At once through another replica: its follow-up finds the conversation.
  const next = await post(gws[1]!, '/v1/responses', { model: 'openai/gpt-4.1-mini', previous_response_id: made.id, input: 'Which word?' }, key);
  t.equal(next.status, 200, `continued through another replica: ${next.status === 200 ? '' : await next.text()}`);
  await next.arrayBuffer().catch(() => undefined);
  const got = await fetch(`${gws[2]!.url}/v1/responses/${made.id}`, { headers: { authorization: `Bearer ${key}` } });
  t.equal(got.status, 200, 'read through a third');
  t.equal(((await got.json()) as { id: string }).id, made.id);
  const del = await fetch(`${gws[1]!.url}/v1/responses/${made.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } });
  t.equal(del.status, 200);
  await del.arrayBuffer();
  await new Promise((r) => setTimeout(r, 300));
  for (const gw of gws) {
    const after = await fetch(`${gw.url}/v1/responses/${made.id}`, { headers: { authorization: `Bearer ${key}` } });
    await after.arrayBuffer();
    t.equal(after.status, 404, `deleted everywhere, the replica that made it included (${gw.url})`);
  }
  const other = await mint(gws[0]!, { name: 'other', workspace: await workspace('responses-other', 5) });
  await everywhere(other.key, 200, 3000); // (a new key is in force everywhere within sync_ms)
  const foreign = await post(gws[2]!, '/v1/responses', { model: 'openai/gpt-4.1-mini', previous_response_id: made.id, input: 'x' }, other.key);
  t.equal(foreign.status, 400, `another workspace's response is not found: ${await foreign.text()}`);
});

t.test('admin calls through another replica at once find what was just made (read your writes across replicas)', async (t) => {
  for (let i = 0; i < 5; i++) {
    const ws = await workspace(`at once ${i}`, 1);
    const minted = await post(gws[1]!, '/admin/keys', { name: `at once ${i}`, workspace: ws });
    const body = (await minted.json()) as { id: string };
    t.equal(minted.status, 201, `a key minted through B for a workspace made through A a moment ago (${JSON.stringify(body)})`);
    const got = await fetch(`${gws[2]!.url}/admin/keys/${body.id}`, { headers: { authorization: `Bearer ${MASTER}` } });
    await got.arrayBuffer();
    const topup = await post(gws[2]!, `/admin/workspaces/${ws}/topups`, { amount_usd: 1 });
    const credited = (await topup.json()) as { workspace: { balance_usd: number } };
    t.same([got.status, topup.status], [200, 201], 'read and topped up through C at once');
    t.equal(credited.workspace.balance_usd, 2, "the top-up's answer shows the balance with both credits (1 through A, 1 through C)");
  }
  await reconciled(t);
});

t.test('odd text in names and rows: refused at the door when no copy could hold it, else in Postgres as sent', async (t) => {
  // A lone surrogate has no UTF-8 form (Postgres's jsonb refused it: a 503 on every retry, before): a 400 that says so.
  const badWs = await post(gws[0]!, '/admin/workspaces', { name: 'half \ud800 a pair', credits_usd: 1 });
  t.equal(badWs.status, 400, 'a workspace name with a lone surrogate');
  t.match(await badWs.text(), /well-formed Unicode/);
  const ws = await workspace('quotes " \\ and ✨', 5);
  const badKey = await post(gws[0]!, '/admin/keys', { name: 'key \udfff', workspace: ws });
  t.equal(badKey.status, 400, 'a key name with a lone surrogate');
  await badKey.arrayBuffer();
  const { id, key } = await mint(gws[0]!, { name: 'key "✨" \\', workspace: ws });
  await everywhere(key, 200, 3000);
  const known = await fetch(`${gws[2]!.url}/admin/keys/${id}`, { headers: { authorization: `Bearer ${MASTER}` } });
  t.equal(((await known.json()) as { name: string }).name, 'key "✨" \\', 'a name that needs escaping reaches another replica as sent');
  // Rows whose text needs escaping: every one ships, none holds up the rest.
  const models = ['no "such" \\ model', 'modèle ✨ 🚀', 'x\\u0000 (a backslash, not a NUL)'];
  const ids: string[] = [];
  for (const model of [...models, 'half \ud800 a pair']) {
    const res = await post(gws[1]!, '/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }] }, key);
    await res.arrayBuffer();
    t.equal(res.status, model.includes('\ud800') ? 400 : 404, `${JSON.stringify(model)}`);
    ids.push(res.headers.get('x-request-id')!);
  }
  const served = await chat(gws[1]!, key, 'after the odd ones');
  await served.arrayBuffer();
  ids.push(served.headers.get('x-request-id')!);
  await reconciled(t);
  const got = await db.query("SELECT id, row->>'requested_model' AS model FROM sluice_ledger WHERE id = ANY($1::text[])", [ids]);
  const byId = new Map(got.rows.map((r: { id: string; model: string }) => [r.id, r.model]));
  t.same(ids.slice(0, 3).map((i) => byId.get(i)), models, 'each row in Postgres, its model as sent');
  t.ok(byId.has(ids[3]!) && byId.has(ids[4]!), 'and the refused one, and the request after them');
});

t.test('registrations from one address are counted once for every replica', async (t) => {
  // The default: 5 per address in a rolling hour. Round-robin over the three replicas, from 127.0.0.1.
  const statuses: number[] = [];
  for (let i = 0; i < 12; i++) {
    const res = await fetch(`${gws[i % 3]!.url}/v1/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: `reg${i}@example.com` }) });
    statuses.push(res.status);
    if (res.status === 429) t.ok(Number(res.headers.get('retry-after')) > 0, 'with Retry-After');
    await res.arrayBuffer();
  }
  t.same(statuses, [201, 201, 201, 201, 201, 429, 429, 429, 429, 429, 429, 429], 'five in all, not five per replica');
});

t.test('self-serve minting stops at the live key cap across replicas minting at once', async (t) => {
  const ws = await workspace('key cap', 1);
  const root = await mint(gws[0]!, { name: 'root', workspace: ws, scopes: ['inference', 'keys:write'] });
  await everywhere(root.key, 200, 3000);
  // The cap is 4 live stored keys (root included): 12 mints at once over three replicas.
  const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => post(gws[i % 3]!, '/v1/api-keys', { name: `child ${i}` }, root.key)));
  const statuses = answers.map((r) => r.status).sort();
  await Promise.all(answers.map((r) => r.arrayBuffer()));
  t.same(statuses, [201, 201, 201, 403, 403, 403, 403, 403, 403, 403, 403, 403], 'three more minted, whichever replicas took them');
  const live = await db.query("SELECT count(*) AS n FROM sluice_keys WHERE record->>'workspace' = $1 AND record->>'revoked_at' IS NULL", [ws]);
  t.equal(Number(live.rows[0].n), 4, 'four live keys in the shared record');
});

t.test('a key revoked through one replica is refused by the others within the bound', async (t) => {
  const ws = await workspace('revoke', 5);
  const { id, key } = await mint(gws[0]!, { name: 'to-revoke', workspace: ws });
  await everywhere(key, 200, 3000);
  const res = await fetch(`${gws[0]!.url}/admin/keys/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${MASTER}` } });
  t.equal(res.status, 200);
  const took = await everywhere(key, 401, 500 + 1000);
  t.ok(took <= 1500, `refused on every replica after ${took} ms (sync_ms 500, plus a read)`);
});

t.test('kill -9 of a replica under load, twice: every completed response is in Postgres once', async (t) => {
  const ws = await workspace('crash', 100);
  const { key } = await mint(gws[0]!, { name: 'crash', workspace: ws });
  await everywhere(key, 200, 3000);
  const completed: string[] = [];
  for (let round = 0; round < 2; round++) {
    const victim = 1 + round; // B, then C
    let stop = false;
    const worker = async (n: number) => {
      for (let i = 0; !stop; i++) {
        const gw = gws[(n + i) % 3]!;
        try {
          const res = await chat(gw, key, `crash ${round}.${n}.${i}`);
          await res.arrayBuffer();
          if (res.status === 200) completed.push(res.headers.get('x-request-id')!);
        } catch { /* the killed replica's connections */ }
      }
    };
    const workers = Array.from({ length: 12 }, (_, n) => worker(n));
    await new Promise((r) => setTimeout(r, 1200));
    gws[victim]!.proc.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(workers);
    // Back on its data dir: its outbox ships what it acknowledged.
    gws[victim] = await startGateway(env, dirs[victim]!, config);
  }
  t.ok(completed.length > 50, `${completed.length} responses completed`);
  await reconciled(t);
  const found = await db.query('SELECT id FROM sluice_ledger WHERE id = ANY($1::text[])', [completed]);
  t.equal(found.rowCount, completed.length, 'every completed response has its row in Postgres');
  t.equal(new Set(completed).size, completed.length, 'request ids are unique');
  const pgBalance = BigInt((await db.query('SELECT balance_nano FROM sluice_workspaces WHERE id = $1', [ws])).rows[0].balance_nano);
  const live_ = await live.hmget('sluice:w:' + ws, 'b', 'h');
  t.equal(BigInt(live_[0]!), pgBalance, 'the live balance in Redis is the balance in Postgres');
});

t.test('workspaces created with credits through every replica at once: each credited once, in Redis as in Postgres', async (t) => {
  // A new workspace is seeded into Redis by its first credit; the shipper may have put that very
  // credit into Postgres first, and the seed must then not let it count twice.
  const made = await Promise.all(Array.from({ length: 60 }, (_, i) => post(gws[i % 3]!, '/admin/workspaces', { name: `many ${i}`, credits_usd: 1 })
    .then(async (r) => ((await r.json()) as { id: string }).id)));
  await reconciled(t);
  const pgRows = await db.query('SELECT id, balance_nano FROM sluice_workspaces WHERE id = ANY($1::text[])', [made]);
  t.equal(pgRows.rowCount, 60);
  const twice: string[] = [];
  for (const r of pgRows.rows as Array<{ id: string; balance_nano: string }>) {
    t.equal(r.balance_nano, '1000000000');
    const b = await live.hget(`sluice:w:${r.id}`, 'b');
    if (b !== r.balance_nano) twice.push(`${r.id}: Redis ${b}`);
  }
  t.same(twice, [], 'every live balance is its one credit');
});

t.test('a budget under a nano-dollar still refuses once something is spent, as on one node', async (t) => {
  const ws = await workspace('tiny-budget', 5);
  const { key } = await mint(gws[0]!, { name: 'tiny', workspace: ws, limits: { budget_usd_day: 1e-12 } });
  await everywhere(key, 200, 3000);
  const first = await chat(gws[1]!, key, 'first');
  await first.arrayBuffer();
  t.equal(first.status, 200);
  await new Promise((r) => setTimeout(r, 100)); // (its finish, sent after its row's commit)
  const second = await chat(gws[2]!, key, 'second');
  await second.arrayBuffer();
  t.equal(second.status, 429);
  t.equal(second.headers.get('x-gateway-limit-kind'), 'budget');
});

t.test('Postgres down under load: requests go on, no replica falls over, a workspace refused is not half-made; rows ship when it is back', async (t) => {
  const ws = await workspace('pg-down', 20);
  const { key } = await mint(gws[0]!, { name: 'pg-down', workspace: ws });
  await everywhere(key, 200, 3000);
  const completed: string[] = [];
  const statuses = new Map<number, number>();
  let stop = false;
  const worker = async (n: number) => {
    for (let i = 0; !stop; i++) {
      const res = await chat(gws[(n + i) % 3]!, key, `pg down ${n}.${i}`);
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 200) completed.push(res.headers.get('x-request-id')!);
    }
  };
  const workers = Array.from({ length: 9 }, (_, n) => worker(n));
  await new Promise((r) => setTimeout(r, 500));
  await postgres.pause();
  await new Promise((r) => setTimeout(r, 800));
  const refused = await post(gws[1]!, '/admin/workspaces', { name: 'while down', email: 'down@example.com', credits_usd: 1 });
  const body = (await refused.json()) as { error: { code: string } };
  t.equal(refused.status, 503, 'creating a workspace needs Postgres: 503');
  t.equal(body.error.code, 'store_unavailable');
  const listed = (await (await fetch(`${gws[1]!.url}/admin/workspaces`, { headers: { authorization: `Bearer ${MASTER}` } })).json()) as { data: Array<{ email: string | null }> };
  t.notOk(listed.data.some((w) => w.email === 'down@example.com'), 'and nothing was created');
  // A quality signal is published before it applies anywhere: refused, and applied nowhere.
  const served = await chat(gws[0]!, key, 'to be scored while Postgres is down');
  await served.arrayBuffer();
  const scored = served.headers.get('x-request-id')!;
  const fb = await post(gws[0]!, '/v1/feedback', { request_id: scored, score: 1 }, key);
  const fbBody = (await fb.json()) as { error: { code: string } };
  t.same([fb.status, fbBody.error.code, fb.headers.get('retry-after')], [503, 'store_unavailable', '1'], 'feedback while Postgres is down: 503, try again');
  await new Promise((r) => setTimeout(r, 700));
  await postgres.resume();
  await new Promise((r) => setTimeout(r, 300));
  stop = true;
  await Promise.all(workers);
  t.same([...statuses.keys()], [200], `every request served while Postgres was down (${JSON.stringify(Object.fromEntries(statuses))})`);
  for (const gw of gws) t.equal(gw.proc.exitCode, null, `${gw.url} still running`);
  let again = 0;
  for (let i = 0; i < 50 && again !== 201; i++) {
    const r = await post(gws[1]!, '/admin/workspaces', { name: 'after', email: 'down@example.com', credits_usd: 1 });
    await r.arrayBuffer();
    again = r.status;
    if (again !== 201) await new Promise((res) => setTimeout(res, 100));
  }
  t.equal(again, 201, 'the same email is free once Postgres is back');
  const fbAgain = await post(gws[0]!, '/v1/feedback', { request_id: scored, score: 1 }, key);
  t.equal(fbAgain.status, 200, `and the same feedback is taken once it is back (it was applied nowhere): ${await fbAgain.text()}`);
  await reconciled(t);
  const found = await db.query('SELECT id FROM sluice_ledger WHERE id = ANY($1::text[])', [completed]);
  t.equal(found.rowCount, completed.length, `all ${completed.length} responses served meanwhile are in Postgres`);
});

t.test('Redis back from an old snapshot (or a failover to a replica that missed writes): nothing of it is trusted', async (t) => {
  const ws = await workspace('snapshot', 1);
  const { id, key } = await mint(gws[0]!, { name: 'snapshot', workspace: ws, limits: { windows: [{ requests: 10, seconds: 3600 }] } });
  await everywhere(key, 200, 3000);
  for (let i = 0; i < 3; i++) { const r = await chat(gws[i]!, key, `before the snapshot ${i}`); await r.arrayBuffer(); }
  await reconciled(t);
  await live.save();
  // After the snapshot: more requests and a top-up, which the snapshot does not have.
  for (let i = 0; i < 4; i++) { const r = await chat(gws[i % 3]!, key, `after the snapshot ${i}`); await r.arrayBuffer(); t.equal(r.status, 200); }
  const topup = await post(gws[1]!, `/admin/workspaces/${ws}/topups`, { amount_usd: 5 });
  t.equal(topup.status, 201);
  await reconciled(t);
  await redis.stop();
  await redis.restart(); // (loads the snapshot)
  let res: Response | null = null;
  for (let i = 0; i < 100; i++) {
    res = await chat(gws[i % 3]!, key, `after the restart ${i}`);
    await res.arrayBuffer();
    if (res.status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(res!.status, 200);
  t.equal(res!.headers.get('x-ratelimit-remaining-requests'), '2', 'the window counts all 8 requests (7 before, read from Postgres, and this one), not the snapshot\'s 3');
  await reconciled(t);
  const pgBalance = (await db.query('SELECT balance_nano FROM sluice_workspaces WHERE id = $1', [ws])).rows[0].balance_nano as string;
  const fresh = new Redis(redis.url);
  t.equal(await fresh.hget(`sluice:w:${ws}`, 'b'), pgBalance, 'the live balance is the one in Postgres, top-up included (not the snapshot\'s)');
  fresh.disconnect();
  void id;
});

t.test('two refunds of one request through two replicas at once: one refund', async (t) => {
  const ws = await workspace('double-refund', 5);
  const { key } = await mint(gws[0]!, { name: 'double-refund', workspace: ws });
  await everywhere(key, 200, 3000);
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) { const r = await chat(gws[i % 3]!, key, `refund me ${i}`); await r.arrayBuffer(); ids.push(r.headers.get('x-request-id')!); }
  await reconciled(t);
  for (const id of ids) {
    const [a, b] = await Promise.all([post(gws[0]!, `/admin/workspaces/${ws}/refunds`, { request_id: id, amount_usd: 0.000001 }), post(gws[1]!, `/admin/workspaces/${ws}/refunds`, { request_id: id })]);
    await Promise.all([a.arrayBuffer(), b.arrayBuffer()]);
    t.same([a.status, b.status].sort(), [201, 409], 'one refunded, the other told it was');
  }
  await reconciled(t);
  const pgBalance = (await db.query('SELECT balance_nano FROM sluice_workspaces WHERE id = $1', [ws])).rows[0].balance_nano as string;
  t.equal(await live.hget(`sluice:w:${ws}`, 'b'), pgBalance, 'the live balance and Postgres agree on which refund happened');
});

t.test('a refund taken over from a replica killed before it shipped: its own row, shipped when it is back, refunds nothing twice', async (t) => {
  const ws = await workspace('taken-over', 5);
  const { key } = await mint(gws[0]!, { name: 'taken-over', workspace: ws });
  await everywhere(key, 200, 3000);
  const r = await chat(gws[0]!, key, 'refund me, twice over');
  await r.arrayBuffer();
  const id = r.headers.get('x-request-id')!;
  await reconciled(t);
  // B's refund (the one that took the claim over) is in Postgres and in the live balance.
  const refund = await post(gws[0]!, `/admin/workspaces/${ws}/refunds`, { request_id: id });
  t.equal(refund.status, 201, await refund.text());
  await reconciled(t);
  const before = (await db.query('SELECT balance_nano FROM sluice_workspaces WHERE id = $1', [ws])).rows[0].balance_nano as string;
  t.equal(await live.hget(`sluice:w:${ws}`, 'b'), before);
  // A's own row of that refund, committed before it was killed and not shipped: in its outbox when it starts again.
  const { row } = (await db.query('SELECT row FROM sluice_ledger WHERE id = $1', [`ref_${id}`])).rows[0] as { row: Record<string, unknown> };
  gws[1]!.proc.kill('SIGKILL');
  await new Promise((res) => gws[1]!.proc.once('exit', res));
  const store = await openStore(dirs[1]!);
  await store.root.transaction(() => {
    void store.ledger.put(`ref_${id}`, { ...row, ts: Number(row.ts) - 61_000, note: 'the refund its replica made before it was killed' });
    void store.credits.put([ws, `ref_${id}`], 'refund');
    void store.outbox.put(`ref_${id}`, 1);
  });
  await store.close();
  gws[1] = await startGateway(env, dirs[1]!, config);
  await reconciled(t);
  await new Promise((res) => setTimeout(res, 300)); // (a pass that applied it would have by now)
  t.equal((await db.query('SELECT balance_nano FROM sluice_workspaces WHERE id = $1', [ws])).rows[0].balance_nano, before, 'Postgres kept the row it had');
  t.equal(await live.hget(`sluice:w:${ws}`, 'b'), before, 'and the live balance did not take the late row\'s change again');
});

t.test('Redis stalled: the admissions a replica gave up on (503) count nothing when Redis resumes', async (t) => {
  const ws = await workspace('stalled', 5);
  const { key, id } = await mint(gws[0]!, { name: 'stalled', workspace: ws, limits: { windows: [{ requests: 100, seconds: 600 }], max_concurrency: 50 } });
  await everywhere(key, 200, 3000);
  for (let i = 0; i < 3; i++) { const r = await chat(gws[i]!, key, `before the stall ${i}`); await r.arrayBuffer(); t.equal(r.status, 200); }
  const counted = async () => Number(await live.hget(`sluice:k:${id}:s600`, 't'));
  t.equal(await counted(), 3);
  // Paused, not gone: the replicas' commands wait in its socket until it resumes (after their 1 s timeout).
  process.kill(redis.pid(), 'SIGSTOP');
  let statuses: number[];
  try {
    statuses = await Promise.all(Array.from({ length: 9 }, (_, i) => chat(gws[i % 3]!, key, `stalled ${i}`).then(async (r) => { await r.arrayBuffer(); return r.status; })));
  } finally {
    await new Promise((r) => setTimeout(r, 300));
    process.kill(redis.pid(), 'SIGCONT');
  }
  t.same(statuses, Array(9).fill(503), 'refused while Redis stalls');
  for (let i = 0; i < 50; i++) { const r = await chat(gws[i % 3]!, key, `after the stall ${i}`); await r.arrayBuffer(); if (r.status === 200) break; await new Promise((res) => setTimeout(res, 100)); }
  t.equal(await counted(), 4, 'the window counts the 3 before and the 1 after, not the 9 refused');
  t.equal(Number(await live.hget(`sluice:k:${id}`, 'fl')), 0, 'no slot held for them');
  t.equal(Number(await live.hget(`sluice:w:${ws}`, 'h')), 0, 'no credit held for them');
});

t.test('Redis down: metered requests refused at once with 503; back (a new run) and it serves again, owing nothing', async (t) => {
  const ws = await workspace('redis-down', 5);
  const { key } = await mint(gws[0]!, { name: 'metered', workspace: ws, limits: { rpm: 1000 } });
  await everywhere(key, 200, 3000);
  // An operator's key with limits in the unmetered default workspace, and a replica configured to hold such keys to its own counts while Redis is down.
  const internal = await mint(gws[0]!, { name: 'internal', limits: { rpm: 1000 } });
  const lenient = await startGateway(env, tempDataDir(), { ...config, cluster: { ...config.cluster, unmetered_without_redis: 'local_limits' } });
  t.teardown(() => lenient.stop('SIGKILL'));
  await everywhere(internal.key, 200, 3000);
  let res = await chat(gws[1]!, key, 'before');
  t.equal(res.status, 200);
  await res.arrayBuffer();
  // A window with 4 of its 10 used before Redis goes: they must still count after it comes back empty.
  const windowed = await mint(gws[0]!, { name: 'windowed', workspace: ws, limits: { windows: [{ requests: 10, seconds: 600 }], budget_usd_day: 1 } });
  await everywhere(windowed.key, 200, 3000);
  for (let i = 0; i < 4; i++) { const r = await chat(gws[i % 3]!, windowed.key, `window ${i}`); await r.arrayBuffer(); t.equal(r.status, 200); }
  // And rpm 6 with 4 used: after the restart its bucket is rebuilt from the last minute's rows, not full.
  const paced = await mint(gws[0]!, { name: 'paced', workspace: ws, limits: { rpm: 6 } });
  await everywhere(paced.key, 200, 3000);
  const pacedFrom = Date.now();
  for (let i = 0; i < 4; i++) { const r = await chat(gws[i % 3]!, paced.key, `paced ${i}`); await r.arrayBuffer(); t.equal(r.status, 200); }
  await reconciled(t);
  await redis.stop();
  const t0 = Date.now();
  res = await chat(gws[2]!, key, 'while down');
  const body = (await res.json()) as { error: { code: string; message: string } };
  t.equal(res.status, 503, 'refused');
  t.equal(body.error.code, 'store_unavailable');
  t.ok(res.headers.get('retry-after'), 'with Retry-After');
  t.ok(Date.now() - t0 < 3000, `at once (${Date.now() - t0} ms)`);
  for (let i = 0; i < 3; i++) {
    const r = await chat(gws[i]!, windowed.key, `window while down ${i}`);
    await r.arrayBuffer();
    t.equal(r.status, 503, 'refused while Redis is down (and so never counted in its window)');
  }
  const operator = await chat(gws[2]!, MASTER, 'operator while down');
  t.equal(operator.status, 200, "the operator's own key (no limits, unmetered) still serves");
  await operator.arrayBuffer();
  const limitedUnmetered = await chat(gws[2]!, internal.key, 'internal while down');
  await limitedUnmetered.arrayBuffer();
  t.equal(limitedUnmetered.status, 503, 'a key with limits, even unmetered, is refused by default (its limits cannot be checked)');
  const local = await chat(lenient, internal.key, 'internal, lenient replica');
  await local.arrayBuffer();
  t.equal(local.status, 200, 'unmetered_without_redis: local_limits serves it on the replica\'s own counts');
  t.equal(local.headers.get('x-ratelimit-limit-requests'), '1000', 'with its limits counted here');
  const meteredLenient = await chat(lenient, key, 'metered, lenient replica');
  await meteredLenient.arrayBuffer();
  t.equal(meteredLenient.status, 503, 'a metered workspace is refused there too (fail closed)');
  await redis.restart();
  let back = 0;
  for (let i = 0; i < 100 && back !== 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const r = await chat(gws[i % 3]!, key, `after ${i}`);
    await r.arrayBuffer();
    back = r.status;
  }
  t.equal(back, 200, 'serves again once Redis is back');
  const after = await chat(gws[2]!, windowed.key, 'window after the restart');
  await after.arrayBuffer();
  t.equal(after.headers.get('x-ratelimit-remaining-requests'), '5', 'the window counts the 4 requests from before the restart (read from Postgres), and this one: no free quota');
  const pacedAfter = await Promise.all(Array.from({ length: 6 }, (_, i) => chat(gws[i % 3]!, paced.key, `paced after ${i}`).then(async (r) => { await r.arrayBuffer(); return r.status; })));
  // 2 left of 6, plus what refilled since the first of the 4 (one a 10 s), plus one for a refill in progress.
  const allowed = 2 + Math.floor((Date.now() - pacedFrom) / 10_000) + 1;
  const served = pacedAfter.filter((s) => s === 200).length;
  t.ok(served >= 1 && served <= allowed, `rpm after the restart: ${served} of 6 served (at most ${allowed}: the bucket is rebuilt from Postgres, not full)`);
  const spent = Number((await (await fetch(`${gws[0]!.url}/admin/keys/${windowed.id}`, { headers: { authorization: `Bearer ${MASTER}` } })).json() as { state: { spent_today_usd: number } }).state.spent_today_usd);
  const pgSpent = Number((await db.query("SELECT sum(charge_usd) AS s FROM sluice_ledger WHERE key_id = $1 AND kind = 'request' AND id <> $2", [windowed.id, after.headers.get('x-request-id')])).rows[0].s);
  t.ok(Math.abs(spent - pgSpent) < 1e-6 || spent > pgSpent, `its day's spend came back too ($${spent}, Postgres $${pgSpent} before this request)`);
  await reconciled(t);
  const pgBalance = (await db.query('SELECT balance_nano FROM sluice_workspaces WHERE id = $1', [ws])).rows[0].balance_nano as string;
  const fresh = new Redis(redis.url);
  const b = await fresh.hget('sluice:w:' + ws, 'b');
  fresh.disconnect();
  t.equal(b, pgBalance, 'the balance Redis was seeded with again is the one in Postgres (no credit given back, none taken twice)');
});
