// admit: the context window, the credit check and the reservation, then admission: the
// limits of the key and every key above it (reserving the request's bound on tpm and
// budgets), the credit hold, the in-flight count, all held by the request's ticket until it
// settles. Without I/O when bounds allow: a prompt has at most as many tokens as the body
// has bytes, so only a body near the context window, a balance too tight for the byte
// bound, or a large body under a tpm limit (where the byte bound would reserve ~4× too
// much) pays for an exact count in the worker pool.
import { localWhenUnavailable } from '../../accounts/limits.js';
import { upstreamCost } from '../../accounts/pricing.js';
import { fromNano, toNano } from '../../accounts/workspaces.js';
import type { Prices } from '../../config/schema.js';
import { Errors, GatewayError } from '../../errors.js';
import type { Route } from '../../router/catalog.js';
import type { ChatDeps } from '../deps.js';
import type { RequestContext, Stage } from '../context.js';
import { fmtUsd } from '../fmt.js';

export function admit(deps: ChatDeps): Stage {
  const { workspaces, limits, markup, shared } = deps;

  /** One node's admission (and cluster mode's for an unmetered workspace when Redis is down and config allows it). */
  const holdHere = (ctx: RequestContext, tokens: number, output: number, charge: number) => {
    const admission = limits.admit(ctx.chain, { tokens: tokens + output, nano: charge });
    ctx.ticket.hold(ctx.ws, admission, ctx.ws.metered ? charge : 0);
    ctx.tAdmitted = performance.now();
    ctx.next();
  };

  /** Takes the holds: from here every path releases them through the ticket. */
  const hold = (ctx: RequestContext, tokens: number, output: number, charge: number, insufficient: (available: number) => GatewayError, exact: (() => void) | null = null) => {
    if (shared?.needed(ctx.chain, ctx.ws)) {
      // Cluster mode: one script in the shared Redis checks, counts and holds. A client that
      // left while it ran gets its holds back at once (the runner then refuses the request).
      // A byte bound the balance does not cover is counted exactly before a 402 (`exact`), as on one node.
      const admitted = shared.admit(ctx.client.requestId, ctx.chain, { tokens: tokens + output, nano: charge }, ctx.ws, ctx.ws.metered ? charge : 0, insufficient)
        .then((a) => { if (ctx.client.aborted) a.finish(0, 0, 0); return a; }, (err: unknown) => {
          if (err === SHORT && exact) return EXACT;
          // Redis unreachable: metered workspaces are refused (fail closed); an unmetered one's keys
          // may be held to this replica's own counts instead (cluster.unmetered_without_redis: local_limits).
          if (localWhenUnavailable(shared, ctx.ws, err)) return LOCAL;
          throw err;
        });
      ctx.after(admitted, (a) => {
        if (a === EXACT) { exact!(); return; }
        if (a === LOCAL) { holdHere(ctx, tokens, output, charge); return; }
        ctx.ticket.holdShared(ctx.ws, a);
        ctx.tAdmitted = performance.now();
        ctx.next();
      });
      return;
    }
    holdHere(ctx, tokens, output, charge);
  };

  return (ctx) => {
    const { request: req, ws, extra, routes } = ctx;
    const route = routes[0]!;
    const window = route.model.context_window;
    // The output is bounded by the request's cap (or the one the shape stage set), else by the
    // largest max output among the models it may fail over to; with neither, only a context window bounds it.
    // (per model: an image's units differ by model; the dearest route's bound holds for all)
    let asked = ctx.endpoint.askedCap(req, route.model);
    for (const r of routes) { const a = ctx.endpoint.askedCap(req, r.model); if (a !== null && asked !== null && a > asked) asked = a; }
    const cap = asked ?? maxOutputOf(routes);
    const widest = routes.length === 1 ? window : Math.max(...routes.map((r) => r.model.context_window));
    const choices = ctx.endpoint.choices(req); // every choice may use the cap
    // Failover may land on the dearest route allowed.
    const prices = routes.length === 1 && route.prices.cache_write === undefined ? route.prices : dearest(routes);
    // Output: the cap, else what the window leaves beside the prompt as the upstream counts it.
    const outputFor = (prompt: number) => (cap ?? Math.max(0, widest - prompt)) * choices;
    const maxCharge = (prompt: number, output: number) => toNano(upstreamCost(prices, { prompt_tokens: prompt, completion_tokens: output, cached_tokens: 0 }) * (1 + markup));
    const check = (counted: number) => {
      // The context check is the upstream's own arithmetic (an image at its usual count, not its bound): never refuse what it would take.
      const usual = counted + extra.previous;
      // Only the routes whose model's window fits it may serve, or be failed over to (as OpenAI:
      // the prompt plus what max_tokens asks for; an alias's next model may be wider); none: refused, by the widest.
      if (ctx.routes.length > 1 || usual + (asked ?? 0) > window) {
        const fitting = ctx.routes.filter((r) => usual + (asked ?? 0) <= r.model.context_window);
        if (fitting.length) { if (fitting.length < ctx.routes.length) ctx.routes = fitting; }
        else {
          const field = ctx.endpoint.capName(req);
          const prompt = ctx.endpoint.promptField;
          throw new GatewayError(Errors.contextLength,
            `This model's context window is ${widest} tokens; the ${prompt === 'messages' ? 'messages use' : 'input uses'} ${usual}${asked ? ` and ${field} asks for ${asked} more` : ''}. Shorten the ${prompt}${asked ? ` or lower ${field}` : ''}.`, prompt);
        }
      }
      // Money and tpm take the bound: images at their ceiling; content stored upstream (a file id) as the whole window (the widest it may be served with).
      const tokens = extra.unsized ? Math.max(...ctx.routes.map((r) => r.model.context_window)) : counted + extra.counted;
      const output = outputFor(usual);
      const needed = maxCharge(tokens, output);
      const insufficient = (available: number) => new GatewayError(Errors.insufficientCredits,
        // (in tokens for what is priced per token; images, audio and speech are priced in their own units, named by the catalog)
        ctx.endpoint.cappable
          ? `Insufficient credits: this request may cost up to $${fmtUsd(fromNano(needed))} (${tokens} prompt tokens, up to ${output} output tokens) and the workspace has $${fmtUsd(fromNano(Math.max(0, available)))} available. Top up, or lower max_tokens.`
          : `Insufficient credits: this request may cost up to $${fmtUsd(fromNano(needed))} at ${route.decision}'s catalog prices and the workspace has $${fmtUsd(fromNano(Math.max(0, available)))} available. Top up.`);
      const available = workspaces.availableNano(ws);
      if (ws.metered && available < needed) throw insufficient(available);
      hold(ctx, tokens, output, needed, insufficient);
    };
    if (ctx.knownTokens !== null) { check(ctx.knownTokens); return; }
    if (ctx.endpoint.promptBound) {
      // The body's size says nothing of what it costs (audio: its seconds): the endpoint's bound, at the dearest route's units.
      let bound = 0;
      for (const r of routes) bound = Math.max(bound, ctx.endpoint.promptBound(req, r.model));
      check(bound);
      return;
    }
    const bound = extra.unsized ? window : ctx.body.length + extra.bytes;
    const exactForTpm = ctx.body.length > 4096 && ctx.chain.some((k) => k.limits?.tpm !== undefined);
    const exact = () => ctx.beforeAdmission(() => deps.pool.countPrompt(route.model.tokenizer, ctx.body, ctx.endpoint.api), check);
    // (the byte bound fits every route's window: no count is needed to know which may serve)
    if (cap !== null && !exactForTpm && bound + cap <= (routes.length === 1 ? window : Math.min(...routes.map((r) => r.model.context_window)))) {
      const output = cap * choices;
      const charge = maxCharge(bound, output);
      if (!ws.metered || workspaces.availableNano(ws) >= charge) { hold(ctx, bound, output, charge, short, exact); return; }
    }
    exact();
  };
}

/** The byte bound's charge is more than the shared store's balance covers: count exactly before refusing. */
const SHORT = new GatewayError(Errors.insufficientCredits, 'Insufficient credits.');
const short = () => SHORT;
/** The byte bound was short: count exactly. */
const EXACT: unique symbol = Symbol('exact');
/** Redis is down and this unmetered workspace's keys may be admitted on this replica's own counts. */
const LOCAL: unique symbol = Symbol('local');

/** The largest max output among the routes' models, or null when one of them lists none (only its context window bounds it). */
export function maxOutputOf(routes: readonly Route[]): number | null {
  let most = 0;
  for (const r of routes) {
    const m = r.model.max_output_tokens;
    if (m === undefined) return null;
    if (m > most) most = m;
  }
  return most;
}

/**
 * The highest price of each kind among the routes: what a request may cost wherever failover
 * takes it (a prompt token at most its cache-write price, where the provider writes caches).
 */
function dearest(routes: readonly Route[]): Prices {
  let input = 0;
  let output = 0;
  for (const r of routes) { input = Math.max(input, r.prices.input, r.prices.cache_write ?? 0); output = Math.max(output, r.prices.output); }
  return { input, output };
}
