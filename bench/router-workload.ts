// `npm run workload -- --n 300 --fresh`: a realistic mixed workload through the official
// `openai` SDK with `model: "auto"`, to watch the adaptive router learn. It checks every
// answer itself (each item carries the answer a right reply contains: router-tasks.ts) and
// prints a running line — cost so far, benchmark so far, % saved, quality so far — then the
// model each task type converged on (GET /v1/router). Then, for comparison, the same
// workload with learning off (`x-gateway-router: static`: the classifier's buckets) and with
// the best candidate always (what quality the router is measured against).
//
// By default it starts its own gateway on the sim (no provider key). `--url U --key K`
// drives a running one instead (then --fresh needs an operator key). Caches are off for the
// workload (`x-gateway-cache: off`), so the figures are the router's alone. Like an app that
// knows when an answer was right, it reports each check as /v1/feedback (score 1 or 0); the
// judge scores a sample of answers besides.
//
//   --n 300          requests per run        --concurrency 8
//   --fresh          POST /v1/reset first    --no-feedback  do not send each check as /v1/feedback (the judge alone)
//   --no-compare     only the learning run   --seed 1     the workload's seed
//   --config JSON    config for the gateway it starts (e.g. '{"router":{"adaptive":{"margin":0.03}}}')
import OpenAI from 'openai';
import { MASTER, startGateway, stop } from './procs.js';
import { Dice, isRight, nextItem, type Item } from './router-tasks.js';

const argv = process.argv.slice(2);
const num = (name: string, def: number) => {
  const i = argv.indexOf(`--${name}`);
  const v = i === -1 ? def : Number(argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} wants a positive number`);
  return v;
};
const str = (name: string) => { const i = argv.indexOf(`--${name}`); return i === -1 ? undefined : argv[i + 1]; };
const N = Math.floor(num('n', 300));
const CONCURRENCY = Math.floor(num('concurrency', 8));
const SEED = Math.floor(num('seed', 1));
const FRESH = argv.includes('--fresh');
const FEEDBACK = !argv.includes('--no-feedback');
const COMPARE = !argv.includes('--no-compare');

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Run {
  label: string;
  cost: number;
  benchmark: number;
  right: number;
  done: number;
  errors: number;
  /** Per task type: model → requests in the run's last third. */
  late: Map<string, Map<string, number>>;
}

const TTY = process.stdout.isTTY;

function line(run: Run): string {
  const width = 24;
  const filled = Math.round((run.done / N) * width);
  const saved = run.benchmark > 0 ? (1 - run.cost / run.benchmark) * 100 : 0;
  const quality = run.done - run.errors > 0 ? run.right / (run.done - run.errors) : 0;
  return `${run.label.padEnd(9)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(run.done).padStart(4)}/${N}  cost $${run.cost.toFixed(5)}  benchmark $${run.benchmark.toFixed(5)}  saved ${saved.toFixed(1).padStart(5)}%  quality ${quality.toFixed(3)}${run.errors ? `  errors ${run.errors}` : ''}`;
}

async function drive(base: string, key: string, label: string, model: string, headers: Record<string, string>): Promise<Run> {
  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 2 });
  const dice = new Dice(SEED);
  const items: Item[] = Array.from({ length: N }, () => nextItem(dice));
  const run: Run = { label, cost: 0, benchmark: 0, right: 0, done: 0, errors: 0, late: new Map() };
  let next = 0;
  let lastPrinted = 0;
  const print = (force = false) => {
    if (TTY) { process.stdout.write(`\r${line(run)}`); return; }
    if (force || run.done - lastPrinted >= Math.max(1, Math.round(N / 10))) { lastPrinted = run.done; console.log(line(run)); }
  };
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      const item = items[i]!;
      try {
        const { data, response } = await client.chat.completions.create({ model, messages: [{ role: 'user', content: item.prompt }], max_tokens: 120 },
          { headers: { 'x-gateway-cache': 'off', ...headers } }).withResponse();
        const answer = data.choices[0]?.message.content ?? '';
        const ok = isRight(item, answer);
        run.cost += Number(response.headers.get('x-gateway-cost-usd') ?? 0);
        run.benchmark += Number(response.headers.get('x-btl-benchmark-cost') ?? 0);
        if (ok) run.right++;
        run.done++; // with the check, so the running quality is over finished requests
        if (i >= (2 * N) / 3) {
          const chosen = response.headers.get('x-gateway-route-model') ?? model;
          const task = response.headers.get('x-gateway-route-task') ?? item.task;
          const m = run.late.get(task) ?? new Map<string, number>();
          m.set(chosen, (m.get(chosen) ?? 0) + 1);
          run.late.set(task, m);
        }
        if (FEEDBACK) {
          await fetch(`${base}/v1/feedback`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ request_id: response.headers.get('x-request-id'), score: ok ? 1 : 0 }) }).catch(() => undefined);
        }
      } catch (err) {
        run.done++;
        run.errors++;
        if (run.errors <= 3) console.error(`\n${label}: ${err instanceof Error ? err.message : String(err)}`);
      }
      print();
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  print(true);
  if (TTY) process.stdout.write('\n');
  return run;
}

async function json(base: string, key: string, path: string, body?: Json): Promise<Json> {
  const res = await fetch(`${base}${path}`, body === undefined ? { headers: { authorization: `Bearer ${key}` } }
    : { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const out = await res.json() as Json;
  if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(out)}`);
  return out;
}

const quality = (r: Run) => (r.done - r.errors > 0 ? r.right / (r.done - r.errors) : 0);
const saved = (r: Run) => (r.benchmark > 0 ? 1 - r.cost / r.benchmark : 0);

async function main(): Promise<void> {
  let base = str('url');
  let key = str('key') ?? process.env.SLUICE_KEY ?? '';
  let proc: Awaited<ReturnType<typeof startGateway>>['proc'] | null = null;
  if (!base) {
    const extra = JSON.parse(str('config') ?? '{}') as Json;
    const g = await startGateway(0, { OPENAI_API_KEY: '', OPENAI_BASE_URL: '', SLUICE_SIM: 'on', SLUICE_WORKERS: '1' }, { logs: { access: 'off' }, ...extra });
    proc = g.proc;
    base = `http://127.0.0.1:${g.port}`;
    key = MASTER;
    console.log(`started a gateway on the sim at ${base}`);
  }
  base = base.replace(/\/v1\/?$/, '').replace(/\/$/, '');
  try {
    if (FRESH) { await json(base, key, '/v1/reset', {}); console.log('learned state reset (POST /v1/reset)'); }
    const before = (await json(base, key, '/v1/router')).judge as Json | null;
    const learned = await drive(base, key, 'learning', 'auto', {});
    const state = await json(base, key, '/v1/router');
    const judge = state.judge as Json | null;
    const judgeCost = judge && before ? judge.cost_usd - before.cost_usd : 0;
    console.log(`\nconverged (GET /v1/router; in brackets: what the run's last third was served by):`);
    for (const t of state.task_types as Json[]) {
      const c = (t.candidates as Json[]).find((x) => x.model === t.choice);
      const late = [...(learned.late.get(t.task_type) ?? new Map<string, number>())].sort((a, b) => b[1] - a[1]).map(([m, n]) => `${m} ×${n}`).join(', ');
      console.log(`  ${String(t.task_type).padEnd(14)} → ${String(t.choice).padEnd(22)} quality ${c?.quality} [${c?.quality_interval?.join('–')}]  ${t.signals} signals  (${late})`);
    }
    if (judge) console.log(`judge: ${judge.model}, ${judge.judged - (before?.judged ?? 0)} answers scored, cost $${judgeCost.toFixed(5)} (the operator's)`);
    const runs = [learned];
    if (COMPARE) {
      runs.push(await drive(base, key, 'static', 'auto', { 'x-gateway-router': 'static' }));
      const best = [...(state.candidates as Json[])].sort((a, b) => b.list_prices.output - a.list_prices.output)[0]!.model as string;
      runs.push(await drive(base, key, 'best', best, {}));
      runs[2]!.label = `best (${best})`;
    }
    console.log('\n| run | cost | benchmark | saved | quality |\n|---|---|---|---|---|');
    for (const r of runs) console.log(`| ${r.label} | $${r.cost.toFixed(5)} | $${r.benchmark.toFixed(5)} | ${(saved(r) * 100).toFixed(1)}% | ${quality(r).toFixed(3)} |`);
    if (judge) console.log(`| learning, net of the judge | $${(learned.cost + judgeCost).toFixed(5)} | $${learned.benchmark.toFixed(5)} | ${((1 - (learned.cost + judgeCost) / learned.benchmark) * 100).toFixed(1)}% | |`);
    if (COMPARE) {
      const gap = quality(runs[2]!) - quality(learned);
      console.log(`\nquality: learning ${quality(learned).toFixed(3)} vs always-best ${quality(runs[2]!).toFixed(3)} (gap ${gap.toFixed(3)}; margin ${state.margin})`);
    }
  } finally {
    if (proc) await stop(proc);
  }
}

await main();
