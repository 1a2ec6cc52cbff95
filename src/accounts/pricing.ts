// Dollar figures for one request, from catalog list prices (USD per 1M tokens).
import type { Prices } from '../config/schema.js';
import type { Usage } from '../wire/usage.js';

export type { Usage };

export interface Costs {
  cost_usd: number;
  benchmark_usd: number;
  charge_usd: number;
  saved_usd: number;
}

const PER_TOKEN = 1 / 1_000_000;

/** Round to 1e-9 USD so headers and ledger agree to the digit. */
export function roundUsd(usd: number): number {
  return Math.round(usd * 1e9) / 1e9;
}

export function upstreamCost(prices: Prices, usage: Usage): number {
  const cached = Math.min(usage.cached_tokens, usage.prompt_tokens);
  const written = Math.min(usage.cache_write_tokens ?? 0, usage.prompt_tokens - cached);
  const cachedPrice = prices.cached_input ?? prices.input;
  const writePrice = prices.cache_write ?? prices.input;
  return ((usage.prompt_tokens - cached - written) * prices.input + cached * cachedPrice + written * writePrice + usage.completion_tokens * prices.output) * PER_TOKEN;
}

/**
 * benchmark = the baseline (or requested) model at list price, full prompt, no cache;
 * charge = upstream cost × (1 + markup), never above the benchmark; saved = benchmark − charge.
 * `removedPrompt`: prompt tokens the savings engine removed before sending (the benchmark counts them).
 */
export function priceRequest(served: Prices, benchmark: Prices, usage: Usage, markup: number, removedPrompt = 0): Costs {
  const cost = roundUsd(upstreamCost(served, usage));
  const bench = roundUsd(upstreamCost(benchmark, { prompt_tokens: usage.prompt_tokens + removedPrompt, completion_tokens: usage.completion_tokens, cached_tokens: 0 }));
  const charge = roundUsd(Math.min(cost * (1 + markup), Math.max(bench, cost)));
  return { cost_usd: cost, benchmark_usd: bench, charge_usd: charge, saved_usd: roundUsd(bench - charge) };
}

/** Where a saving comes from: a savings mechanism, or `routing` (a route cheaper than the benchmark's list price). */
export type SavingKind = 'routing' | 'prompt_cache' | 'compression' | 'chunk_dedupe' | 'exact_cache' | 'semantic_cache' | 'dedupe';
export type SavingsUsd = Partial<Record<SavingKind, number>>;

/**
 * The saving of an upstream call, by where it came from, in dollars. With B the benchmark's
 * prices, R the route's, p/c/k the prompt/completion/cached tokens billed and r the prompt
 * tokens each rewrite removed:
 *   benchmark − cost = B.in·r (each rewrite) + (B.in − R.in)·p + (B.out − R.out)·c (routing)
 *                      + (R.in − R.cached)·k − (R.write − R.in)·w (prompt cache: k read, w written)
 * exactly, so the parts add up to benchmark − cost; what the markup keeps of it is the
 * difference to saved_usd. Routing is negative when the route costs more than the benchmark.
 */
export function savingsOf(served: Prices, benchmark: Prices, usage: Usage, removed: { compression?: number | undefined; chunk_dedupe?: number | undefined }): SavingsUsd {
  const out: SavingsUsd = {};
  const put = (kind: SavingKind, usd: number) => { const v = roundUsd(usd); if (v !== 0) out[kind] = v; };
  const cached = Math.min(usage.cached_tokens, usage.prompt_tokens);
  const written = Math.min(usage.cache_write_tokens ?? 0, usage.prompt_tokens - cached);
  put('routing', ((benchmark.input - served.input) * usage.prompt_tokens + (benchmark.output - served.output) * usage.completion_tokens) * PER_TOKEN);
  // What reading the cache saved, less what writing it cost above the input price (it can be negative on the turn that writes).
  if (cached || written) put('prompt_cache', ((served.input - (served.cached_input ?? served.input)) * cached - ((served.cache_write ?? served.input) - served.input) * written) * PER_TOKEN);
  if (removed.compression) put('compression', benchmark.input * removed.compression * PER_TOKEN);
  if (removed.chunk_dedupe) put('chunk_dedupe', benchmark.input * removed.chunk_dedupe * PER_TOKEN);
  return out;
}
