// `npm run bench -- --peers`: Sluice beside the gateway a user would pick instead, in one run,
// against the same fast fake upstream and the bare uWS→undici floor. The peer is Portkey's
// open-source gateway (@portkey-ai/gateway, pinned below), installed from npm into a cache
// directory the first time (it is not a dependency of Sluice: it brings its own zod 3, hono,
// ioredis…), started with `--headless` and held to 127.0.0.1 by bind-local.ts.
//
// Every request is different (nothing is cached or deduped). Per path: JSON and stream
// throughput (alternating rounds, medians) with the proxy's CPU time per request from /proc,
// and streams paced as a provider sends them (one event per write, so per-event costs show);
// the latency one request at a time adds over the direct upstream, with µs resolution; and
// the proxy's RSS after the load. Ratios are to the bare floor measured in the same run.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { BODY, PACED_BODY, PACED_MODEL, alternate, load, median, mintLimitedKey, type Measured } from './load.js';
import { MASTER, here, rssMiB, startGateway, startProcess, stop } from './procs.js';
import type { ChildProcess } from 'node:child_process';

export const PORTKEY = '@portkey-ai/gateway@1.15.2';

/** Portkey's gateway, installed once into the user's cache (npm registry only). */
function portkeyEntry(): string {
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'sluice-bench-peers');
  const entry = join(dir, 'node_modules', '@portkey-ai', 'gateway', 'build', 'start-server.js');
  if (!existsSync(entry)) {
    mkdirSync(dir, { recursive: true });
    console.log(`installing ${PORTKEY} into ${dir} (once)…`);
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', dir, PORTKEY], { stdio: 'inherit' });
  }
  return entry;
}

let sequence = 0;
/** A body no earlier request had (so no cache or dedupe can answer it). */
const unique = (stream: boolean) => BODY(stream).replace('one short sentence.', `one short sentence (${++sequence}).`);
/** A paced stream's body (60 events, each its own write, 1 ms apart: load.ts), unique likewise. */
const uniquePaced = () => PACED_BODY.replace('one short sentence.', `one short sentence (${++sequence}).`);

/** One request at a time for `seconds`: the latency of each, in ms (µs resolution). */
async function oneAtATime(port: number, headers: Record<string, string>, seconds: number): Promise<number[]> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1 });
  const took: number[] = [];
  const end = performance.now() + seconds * 1000;
  try {
    while (performance.now() < end && took.length < 20_000) {
      const t0 = performance.now();
      const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: unique(false) });
      await res.body.arrayBuffer();
      took.push(performance.now() - t0);
    }
  } finally {
    await pool.close();
  }
  return took;
}

interface Peer { name: string; port: number; pid: number | null; headers: Record<string, string>; note: string }

export async function runPeers(quick: boolean): Promise<void> {
  const rounds = quick ? 2 : 3;
  const slice = quick ? 3 : 5;
  const entry = portkeyEntry();
  const procs: ChildProcess[] = [];
  try {
    const fake = await startProcess(here('./fake-upstream.js'), {}, /listening (\d+)/);
    procs.push(fake.proc);
    const upstream = Number(fake.match[1]);
    const bare = await startProcess(here('./bare-passthrough.js'), { UPSTREAM: `http://127.0.0.1:${upstream}` }, /listening (\d+)/);
    procs.push(bare.proc);
    const gw = await startGateway(upstream, {}, { models: [PACED_MODEL] });
    procs.push(gw.proc);
    const tenantKey = await mintLimitedKey(gw.port);
    const portkey = await startProcess(entry, { NODE_ENV: 'production', NODE_OPTIONS: `--import=${here('./bind-local.js')}` }, /Ready for connections|running at/, ['--port=0', '--headless']);
    procs.push(portkey.proc);
    const portkeyPort = await listeningPort(portkey.proc.pid!);
    const peers: Peer[] = [
      { name: 'direct', port: upstream, pid: null, headers: {}, note: 'the fake upstream itself' },
      { name: 'bare', port: Number(bare.match[1]), pid: bare.proc.pid!, headers: {}, note: 'uWS→undici, no features (the floor)' },
      { name: 'sluice operator', port: gw.port, pid: gw.proc.pid!, headers: { authorization: `Bearer ${MASTER}` }, note: 'exempt key: no limits, unmetered' },
      { name: 'sluice tenant', port: gw.port, pid: gw.proc.pid!, headers: { authorization: `Bearer ${tenantKey}` }, note: 'metered workspace, every limit set' },
      { name: 'portkey', port: portkeyPort, pid: portkey.proc.pid!, headers: { authorization: 'Bearer sk-upstream', 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `http://127.0.0.1:${upstream}/v1` }, note: PORTKEY },
    ];
    const run = (p: Peer, stream: boolean) => () => load(p.port, stream, { duration: slice, ...(p.pid ? { pid: p.pid } : {}), headers: p.headers, fresh: () => unique(stream) });
    for (const p of peers) await run(p, false)(); // warm: JIT, keep-alive pools
    const json = await alternate(rounds, Object.fromEntries(peers.map((p) => [p.name, run(p, false)])));
    const stream = await alternate(rounds, Object.fromEntries(peers.map((p) => [p.name, run(p, true)])));
    // Streams as a provider sends them: each event its own read, so a stream's per-event costs
    // (its writes to the client, the usage tap) weigh, not only its fixed ones. 100 connections
    // (each stream takes ~60 ms): the proxies' CPU per request is the figure to read.
    const pacedRun = (p: Peer) => () => load(p.port, true, { duration: slice, ...(p.pid ? { pid: p.pid } : {}), headers: p.headers, fresh: uniquePaced, connections: 100 });
    const paced = await alternate(rounds, Object.fromEntries(peers.map((p) => [p.name, pacedRun(p)])));
    const rss = Object.fromEntries(peers.map((p) => [p.name, p.pid ? rssMiB(p.pid) : NaN]));
    // One at a time, in alternating rounds: the added latency is against the direct upstream of the same round.
    const single: Record<string, number[]> = Object.fromEntries(peers.map((p) => [p.name, []]));
    for (let r = 0; r < rounds; r++) {
      for (const p of r % 2 ? [...peers].reverse() : peers) single[p.name]!.push(median(await oneAtATime(p.port, p.headers, quick ? 2 : 4)));
    }
    const added = (name: string) => median(single[name]!.map((ms, i) => ms - single.direct![i]!)) * 1000;

    const floor = json.bare!;
    const floorStream = stream.bare!;
    const floorPaced = paced.bare!;
    const cpuTimes = (m: Measured, base: Measured) => (m.cpuUs !== null && base.cpuUs && m.errors <= m.rps ? (m.cpuUs / base.cpuUs).toFixed(2) : '');
    const ratio = (m: Measured, base: Measured) => (m.errors > m.rps ? '  fails' : (m.rps / base.rps).toFixed(2).padStart(7));
    console.log(`\nPeers (${PORTKEY}), every request unique, 50 connections, ${rounds} alternating rounds of ${slice} s, medians; ratios to the bare floor of the same run\n`);
    console.log(`${'path'.padEnd(16)} ${'JSON req/s'.padStart(10)} ${'vs bare'.padStart(7)} ${'stream req/s'.padStart(12)} ${'vs bare'.padStart(7)} ${'paced req/s'.padStart(11)} ${'vs bare'.padStart(7)} ${'CPU µs/req'.padStart(10)} ${'× bare'.padStart(6)} ${'stream ×'.padStart(8)} ${'paced ×'.padStart(7)} ${'errors'.padStart(9)} ${'+p50 c=1'.padStart(10)} ${'RSS MiB'.padStart(8)}  note`);
    for (const p of peers) {
      const j = json[p.name]!;
      const s = stream[p.name]!;
      const cpu = j.cpuUs === null ? '' : j.cpuUs.toFixed(0);
      const cpuRatio = j.cpuUs !== null && floor.cpuUs ? (j.cpuUs / floor.cpuUs).toFixed(2) : '';
      const add = p.name === 'direct' ? '' : `${added(p.name).toFixed(0)} µs`;
      const q = paced[p.name]!;
      console.log(`${p.name.padEnd(16)} ${j.rps.toFixed(0).padStart(10)} ${ratio(j, floor)} ${s.rps.toFixed(0).padStart(12)} ${ratio(s, floorStream)} ${q.rps.toFixed(0).padStart(11)} ${ratio(q, floorPaced)} ${cpu.padStart(10)} ${cpuRatio.padStart(6)} ${cpuTimes(s, floorStream).padStart(8)} ${cpuTimes(q, floorPaced).padStart(7)} ${`${j.errors}/${s.errors}/${q.errors}`.padStart(9)} ${add.padStart(10)} ${Number.isNaN(rss[p.name]) ? ''.padStart(8) : rss[p.name]!.toFixed(0).padStart(8)}  ${p.note}`);
    }
    const times = (a: string, b: string) => (json[a]!.rps / json[b]!.rps).toFixed(1);
    console.log(`\nSluice's throughput over Portkey's (JSON): operator ${times('sluice operator', 'portkey')}×, tenant ${times('sluice tenant', 'portkey')}×` +
      `; CPU per request: Portkey ${json.portkey!.cpuUs && json['sluice tenant']!.cpuUs ? (json.portkey!.cpuUs / json['sluice tenant']!.cpuUs).toFixed(1) : '?'}× Sluice tenant's`);
    console.log('CPU µs/req and × bare: JSON; stream × and paced ×: CPU per request of those paths, to the bare floor\'s on the same path');
    console.log('paced: a stream as a provider sends it (60 events, each its own write, 1 ms apart), 100 connections');
    console.log('errors: non-2xx answers and failed requests, JSON/stream/paced (Portkey 1.15.2 answers streams with 500 on Node 20)');
  } finally {
    for (const p of procs.reverse()) await stop(p);
  }
}

/** The TCP port a process listens on (Portkey prints only the port it was asked for). */
async function listeningPort(pid: number): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const inodes = new Set<string>();
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try { const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`)); if (m) inodes.add(m[1]!); } catch { /* closed meanwhile */ }
    }
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f[3] === '0A' && inodes.has(f[9]!)) return parseInt(f[1]!.split(':')[1]!, 16); // 0A: LISTEN
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`process ${pid} is not listening`);
}
