// SharedLimits (cluster mode's admissions) against Debian's redis-server, with a made-up
// seeder in place of Postgres: an admission's deadline is told in Redis's time, so a
// replica whose clock is far from Redis's admits as usual, and one whose idea of the offset
// went wrong (Redis's clock stepped) measures it again instead of refusing.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import t from 'tap';
import type { KeyRecord } from '../../src/accounts/keys.js';
import { SharedLimits, type KeyCounts } from '../../src/accounts/shared-limits.js';
import type { Workspace } from '../../src/accounts/workspaces.js';
import type { Cluster } from '../../src/store/cluster.js';
import { startRedis } from '../helpers/cluster.js';
import { skipWithoutClusterServers } from '../helpers/cluster-skip.js';

skipWithoutClusterServers('shared limits');

const server = await startRedis();
t.teardown(() => server.stop());
const redis = new Redis(server.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 1000, enableAutoPipelining: true });
t.teardown(() => redis.disconnect());
await new Promise<void>((resolve) => redis.once('ready', () => resolve()));

const cluster = { redis, prefix: `t${randomBytes(3).toString('hex')}:`, replica: 'r1' } as unknown as Cluster;
const NONE: KeyCounts = { dayNano: 0, monthNano: 0, minute: [], windows: [] };
let shared: SharedLimits;
shared = new SharedLimits(cluster, {
  seed: async (ws) => { await shared.seedScript(ws.id, '1000000000000'); },
  keyCounts: async () => NONE,
});
t.teardown(() => shared.close());

const ws: Workspace = { id: `ws_${randomBytes(4).toString('hex')}`, name: 't', email: null, metered: true, balance_nano: 1e12, created_at: 0 };
const key: KeyRecord = {
  id: `key_${randomBytes(4).toString('hex')}`, name: 'k', kind: 'minted', workspace: ws.id, scopes: ['inference'], hash: '0'.repeat(64), prefix: 'sk',
  created_at: 0, revoked_at: null, limits: { windows: [{ seconds: 600, requests: 100 }], max_concurrency: 10 }, created_by: null,
};
const insufficient = () => { throw new Error('not expected: credits'); };
const admitOne = async (id: string) => {
  const a = await shared.admit(id, [key], { tokens: 10, nano: 1000 }, ws, 1000, insufficient);
  a.finish(5, 500, -500);
  await a.released;
};
const counted = async () => Number(await redis.hget(`${cluster.prefix}k:${key.id}:s600`, 't'));
const offset = (value?: number): number => {
  const s = shared as unknown as { clockOffset: number };
  if (value !== undefined) s.clockOffset = value;
  return s.clockOffset;
};

/**
 * Holds the event loop for longer than the command timeout right after the next command is
 * written to Redis: Redis runs it and answers at once, but the timeout fires before the answer is read.
 */
function holdLoopAfterNextWrite(): void {
  const stream = (redis as unknown as { stream: { write: (...a: unknown[]) => boolean } }).stream;
  const write = stream.write;
  stream.write = function (this: unknown, ...args: unknown[]) {
    const ok = write.apply(this, args);
    stream.write = write;
    const until = performance.now() + 1200;
    while (performance.now() < until) { /* the event loop held */ }
    return ok;
  };
}

t.test('the deadline is in Redis\'s time: the offset is measured as it connects', async (t) => {
  // (the first admission waits for the connection's check, which measures the offset)
  await admitOne('req-1');
  t.equal(await counted(), 1, 'admitted and counted');
  const before = performance.now();
  const [s, us] = await redis.time();
  const expected = Number(s) * 1000 + Number(us) / 1000 - (before + performance.now()) / 2;
  t.ok(Math.abs(offset() - expected) < 50, `the offset is Redis's clock less the monotonic one (${offset().toFixed(1)} ~ ${expected.toFixed(1)})`);
});

t.test('an offset gone wrong (Redis\'s clock stepped): measured again, and the admission goes through', async (t) => {
  const right = offset();
  offset(right - 3_600_000); // as if Redis's clock had jumped an hour ahead since it was measured
  await admitOne('req-2');
  t.equal(await counted(), 2, 'admitted and counted once');
  t.ok(Math.abs(offset() - right) < 50, 'the offset measured again');
});

t.test('a deadline that really passed (Redis stalled past the timeout) is a 503 that counted nothing', async (t) => {
  process.kill(server.pid(), 'SIGSTOP');
  const pending = shared.admit('req-3', [key], { tokens: 10, nano: 1000 }, ws, 1000, insufficient).then(() => 'admitted', (err: { status?: number }) => err.status);
  await new Promise((r) => setTimeout(r, 1500));
  process.kill(server.pid(), 'SIGCONT');
  t.equal(await pending, 503, 'refused with 503 once the command timed out');
  await new Promise((r) => setTimeout(r, 200)); // (Redis runs the queued admission now)
  t.equal(await counted(), 2, 'and Redis, resumed, did not count it');
  t.equal(Number(await redis.hget(`${cluster.prefix}k:${key.id}`, 'fl')), 0, 'nor hold a slot for it');
});

t.test('an answer read after the timeout (this replica\'s event loop held): a 503, and what Redis held for it is released at once', async (t) => {
  const before = await counted();
  // Redis runs it in time (the deadline is half the timeout) and answers, but the timeout fires before the answer is read.
  holdLoopAfterNextWrite();
  const got = await shared.admit('req-4', [key], { tokens: 10, nano: 1000 }, ws, 1000, insufficient).then(() => 200, (err: { status?: number }) => err.status);
  t.equal(got, 503, 'refused: the answer came after this replica stopped waiting');
  t.equal(await counted(), before + 1, 'Redis had counted it (as an admission whose client left counts)');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(Number(await redis.hget(`${cluster.prefix}k:${key.id}`, 'fl')), 0, 'its slot is free again, not held until its lease ran out');
  t.equal(Number(await redis.hget(`${cluster.prefix}w:${ws.id}`, 'h')), 0, 'and its credit hold');
  t.equal(await redis.exists(`${cluster.prefix}h:req-4`), 0, 'and its hold record gone');
});

t.test('a refund is claimed once for the cluster: pending until its row commits, then made; released if not made', async (t) => {
  const status = (p: Promise<unknown>) => p.then((c) => (c ? 'claimed' : 409), (err: { status?: number; message?: string }) => err.status);
  const first = await shared.claimRefund('req-r1');
  t.ok(first, 'the first claim');
  // Another while it is pending waits for it: its row may yet fail to commit.
  const waiting = shared.claimRefund('req-r1');
  setTimeout(() => first!.release(), 120);
  const again = await waiting;
  t.ok(again, 'released while another waited (its row failed to commit): that one refunds');
  const second = status(shared.claimRefund('req-r1'));
  setTimeout(() => again!.made(), 120);
  t.equal(await second, 409, 'made while another waited (its row committed): that one is told it was refunded');
  t.equal(await redis.get(`${cluster.prefix}r:req-r1`), 'd');
  t.equal(await status(shared.claimRefund('req-r1')), 409, 'and so is the next');
  t.equal(await redis.get(`${cluster.prefix}r:req-r1`), 'd');
  // Redis makes the claim, but this replica stopped waiting before the answer was read: a 503, then the claim is dropped.
  holdLoopAfterNextWrite();
  t.equal(await status(shared.claimRefund('req-r2')), 503, 'the operator is told to retry');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(await status(shared.claimRefund('req-r2')), 'claimed', 'and the retry refunds, not "already refunded"');
  // A pending claim whose replica died between the claim and its row: taken over once stale.
  await redis.set(`${cluster.prefix}r:req-r3`, `p:deadbeef:${Date.now() - 61_000}`);
  t.equal(await status(shared.claimRefund('req-r3')), 'claimed', 'a stale pending claim is taken over');
  await redis.set(`${cluster.prefix}r:req-r4`, `p:deadbeef:${Date.now() - 5_000}`);
  t.equal(await status(shared.claimRefund('req-r4')), 503, 'a recent one is not: waited for, then a 503 to retry');
  await redis.set(`${cluster.prefix}r:req-r5`, '1');
  t.equal(await status(shared.claimRefund('req-r5')), 409, 'a claim an earlier version made counts as made');
  // A release or a made never touches a claim that is not its own.
  const mine = await shared.claimRefund('req-r6');
  await redis.set(`${cluster.prefix}r:req-r6`, `p:another:${Date.now()}`);
  mine!.release();
  mine!.made();
  await new Promise((r) => setTimeout(r, 50));
  t.match(await redis.get(`${cluster.prefix}r:req-r6`), /^p:another:/, 'another\'s claim is left as it is');
});

t.test('a registration Redis counted after this replica stopped waiting is uncounted (the replica counts it on its own instead)', async (t) => {
  t.equal(await shared.register('203.0.113.0/24', 5), null, 'one registration, counted');
  holdLoopAfterNextWrite();
  const got = await shared.register('203.0.113.0/24', 5).then(() => 'counted', (err: Error) => err.message);
  t.match(got, /timed out/, 'the second: this replica stopped waiting');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(await redis.zcard(`${cluster.prefix}reg:203.0.113.0/24`), 1, 'Redis counts the first only');
});
