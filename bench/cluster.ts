// The cluster row of `npm run bench` (alone: `npm run bench -- --cluster`): one gateway on
// the embedded store (LMDB) against one on the cluster store (Redis + Postgres, as
// deploy/compose.yml runs them), same build, same fake upstream, in alternating rounds, with
// an operator key (no limits: Redis is not asked) and a metered key with every limit (one
// Lua script at admission and one at finish, rows shipped to Postgres), that key again with
// an hour of earlier traffic in its windows in Redis (59 live slices each: what a key in
// steady use carries), CPU per request of the gateway, and of Redis and Postgres (what the
// cluster store adds elsewhere). Then, on paper, a replica with event-loop threads: W and A
// (bench/threads.ts) on the cluster store, and what they bound on 8 and 16 cores.
import { Redis } from 'ioredis';
import { clusterUnavailable, startPostgres, startRedis } from '../test/helpers/cluster.js';
import { BODY, LIMITED_WINDOWS, alternate, load, mintLimited, mintLimitedKey, type Measured } from './load.js';
import { cpuSeconds, here, startGateway, startProcess, stop } from './procs.js';
import { measured as split } from './threads.js';

/** CPU seconds of a set of processes (those gone meanwhile count as nothing). */
function cpuOf(pids: readonly number[]): number {
  let s = 0;
  for (const pid of pids) { try { s += cpuSeconds(pid); } catch { /* gone */ } }
  return s;
}

let sequence = 0;
/** Different every time and not deterministic (no temperature): no cache or dedupe answers, every request goes upstream. */
const fresh = () => BODY(false).replace('one short sentence.', `one short sentence (${++sequence}).`);

/** An hour of earlier traffic in a key's windows: 59 slices of 5 requests each before the current one, as the scripts keep them (shared-scripts.ts). */
async function withHistory(url: string, keyId: string): Promise<void> {
  const r = new Redis(url);
  try {
    const now = Number((await r.time())[0]) * 1000;
    for (const seconds of LIMITED_WINDOWS) {
      const wk = `sluice:k:${keyId}:s${seconds}`;
      const width = (seconds * 1000) / 60;
      const head = Math.floor(now / width);
      const batch = r.multi();
      for (let s = head - 59; s < head; s++) batch.hincrby(wk, String(s), 5);
      batch.hincrby(wk, 't', 59 * 5).hset(wk, 'lo', head - 59);
      await batch.exec();
      if (!(await r.hget(wk, 'hi'))) await r.hset(wk, 'hi', head - 1);
    }
  } finally {
    r.disconnect();
  }
}

export async function runCluster(quick: boolean): Promise<string[]> {
  const missing = clusterUnavailable();
  if (missing) return [`cluster     (skipped: ${missing})`];
  const duration = quick ? 3 : 6;
  const rounds = quick ? 2 : 4;
  const fake = await startProcess(here('./fake-upstream.js'), {}, /listening (\d+)/);
  const upstreamPort = Number(fake.match[1]);
  const redis = await startRedis();
  const postgres = await startPostgres();
  const embedded = await startGateway(upstreamPort);
  const cluster = await startGateway(upstreamPort, { SLUICE_REDIS_URL: redis.url, SLUICE_POSTGRES_URL: postgres.url });
  try {
    const full = await mintLimited(cluster.port);
    const keys = { embedded: await mintLimitedKey(embedded.port), cluster: await mintLimitedKey(cluster.port), full: full.key };
    for (const g of [embedded, cluster]) await load(g.port, false, { duration: 1, fresh });
    // (once the key is seeded in Redis: seeding rebuilds its windows from Postgres's rows)
    await load(cluster.port, false, { duration: 1, fresh, key: full.key });
    await withHistory(redis.url, full.id);
    // The store's servers' CPU over each cluster run, per request: [Redis, Postgres].
    const side: Record<string, Array<[number, number]>> = { operator: [], limited: [], full: [] };
    const measured = (port: number, pid: number, key: string | undefined, what: 'operator' | 'limited' | 'full' | null) => async (): Promise<Measured> => {
      const r0 = cpuOf([redis.pid()]);
      const p0 = cpuOf(postgres.pids());
      const m = await load(port, false, { duration, fresh, pid, ...(key ? { key } : {}) });
      const n = m.rps * duration;
      if (what) side[what]!.push([((cpuOf([redis.pid()]) - r0) * 1e6) / n, ((cpuOf(postgres.pids()) - p0) * 1e6) / n]);
      return m;
    };
    const m = await alternate(rounds, {
      embeddedOperator: measured(embedded.port, embedded.proc.pid!, undefined, null),
      clusterOperator: measured(cluster.port, cluster.proc.pid!, undefined, 'operator'),
      embeddedLimited: measured(embedded.port, embedded.proc.pid!, keys.embedded, null),
      clusterLimited: measured(cluster.port, cluster.proc.pid!, keys.cluster, 'limited'),
      clusterFull: measured(cluster.port, cluster.proc.pid!, keys.full, 'full'),
    });
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
    const row = (label: string, e: Measured, c: Measured, store: Array<[number, number]>) =>
      `${''.padEnd(11)} ${label.padEnd(9)} embedded ${e.rps.toFixed(0).padStart(6)} req/s, CPU ${e.cpuUs?.toFixed(0)} µs/req | cluster ${c.rps.toFixed(0).padStart(6)} req/s (${(c.rps / e.rps).toFixed(2)}), CPU ${c.cpuUs?.toFixed(0)} µs/req (${((c.cpuUs ?? 0) / (e.cpuUs ?? 1)).toFixed(2)}×), + Redis ${med(store.map((x) => x[0])).toFixed(0)}, Postgres ${med(store.map((x) => x[1])).toFixed(0)} µs/req`;
    const lines = [
      `${'cluster'.padEnd(11)} one replica on Redis + Postgres vs the embedded store (unique requests, none cacheable, ${rounds} alternating rounds of ${duration}s, medians; errors ${m.clusterOperator.errors + m.clusterLimited.errors})`,
      row('operator', m.embeddedOperator, m.clusterOperator, side.operator!),
      row('limited', m.embeddedLimited, m.clusterLimited, side.limited!),
      row('steady', m.embeddedLimited, m.clusterFull, side.full!) + '  (the limited key with an hour of traffic in its windows)',
    ];
    await stop(cluster.proc);
    lines.push(...await onPaper(upstreamPort, redis.url, postgres.url, duration, rounds, { operator: m.clusterOperator.cpuUs ?? NaN, limited: m.clusterLimited.cpuUs ?? NaN }));
    return lines;
  } finally {
    await stop(cluster.proc);
    await stop(embedded.proc);
    await redis.stop();
    await postgres.stop();
    await stop(fake.proc);
  }
}

/**
 * A replica on the cluster store with two event-loop threads, the main thread taking no
 * connections: W (a thread's CPU per request it serves) and A (the main thread's for it: the
 * admission and finish in Redis for its threads, rows, commit, outbox) on C cores bound a
 * replica at min((C - 1) / W, 1 / A), against 1 / (CPU per request) on one thread (`single`).
 */
async function onPaper(upstreamPort: number, redisUrl: string, postgresUrl: string, duration: number, rounds: number, single: Record<'operator' | 'limited', number>): Promise<string[]> {
  const g = await startGateway(upstreamPort, { SLUICE_REDIS_URL: redisUrl, SLUICE_POSTGRES_URL: postgresUrl, SLUICE_THREADS: '2', SLUICE_THREADS_MAIN_HTTP: 'off' });
  try {
    // A new replica first reads back the rows the others wrote (the usage APIs see every
    // replica's): here, the whole run's. Measured once that is done (its CPU at rest).
    for (let i = 0, before = cpuSeconds(g.proc.pid!); i < 120; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const now = cpuSeconds(g.proc.pid!);
      if (now - before < 0.05) break;
      before = now;
    }
    const key = await mintLimitedKey(g.port);
    await load(g.port, false, { duration: 1, fresh, key });
    const runs: Record<'operator' | 'limited', Array<{ w: number; a: number; errors: number }>> = { operator: [], limited: [] };
    for (let r = 0; r < rounds; r++) {
      for (const path of r % 2 ? (['limited', 'operator'] as const) : (['operator', 'limited'] as const)) {
        const got = await split(g.port, g.proc.pid!, 1, duration, path === 'limited' ? key : undefined, false, fresh);
        runs[path].push({ w: got.split.loops, a: got.split.main, errors: got.errors });
      }
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
    const lines = ['            on paper, a replica with threads (2, the main thread taking no connections; W = a thread\'s CPU per request it serves, A = the main thread\'s for it):'];
    for (const path of ['operator', 'limited'] as const) {
      const w = med(runs[path].map((x) => x.w));
      const a = med(runs[path].map((x) => x.a));
      const bound = (cores: number) => Math.min((cores - 1) * 1e6 / w, 1e6 / a);
      const one = 1e6 / single[path];
      lines.push(`              ${path.padEnd(9)} W ${w.toFixed(0)} µs, A ${a.toFixed(0)} µs: 8 cores ≤ ${(bound(8) / 1000).toFixed(1)}k req/s, 16 cores ≤ ${(bound(16) / 1000).toFixed(1)}k `
        + `(one thread: ${(one / 1000).toFixed(1)}k, so ${(bound(8) / one).toFixed(1)}× and ${(bound(16) / one).toFixed(1)}×; errors ${runs[path].reduce((s, x) => s + x.errors, 0)})`);
    }
    return lines;
  } finally {
    await stop(g.proc);
  }
}
