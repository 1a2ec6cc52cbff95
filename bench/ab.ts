// `npm run bench:ab -- <other build's dist/src/main.js> [rounds]`: this build of Sluice against
// another (say an earlier commit's, built in a worktree), on the same fast fake upstream, in
// alternating rounds (the order flipped each round, so the VM's drift hits both alike), for
// the three paths every chat request takes one of: non-stream with an exempt key, non-stream
// with a limited key in a metered workspace, and stream; and a stored Responses API request.
// Prints medians of req/s and of each gateway's CPU time per request (the steadier figure),
// their ratio this/other, and the median of each round's own ratio (the two builds measured
// back to back: the steadiest).
// Both gateways are warmed until their JIT settles (its compiles went on for ~6 s here) and,
// with two cores or more, pinned to a core of their own (procs.ts's pinProxies).
import { BODY, load, median, mintLimitedKey, PACED_BODY, PACED_MODEL, RESPONSES_BODY, type Measured } from './load.js';
import { here, pinProxies, startGateway, startProcess, stop } from './procs.js';

const other = process.argv[2];
if (!other) { console.error('usage: node dist/bench/ab.js <other dist/src/main.js> [rounds] [paths]'); process.exit(2); }
const ROUNDS = Number(process.argv[3] ?? 6);
/** Optional: only the paths named (comma-separated: non-stream,limited,stream,responses,paced). */
const ONLY = process.argv[4]?.split(',');
const SLICE = 3;

async function main() {
  const fake = await startProcess(here('./fake-upstream.js'), {}, /listening (\d+)/);
  const upstream = Number(fake.match[1]);
  const config = { models: [PACED_MODEL] };
  const gws = { this: await startGateway(upstream, {}, config), other: await startGateway(upstream, {}, config, other!) };
  const keys = { this: await mintLimitedKey(gws.this.port), other: await mintLimitedKey(gws.other.port) };
  const paths = {
    'non-stream': (g: 'this' | 'other') => load(gws[g].port, false, { duration: SLICE, pid: gws[g].proc.pid! }),
    'limited': (g: 'this' | 'other') => load(gws[g].port, false, { duration: SLICE, key: keys[g], pid: gws[g].proc.pid! }),
    'stream': (g: 'this' | 'other') => load(gws[g].port, true, { duration: SLICE, pid: gws[g].proc.pid!, body: BODY(true) }),
    'responses': (g: 'this' | 'other') => load(gws[g].port, false, { duration: SLICE, key: keys[g], pid: gws[g].proc.pid!, path: '/v1/responses', body: RESPONSES_BODY }),
    // (a limited key; 100 connections keep the gateway busy, as 50 of these slow streams do not)
    'paced': (g: 'this' | 'other') => load(gws[g].port, true, { duration: SLICE, key: keys[g], pid: gws[g].proc.pid!, body: PACED_BODY, connections: 100 }),
  };
  try {
    const pinned = pinProxies([gws.this.proc.pid!, gws.other.proc.pid!], [fake.proc.pid!]);
    // (JIT, keep-alive pools: every path each build will be measured on)
    for (const g of ['this', 'other'] as const) for (const run of Object.values(paths)) await run(g);
    for (const g of ['this', 'other'] as const) for (const run of Object.values(paths)) await run(g);
    const got: Record<string, Record<'this' | 'other', Measured[]>> = {};
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, run] of Object.entries(paths)) {
        if (ONLY && !ONLY.includes(name)) continue;
        const slot = (got[name] ??= { this: [], other: [] });
        for (const g of (r % 2 ? ['other', 'this'] : ['this', 'other']) as Array<'this' | 'other'>) slot[g].push(await run(g));
      }
    }
    console.log(`A/B, ${ROUNDS} alternating rounds of ${SLICE} s per path and build; medians (other: ${other})${pinned ? '; each gateway pinned to the last core' : ''}`);
    console.log('path          this req/s  other req/s   ratio    this CPU µs/req  other CPU µs/req  ratio  paired');
    for (const [name, m] of Object.entries(got)) {
      const rps = { this: median(m.this.map((x) => x.rps)), other: median(m.other.map((x) => x.rps)) };
      const cpu = { this: median(m.this.map((x) => x.cpuUs ?? NaN)), other: median(m.other.map((x) => x.cpuUs ?? NaN)) };
      const paired = median(m.this.map((x, i) => (x.cpuUs ?? NaN) / (m.other[i]!.cpuUs ?? NaN)));
      console.log(`${name.padEnd(12)} ${rps.this.toFixed(0).padStart(10)} ${rps.other.toFixed(0).padStart(12)} ${(rps.this / rps.other).toFixed(3).padStart(7)}  `
        + `${cpu.this.toFixed(1).padStart(15)} ${cpu.other.toFixed(1).padStart(17)} ${(cpu.this / cpu.other).toFixed(3).padStart(6)}  ${paired.toFixed(3)}`);
      console.log(`${''.padEnd(12)} CPU per round: this ${m.this.map((x) => x.cpuUs?.toFixed(0)).join(' ')} / other ${m.other.map((x) => x.cpuUs?.toFixed(0)).join(' ')}`);
    }
  } finally {
    await stop(gws.this.proc);
    await stop(gws.other.proc);
    await stop(fake.proc);
  }
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
