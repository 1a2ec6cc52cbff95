// Cluster mode with event-loop threads: two replicas of two threads each, on one Redis and
// one Postgres. A replica's main thread admits its threads' requests through Redis as its
// own, so four threads on two replicas behave as one gateway: a window exact over all of
// them, every hold back in Redis once the answers are out, balances in Redis and Postgres equal to their rows, and no
// acknowledged row lost when a replica is killed. Which thread served a request is read
// from its request id (each thread's ids carry their own tag). The whole cluster suite runs
// again on two threads per replica in the test runner's second pass.
import pg from 'pg';
import { Redis } from 'ioredis';
import t from 'tap';
import { Agent, fetch, type Response } from 'undici';
import { startPostgres, startRedis } from '../helpers/cluster.js';
import { skipWithoutClusterServers } from '../helpers/cluster-skip.js';
import { startGateway, tempDataDir, type Gateway } from '../helpers/gateway.js';

skipWithoutClusterServers('cluster mode with threads');

const redis = await startRedis();
const postgres = await startPostgres();
t.teardown(async () => { await redis.stop(); await postgres.stop(); });
const db = new pg.Pool({ connectionString: postgres.url, max: 2 });
t.teardown(() => db.end());
const live = new Redis(redis.url);
t.teardown(() => live.disconnect());

const MASTER = 'sk-sluice-master-cluster-threads-0123456789';
const env = { SLUICE_SIM: 'on', SLUICE_MASTER_KEY: MASTER, SLUICE_REDIS_URL: redis.url, SLUICE_POSTGRES_URL: postgres.url, SLUICE_THREADS: '2' };
const config = { sim: { ttft_ms: 20, tokens_per_second: 2000 }, cluster: { sync_ms: 500, ship_ms: 100, lease_ms: 3000 } };
const dirs = [tempDataDir(), tempDataDir()];
const gws: Gateway[] = [];
for (const dir of dirs) gws.push(await startGateway(env, dir, config));
t.teardown(async () => { await Promise.all(gws.map((g) => g.stop('SIGKILL'))); });

/** The tag of the RequestIds that made an id: one per thread of each replica. */
const tagOf = (id: string | null) => (id ?? '').slice(13, 19);
const ask = (content: string) => ({ model: 'openai/gpt-4.1-mini', max_tokens: 8, messages: [{ role: 'user', content }] });
const post = (gw: Gateway, path: string, body: unknown, key = MASTER, dispatcher?: Agent) => fetch(`${gw.url}${path}`, {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body), ...(dispatcher ? { dispatcher } : {}),
});

/** `n` requests at once, alternating replicas, each on a connection of its own (so each replica's kernel spreads them over its threads). */
async function burst(n: number, send: (i: number, gw: Gateway, dispatcher: Agent) => Promise<Response>): Promise<Array<{ status: number; id: string | null; kind: string | null }>> {
  const agents = Array.from({ length: n }, () => new Agent({ connections: 1 }));
  try {
    return await Promise.all(agents.map(async (a, i) => {
      const r = await send(i, gws[i % gws.length]!, a);
      await r.arrayBuffer();
      return { status: r.status, id: r.headers.get('x-request-id'), kind: r.headers.get('x-gateway-limit-kind') };
    }));
  } finally {
    await Promise.all(agents.map((a) => a.close()));
  }
}

async function tenant(name: string, credits: number, limits: object): Promise<{ ws: string; key: string; id: string }> {
  const made = await post(gws[0]!, '/admin/workspaces', { name, credits_usd: credits });
  const ws = ((await made.json()) as { id: string }).id;
  const minted = await post(gws[0]!, '/admin/keys', { name: `${name}-key`, workspace: ws, limits });
  const { key, id } = (await minted.json()) as { key: string; id: string };
  // In force on the other replica (read from Postgres within sync_ms).
  for (let i = 0; i < 100; i++) {
    const r = await fetch(`${gws[1]!.url}/v1/account/pricing`, { headers: { authorization: `Bearer ${key}` } });
    await r.arrayBuffer();
    if (r.status === 200) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  return { ws, key, id };
}

/** Once every replica's outbox is in Postgres: each balance there against its rows, and Redis's live balance against Postgres's. */
async function reconciled(t: { same(a: unknown, b: unknown, m: string): void; equal(a: unknown, b: unknown, m: string): void }, ws: string): Promise<void> {
  for (let i = 0, empty = 0; i < 300 && empty < 2; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const waiting = await Promise.all(gws.map((g) => fetch(`${g.url}/health`).then((r) => r.json() as Promise<{ cluster?: { outbox: number } }>).then((h) => h.cluster?.outbox ?? -1, () => -1)));
    empty = waiting.every((n) => n === 0) ? empty + 1 : 0;
  }
  const off = await db.query(`SELECT w.id FROM sluice_workspaces w LEFT JOIN sluice_ledger l ON l.workspace = w.id
    GROUP BY w.id, w.balance_nano HAVING w.balance_nano <> coalesce(sum(l.delta_nano), 0)`);
  t.same(off.rows, [], 'every balance in Postgres equals the sum of its ledger rows');
  const inPg = await db.query('SELECT balance_nano FROM sluice_workspaces WHERE id = $1', [ws]);
  t.equal(await live.hget(`sluice:w:${ws}`, 'b'), String(inPg.rows[0]!.balance_nano), "Redis's live balance is Postgres's");
}

t.test('a window is exact over two replicas of two threads each, and every hold comes back', async (t) => {
  const { ws, key, id } = await tenant('window', 5, { windows: [{ requests: 60, seconds: 600 }] });
  const answers = await burst(240, (i, gw, d) => post(gw, '/v1/chat/completions', ask(`window ${i}`), key, d));
  const served = answers.filter((a) => a.status === 200);
  const refused = answers.filter((a) => a.status === 429);
  t.equal(served.length, 60, 'exactly the window served');
  t.equal(refused.length, 180, 'the rest refused');
  t.ok(refused.every((a) => a.kind === 'window'), 'refused for the window');
  t.equal(new Set(served.map((a) => tagOf(a.id))).size, 4, 'served by all four threads');
  t.equal(new Set(refused.map((a) => tagOf(a.id))).size, 4, 'refused by all four threads');
  t.equal(Number(await live.hget(`sluice:k:${id}`, 'fl')), 0, 'no request still counted in flight');
  t.equal(Number(await live.hget(`sluice:w:${ws}`, 'h')), 0, 'no credit still held');
  const rows = await (async () => {
    for (let i = 0; i < 100; i++) {
      const n = Number((await db.query('SELECT count(*) AS n FROM sluice_ledger WHERE key_id = $1', [id])).rows[0]!.n);
      if (n === 240) return n;
      await new Promise((r) => setTimeout(r, 100));
    }
    return -1;
  })();
  t.equal(rows, 240, 'a row in Postgres for every request, whichever thread of whichever replica served it');
  await reconciled(t, ws);
});

t.test('max_concurrency 1, one request at a time through every thread of both replicas: each finds the slot free, and none is left held', async (t) => {
  const { ws, id, key } = await tenant('one-at-a-time', 5, { max_concurrency: 1 });
  const statuses: number[] = [];
  const tags = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const agent = new Agent({ connections: 1 }); // (a new connection each time: the kernel picks the thread)
    const r = await post(gws[i % 2]!, '/v1/chat/completions', ask(`one ${i}`), key, agent);
    await r.arrayBuffer();
    statuses.push(r.status);
    tags.add(tagOf(r.headers.get('x-request-id')));
    await agent.close();
  }
  t.same(statuses.filter((s) => s !== 200), [], 'every request served');
  t.ok(tags.size >= 3, `served by ${tags.size} of the four threads`);
  t.equal(Number(await live.hget(`sluice:k:${id}`, 'fl')), 0, 'nothing in flight');
  await reconciled(t, ws);
});

t.test('a metered burst through every thread never overdraws', async (t) => {
  // $0.002 of credit; each request may cost up to ~$0.0001 (its byte bound and 8 output tokens), and costs less.
  const { ws, key } = await tenant('tight', 0.002, {});
  const answers = await burst(200, (i, gw, d) => post(gw, '/v1/chat/completions', ask(`tight ${i}`), key, d));
  t.ok(answers.some((a) => a.status === 402), 'some refused for credits');
  t.ok(answers.every((a) => a.status === 200 || a.status === 402), 'each either served or refused for credits');
  const balance = Number(await live.hget(`sluice:w:${ws}`, 'b'));
  t.ok(balance >= 0, `never below zero (${balance} nano-USD)`);
  t.equal(Number(await live.hget(`sluice:w:${ws}`, 'h')), 0, 'no credit still held');
  await reconciled(t, ws);
});

t.test('kill -9 of a replica with threads under load: every completed response is in Postgres once, and its holds come back', async (t) => {
  const { ws, key, id } = await tenant('killed', 5, { windows: [{ requests: 100_000, seconds: 3600 }], max_concurrency: 1000 });
  const done: string[] = [];
  let stop = false;
  const victim = gws[1]!;
  const load = Promise.all(Array.from({ length: 24 }, async (_, c) => {
    for (let i = 0; !stop; i++) {
      const agent = new Agent({ connections: 1 });
      try {
        const r = await post(gws[c % 2]!, '/v1/chat/completions', ask(`killed ${c} ${i}`), key, agent);
        await r.arrayBuffer();
        if (r.status === 200) done.push(r.headers.get('x-request-id')!);
      } catch { /* the killed replica's connections */ }
      await agent.close().catch(() => undefined);
    }
  }));
  await new Promise((r) => setTimeout(r, 1500));
  await victim.stop('SIGKILL');
  await new Promise((r) => setTimeout(r, 500));
  stop = true;
  await load;
  // The replica starts again on its data dir: its outbox ships what it committed.
  gws[1] = await startGateway(env, dirs[1], config);
  for (let i = 0; i < 100; i++) {
    const { rows } = await db.query('SELECT count(*) AS n FROM sluice_ledger WHERE id = ANY($1)', [done]);
    if (Number(rows[0]!.n) === done.length) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const { rows } = await db.query('SELECT id, count(*) AS n FROM sluice_ledger WHERE id = ANY($1) GROUP BY id', [done]);
  t.ok(done.length > 50, `${done.length} completed`);
  t.equal(rows.length, done.length, 'every completed response is in Postgres');
  t.ok(rows.every((r: { n: string }) => r.n === '1'), 'once');
  // The killed replica's holds come back once their lease (3 s here) has run out, at the next admission.
  await new Promise((r) => setTimeout(r, 3500));
  const after = await post(gws[0]!, '/v1/chat/completions', ask('after the leases'), key);
  await after.arrayBuffer();
  t.equal(after.status, 200);
  t.equal(Number(await live.hget(`sluice:k:${id}`, 'fl')), 0, 'no request still counted in flight once the leases ran out');
  t.equal(Number(await live.hget(`sluice:w:${ws}`, 'h')), 0, 'no credit still held');
  await reconciled(t, ws);
});
