// `npm run bench:faults [-- --quick]`: failover under load. Two routes for one model, the
// cheaper one failing 30% of requests with a 500, mixed stream and non-stream traffic; the
// same load with no faults is the baseline measured in the same run. Prints the success
// rate the caller sees and the latency failover adds.
import autocannon from 'autocannon';
import { MASTER, here, startGateway, startProcess, stop } from './procs.js';

const quick = process.argv.includes('--quick');
const DURATION = quick ? 5 : 15;
const FAULT_RATE = 0.3;

const body = (stream: boolean) => JSON.stringify({ model: 'primary/m1', stream,
  messages: [{ role: 'user', content: 'Say hello to the failover bench in one short sentence.' }] });

async function run(faultRate: number) {
  const primary = await startProcess(here('./fake-upstream.js'), { FAULT_RATE: String(faultRate) }, /listening (\d+)/);
  const backup = await startProcess(here('./fake-upstream.js'), {}, /listening (\d+)/);
  const gw = await startGateway(0, { OPENAI_API_KEY: '', OPENAI_BASE_URL: '' }, {
    providers: {
      primary: { kind: 'openai', base_url: `http://127.0.0.1:${primary.match[1]}/v1`, api_key: 'sk-bench' },
      backup: { kind: 'openai', base_url: `http://127.0.0.1:${backup.match[1]}/v1`, api_key: 'sk-bench' },
    },
    models: [{ slug: 'primary/m1', upstream_id: 'gpt-4.1-mini', context_window: 128000, prices: { input: 1, output: 2 },
      routes: [{ provider: 'backup', upstream_id: 'gpt-4.1-mini', prices: { input: 2, output: 4 } }] }],
    // a breaker that never opens at this error rate, so every failure is a live failover
    upstream: { max_retries: 2, breaker_failures: 1000 },
  });
  try {
    const result = await autocannon({
      url: `http://127.0.0.1:${gw.port}/v1/chat/completions`, method: 'POST', connections: 50, duration: DURATION,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${MASTER}` },
      requests: [{ body: body(false) }, { body: body(true) }],
    });
    const total = result.requests.total;
    return { rps: result.requests.average, ok: result['2xx'], total, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx };
  } finally {
    await stop(gw.proc);
    await stop(primary.proc);
    await stop(backup.proc);
  }
}

async function main() {
  const clean = await run(0);
  const faulty = await run(FAULT_RATE);
  console.log(`\nFailover bench (${quick ? 'quick' : 'full'}: ${DURATION}s each, 50 connections, half stream / half non-stream)\n`);
  const line = (name: string, r: Awaited<ReturnType<typeof run>>) =>
    console.log(`${name.padEnd(28)} ${r.rps.toFixed(0).padStart(7)} req/s  success ${(100 * r.ok / Math.max(1, r.total)).toFixed(2)}% (${r.ok}/${r.total})  p50 ${r.p50} ms  p99 ${r.p99} ms`);
  line('no faults (baseline)', clean);
  line(`primary failing ${FAULT_RATE * 100}%`, faulty);
  console.log(`\nadded by failover: p50 ${(faulty.p50 - clean.p50).toFixed(2)} ms, p99 ${(faulty.p99 - clean.p99).toFixed(2)} ms (autocannon reports whole ms)`);
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
