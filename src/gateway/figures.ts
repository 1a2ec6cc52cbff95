// What one answer shows and is billed: its headers, the `gateway` object (JSON body member,
// or the SSE comment before [DONE]), its costs and its savings by mechanism. One place for
// every way a request is answered: a miss (an upstream call), an exact or semantic cache
// hit, a dedupe follower, and a follower that became the payer of a shared call.
import { priceRequest, roundUsd, savingsOf, upstreamCost, type Costs, type SavingsUsd } from '../accounts/pricing.js';
import type { Prices } from '../config/schema.js';
import type { RouterPick } from '../router/smart.js';
import type { HeaderList } from '../wire/http.js';
import type { SavedTokens } from '../wire/savings.js';
import { spliceGatewayEvent } from '../wire/sse-usage.js';
import { usageJson, type Usage } from '../wire/usage.js';
import { fmtUsd } from './fmt.js';

/** How the answer was served: by an upstream call of its own, or by the savings engine. */
export type ServedAs = 'miss' | 'exact' | 'semantic' | 'dedupe';

const NO_SAVINGS: SavingsUsd = Object.freeze({});
const NO_TOKENS: SavedTokens = Object.freeze({}); // shared by rows: frozen, never written
/** Per-route headers of a first attempt served by its own call (nearly every request), built once. */
const missHeaders = new WeakMap<object, HeaderList>();

export class Figures {
  /** A dedupe follower whose leader's client went away pays for the shared call: it is billed as a miss. */
  payer = false;
  /** The route that answers, and its prices. */
  decision: string;
  private route: object;
  private decisionJson: string;
  private prices: Prices;
  /** Attempts that failed before the one that answered. */
  retries = 0;
  private memo: { usage: Usage; by: SavingsUsd } | null = null;

  constructor(
    readonly kind: ServedAs,
    route: { decision: string; decisionJson: string; prices: Prices },
    /** The naive direct call's prices (BASELINE_MODEL, else the requested model's list price). */
    private readonly benchmark: Prices,
    private readonly markup: number,
    /** Tokens the rewrites removed from the prompt (a miss's own; none for a served answer). */
    private readonly saved: SavedTokens = NO_TOKENS,
    private readonly outputCap = 0,
    private readonly router: RouterPick | null = null,
    private readonly similarity: number | null = null,
  ) {
    this.route = route;
    this.decision = route.decision;
    this.decisionJson = route.decisionJson;
    this.prices = route.prices;
  }

  /** The route that answers (a failover's next attempt; the route a follower's leader ended on; a cache hit's producer). */
  via(route: { decision: string; decisionJson?: string; prices: Prices }): void {
    if (route === this.route) return;
    this.route = route;
    this.decision = route.decision;
    this.decisionJson = route.decisionJson ?? JSON.stringify(route.decision);
    this.prices = route.prices;
    this.memo = null;
  }

  /** The smart router's choice as the row records it (null: the request did not go through the router). */
  get routerPick(): RouterPick | null {
    return this.router;
  }

  /** Billed as an upstream call: a miss, or the payer of a shared one. */
  get billed(): boolean {
    return this.kind === 'miss' || this.payer;
  }

  /** What the cache column of the row and the x-gateway-cache header say. */
  get cache(): ServedAs {
    return this.payer ? 'miss' : this.kind;
  }

  /** Prompt tokens the rewrites removed: the benchmark prices the prompt as the caller sent it. */
  private get rewritten(): number {
    return (this.saved.chunk_dedupe ?? 0) + (this.saved.compression ?? 0);
  }

  /** A served answer costs nothing upstream and is not charged: it saved its whole benchmark. */
  costs(usage: Usage): Costs {
    if (this.billed) return priceRequest(this.prices, this.benchmark, usage, this.markup, this.rewritten);
    // The naive direct call: the whole prompt at the input price (no cache read or write), as a miss's benchmark.
    const b = roundUsd(upstreamCost(this.benchmark, { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens, cached_tokens: 0 }));
    return { cost_usd: 0, benchmark_usd: b, charge_usd: 0, saved_usd: b };
  }

  /** The saving in dollars by where it came from (kept for the usage it was computed for: the figures and the row ask twice). */
  savings(usage: Usage | null): SavingsUsd {
    if (!usage) return NO_SAVINGS;
    if (this.memo?.usage !== usage) this.memo = { usage, by: this.savingsFor(usage) };
    return this.memo.by;
  }

  private savingsFor(usage: Usage): SavingsUsd {
    if (this.billed) return savingsOf(this.prices, this.benchmark, usage, this.saved);
    const saved = this.costs(usage).saved_usd;
    return saved ? { [this.mechanism()]: saved } : NO_SAVINGS;
  }

  private mechanism(): 'exact_cache' | 'semantic_cache' | 'dedupe' {
    return this.kind === 'exact' ? 'exact_cache' : this.kind === 'semantic' ? 'semantic_cache' : 'dedupe';
  }

  /** Tokens each mechanism saved: a miss's rewrites and provider prompt cache; a served answer's whole answer. */
  savedTokens(usage: Usage | null): SavedTokens {
    if (this.kind === 'miss') {
      const cached = usage?.cached_tokens ?? 0;
      return cached ? { ...this.saved, prompt_cache: cached } : this.saved;
    }
    if (!usage || this.payer) return NO_TOKENS;
    return { [this.mechanism()]: usage.prompt_tokens + usage.completion_tokens };
  }

  /** The response's gateway headers (before its figures): the route, retries, how it was served, and the admission's limit headers. */
  headers(limit: HeaderList): HeaderList {
    let h: HeaderList | undefined;
    if (this.kind === 'miss') {
      // First attempts share one list per route; a retried request builds its own.
      h = this.retries ? undefined : missHeaders.get(this.route);
      if (!h) {
        h = [['x-gateway-decision', this.decision], ['x-gateway-retries', String(this.retries)], ['x-gateway-cache', 'miss']];
        if (!this.retries) missHeaders.set(this.route, h);
      }
      if (this.outputCap) h = [...h, ['x-gateway-output-cap', String(this.outputCap)]];
      if (this.router) h = [...h, ...routerHeaders(this.router)];
    } else {
      h = [['x-gateway-decision', this.decision], ['x-gateway-retries', '0'], ['x-gateway-cache', this.cache]];
      if (this.similarity !== null) h = [...h, ['x-gateway-cache-similarity', this.similarity.toFixed(4)]];
    }
    return limit.length ? [...h, ...limit] : h;
  }

  /** The `gateway` object, written directly (it is on every response; JSON.stringify of an object literal costs more). */
  gatewayJson(requestId: string, usage: Usage | null, costs: Costs | null, overheadMs: number): string {
    const c = costs ? `,"cost_usd":${costs.cost_usd},"benchmark_usd":${costs.benchmark_usd},"charge_usd":${costs.charge_usd},"saved_usd":${costs.saved_usd}` : '';
    const cap = this.outputCap && this.kind === 'miss' ? `,"output_cap":${this.outputCap}` : '';
    const similarity = this.similarity !== null ? `,"similarity":${Math.round(this.similarity * 1e4) / 1e4}` : '';
    const saved = this.savedTokens(usage);
    const by = this.savings(usage);
    // A served answer shows the usage it stands for whole (cache writes too); a miss its three counts.
    const u = this.kind === 'miss' ? usageJson(usage) : JSON.stringify(usage);
    const router = this.router ? `,"router":${routerJson(this.router)}` : '';
    return `{"request_id":"${requestId}","served":${this.decisionJson},"cache":"${this.cache}","retries":${this.kind === 'miss' ? this.retries : 0}${similarity}${router},"usage":${u},"saved_tokens":${saved === NO_TOKENS || isEmpty(saved) ? '{}' : JSON.stringify(saved)},"savings_usd":${by === NO_SAVINGS || isEmpty(by) ? '{}' : JSON.stringify(by)}${cap}${c},"overhead_ms":${Math.round(overheadMs * 1000) / 1000}}`;
  }

  /** The streamed equivalent of the headers: an SSE comment before `[DONE]` (SDKs skip comments). */
  comment(requestId: string, usage: Usage | null, overheadMs: number, usageEvent: Buffer | null = null): Buffer {
    const json = this.gatewayJson(requestId, usage, usage ? this.costs(usage) : null, overheadMs);
    const comment = Buffer.from(`: gateway ${json}\n\n`);
    // The usage chunk the caller asked for goes out here, last before [DONE], with the same figures as a member.
    return usageEvent ? Buffer.concat([spliceGatewayEvent(usageEvent, json), comment]) : comment;
  }
}

/** The router's headers: bucket and score (always), task type, and the learned policy's model, quality and reason. */
function routerHeaders(r: RouterPick): HeaderList {
  const h: Array<[string, string]> = [['x-gateway-route-bucket', r.bucket], ['x-gateway-route-score', String(r.score)], ['x-gateway-route-task', r.task], ['x-gateway-route-model', r.model]];
  if (r.learned) h.push(['x-gateway-route-quality', String(r.learned.quality)], ['x-gateway-route-reason', r.learned.reason]);
  return h;
}

function routerJson(r: RouterPick): string {
  return JSON.stringify({ task_type: r.task, model: r.model, bucket: r.bucket, score: r.score, learned: r.learned !== null,
    quality: r.learned?.quality ?? null, reason: r.learned?.reason ?? 'bucket', teaches: r.learned?.teaches ?? false });
}

function isEmpty(o: object): boolean {
  for (const _ in o) return false;
  return true;
}

/** The cost, benchmark, charge, saved and overhead headers of a buffered answer. */
export function figureHeaders(costs: Costs, overheadMs: number): HeaderList {
  return [
    ['x-gateway-cost-usd', fmtUsd(costs.cost_usd)],
    ['x-btl-benchmark-cost', fmtUsd(costs.benchmark_usd)],
    ['x-btl-customer-charge', fmtUsd(costs.charge_usd)],
    ['x-btl-saved', fmtUsd(costs.saved_usd)],
    ['x-gateway-overhead-ms', overheadMs.toFixed(3)],
  ];
}
