// smart route: for model `auto` (and, with `router.adaptive.catch_all`, any name the catalog
// does not know), the classifier (in the worker pool) gives the prompt a difficulty score and
// a task type; the adaptive policy (router/adaptive.ts) chooses the model for the task type
// among the candidates the key may use, or, with it off (or `x-gateway-router: static`),
// router/smart.ts's bucket does. Every other request goes straight on.
import type { KeyRecord } from '../../accounts/keys.js';
import type { Candidate } from '../../router/adaptive.js';
import { chainAllows } from '../../router/select.js';
import { pick } from '../../router/smart.js';
import type { ChatDeps } from '../deps.js';
import type { Stage } from '../context.js';

export function smartRoute(deps: ChatDeps): Stage {
  const adaptive = deps.adaptive;
  const routesOf = new Map((adaptive?.candidates ?? []).map((c) => [c.name, deps.catalog.find(c.name)?.routes ?? []]));
  /** A candidate the key chain may use (and, when a provider is pinned, on that provider): one of its routes is allowed by every key of it. */
  const allowedFor = (chain: readonly KeyRecord[], pin: string) => (c: Candidate) =>
    routesOf.get(c.name)!.some((r) => (!pin || r.provider.name === pin) && chainAllows(chain, r));
  return (ctx) => {
    const model = ctx.request.model;
    const routed = model === 'auto' || (deps.catchAll && deps.catalog.find(model) === undefined);
    if (!routed || !ctx.endpoint.smartRouter) { ctx.next(); return; }
    ctx.beforeAdmission(() => deps.pool.classify(ctx.body), (verdict) => {
      const heuristic = pick(deps.router, verdict.score, verdict.task);
      // a pinned provider narrows the choice: routed among what it serves, and (the caller chose where answers succeed) teaching nothing
      const pin = typeof ctx.request.provider === 'string' ? ctx.request.provider : ctx.pin;
      const choice = adaptive && !ctx.switches.staticRouter ? adaptive.choose(verdict.task, allowedFor(deps.keys.chain(ctx.key), pin), !pin) : null;
      ctx.router = choice ? { ...heuristic, model: choice.model, learned: { quality: choice.quality, reason: choice.reason, teaches: choice.teaches } } : heuristic;
      ctx.next();
    });
  };
}
