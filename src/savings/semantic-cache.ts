// The semantic cache as a pipeline stage: the last user turn is embedded in the worker
// pool and a stored answer to a near-identical turn (same context, similarity at or above
// the threshold, and the guard's checks) answers it; a completed miss is stored under its
// embedding. An embedding that fails only means no semantic lookup for this request, and
// so does a full pool: past `max_in_flight` embeddings waiting or running, a request goes
// on without one (the cache only ever adds a bounded wait, and never caps throughput).
import type { Config } from '../config/schema.js';
import type { WorkerPool } from '../workers/pool.js';
import type { ResponseCache } from './cache.js';
import { splitLastTurn } from './canonical.js';
import { signature } from './guard.js';
import { M } from './mechanisms.js';
import { allows, type SavingsStage } from './stage.js';

export function semanticCache(cache: ResponseCache, pool: WorkerPool, config: Config['savings']): SavingsStage {
  const cfg = config.semantic_cache;
  let inFlight = 0;
  return {
    bits: M.semantic_cache,
    before(ctx, next) {
      const turn = ctx.hash ? splitLastTurn(ctx.request) : null;
      // Prompts the guards cannot compare (another language than the model's) are not embedded at all.
      // Nor while the model is still loading at start (/health: semantic_cache "warming").
      if (!turn || turn.text.length > cfg.max_prompt_chars || inFlight >= cfg.max_in_flight || pool.embeddings === 'warming' || !signature(turn.text).english) {
        next();
        return;
      }
      inFlight++;
      ctx.after(pool.embed(turn.text).catch(() => null).finally(() => { inFlight--; }), (vec) => {
        if (!vec) { next(); return; }
        const hit = cache.findSimilar(ctx.ws.id, turn.context, vec, turn.text, cfg.threshold);
        if (hit && allows(ctx.routes, hit.decision)) {
          cache.refSemanticHit(ctx.client.requestId, ctx.ws.id, turn.context, vec, hit);
          ctx.replay('semantic', hit, hit.similarity);
          return;
        }
        ctx.semantic = { vec, text: turn.text, context: turn.context };
        next();
      });
    },
    after(ctx, answer) {
      const key = ctx.semantic;
      if (key && answer.body.length <= config.exact_cache.max_entry_bytes) {
        cache.putSimilar(ctx.ws.id, key.context, ctx.client.requestId, key.vec, key.text, answer, cfg.ttl_seconds * 1000, cfg.threshold);
      }
    },
  };
}
