// The semantic cache as a pipeline stage: the last user turn is embedded in the worker
// pool and a stored answer to a near-identical turn (same context, similarity at or above
// the threshold, and the guard's checks) answers it; a completed miss is stored under its
// embedding. An embedding that fails only means no semantic lookup for this request.
import type { Config } from '../config/schema.js';
import type { WorkerPool } from '../workers/pool.js';
import type { ResponseCache } from './cache.js';
import { splitLastTurn } from './canonical.js';
import { M } from './mechanisms.js';
import { allows, type SavingsStage } from './stage.js';

export function semanticCache(cache: ResponseCache, pool: WorkerPool, config: Config['savings']): SavingsStage {
  const cfg = config.semantic_cache;
  return {
    bits: M.semantic_cache,
    before(ctx, next) {
      const turn = ctx.hash ? splitLastTurn(ctx.request) : null;
      if (!turn || turn.text.length > cfg.max_prompt_chars) { next(); return; }
      ctx.after(pool.embed(turn.text).catch(() => null), (vec) => {
        if (!vec) { next(); return; }
        const hit = cache.findSimilar(ctx.ws.id, turn.context, vec, turn.text, cfg.threshold);
        if (hit && allows(ctx.routes, hit.decision)) { ctx.replay('semantic', hit, hit.similarity); return; }
        ctx.semantic = { vec, text: turn.text, context: turn.context };
        next();
      });
    },
    after(ctx, answer) {
      const key = ctx.semantic;
      if (key && answer.body.length <= config.exact_cache.max_entry_bytes) {
        cache.putSimilar(ctx.ws.id, key.context, ctx.client.requestId, key.vec, key.text, answer, cfg.ttl_seconds * 1000);
      }
    },
  };
}
