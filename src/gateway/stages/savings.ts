// serve from savings: the exact cache's key for a request the caches may serve (on for it,
// and deterministic or opted in), then each savings stage's `before` hook in list order; any
// of them may answer instead of the upstream (savings/stage.ts).
import { requestHash } from '../../savings/canonical.js';
import type { SavingsStage } from '../../savings/stage.js';
import type { Stage } from '../context.js';

export const cacheKey: Stage = (ctx) => {
  // (another endpoint's requests never share a key with chat's: its API is part of the hash)
  ctx.hash = ctx.cacheable ? ctx.hash ?? requestHash(ctx.request, ctx.endpoint.api) : null;
  ctx.next();
};

/** A savings stage's `before` hook as a pipeline stage: skipped when its mechanisms are off for the request. */
export function saving(stage: SavingsStage): Stage {
  return (ctx) => {
    if (ctx.bits & stage.bits) stage.before!(ctx, ctx.next);
    else ctx.next();
  };
}
