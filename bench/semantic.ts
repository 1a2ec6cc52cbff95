// `npm run bench:semantic`: the semantic cache's precision, measured through the cache's own
// code (ResponseCache.findSimilar: LSH buckets, threshold, guards) at the configured
// threshold (the config file and env, as the gateway reads them), on two sets:
//   - the evaluation set (bench/semantic/pairs.ts): hand-written and generated pairs;
//   - two held-out sets (bench/semantic/heldout.json, heldout-2.json), each written by
//     someone who had seen neither the guards nor the other sets; each found classes of
//     false hit the guards now cover (added qualifiers, particles, one word family stemmed
//     two ways; names sharing a prefix, emails, one vs all), so they are held out no longer;
//   - a blind set (bench/semantic/heldout-3.json), written the same way and measured once,
//     after the guards were done and before it was added: nothing was tuned on it.
// Each pair's first prompt is stored alone and its second looked up: per category, pairs,
// hits, false hits (any hit on a near miss) and hit rate, then precision over all hits and
// recall on the paraphrases. Then every first prompt is stored in one cache, as a busy
// gateway holds them, and every second prompt asked again: a hit from a prompt that asks
// something else is a false hit too (the same text after case and spacing, or linked
// through paraphrase pairs, asks the same thing).
//
//   --threshold 0.9   instead of the configured one       --sweep   the same at several thresholds
//   --show 40         false hits (and missed paraphrases) listed per set
//   --pairs FILE      another set instead: a JSON array of { category, a, b } (strings; category
//                     "paraphrase" for pairs that should hit, anything else for a near miss)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { loadConfig } from '../src/config/load.js';
import { ResponseCache } from '../src/savings/cache.js';
import { splitLastTurn } from '../src/savings/canonical.js';
import { embed } from '../src/savings/embed.js';
import { embeddingText } from '../src/savings/guard.js';
import { openStore } from '../src/store/lmdb.js';
import type { ChatRequest } from '../src/wire/chat.js';
import { evalPairs, NEAR_MISSES, type Ask, type Pair } from './semantic/pairs.js';

const argv = process.argv.slice(2);
const opt = (name: string) => { const i = argv.indexOf(`--${name}`); return i === -1 ? undefined : argv[i + 1]; };
const semanticConfig = loadConfig().savings.semantic_cache;
const configured = semanticConfig.threshold;
const thresholds = argv.includes('--sweep') ? [0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96] : [Number(opt('threshold') ?? configured)];
const SHOW = Number(opt('show') ?? 40);
if (thresholds.some((t) => !(t >= 0.5 && t <= 1))) throw new Error('--threshold is 0.5 to 1');

function request(ask: Ask): ChatRequest {
  const messages: { role: string; content: string }[] = [];
  if (ask.system) messages.push({ role: 'system', content: ask.system });
  (ask.history ?? []).forEach((content, i) => messages.push({ role: i % 2 ? 'assistant' : 'user', content }));
  messages.push({ role: 'user', content: ask.user });
  const tools = ask.tools?.map((name) => ({ type: 'function', function: { name, parameters: { type: 'object', properties: {} } } }));
  return { model: 'eval/model', temperature: 0, messages, ...(tools ? { tools } : {}) } as unknown as ChatRequest;
}

const FileSchema = z.array(z.object({ category: z.string().min(1), a: z.string().min(1), b: z.string().min(1) }));
function readSet(path: string): Pair[] {
  return FileSchema.parse(JSON.parse(readFileSync(path, 'utf8'))).map((p) => ({ category: p.category, a: { user: p.a }, b: { user: p.b }, hand: true }));
}
const file = opt('pairs');
const sets: { name: string; pairs: Pair[] }[] = file ? [{ name: file, pairs: readSet(file) }] : [
  { name: 'evaluation set (bench/semantic/pairs.ts)', pairs: evalPairs() },
  { name: 'held-out set (bench/semantic/heldout.json)', pairs: readSet(fileURLToPath(new URL('../../bench/semantic/heldout.json', import.meta.url))) },
  { name: 'second held-out set (bench/semantic/heldout-2.json)', pairs: readSet(fileURLToPath(new URL('../../bench/semantic/heldout-2.json', import.meta.url))) },
  { name: 'blind set (bench/semantic/heldout-3.json)', pairs: readSet(fileURLToPath(new URL('../../bench/semantic/heldout-3.json', import.meta.url))) },
];

const t0 = Date.now();
const vectors = new Map<string, Float32Array>();
for (const { pairs } of sets) for (const p of pairs) for (const ask of [p.a, p.b]) if (!vectors.has(ask.user)) vectors.set(ask.user, await embed(embeddingText(ask.user)));
const embedMs = Date.now() - t0;

const dir = mkdtempSync(join(tmpdir(), 'sluice-semantic-'));
const store = await openStore(dir);
const cache = new ResponseCache(store);
const usage = { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20, cached_tokens: 0 };
const pct = (x: number, of: number) => (of ? `${((100 * x) / of).toFixed(1)}%` : '-');

interface Tally { pairs: number; hits: number; wrong: number }

for (const [s, { name, pairs }] of sets.entries()) {
  /** Meaning classes: one per question, joining identical texts and paraphrase pairs (union-find). */
  const parent = new Map<string, string>();
  const norm = (x: string) => x.toLowerCase().replace(/\s+/g, ' ').trim();
  const root = (x: string): string => { const p = parent.get(x) ?? x; if (p === x) return x; const r = root(p); parent.set(x, r); return r; };
  const meaning = (ask: Ask) => root(JSON.stringify([ask.system ?? '', ask.tools ?? [], ask.history ?? [], norm(ask.user)]));
  for (const p of pairs) if (p.category === 'paraphrase') parent.set(meaning(p.a), meaning(p.b));

  const turns = pairs.map((p) => ({ a: splitLastTurn(request(p.a))!, b: splitLastTurn(request(p.b))! }));
  // Each pair's first prompt alone (its own workspace), and all of the set's together in one.
  pairs.forEach((p, i) => {
    const answer = { decision: 'eval/model', body: JSON.stringify({ object: 'chat.completion', choices: [], pair: i }), usage };
    cache.putSimilar(`ws_${s}_${i}`, turns[i]!.a.context, `req_${i}`, vectors.get(p.a.user)!, turns[i]!.a.text, answer, 3_600_000, configured);
    cache.putSimilar(`ws_${s}_shared`, turns[i]!.a.context, `req_${i}`, vectors.get(p.a.user)!, turns[i]!.a.text, answer, 3_600_000, configured);
  });
  await store.root.flushed;

  const categories = [...new Set<string>(['paraphrase', ...(file || s > 0 ? [] : NEAR_MISSES), ...pairs.map((p) => p.category)])];
  for (const threshold of thresholds) {
    const tally = new Map<string, Tally>(categories.map((c) => [c, { pairs: 0, hits: 0, wrong: 0 }]));
    const shown: string[] = [];
    const show = (line: string) => { if (shown.length < SHOW) shown.push(line); };
    let sharedHits = 0;
    let sharedWrong = 0;
    /** What a verifier (verify.model) would be asked: pairs the guards find only reworded, from verify.min_similarity up. */
    const askedVerifier = { paraphrase: 0, near: 0 };
    pairs.forEach((p, i) => {
      const t = tally.get(p.category)!;
      t.pairs++;
      const vec = vectors.get(p.b.user)!;
      const { text, context } = turns[i]!.b;
      const hit = cache.findSimilar(`ws_${s}_${i}`, context, vec, text, threshold);
      if (hit) {
        t.hits++;
        if (p.category !== 'paraphrase') { t.wrong++; show(`  FALSE    ${p.category.padEnd(13)} "${p.b.user}" answered from "${p.a.user}" (${hit.similarity.toFixed(3)})`); }
      } else {
      if (p.category === 'paraphrase') show(`  missed   paraphrase    "${p.a.user}" ~ "${p.b.user}"`);
      if (cache.findCandidate(`ws_${s}_${i}`, context, vec, text, semanticConfig.verify.min_similarity)) askedVerifier[p.category === 'paraphrase' ? 'paraphrase' : 'near']++;
    }
      const shared = cache.findSimilar(`ws_${s}_shared`, context, vec, text, threshold);
      if (shared) {
        sharedHits++;
        const from = (JSON.parse(shared.body) as { pair: number }).pair;
        if (meaning(pairs[from]!.a) !== meaning(p.b)) {
          sharedWrong++;
          show(`  FALSE    shared        "${p.b.user}" answered from "${pairs[from]!.a.user}" (${shared.similarity.toFixed(3)})`);
        }
      }
    });
    console.log(`\n${name}, threshold ${threshold}${threshold === configured ? ' (configured)' : ''}: ${pairs.length} pairs (${pairs.filter((p) => p.hand).length} hand-written), each pair alone`);
    console.log(`  ${'category'.padEnd(15)}${'pairs'.padStart(6)}${'hits'.padStart(6)}${'false'.padStart(7)}${'hit rate'.padStart(10)}`);
    let hits = 0;
    let wrong = 0;
    for (const [c, t] of tally) {
      hits += t.hits;
      wrong += t.wrong;
      console.log(`  ${c.padEnd(15)}${String(t.pairs).padStart(6)}${String(t.hits).padStart(6)}${String(t.wrong).padStart(7)}${pct(t.hits, t.pairs).padStart(10)}`);
    }
    const para = tally.get('paraphrase')!;
    console.log(`  precision ${pct(hits - wrong, hits)} (${hits - wrong} of ${hits} hits right) · recall on paraphrases ${pct(para.hits, para.pairs)} ` +
      `· false hits on near misses ${wrong} of ${pairs.length - para.pairs}`);
    console.log(`  with a verifier model (verify.min_similarity ${semanticConfig.verify.min_similarity}), it would be asked about ${askedVerifier.paraphrase} more paraphrases ` +
      `(recall up to ${pct(para.hits + askedVerifier.paraphrase, para.pairs)}) and ${askedVerifier.near} near misses (each a false hit if it says yes)`);
    console.log(`  all first prompts in one cache: ${sharedHits} of ${pairs.length} second prompts hit, ${sharedWrong} of them from a prompt that asks something else`);
    if (shown.length) console.log(shown.join('\n'));
  }
}
console.log(`\n(${vectors.size} prompts embedded in ${(embedMs / 1000).toFixed(1)} s)`);
await store.close();
rmSync(dir, { recursive: true, force: true });
