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
import { embeddingText, signature } from './guard.js';
import { M } from './mechanisms.js';
import { allows, type SavingsStage, type SemanticVerifier } from './stage.js';

export function semanticCache(cache: ResponseCache, pool: WorkerPool, config: Config['savings'], verifier: SemanticVerifier | null = null): SavingsStage {
  const cfg = config.semantic_cache;
  let inFlight = 0;
  /** Cacheable requests by what the semantic cache did with them (/metrics: sluice_semantic_cache_total). */
  const stats = { hit: 0, miss: 0, verified_hit: 0, verified_miss: 0, skipped_busy: 0, skipped_warming: 0, not_compared: 0, failed: 0 };
  return {
    bits: M.semantic_cache,
    stats,
    before(ctx, next) {
      const turn = ctx.hash ? splitLastTurn(ctx.request) : null;
      const skip = (why: keyof typeof stats) => { stats[why]++; next(); };
      // Prompts the guards cannot compare (images, too long, another language than the model's) are not embedded at all;
      // nor while the model is still loading at start (/health: semantic_cache "warming"), nor past max_in_flight.
      if (!turn || turn.text.length > cfg.max_prompt_chars) { skip('not_compared'); return; }
      if (inFlight >= cfg.max_in_flight) { skip('skipped_busy'); return; }
      if (pool.embeddings === 'warming') { skip('skipped_warming'); return; }
      const sig = signature(turn.text);
      if (!sig.english) { skip('not_compared'); return; }
      inFlight++;
      ctx.after(pool.embed(embeddingText(turn.text)).catch(() => null).finally(() => { inFlight--; }), (vec) => {
        if (!vec) { skip('failed'); return; }
        const hit = cache.findSimilar(ctx.ws.id, turn.context, vec, sig, cfg.threshold);
        if (hit && allows(ctx.routes, hit.decision)) {
          stats.hit++;
          cache.refSemanticHit(ctx.client.requestId, ctx.ws.id, turn.context, vec, hit);
          ctx.replay('semantic', hit, hit.similarity);
          return;
        }
        let verified = false;
        const miss = () => { stats[verified ? 'verified_miss' : 'miss']++; ctx.semantic = { vec, text: turn.text, context: turn.context }; next(); };
        // A reworded candidate, when a verifier is configured and this request's prompt may go to its model.
        const candidate = verifier && ctx.mayVerify()
          ? cache.findCandidate(ctx.ws.id, turn.context, vec, sig, cfg.verify.min_similarity) : null;
        if (!candidate || !allows(ctx.routes, candidate.decision)) { miss(); return; }
        verified = true;
        ctx.after(verifier!.ask(candidate.text, turn.text), (same) => {
          if (same) {
            stats.verified_hit++;
            cache.refSemanticHit(ctx.client.requestId, ctx.ws.id, turn.context, vec, candidate);
            ctx.replay('semantic', candidate, candidate.similarity);
            return;
          }
          // Told apart: this neighbourhood does not answer this query (nor ask about it again).
          if (same === false) cache.scar(ctx.ws.id, turn.context, ctx.client.requestId, vec, cfg.verify.min_similarity, cfg.ttl_seconds * 1000);
          miss();
        });
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
