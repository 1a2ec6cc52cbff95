// What a workspace pays: list prices per route with the gateway's markup applied, and a
// quote for a chat request before it is sent (nothing goes upstream). The quote tokenizes
// the prompt exactly (worker pool) and bounds the output by the request's cap, so the real
// charge of the same request falls inside [min, max] unless the upstream counts tokens
// differently from tiktoken.
import type { TemplatedApp } from 'uWebSockets.js';
import { priceRequest, roundUsd, type Costs } from '../accounts/pricing.js';
import type { Prices } from '../config/schema.js';
import { Errors, GatewayError } from '../errors.js';
import { ChatRequestSchema, sentCap } from '../wire/chat.js';
import { parseBody, parseJson } from '../wire/body.js';
import type { Catalog } from '../router/catalog.js';
import type { WorkerPool } from '../workers/pool.js';
import type { Handlers } from './handlers.js';

export interface PricingDeps {
  catalog: Catalog;
  pool: WorkerPool;
  billing: { markup: number; baselineModel: string | null; baseline: Prices | null; defaultOutputCap: number };
  /** `auto`'s buckets: its benchmark (without a baseline) is the complex bucket's model, or a pricier router candidate. */
  router: { complex: string };
}

const withMarkup = (p: Prices, markup: number) => ({
  input: roundUsd(p.input * (1 + markup)), output: roundUsd(p.output * (1 + markup)),
  ...(p.cached_input !== undefined ? { cached_input: roundUsd(p.cached_input * (1 + markup)) } : {}),
});

function span(lo: Costs, hi: Costs) {
  return {
    cost_usd: { min: lo.cost_usd, max: hi.cost_usd },
    charge_usd: { min: lo.charge_usd, max: hi.charge_usd },
    benchmark_usd: { min: lo.benchmark_usd, max: hi.benchmark_usd },
    saved_usd: { min: Math.min(lo.saved_usd, hi.saved_usd), max: Math.max(lo.saved_usd, hi.saved_usd) },
  };
}

export function registerPricing(app: TemplatedApp, on: Handlers, deps: PricingDeps): void {
  const { markup, baseline, baselineModel } = deps.billing;

  app.get('/v1/account/pricing', on.noBody('inference', (ex, key) => {
    ex.sendJson(200, {
      object: 'pricing', workspace: key!.workspace, unit: 'usd_per_1m_tokens', markup, baseline_model: baselineModel,
      policy: 'charge = upstream cost × (1 + markup), never above the benchmark; saved = benchmark − charge',
      benchmark: baselineModel
        ? `what the request would cost on the baseline model ${baselineModel} at its list price, for the full prompt as sent by the caller, without any cache`
        : `what the request would cost on the requested model at its catalog list price (never the price of the route that served it), for the full prompt as sent by the caller, without any cache; for an alias, its first model; for auto, the complex bucket's model (${deps.router.complex}) or, with the adaptive router, the highest input and output list prices among the models its candidates may be served by`,
      models: deps.catalog.models().map(({ model, routes }) => ({
        model: model.slug, list_prices: model.prices, your_prices: withMarkup(model.prices, markup),
        routes: routes.map((r) => ({ provider: r.provider.name, upstream_model: r.upstreamModel, decision: r.decision, prices: r.prices, your_prices: withMarkup(r.prices, markup) })),
      })),
    });
  }));

  app.post('/v1/account/quote', on.withBody('inference', (ex, key, body) => {
    const request = parseBody(ChatRequestSchema, parseJson(body));
    const entry = deps.catalog.resolve(request.model);
    if (!entry.routes.length) throw new GatewayError(Errors.noRoute, `No enabled provider serves '${request.model}'.`, 'model');
    const cap = sentCap(request) ?? entry.model.max_output_tokens ?? deps.billing.defaultOutputCap;
    // A quote is tokenized in the pool: within the workspace's share, like a request.
    const release = deps.pool.shareFor(key.workspace, body.length);
    deps.pool.countPrompt(entry.model.tokenizer, body).finally(release).then((prompt) => {
      const options = entry.routes.map((route) => {
        const prices = route.prices;
        const bench = baseline ?? entry.model.prices;
        const lo = priceRequest(prices, bench, { prompt_tokens: prompt, completion_tokens: 0, cached_tokens: 0 }, markup);
        const hi = priceRequest(prices, bench, { prompt_tokens: prompt, completion_tokens: cap, cached_tokens: 0 }, markup);
        return { provider: route.provider.name, upstream_model: route.upstreamModel, decision: route.decision, ...span(lo, hi) };
      }).sort((x, y) => x.charge_usd.max - y.charge_usd.max);
      ex.sendJson(200, {
        object: 'quote', workspace: key.workspace, model: entry.model.slug,
        prompt_tokens: prompt, completion_tokens: { min: 0, max: cap }, options,
      });
    }, (err: unknown) => ex.sendError(err));
  }));
}
