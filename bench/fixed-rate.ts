// Latency at a fixed request rate with microsecond resolution (autocannon reports whole
// milliseconds, too coarse for a 0.5 ms overhead budget). Requests are sent on a fixed
// schedule, whether or not earlier ones finished, from a keep-alive undici Pool; latency
// is measured with the monotonic clock from the scheduled send time.
import { Pool } from 'undici';

export interface FixedRateResult { sent: number; ok: number; p50: number; p99: number; mean: number }

export async function fixedRate(origin: string, opts: { rate: number; seconds: number; body: string; headers: Record<string, string> }): Promise<FixedRateResult> {
  const pool = new Pool(origin, { connections: 64 });
  const total = Math.round(opts.rate * opts.seconds);
  const interval = 1000 / opts.rate;
  const latencies: number[] = [];
  let ok = 0;
  const start = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const t0 = performance.now();
    inflight.push(pool.request({ path: '/v1/chat/completions', method: 'POST', headers: opts.headers, body: opts.body })
      .then(async (res) => { await res.body.arrayBuffer(); if (res.statusCode === 200) ok++; latencies.push(performance.now() - t0); },
        () => { latencies.push(performance.now() - t0); }));
    if (inflight.length > 4096) await Promise.all(inflight.splice(0));
  }
  await Promise.all(inflight);
  await pool.close();
  latencies.sort((a, b) => a - b);
  const pick = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { sent: total, ok, p50: pick(0.5), p99: pick(0.99), mean: latencies.reduce((a, b) => a + b, 0) / latencies.length };
}
