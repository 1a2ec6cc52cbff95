// `npm run bench [-- --quick]` (`-- --peers`: beside Portkey's gateway; `-- --cluster`: the cluster row alone; `-- --threads`: the thread rows alone): the same fast fake upstream measured directly, through a
// bare uWS→undici passthrough (the floor: a proxy with no features) and through Sluice, in
// one run, non-stream and stream; latency at a fixed rate (so added p50/p99 is overhead, not
// queueing); the gateway's RSS; and a sweep over worker counts. Ratios are against the
// direct baseline measured in this same run.
//
// This machine (2 cores shared by the load generator, the fake upstream and the proxy, on a
// VM whose speed drifts by 2× within a minute) makes one run of each path meaningless, so the
// paths are measured in alternating rounds and the medians are printed, each with the proxy
// process's CPU time per request (read from /proc), which drifts far less than req/s.
import { fixedRate, type FixedRateResult } from './fixed-rate.js';
import { runCluster } from './cluster.js';
import { runPeers } from './peers.js';
import { runThreads } from './threads.js';
import { BODY, CONNECTIONS, REPEATED, alternate, load, median, mintLimitedKey, type Measured } from './load.js';
import { MASTER, cpuSeconds, here, rssMiB, startGateway, startProcess, stop } from './procs.js';

const quick = process.argv.includes('--quick');
const peers = process.argv.includes('--peers');
const clusterOnly = process.argv.includes('--cluster');
const threadsOnly = process.argv.includes('--threads');
const DURATION = quick ? 5 : 15;
const RATE_DURATION = quick ? 5 : 15;
const FIXED_RATE = 1000;
/** Alternating rounds of the direct / bare / Sluice comparison (each run DURATION / ROUNDS seconds). */
const ROUNDS = quick ? 1 : 3;
/** Alternating rounds of the fixed-rate probe (each RATE_DURATION / FR_ROUNDS seconds per path). */
const FR_ROUNDS = quick ? 3 : 5;

const cpuNote = (m: Measured) => (m.cpuUs === null ? '' : `  CPU ${m.cpuUs.toFixed(0)} µs/req`);

const fmt = (n: number, d = 0) => n.toFixed(d).padStart(9);

async function main() {
  const fake = await startProcess(here('./fake-upstream.js'), {}, /listening (\d+)/);
  const upstreamPort = Number(fake.match[1]);
  const bare = await startProcess(here('./bare-passthrough.js'), { UPSTREAM: `http://127.0.0.1:${upstreamPort}` }, /listening (\d+)/);
  const barePort = Number(bare.match[1]);
  const gw = await startGateway(upstreamPort, {}, { models: [{ slug: 'openai/slow-model', upstream_id: 'slow-model', context_window: 128000, tokenizer: 'o200k_base', prices: { input: 0.4, cached_input: 0.1, output: 1.6 } }] });
  const limitedKey = await mintLimitedKey(gw.port);
  const rows: string[] = [];
  try {
    // warm both paths (JIT, keep-alive pools)
    await load(upstreamPort, false, { duration: 1 });
    await load(barePort, false, { duration: 1 });
    // (Sluice's JIT goes on compiling for ~6 s of load: every path it is measured on, warmed first)
    await load(gw.port, false, { duration: 3 });
    await load(gw.port, false, { duration: 2, key: limitedKey });
    await load(gw.port, true, { duration: 2, body: BODY(true) });
    let nonStream: { direct: Measured; bare: Measured; sluice: Measured } | null = null;
    for (const stream of [false, true]) {
      const kind = stream ? 'stream' : 'non-stream';
      const slice = DURATION / ROUNDS;
      const m = await alternate(ROUNDS, {
        direct: () => load(upstreamPort, stream, { duration: slice }),
        bare: () => load(barePort, stream, { duration: slice, pid: bare.proc.pid! }),
        sluice: () => load(gw.port, stream, { duration: slice, pid: gw.proc.pid! }),
      });
      const { direct, bare: floor, sluice: through } = m;
      if (!stream) nonStream = m;
      rows.push(`${kind.padEnd(11)} direct   ${fmt(direct.rps)} ${fmt(direct.p50, 2)} ${fmt(direct.p99, 2)} ${fmt(direct.errors)}`);
      rows.push(`${''.padEnd(11)} bare     ${fmt(floor.rps)} ${fmt(floor.p50, 2)} ${fmt(floor.p99, 2)} ${fmt(floor.errors)}   ratio ${(floor.rps / direct.rps).toFixed(2)}  (uWS→undici, no features)${cpuNote(floor)}`);
      rows.push(`${''.padEnd(11)} sluice   ${fmt(through.rps)} ${fmt(through.p50, 2)} ${fmt(through.p99, 2)} ${fmt(through.errors)}   ratio ${(through.rps / direct.rps).toFixed(2)}  (${(through.rps / floor.rps).toFixed(2)} of bare)${cpuNote(through)}`);
      if (!stream) {
        // A metered workspace's key with every kind of limit: credits held and charged, rpm/tpm buckets, rolling windows, budgets, concurrency.
        const limited = await load(gw.port, false, { duration: DURATION / ROUNDS, key: limitedKey, pid: gw.proc.pid! });
        rows.push(`${''.padEnd(11)} limited  ${fmt(limited.rps)} ${fmt(limited.p50, 2)} ${fmt(limited.p99, 2)} ${fmt(limited.errors)}   ratio ${(limited.rps / direct.rps).toFixed(2)}  (${(limited.rps / through.rps).toFixed(2)} of sluice with an exempt key)${cpuNote(limited)}`);
      }
    }
    // The savings engine: on cache misses (every request different, cacheable: hashed, looked
    // up, registered for dedupe, stored) against the same requests with it switched off; and
    // the exact-cache hit path against the direct upstream.
    const savingsOff = await load(gw.port, false, { duration: DURATION, body: 'unique', headers: { 'x-gateway-savings': 'off' } });
    const savingsMiss = await load(gw.port, false, { duration: DURATION, body: 'unique' });
    await load(gw.port, false, { duration: 1, body: REPEATED }); // fills the entry
    const hits = await load(gw.port, false, { duration: DURATION, body: REPEATED });
    const directRef = await load(upstreamPort, false, { duration: DURATION });
    rows.push('');
    rows.push(`${'savings'.padEnd(11)} off      ${fmt(savingsOff.rps)} ${fmt(savingsOff.p50, 2)} ${fmt(savingsOff.p99, 2)} ${fmt(savingsOff.errors)}   (x-gateway-savings: off, unique cacheable requests)`);
    rows.push(`${''.padEnd(11)} misses   ${fmt(savingsMiss.rps)} ${fmt(savingsMiss.p50, 2)} ${fmt(savingsMiss.p99, 2)} ${fmt(savingsMiss.errors)}   ratio ${(savingsMiss.rps / savingsOff.rps).toFixed(2)} of off  (engine cost on misses: ${((1 - savingsMiss.rps / savingsOff.rps) * 100).toFixed(1)}%)`);
    // Against an upstream that takes 50 ms (as real ones take far longer), a hit skips the wait.
    const slowBody = REPEATED.replace('"gpt-4.1-mini"', '"slow-model"');
    const slowDirect = await load(upstreamPort, false, { duration: DURATION, body: slowBody });
    await load(gw.port, false, { duration: 1, body: slowBody });
    const slowHits = await load(gw.port, false, { duration: DURATION, body: slowBody });
    rows.push(`${''.padEnd(11)} hits     ${fmt(hits.rps)} ${fmt(hits.p50, 2)} ${fmt(hits.p99, 2)} ${fmt(hits.errors)}   ratio ${(hits.rps / directRef.rps).toFixed(2)} of direct (${fmt(directRef.rps).trim()} req/s, p50 ${directRef.p50.toFixed(2)} ms, same run)`);
    rows.push(`${''.padEnd(11)} 50ms up  ${fmt(slowDirect.rps)} ${fmt(slowDirect.p50, 2)} ${fmt(slowDirect.p99, 2)} ${fmt(slowDirect.errors)}   (direct, an upstream answering in 50 ms)`);
    rows.push(`${''.padEnd(11)} its hits ${fmt(slowHits.rps)} ${fmt(slowHits.p50, 2)} ${fmt(slowHits.p99, 2)} ${fmt(slowHits.errors)}   ratio ${(slowHits.rps / slowDirect.rps).toFixed(2)} of direct, p50 ${(slowHits.p50 / slowDirect.p50).toFixed(3)}×`);
    // Metrics and access logs: two fresh gateways of this build, one with both on (JSON
    // access log to stdout, drained by this process) and one with both off, alternated so
    // that the machine's drift hits both alike; throughput and gateway CPU per request.
    const opsOn = await startGateway(upstreamPort);
    const opsOff = await startGateway(upstreamPort, { SLUICE_METRICS: 'off', SLUICE_ACCESS_LOG: 'off' });
    try {
      const runs = { on: [] as Array<[number, number]>, off: [] as Array<[number, number]> };
      for (const g of [opsOn, opsOff]) await load(g.port, false, { duration: 1 });
      for (let i = 0; i < 4; i++) {
        for (const [name, g] of (i % 2 ? [['off', opsOff], ['on', opsOn]] : [['on', opsOn], ['off', opsOff]]) as Array<['on' | 'off', typeof opsOn]>) {
          const cpu0 = cpuSeconds(g.proc.pid!);
          const r = await load(g.port, false, { duration: DURATION / 3 });
          runs[name].push([r.rps, ((cpuSeconds(g.proc.pid!) - cpu0) * 1e6) / (r.rps * (DURATION / 3))]);
        }
      }
      const mean = (xs: Array<[number, number]>, i: 0 | 1) => xs.reduce((a, x) => a + x[i], 0) / xs.length;
      rows.push('');
      rows.push(`${'ops'.padEnd(11)} off      ${fmt(mean(runs.off, 0))}   (metrics and access logs off; gateway CPU ${mean(runs.off, 1).toFixed(0)} µs/request)`);
      rows.push(`${''.padEnd(11)} on       ${fmt(mean(runs.on, 0))}   ratio ${(mean(runs.on, 0) / mean(runs.off, 0)).toFixed(3)}  (metrics + JSON access log to stdout; CPU ${mean(runs.on, 1).toFixed(0)} µs/request, ${(mean(runs.on, 1) / mean(runs.off, 1)).toFixed(3)}×)`);
    } finally {
      await stop(opsOn.proc);
      await stop(opsOff.proc);
    }
    const rssUnderLoad = rssMiB(gw.proc.pid!);
    // Fixed rate: direct, bare and Sluice probed in turn, FR_ROUNDS times; the added latency of
    // a round is against the direct probe of the same round, and the medians are printed.
    const probe = (port: number, seconds = RATE_DURATION / FR_ROUNDS) => fixedRate(`http://127.0.0.1:${port}`, { rate: FIXED_RATE, seconds, body: BODY(false),
      headers: { 'content-type': 'application/json', authorization: `Bearer ${MASTER}` } });
    for (const port of [upstreamPort, barePort, gw.port]) await probe(port, 2); // warm (connections, JIT)
    const fixed = { direct: [] as FixedRateResult[], bare: [] as FixedRateResult[], sluice: [] as FixedRateResult[] };
    for (let r = 0; r < FR_ROUNDS; r++) {
      for (const [name, port] of (r % 2 ? [['sluice', gw.port], ['bare', barePort], ['direct', upstreamPort]] : [['direct', upstreamPort], ['bare', barePort], ['sluice', gw.port]]) as Array<[keyof typeof fixed, number]>) {
        fixed[name].push(await probe(port));
      }
    }
    const added = (name: 'bare' | 'sluice', q: 'p50' | 'p99') => median(fixed[name].map((f, i) => f[q] - fixed.direct[i]![q]));
    const fixedRow = (name: keyof typeof fixed) => {
      const fs = fixed[name];
      const ok = fs.reduce((a, f) => a + f.ok, 0), sent = fs.reduce((a, f) => a + f.sent, 0);
      const extra = name === 'direct' ? '' : `   added p50 ${added(name, 'p50').toFixed(3)} ms  p99 ${added(name, 'p99').toFixed(3)} ms`;
      return `  ${name.padEnd(7)} p50 ${median(fs.map((f) => f.p50)).toFixed(3)} ms  p99 ${median(fs.map((f) => f.p99)).toFixed(3)} ms  (${ok}/${sent} ok)${extra}`;
    };

    console.log(`\nSluice bench (${quick ? 'quick' : 'full'}: ${DURATION}s per run, ${CONNECTIONS} connections; fake upstream on uWS)\n`);
    console.log(`${'mode'.padEnd(11)} path     ${'req/s'.padStart(9)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'errors'.padStart(9)}`);
    for (const r of rows) console.log(r);
    console.log(`\nfixed rate ${FIXED_RATE} req/s, non-stream, ${FR_ROUNDS} alternating rounds of ${(RATE_DURATION / FR_ROUNDS).toFixed(1)}s, medians (µs-resolution probe, bench/fixed-rate.ts):`);
    for (const name of ['direct', 'bare', 'sluice'] as const) console.log(fixedRow(name));
    if (nonStream) {
      const { direct, bare: floor, sluice } = nonStream;
      console.log(`\ntargets (issue 2)              sluice     bare (the floor: same libraries, no features)`);
      console.log(`  non-stream ≥ 0.50 of direct   ${(sluice.rps / direct.rps).toFixed(2).padStart(6)}   ${(floor.rps / direct.rps).toFixed(2).padStart(6)}`);
      console.log(`  added p50 < 0.5 ms           ${added('sluice', 'p50').toFixed(3).padStart(6)}   ${added('bare', 'p50').toFixed(3).padStart(6)}`);
      console.log(`  added p99 < 2 ms             ${added('sluice', 'p99').toFixed(3).padStart(6)}   ${added('bare', 'p99').toFixed(3).padStart(6)}`);
      if (sluice.cpuUs !== null && floor.cpuUs !== null) console.log(`  CPU per request              ${sluice.cpuUs.toFixed(0).padStart(6)}   ${floor.cpuUs.toFixed(0).padStart(6)} µs  (features: ${(sluice.cpuUs - floor.cpuUs).toFixed(0)} µs)`);
    }
    console.log(`\ngateway RSS under load: ${rssUnderLoad.toFixed(1)} MiB`);
  } finally {
    await stop(gw.proc);
    await stop(bare.proc);
  }

  // Worker sweep: the sim provider counts every prompt in the pool, so it exercises the workers.
  console.log(`\nworker sweep (sim provider, ttft 0, prompt tokenized in the pool per request; ${quick ? 3 : 8}s each):`);
  for (const workers of quick ? [1, 2] : [1, 2, 4]) {
    const sim = await startGateway(upstreamPort, { SLUICE_WORKERS: String(workers), SLUICE_SIM: 'on' },
      { sim: { ttft_ms: 0, tokens_per_second: 100000 } });
    try {
      await load(sim.port, false, { duration: 1, model: 'openai/gpt-4.1-mini' });
      const r = await load(sim.port, false, { duration: quick ? 3 : 8, model: 'openai/gpt-4.1-mini' });
      console.log(`  workers ${workers}: ${r.rps.toFixed(0)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  RSS ${rssMiB(sim.proc.pid!).toFixed(1)} MiB  errors ${r.errors}`);
    } finally {
      await stop(sim.proc);
    }
  }
  await stop(fake.proc);
  console.log('');
  for (const line of await runThreads(quick)) console.log(line);
  console.log('');
  for (const line of await runCluster(quick)) console.log(line);
}

async function clusterAlone(): Promise<void> {
  for (const line of await runCluster(quick)) console.log(line);
}

async function threadsAlone(): Promise<void> {
  for (const line of await runThreads(quick)) console.log(line);
}

(peers ? runPeers(quick) : clusterOnly ? clusterAlone() : threadsOnly ? threadsAlone() : main()).catch((err: unknown) => { console.error(err); process.exit(1); });
