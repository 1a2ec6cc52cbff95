// Dollar figures for one request, from catalog list prices (USD per 1M tokens).
import type { Prices } from '../config/schema.js';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
}

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
  const cachedPrice = prices.cached_input ?? prices.input;
  return ((usage.prompt_tokens - cached) * prices.input + cached * cachedPrice + usage.completion_tokens * prices.output) * PER_TOKEN;
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
