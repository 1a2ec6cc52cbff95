// The thread rows of `npm run bench` (alone: `npm run bench -- --threads`): the same build
// with SLUICE_THREADS 1, 2 (and 3 in a full run) on the same fast fake upstream, in
// alternating rounds, for the operator path, the tenant path (a metered key with every
// limit: admitted by the main thread) and streams. Each row gives req/s and CPU per request
// of the whole process, and of its main thread alone (read per thread from /proc).
//
// Then, on paper: with the main thread taking no connections (threads_main_http: off), what
// an event-loop thread spends per request it serves (W) and what the main thread spends for
// it (A) are measured apart; on C cores (all the gateway's) throughput is bounded by
// min((C - 1) / W, 1 / A), against 1 / (CPU per request) on one thread. On this 2-core box the
// load generator and the fake upstream share the cores, so the rows show cost, not speed-up.
import { readFileSync, readdirSync } from 'node:fs';
import { BODY, load, mintLimitedKey, type Measured } from './load.js';
import { here, startGateway, startProcess, stop } from './procs.js';

/** CPU seconds of each thread of a process, by thread id. */
export function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(tid, (Number(f[11]) + Number(f[12])) / 100);
    } catch { /* the thread ended */ }
  }
  return out;
}

interface Split { main: number; loops: number; others: number }
export type Row = Measured & { split: Split };

let sequence = 0;
/** Different every time and not deterministic (no temperature): no cache or dedupe answers, every request is served by the thread that took it. */
const fresh = (stream: boolean) => () => BODY(stream).replace('one short sentence.', `one short sentence (${++sequence}).`);

/** One load run, with the process's CPU per request split into its main thread, its `loops` busiest other threads (the event-loop threads), and the rest. */
export async function measured(port: number, pid: number, loops: number, duration: number, key: string | undefined, stream: boolean, body = fresh(stream)): Promise<Row> {
  const before = threadCpu(pid);
  const m = await load(port, stream, { duration, pid, key, fresh: body });
  const after = threadCpu(pid);
  const total = Math.max(1, m.rps * duration);
  const deltas = [...after].filter(([tid]) => tid !== String(pid)).map(([tid, s]) => (s - (before.get(tid) ?? 0)) * 1e6 / total).sort((a, b) => b - a);
  const main = ((after.get(String(pid)) ?? 0) - (before.get(String(pid)) ?? 0)) * 1e6 / total;
  const loopsCpu = deltas.slice(0, loops).reduce((a, b) => a + b, 0);
  const others = deltas.slice(loops).reduce((a, b) => a + b, 0);
  return { ...m, split: { main, loops: loopsCpu, others } };
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1]!; };

export async function runThreads(quick: boolean): Promise<string[]> {
  const counts = quick ? [1, 2] : [1, 2, 3];
  const duration = quick ? 3 : 5;
  const rounds = quick ? 2 : 3;
  const fake = await startProcess(here('./fake-upstream.js'), {}, /listening (\d+)/);
  const upstream = Number(fake.match[1]);
  const lines: string[] = [`threads (SLUICE_THREADS; ${rounds} alternating rounds of ${duration}s per path and count, medians; CPU µs per request: whole process / main thread / event-loop threads)`];
  const paths: Array<[string, boolean, boolean]> = [['operator', false, false], ['tenant', true, false], ['stream', false, true]];
  const gws: Array<{ n: number; port: number; pid: number; key: string; stop: () => Promise<void> }> = [];
  try {
    for (const n of counts) {
      const g = await startGateway(upstream, { SLUICE_THREADS: String(n) });
      gws.push({ n, port: g.port, pid: g.proc.pid!, key: await mintLimitedKey(g.port), stop: () => stop(g.proc) });
    }
    for (const g of gws) await load(g.port, false, { duration: 1, fresh: fresh(false) });
    const rows: Record<string, Record<number, Row[]>> = {};
    for (let r = 0; r < rounds; r++) {
      for (const [name, tenant, stream] of paths) {
        for (const g of r % 2 ? [...gws].reverse() : gws) {
          const got = await measured(g.port, g.pid, g.n - 1, duration, tenant ? g.key : undefined, stream);
          ((rows[name] ??= {})[g.n] ??= []).push(got);
        }
      }
    }
    const one: Record<string, number> = {};
    for (const [name, byN] of Object.entries(rows)) {
      for (const n of counts) {
        const runs = byN[n]!;
        const rps = median(runs.map((x) => x.rps));
        const cpu = median(runs.map((x) => x.cpuUs ?? NaN));
        if (n === 1) one[name] = cpu;
        const main = median(runs.map((x) => x.split.main));
        const loops = median(runs.map((x) => x.split.loops));
        const base = rows[name]![1]!;
        lines.push(`  ${name.padEnd(9)} threads ${n}: ${rps.toFixed(0).padStart(6)} req/s (${(rps / median(base.map((x) => x.rps))).toFixed(2)} of 1 thread)  CPU ${cpu.toFixed(0)} / main ${main.toFixed(0)} / loops ${loops.toFixed(0)} µs  errors ${runs.reduce((a, x) => a + x.errors, 0)}`);
      }
    }
    for (const g of gws.splice(0)) await g.stop();

    // On paper: the main thread serving only the other thread (threads_main_http: off).
    const g = await startGateway(upstream, { SLUICE_THREADS: '2', SLUICE_THREADS_MAIN_HTTP: 'off' });
    try {
      const key = await mintLimitedKey(g.port);
      await load(g.port, false, { duration: 1, fresh: fresh(false) });
      lines.push('  on paper (threads 2, main thread taking no connections: W = an event-loop thread\'s CPU per request it serves, A = the main thread\'s for it):');
      const got: Record<string, Row[]> = {};
      for (let r = 0; r < rounds; r++) {
        for (const [name, tenant, stream] of r % 2 ? [...paths].reverse() : paths) (got[name] ??= []).push(await measured(g.port, g.proc.pid!, 1, duration, tenant ? key : undefined, stream));
      }
      for (const [name, runs] of Object.entries(got)) {
        const w = median(runs.map((x) => x.split.loops));
        const a = median(runs.map((x) => x.split.main));
        const bound = (cores: number) => Math.min((cores - 1) * 1e6 / w, 1e6 / a);
        const single = 1e6 / (one[name] ?? NaN);
        lines.push(`    ${name.padEnd(9)} W ${w.toFixed(0)} µs, A ${a.toFixed(0)} µs: 8 cores ≤ ${(bound(8) / 1000).toFixed(1)}k req/s, 16 cores ≤ ${(bound(16) / 1000).toFixed(1)}k `
          + `(one thread: ${(single / 1000).toFixed(1)}k, so ${(bound(8) / single).toFixed(1)}× and ${(bound(16) / single).toFixed(1)}×)`);
      }
    } finally {
      await stop(g.proc);
    }
  } finally {
    for (const g of gws) await g.stop();
    await stop(fake.proc);
  }
  return lines;
}
