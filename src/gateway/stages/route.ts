// route: the routes that may serve the request, best first (router/select.ts: the model's or
// alias's routes, a pinned provider, the endpoint's needs, the constraints of every key
// above this one), the workspace, the benchmark the savings are measured against, and what
// the prompt may cost beyond its bytes (images, a previous response's conversation).
import type { ModelType, Prices } from '../../config/schema.js';
import { Errors, GatewayError } from '../../errors.js';
import { RouteSelector, capableRoutes } from '../../router/select.js';
import type { ChatDeps } from '../deps.js';
import type { Stage } from '../context.js';
import { IMAGE_BOUND, IMAGE_COUNTED, promptExtras } from '../prompt-bound.js';

/** Where each type of model is served (named when a request sends a model to the wrong endpoint). */
export const ENDPOINT_OF: Record<ModelType, string> = { chat: '/v1/chat/completions, /v1/responses and /v1/completions', completion: '/v1/completions', embedding: '/v1/embeddings', moderation: '/v1/moderations', image: '/v1/images/generations', speech: '/v1/audio/speech', transcription: '/v1/audio/transcriptions and /v1/audio/translations' };

export function route(deps: ChatDeps): Stage {
  const selector = new RouteSelector(deps.catalog, deps.health);
  /**
   * `auto`'s benchmark without a baseline: the complex bucket's model, or with the adaptive
   * router, the highest list prices (input and output each) among every model the candidates
   * may be served by, aliases' members too — so a routed answer never shows a saving against a
   * model cheaper than its own.
   */
  let autoBenchmark: Prices = deps.catalog.resolve(deps.router.complex).model.prices;
  for (const c of deps.adaptive?.candidates ?? []) {
    for (const r of deps.catalog.resolve(c.name).routes) {
      for (const p of [r.model.prices, r.prices]) { // a route may be priced above its model's list price
        if (p.input > autoBenchmark.input || p.output > autoBenchmark.output) {
          autoBenchmark = { input: Math.max(autoBenchmark.input, p.input), output: Math.max(autoBenchmark.output, p.output) };
        }
      }
    }
  }
  return (ctx) => {
    const { request, key } = ctx;
    ctx.chain = deps.keys.chain(key);
    const selected = selector.select({
      requested: request.model, model: ctx.router?.model ?? request.model,
      pin: typeof request.provider === 'string' ? request.provider : ctx.pin,
      nativeKind: ctx.endpoint.native, chain: ctx.chain, caller: key,
    });
    const { entry } = selected;
    const model = selected.routes[0]!.model;
    if (model.type !== ctx.endpoint.modelType) {
      throw new GatewayError(Errors.invalidRequest, `'${request.model}' is ${/^[aeiou]/.test(model.type) ? 'an' : 'a'} ${model.type} model: it is served on ${ENDPOINT_OF[model.type]}, not on ${ENDPOINT_OF[ctx.endpoint.modelType]}.`, 'model');
    }
    // Only routes whose model can do what the request asks: an alias's cheapest capable model serves.
    const routes = capableRoutes(request, selected.routes);
    const ws = deps.workspaces.get(key.workspace);
    if (!ws) throw new GatewayError(Errors.forbidden, `This key's workspace ${key.workspace} no longer exists.`);
    let previous = 0;
    const prev = ctx.endpoint.conversation ? request.previous_response_id : undefined;
    if (prev !== undefined && prev !== null) {
      if (typeof prev !== 'string') throw new GatewayError(Errors.invalidRequest, "Invalid 'previous_response_id': expected a string.", 'previous_response_id');
      previous = deps.responseIds.tokensOf(ws.id, prev);
    }
    ctx.routes = routes;
    ctx.ws = ws;
    // BASELINE_MODEL, else the requested model at its catalog list price (an alias: its
    // first model; `auto`: the complex bucket's), so cheaper routing shows as saved.
    ctx.benchmark = deps.baseline ?? (ctx.router ? autoBenchmark : entry.model.prices);
    const found = promptExtras(request);
    if (found.images || found.unsized || previous) {
      ctx.extra = { bytes: found.images * IMAGE_BOUND + previous, counted: found.images * (IMAGE_BOUND - IMAGE_COUNTED) + previous, previous, unsized: found.unsized };
    }
    ctx.next();
  };
}
