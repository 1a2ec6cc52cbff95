// `npm run bench [-- --quick]`: the same fast fake upstream measured directly and through
// Sluice in one run, non-stream and stream; latency at a fixed rate (so added p50/p99 is
// overhead, not queueing); the gateway's RSS; and a sweep over worker counts. Ratios are
// against the direct baseline measured in this same run.
import autocannon from 'autocannon';
import { fixedRate } from './fixed-rate.js';
import { MASTER, cpuSeconds, here, rssMiB, startGateway, startProcess, stop } from './procs.js';

const quick = process.argv.includes('--quick');
const DURATION = quick ? 5 : 15;
const RATE_DURATION = quick ? 5 : 15;
const CONNECTIONS = 50;
const FIXED_RATE = 1000;

interface Measured { rps: number; p50: number; p99: number; errors: number }

const BODY = (stream: boolean, model = 'gpt-4.1-mini') => JSON.stringify({ model, stream,
  messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hello to the benchmark in one short sentence.' }] });

interface LoadOptions {
  duration: number;
  rate?: number;
  model?: string;
  key?: string;
  /** Extra request headers (e.g. x-gateway-savings: off). */
  headers?: Record<string, string>;
  /** A different body per request (`unique`, so every request misses the caches), or one fixed body. */
  body?: string | 'unique';
}

let uniqueSeq = 0;
/** Deterministic (temperature 0, so cacheable) and different on every call: a cache miss each time. */
const uniqueBody = () => JSON.stringify({ model: 'gpt-4.1-mini', temperature: 0,
  messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: `Say hello to benchmark request ${++uniqueSeq} in one short sentence.` }] });
/** The same deterministic request every time: an exact-cache hit after the first. */
const REPEATED = JSON.stringify({ model: 'gpt-4.1-mini', temperature: 0,
  messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hello to the benchmark in one short sentence.' }] });

async function load(port: number, stream: boolean, opts: LoadOptions): Promise<Measured> {
  const body = opts.body === 'unique' ? uniqueBody() : opts.body ?? BODY(stream, opts.model);
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/v1/chat/completions`, method: 'POST', body,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${opts.key ?? MASTER}`, ...opts.headers },
    connections: opts.rate ? 20 : CONNECTIONS, duration: opts.duration, ...(opts.rate ? { overallRate: opts.rate } : {}),
    ...(opts.body === 'unique' ? { setupRequest: (req: autocannon.Request) => ({ ...req, body: uniqueBody() }) } : {}),
  });
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx };
}

const fmt = (n: number, d = 0) => n.toFixed(d).padStart(9);

/** A key in a metered workspace with limits that the bench never reaches, so every check runs. */
async function mintLimitedKey(port: number): Promise<string> {
  const admin = (path: string, body: unknown) => fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${MASTER}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  }).then((r) => r.json() as Promise<{ id: string; key: string }>);
  const ws = await admin('/admin/workspaces', { name: 'bench', credits_usd: 1_000_000 });
  const key = await admin('/admin/keys', { name: 'bench-limited', workspace: ws.id, limits: {
    rpm: 10_000_000, tpm: 1_000_000_000, windows: [{ requests: 100_000_000, seconds: 3600 }, { requests: 1_000_000_000, seconds: 7 * 86400 }],
    budget_usd_day: 100_000, budget_usd_month: 1_000_000, max_concurrency: 10_000 } });
  return key.key;
}

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
    await load(gw.port, false, { duration: 2 });
    for (const stream of [false, true]) {
      const kind = stream ? 'stream' : 'non-stream';
      const direct = await load(upstreamPort, stream, { duration: DURATION });
      const floor = await load(barePort, stream, { duration: DURATION });
      const through = await load(gw.port, stream, { duration: DURATION });
      rows.push(`${kind.padEnd(11)} direct   ${fmt(direct.rps)} ${fmt(direct.p50, 2)} ${fmt(direct.p99, 2)} ${fmt(direct.errors)}`);
      rows.push(`${''.padEnd(11)} bare     ${fmt(floor.rps)} ${fmt(floor.p50, 2)} ${fmt(floor.p99, 2)} ${fmt(floor.errors)}   ratio ${(floor.rps / direct.rps).toFixed(2)}  (uWS→undici, no features)`);
      rows.push(`${''.padEnd(11)} sluice   ${fmt(through.rps)} ${fmt(through.p50, 2)} ${fmt(through.p99, 2)} ${fmt(through.errors)}   ratio ${(through.rps / direct.rps).toFixed(2)}  (${(through.rps / floor.rps).toFixed(2)} of bare)`);
      if (!stream) {
        // A metered workspace's key with every kind of limit: credits held and charged, rpm/tpm buckets, rolling windows, budgets, concurrency.
        const limited = await load(gw.port, false, { duration: DURATION, key: limitedKey });
        rows.push(`${''.padEnd(11)} limited  ${fmt(limited.rps)} ${fmt(limited.p50, 2)} ${fmt(limited.p99, 2)} ${fmt(limited.errors)}   ratio ${(limited.rps / direct.rps).toFixed(2)}  (${(limited.rps / through.rps).toFixed(2)} of sluice with an exempt key)`);
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
    const probe = (port: number) => fixedRate(`http://127.0.0.1:${port}`, { rate: FIXED_RATE, seconds: RATE_DURATION, body: BODY(false),
      headers: { 'content-type': 'application/json', authorization: `Bearer ${MASTER}` } });
    await probe(gw.port); // warm
    const fixedDirect = await probe(upstreamPort);
    const fixedThrough = await probe(gw.port);

    console.log(`\nSluice bench (${quick ? 'quick' : 'full'}: ${DURATION}s per run, ${CONNECTIONS} connections; fake upstream on uWS)\n`);
    console.log(`${'mode'.padEnd(11)} path     ${'req/s'.padStart(9)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'errors'.padStart(9)}`);
    for (const r of rows) console.log(r);
    console.log(`\nfixed rate ${FIXED_RATE} req/s, non-stream, ${RATE_DURATION}s (µs-resolution probe, bench/fixed-rate.ts):`);
    console.log(`  direct  p50 ${fixedDirect.p50.toFixed(3)} ms  p99 ${fixedDirect.p99.toFixed(3)} ms  (${fixedDirect.ok}/${fixedDirect.sent} ok)`);
    console.log(`  sluice  p50 ${fixedThrough.p50.toFixed(3)} ms  p99 ${fixedThrough.p99.toFixed(3)} ms  (${fixedThrough.ok}/${fixedThrough.sent} ok)`);
    console.log(`  added   p50 ${(fixedThrough.p50 - fixedDirect.p50).toFixed(3)} ms  p99 ${(fixedThrough.p99 - fixedDirect.p99).toFixed(3)} ms`);
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
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
