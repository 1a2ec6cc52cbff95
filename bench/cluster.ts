// The cluster row of `npm run bench` (alone: `npm run bench -- --cluster`): one gateway on
// the embedded store (LMDB) against one on the cluster store (Redis + Postgres, as
// deploy/compose.yml runs them), same build, same fake upstream, in alternating rounds, with
// an operator key (no limits: Redis is not asked) and a metered key with every limit (one
// Lua script at admission and one at finish, rows shipped to Postgres). CPU per request of
// the gateway, and of Redis and Postgres (what the cluster store adds elsewhere).
import { clusterUnavailable, startPostgres, startRedis } from '../test/helpers/cluster.js';
import { BODY, alternate, load, mintLimitedKey, type Measured } from './load.js';
import { cpuSeconds, here, startGateway, startProcess, stop } from './procs.js';

/** CPU seconds of a set of processes (those gone meanwhile count as nothing). */
function cpuOf(pids: readonly number[]): number {
  let s = 0;
  for (const pid of pids) { try { s += cpuSeconds(pid); } catch { /* gone */ } }
  return s;
}

let sequence = 0;
/** Different every time and not deterministic (no temperature): no cache or dedupe answers, every request goes upstream. */
const fresh = () => BODY(false).replace('one short sentence.', `one short sentence (${++sequence}).`);

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
    const keys = { embedded: await mintLimitedKey(embedded.port), cluster: await mintLimitedKey(cluster.port) };
    for (const g of [embedded, cluster]) await load(g.port, false, { duration: 1, fresh });
    // The store's servers' CPU over each cluster run, per request: [Redis, Postgres].
    const side: Record<string, Array<[number, number]>> = { operator: [], limited: [] };
    const measured = (port: number, pid: number, key: string | undefined, what: 'operator' | 'limited' | null) => async (): Promise<Measured> => {
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
    });
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
    const row = (label: string, e: Measured, c: Measured, store: Array<[number, number]>) =>
      `${''.padEnd(11)} ${label.padEnd(9)} embedded ${e.rps.toFixed(0).padStart(6)} req/s, CPU ${e.cpuUs?.toFixed(0)} µs/req | cluster ${c.rps.toFixed(0).padStart(6)} req/s (${(c.rps / e.rps).toFixed(2)}), CPU ${c.cpuUs?.toFixed(0)} µs/req (${((c.cpuUs ?? 0) / (e.cpuUs ?? 1)).toFixed(2)}×), + Redis ${med(store.map((x) => x[0])).toFixed(0)}, Postgres ${med(store.map((x) => x[1])).toFixed(0)} µs/req`;
    return [
      `${'cluster'.padEnd(11)} one replica on Redis + Postgres vs the embedded store (unique requests, none cacheable, ${rounds} alternating rounds of ${duration}s, medians; errors ${m.clusterOperator.errors + m.clusterLimited.errors})`,
      row('operator', m.embeddedOperator, m.clusterOperator, side.operator!),
      row('limited', m.embeddedLimited, m.clusterLimited, side.limited!),
    ];
  } finally {
    await stop(cluster.proc);
    await stop(embedded.proc);
    await redis.stop();
    await postgres.stop();
    await stop(fake.proc);
  }
}
