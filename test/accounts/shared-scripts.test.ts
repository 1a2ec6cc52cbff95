// Cluster mode's Lua scripts against Debian's redis-server, one script call at a time: a
// rolling window's running total as slices leave it, the wait a refusal quotes, holds given
// back once (by finish, or by the next admission once a lease runs out), and holds recorded
// by a replica of an earlier version released the same way.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import t from 'tap';
import { ADMIT, COMMON, FINISH, RUN, SEED, SEED_KEY } from '../../src/accounts/shared-scripts.js';
import { startRedis } from '../helpers/cluster.js';
import { skipWithoutClusterServers } from '../helpers/cluster-skip.js';

skipWithoutClusterServers('shared scripts');

type Reply = Array<string | number | null>;
const server = await startRedis();
t.teardown(() => server.stop());
const r = new Redis(server.url);
t.teardown(() => r.disconnect());
const run = (lua: string, ...args: Array<string | number>) => r.eval(lua, 0, ...args) as Promise<Reply>;

const P = 'x:';
const DAY = new Date().toISOString().slice(0, 10);
const MONTH = DAY.slice(0, 7);
const epoch = String(await run(RUN, P, 'run-1', 'E1'));
const WIDTH = 60_000; // a window of an hour: slices of a minute
const redisNow = async () => { const [s, us] = await r.time(); return Number(s) * 1000 + Math.floor(Number(us) / 1000); };

interface Key { id: string; window?: { seconds: number; requests: number }; budget?: boolean; tpm?: number; conc?: number }

/** ADMIT's ARGV for one key in workspace `ws` (holding `hold` nano), as SharedLimits sends them. */
function admitArgs(req: string, ws: string, hold: number, key: Key, leaseMs = 30_000): Array<string | number> {
  const b = key.budget ? 1 : 0;
  const record = JSON.stringify({ ws, wn: hold, k: [key.id], kn: b ? 1000 : 0, b: [b], tk: 10 });
  const args: Array<string | number> = [P, req, leaseMs, ws, hold, 10, b ? 1000 : 0, DAY, MONTH, 1e7, 1e9, record, 1,
    key.id, 0, key.tpm ?? 0, b ? 1e12 : 0, 0, key.conc ?? 0, key.window ? 1 : 0];
  if (key.window) args.push(key.window.seconds, key.window.requests);
  return args;
}

function finishArgs(req: string, ws: string, hold: number, key: Key, admittedAt: number, used = 4, charge = 500): Array<string | number> {
  const b = key.budget ? 1 : 0;
  const args: Array<string | number> = [P, req, used, charge, ws, -charge, `row-${req}`, DAY, MONTH, 3600, epoch, admittedAt, hold, b ? 1000 : 0, 10,
    key.id, 0, key.tpm ?? 0, b, key.window ? 1 : 0];
  if (key.window) args.push(key.window.seconds);
  return args;
}

/** A new workspace with a balance, and a key seeded in this epoch (its window's slices as given: [slice, requests]). */
async function setup(key: Key, slices: Array<[number, number]> = []): Promise<string> {
  const ws = `ws_${randomBytes(4).toString('hex')}`;
  await run(SEED, P, ws, '1000000000000', 'unused');
  const args: Array<string | number> = [P, epoch, key.id, DAY, 0, MONTH, 0, '', '', '', ''];
  if (key.window) { args.push(key.window.seconds, slices.length); for (const [s, n] of slices) args.push(s, n); }
  t.equal(Number(await run(SEED_KEY, ...args)), 1, 'the key is seeded');
  return ws;
}

/** Runs `fn` with the current slice number, again if a slice boundary passed meanwhile (the test reasons about one slice). */
async function inOneSlice<T>(fn: (head: number) => Promise<T>): Promise<T> {
  for (;;) {
    const head = Math.floor((await redisNow()) / WIDTH);
    const out = await fn(head);
    if (Math.floor((await redisNow()) / WIDTH) === head) return out;
  }
}

t.test('a window counts its live slices only, keeps their total, and a refusal waits for the oldest that makes room', async (t) => {
  await inOneSlice(async (head) => {
    const key: Key = { id: `k_${randomBytes(4).toString('hex')}`, window: { seconds: 3600, requests: 10 } };
    // 3 requests 70 minutes ago (gone by now), 4 half an hour ago, 5 five minutes ago
    const ws = await setup(key, [[head - 70, 3], [head - 30, 4], [head - 5, 5]]);
    const wk = `${P}k:${key.id}:s3600`;
    t.same(await r.hmget(wk, 't', 'lo', 'hi'), ['9', String(head - 30), String(head - 5)], 'seeded: the live slices, their total, the lowest and the newest');
    const ok = await run(ADMIT, ...admitArgs('req-1', ws, 100, key));
    t.equal(ok[0], 'ok');
    t.equal(ok[6], '10', 'the window counts 4 + 5 + this one (the slice that left it is not counted)');
    t.same(await r.hmget(wk, 't', 'lo', 'hi', String(head)), ['10', String(head - 30), String(head), '1'], 'this minute\'s slice added, the total and the newest moved');
    const ttl = await r.pttl(wk);
    const now = await redisNow();
    t.ok(Math.abs(ttl - ((head + 61) * WIDTH - now)) < 2000, `the hash lives until its newest slice has left the window (${ttl} ms)`);
    const refused = await run(ADMIT, ...admitArgs('req-2', ws, 100, key));
    t.same(refused.slice(0, 3), ['limit', 0, 'window'], 'full: refused');
    const wait = Number(refused[3]);
    const expected = (head - 30 + 60) * WIDTH - (await redisNow());
    t.ok(Math.abs(wait - expected) < 2000, `it waits until the 4 requests of half an hour ago leave (${wait} ms, ~${expected})`);
    t.equal(await r.hget(wk, 't'), '10', 'a refusal counts nothing');
  });
});

t.test('slices that have left are dropped from the total; a window whose newest slice has left starts afresh', async (t) => {
  await inOneSlice(async (head) => {
    const key: Key = { id: `k_${randomBytes(4).toString('hex')}`, window: { seconds: 3600, requests: 100 } };
    const ws = await setup(key);
    const wk = `${P}k:${key.id}:s3600`;
    // As an earlier hour left it: 2 requests 62 minutes ago, 1 at 61, 4 three minutes ago
    await r.hset(wk, String(head - 62), 2, String(head - 61), 1, String(head - 3), 4, 't', 7, 'lo', head - 62, 'hi', head - 3);
    const ok = await run(ADMIT, ...admitArgs('req-3', ws, 0, key));
    t.equal(ok[6], '5', 'the 3 that left are not counted: 4 and this one');
    t.same(await r.hmget(wk, 't', 'lo', String(head - 62), String(head - 61)), ['5', String(head - 59), null, null], 'and they are gone from the hash');

    const stale: Key = { id: `k_${randomBytes(4).toString('hex')}`, window: { seconds: 3600, requests: 100 } };
    const ws2 = await setup(stale);
    const sk = `${P}k:${stale.id}:s3600`;
    await r.hset(sk, String(head - 90), 6, String(head - 70), 3, 't', 9, 'lo', head - 90, 'hi', head - 70);
    const fresh = await run(ADMIT, ...admitArgs('req-4', ws2, 0, stale));
    t.equal(fresh[6], '1', 'every slice had left: this one is the only request counted');
    t.same(await r.hgetall(sk), { [String(head)]: '1', t: '1', lo: String(head), hi: String(head) }, 'nothing of the old hour is left');
  });
});

t.test('an admission run past its deadline (Redis stalled, the replica answered 503) counts and holds nothing', async (t) => {
  await inOneSlice(async () => {
    const key: Key = { id: `k_${randomBytes(4).toString('hex')}`, window: { seconds: 3600, requests: 10 }, conc: 5, budget: true };
    const ws = await setup(key);
    const wk = `${P}k:${key.id}:s3600`;
    const now = await redisNow();
    const late = await run(ADMIT, ...admitArgs('req-late', ws, 100, key), now - 1);
    t.same(late, ['late'], 'past the deadline: late');
    t.same(await r.hmget(`${P}k:${key.id}`, 'fl', 'rv'), [null, null], 'no slot, no budget reservation');
    t.equal(await r.hget(wk, 't'), null, 'nothing counted in the window');
    t.equal(Number(await r.hget(`${P}w:${ws}`, 'h')), 0, 'no credit held');
    t.equal(await r.exists(`${P}h:req-late`), 0, 'no hold record');
    t.equal(await r.zscore(`${P}leases`, 'req-late'), null, 'no lease');
    const ok = await run(ADMIT, ...admitArgs('req-in-time', ws, 100, key), now + 60_000);
    t.equal(ok[0], 'ok', 'before the deadline: admitted');
    t.equal(await r.hget(wk, 't'), '1', 'and counted');
  });
});

t.test('a lease that runs out gives the hold back once; the late finish then charges but gives back nothing more', async (t) => {
  const key: Key = { id: `k_${randomBytes(4).toString('hex')}`, tpm: 1000, conc: 5, budget: true };
  const ws = await setup(key);
  const kk = `${P}k:${key.id}`;
  const at = await redisNow();
  t.equal((await run(ADMIT, ...admitArgs('req-5', ws, 300, key, 1)))[0], 'ok', 'admitted with a lease of 1 ms');
  t.same(await r.hmget(kk, 'fl', 'rv'), ['1', '1000'], 'a slot and the budget reservation held');
  // (what a replica of an earlier version reads when it sweeps this lease: the same record)
  t.same(JSON.parse((await r.get(`${P}h:req-5`))!), { ep: epoch, ws, wn: 300, k: [key.id], kn: 1000, b: [1], tk: 10 }, 'the hold recorded in the schema every version reads');
  t.equal(await r.hget(`${P}w:${ws}`, 'h'), '300', 'and the credit hold');
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal((await run(ADMIT, ...admitArgs('req-6', ws, 200, key)))[0], 'ok', 'the next admission');
  t.same(await r.hmget(kk, 'fl', 'rv'), ['1', '1000'], 'released the lapsed one\'s slot and reservation (only the new one holds)');
  t.equal(await r.hget(`${P}w:${ws}`, 'h'), '200', 'and its credit hold');
  t.equal(await r.exists(`${P}h:req-5`), 0, 'its record is gone');
  const tl = Number(await r.hget(kk, 'tl'));
  const late = await run(FINISH, ...finishArgs('req-5', ws, 300, key, at));
  t.equal(late[0], epoch);
  t.same(await r.hmget(kk, 'fl', 'rv'), ['1', '1000'], 'its finish gives back nothing twice');
  t.equal(Number(await r.hget(kk, 'tl')), tl, 'nor its unused tokens');
  t.equal(await r.hget(kk, 'ds'), '500', 'but counts its charge');
  t.equal(late[1], String(1_000_000_000_000 - 500), 'and applies its balance change');
  await run(FINISH, ...finishArgs('req-6', ws, 200, key, at));
  t.same(await r.hmget(kk, 'fl', 'rv', 'ds'), ['0', '0', '1000'], 'the other\'s finish gives back its own');
  t.equal(await r.hget(`${P}w:${ws}`, 'h'), '0');
});

t.test('a hold recorded by a replica of an earlier version is released when its lease runs out', async (t) => {
  const key: Key = { id: `k_${randomBytes(4).toString('hex')}`, conc: 5, budget: true };
  const ws = await setup(key);
  const kk = `${P}k:${key.id}`;
  await r.hset(kk, 'fl', 2, 'rv', 3000);
  await r.hincrby(`${P}w:${ws}`, 'h', 700);
  await r.set(`${P}h:old-1`, JSON.stringify({ ep: epoch, ws, wn: 700, k: [key.id], kn: 1000, b: [1], tp: [0], tk: 10 }));
  await r.zadd(`${P}leases`, 1, 'old-1');
  t.equal((await run(ADMIT, ...admitArgs('req-7', ws, 0, key)))[0], 'ok');
  t.same(await r.hmget(kk, 'fl', 'rv'), ['2', '3000'], 'its slot and reservation given back (the new admission holds one of each)');
  t.equal(await r.hget(`${P}w:${ws}`, 'h'), '0', 'and its credit hold');
  t.equal(await r.exists(`${P}h:old-1`), 0, 'its record is gone');
});

t.test('a key counted by a replica of the earlier layout is seeded again from Postgres, keeping what its requests in flight hold', async (t) => {
  await inOneSlice(async (head) => {
    const key: Key = { id: `k_${randomBytes(4).toString('hex')}`, window: { seconds: 3600, requests: 10 }, conc: 5, budget: true };
    const ws = await setup(key);
    const kk = `${P}k:${key.id}`;
    // As the earlier version left it in this epoch: no layout mark, two requests in flight, its window under `:w`
    await r.del(kk, `${kk}:s3600`);
    await r.hset(kk, 'ep', epoch, 'fl', 2, 'rv', 2000, 'dd', DAY, 'ds', 7);
    await r.hset(`${kk}:w3600`, String(head - 1), 9);
    const asked = await run(ADMIT, ...admitArgs('req-8', ws, 0, key));
    t.same(asked, ['seedkeys', epoch, 0], 'it asks for the key\'s counts');
    // (what Postgres's rows say: 6 requests a minute ago, 300 nano spent today)
    t.equal(Number(await run(SEED_KEY, P, epoch, key.id, DAY, 300, MONTH, 300, '', '', '', '', 3600, 1, head - 1, 6)), 1);
    t.same(await r.hmget(kk, 'v', 'fl', 'rv', 'ds'), ['2', '2', '2000', '300'], 'seeded in this layout; the slots and reservations in flight kept');
    t.equal(Number(await run(SEED_KEY, P, epoch, key.id, DAY, 0, MONTH, 0, '', '', '', '')), 0, 'a second seed (another replica) changes nothing');
    const ok = await run(ADMIT, ...admitArgs('req-9', ws, 0, key));
    t.equal(ok[0], 'ok');
    t.equal(ok[6], '7', 'the window as Postgres counts it, and this one');
    t.same(await r.hmget(kk, 'fl', 'rv'), ['3', '3000'], 'one more in flight');
  });
});

t.test('a window\'s running total, lowest and newest slice stay true to its slices over a random walk of admissions', async (t) => {
  // live() and count() driven directly, with slice numbers from the test: the clock jumps
  // (idle minutes, an idle hour), finishes count into older live slices, checks add nothing.
  const STEP = `${COMMON}
local wk, cut, s, n, width = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local total, lo, hi = live(wk, cut)
if n > 0 then count(wk, s, n, total, lo, hi, width) end
return tostring(total)`;
  const wk = `${P}walk:s3600`;
  let head = Math.floor(Date.now() / WIDTH);
  const model = new Map<number, number>();
  let seed = 7;
  const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  const jumps = [0, 0, 0, 1, 1, 2, 5, 58, 59, 60, 61, 130];
  let bad = 0;
  for (let step = 0; step < 400; step++) {
    head += jumps[Math.floor(rand() * jumps.length)]!;
    const cut = head - 60;
    for (const s of [...model.keys()]) if (s <= cut) model.delete(s);
    const expected = [...model.values()].reduce((a, b) => a + b, 0);
    // a finish counting into an older slice still live, sometimes; else this one
    const s = rand() < 0.2 && model.size ? Math.max(cut + 1, Math.min(...model.keys())) : head;
    const n = rand() < 0.15 ? 0 : 1 + Math.floor(rand() * 3);
    const total = Number(await run(STEP, P, wk, cut, s, n, WIDTH));
    if (n > 0) model.set(s, (model.get(s) ?? 0) + n);
    const fields = await r.hgetall(wk);
    const slices = Object.entries(fields).filter(([k]) => /^\d+$/.test(k)).map(([k, v]) => [Number(k), Number(v)] as const);
    const sum = slices.reduce((a, [, v]) => a + v, 0);
    const wanted = [...model.values()].reduce((a, b) => a + b, 0);
    const ok = total === expected && sum === wanted && Number(fields.t ?? 0) === sum
      && slices.every(([k, v]) => k > cut && model.get(k) === v) && slices.length === model.size
      && (slices.length === 0 || (Number(fields.lo) <= Math.min(...slices.map(([k]) => k)) && Number(fields.hi) >= Math.max(...slices.map(([k]) => k)) && Number(fields.hi) - Number(fields.lo) < 61));
    if (!ok && bad++ < 3) t.fail(`step ${step}: total ${total} (want ${expected}), fields ${JSON.stringify(fields)}, model ${JSON.stringify([...model])}`);
  }
  t.equal(bad, 0, '400 steps: the total read is the live slices\' sum; t, lo and hi match the slices kept, and only live slices are kept');
});
