// `npm run workload [-- --requests 600 --concurrency 16 --no-semantic]`: a realistic mixed
// workload driven through Sluice with the official `openai` SDK, against the sim provider
// (in-process model with real token counts and an emulated provider prompt cache). Prints a
// live progress line and a final table: requests, upstream calls, billed tokens and dollars
// against the benchmark, and what each savings mechanism saved (from the gateway's own
// usage API, so the table is what the ledger says).
import OpenAI from 'openai';
import { MASTER, startGateway, stop } from './procs.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
};
const TOTAL = arg('requests', 600);
const CONCURRENCY = arg('concurrency', 16);
const SEMANTIC = !process.argv.includes('--no-semantic');
const MODEL = 'openai/gpt-4.1-mini';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
type Msg = OpenAI.ChatCompletionMessageParam;

/** Deterministic pseudo-random numbers, so two runs send the same workload. */
let seed = 42;
const rand = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff; };
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

const TOPICS = ['billing', 'refunds', 'shipping', 'warranty', 'accounts', 'security', 'pricing', 'returns', 'support hours', 'data export',
  'invoices', 'discounts', 'gift cards', 'subscriptions', 'cancellations', 'privacy', 'API limits', 'SSO', 'audit logs', 'backups'];
/** The retrieval corpus: passages of ~700 characters. */
const CORPUS = TOPICS.map((topic, i) => `Policy ${i + 1} (${topic}): ${Array.from({ length: 9 }, (_, j) =>
  `clause ${j + 1} says customers asking about ${topic} are handled within ${(i + j) % 5 + 1} business days`).join('; ')}.`);
const SYSTEM = `You are the support assistant of ACME Corp. Follow the policies strictly.\n\n${CORPUS.slice(0, 8).join('\n\n')}`;
const FAQ = TOPICS.map((t) => [`How do ${t} work at ACME?`, `How does ${t} work at ACME?`, `Explain how ${t} work at ACME.`]);

interface Job { name: string; run: (client: OpenAI) => Promise<void> }

/** Per-response figures the client saw. */
/** The model's list prices (USD per 1M tokens), read from the gateway's catalog. */
const prices = { input: 0, cached_input: 0 };

const seen = { requests: 0, errors: 0, byCache: new Map<string, number>(), savedUsd: new Map<string, number>(), started: Date.now() };

async function call(client: OpenAI, body: Json, headers: Record<string, string> = {}): Promise<string> {
  try {
    const { data, response } = await client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming, { headers }).withResponse();
    const g = (data as unknown as { gateway?: Json }).gateway;
    const cache = response.headers.get('x-gateway-cache') ?? 'miss';
    seen.byCache.set(cache, (seen.byCache.get(cache) ?? 0) + 1);
    if (g) {
      // Dollars by mechanism: a served answer saved its whole benchmark; removed prompt tokens
      // save the input price; prompt-cache tokens save the input price less the cached price.
      for (const [m, n] of Object.entries(g.saved_tokens as Record<string, number>)) {
        const usd = cache !== 'miss' ? g.saved_usd as number : m === 'prompt_cache' ? n * (prices.input - prices.cached_input) / 1e6 : n * prices.input / 1e6;
        seen.savedUsd.set(m, (seen.savedUsd.get(m) ?? 0) + usd);
      }
    }
    seen.requests++;
    return data.choices[0]?.message.content ?? '';
  } catch {
    seen.errors++;
    seen.requests++;
    return '';
  }
}

/** RAG: three turns, each pasting 4 retrieved passages that overlap with earlier turns. */
const rag: Job = { name: 'rag', run: async (client) => {
  const start = Math.floor(rand() * CORPUS.length);
  const messages: Msg[] = [{ role: 'system', content: 'Answer from the retrieved context only.' }];
  for (let turn = 0; turn < 3; turn++) {
    const docs = [0, 1, 2, 3].map((k) => CORPUS[(start + turn + k) % CORPUS.length]!);
    messages.push({ role: 'user', content: `Context:\n\n${docs.join('\n\n')}\n\nQuestion ${turn + 1}: what does clause ${turn + 2} say?` });
    messages.push({ role: 'assistant', content: await call(client, { model: MODEL, messages, temperature: 0.3 }) });
  }
} };

/** An agent's tool loop: large tool outputs pile up until the conversation is compressed. */
const toolLoop: Job = { name: 'tools', run: async (client) => {
  const messages: Msg[] = [{ role: 'system', content: 'You are a build-fixing agent. Use the tools.' }, { role: 'user', content: 'The CI build fails; find out why.' }];
  const steps = 7 + Math.floor(rand() * 4);
  for (let i = 0; i < steps; i++) {
    const id = `call_${i}`;
    messages.push({ role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name: 'read_log', arguments: JSON.stringify({ part: i }) } }] });
    messages.push({ role: 'tool', tool_call_id: id, content: Array.from({ length: 60 }, (_, j) => `[${i}:${j}] step ${j} of job ${i} finished with code ${(i * j) % 3} after ${j * 7} ms`).join('\n') });
    await call(client, { model: MODEL, messages, temperature: 0.2,
      tools: [{ type: 'function', function: { name: 'read_log', description: 'Read part of the CI log', parameters: { type: 'object', properties: { part: { type: 'integer' } } } } }] });
  }
} };

/** FAQ traffic: the same deterministic questions again and again, some paraphrased. */
const faq: Job = { name: 'faq', run: async (client) => {
  const variants = pick(FAQ);
  await call(client, { model: MODEL, temperature: 0, messages: [{ role: 'system', content: 'Answer in one sentence.' }, { role: 'user', content: rand() < 0.7 ? variants[0]! : pick(variants) }] });
} };

/** A burst: 8 identical requests at once (a retry storm, or a page rendered by many users). */
let burstNo = 0;
const burst: Job = { name: 'burst', run: async (client) => {
  const q = `Summarize incident report #${++burstNo} for the status page.`;
  await Promise.all(Array.from({ length: 8 }, () => call(client, { model: MODEL, temperature: 0, messages: [{ role: 'user', content: q }] })));
} };

/** A support bot: one long system prompt, sampled answers to different questions (provider prompt cache). */
const support: Job = { name: 'support', run: async (client) => {
  const messages: Msg[] = [{ role: 'system', content: SYSTEM }];
  for (let turn = 0; turn < 2; turn++) {
    messages.push({ role: 'user', content: `Customer question ${Math.floor(rand() * 1e6)} about ${pick(TOPICS)}: what are my options?` });
    messages.push({ role: 'assistant', content: await call(client, { model: MODEL, temperature: 0.7, messages }) });
  }
} };

const MIX: Array<[Job, number]> = [[rag, 3], [toolLoop, 1], [faq, 20], [burst, 1], [support, 4]];
const pickJob = () => {
  let r = rand() * MIX.reduce((a, [, w]) => a + w, 0);
  for (const [job, w] of MIX) { if ((r -= w) < 0) return job; }
  return MIX[0]![0];
};

let lastPrinted = 0;
function progress(final = false): void {
  const s = (Date.now() - seen.started) / 1000;
  if (!process.stdout.isTTY && !final && s - lastPrinted < 2) return;
  lastPrinted = s;
  const c = (k: string) => seen.byCache.get(k) ?? 0;
  const line = `[${String(seen.requests).padStart(5)}/${TOTAL}] ${s.toFixed(1)}s  miss ${c('miss')}  exact ${c('exact')}  semantic ${c('semantic')}  dedupe ${c('dedupe')}  errors ${seen.errors}`;
  if (process.stdout.isTTY) process.stdout.write(`\r${line}${final ? '\n' : ''}`);
  else console.log(line);
}

async function main() {
  // The sim provider only (the openai provider off); the data dir goes with stop().
  const { proc, port } = await startGateway(0, { OPENAI_API_KEY: '', OPENAI_BASE_URL: '', SLUICE_SIM: 'on' },
    { workers: 2, sim: { ttft_ms: 40, tokens_per_second: 400 }, savings: { semantic_cache: { enabled: SEMANTIC } } });
  const url = `http://127.0.0.1:${port}`;
  try {
    const admin = (path: string, body: unknown) => fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${MASTER}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }).then((r) => r.json() as Promise<Json>);
    const ws = await admin('/admin/workspaces', { name: 'workload', credits_usd: 100 });
    const key = (await admin('/admin/keys', { name: 'workload', workspace: ws.id, scopes: ['inference', 'usage:read'] })).key as string;
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0 });
    const model = await (await fetch(`${url}/v1/models/${MODEL}`)).json() as { pricing: { input: number; cached_input?: number } };
    prices.input = model.pricing.input;
    prices.cached_input = model.pricing.cached_input ?? model.pricing.input;
    console.log(`Sluice workload: ${TOTAL} requests, ${CONCURRENCY} concurrent clients, sim provider, model ${MODEL}, semantic cache ${SEMANTIC ? 'on' : 'off'}`);
    const timer = setInterval(() => progress(), 250);
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (seen.requests < TOTAL) await pickJob().run(client);
    }));
    clearInterval(timer);
    progress(true);
    const summary = await (await fetch(`${url}/v1/usage/summary`, { headers: { authorization: `Bearer ${key}` } })).json() as Json;
    const usd = (n: number) => `$${n.toFixed(6)}`;
    const upstreamCalls = (summary.by_cache.miss ?? 0) as number;
    console.log('\n                         through Sluice     benchmark (direct, no savings)');
    console.log(`requests                 ${String(summary.requests).padStart(14)}     ${String(summary.requests).padStart(14)}`);
    console.log(`upstream calls           ${String(upstreamCalls).padStart(14)}     ${String(summary.requests).padStart(14)}`);
    // Tokens the upstream never saw (prompt-cache tokens were sent, billed at the cached price).
    const savedTokens = Object.entries(summary.saved_tokens as Record<string, number>).filter(([m]) => m !== 'prompt_cache').reduce((a, [, n]) => a + n, 0);
    const billed = (summary.prompt_tokens as number) + (summary.completion_tokens as number);
    console.log(`billed tokens            ${String(billed).padStart(14)}     ${String(billed + savedTokens).padStart(14)}`);
    console.log(`dollars                  ${usd(summary.charge_usd).padStart(14)}     ${usd(summary.benchmark_usd).padStart(14)}`);
    console.log(`saved                    ${usd(summary.saved_usd).padStart(14)}     (${((summary.saved_usd / summary.benchmark_usd) * 100).toFixed(1)}% of the benchmark)`);
    console.log('\nsaved by mechanism       requests         tokens       dollars*');
    for (const m of ['exact_cache', 'semantic_cache', 'dedupe', 'prompt_cache', 'compression', 'chunk_dedupe']) {
      const row = (summary.by_saving as Json[]).find((b) => b.mechanism === m);
      console.log(`${m.padEnd(22)} ${String(row?.requests ?? 0).padStart(10)} ${String(row?.tokens ?? 0).padStart(14)} ${usd(seen.savedUsd.get(m) ?? 0).padStart(14)}`);
    }
    console.log(`output_cap             applied to every request without max_tokens (cap ${4096}); nothing counted as saved`);
    console.log('\n* requests and tokens: the gateway\'s usage API (the ledger). Dollars: a served answer (cache, dedupe) saved its whole\n  benchmark; removed prompt tokens save the input list price; prompt-cache tokens were sent and billed at the cached price.');
  } finally {
    await stop(proc);
  }
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
