// The exact cache as a pipeline stage: a stored answer for the same canonical request in the
// same workspace answers it; a completed miss is stored (savings/cache.ts holds the store).
import type { Config } from '../config/schema.js';
import type { CachedAnswer, ResponseCache } from './cache.js';
import { M } from './mechanisms.js';
import { allows, type SavingsStage } from './stage.js';

export function exactCache(cache: ResponseCache, config: Config['savings']): SavingsStage {
  return {
    bits: M.exact_cache,
    before(ctx, next) {
      const hash = ctx.hash;
      if (!hash) { next(); return; }
      /** Answers from `hit` when every route allows it (true), else false. */
      const served = (hit: (CachedAnswer & { exp: number }) | null): boolean => {
        if (!hit || !allows(ctx.routes, hit.decision)) return false;
        cache.refExact(ctx.client.requestId, ctx.ws.id, hash, hit.exp);
        ctx.replay('exact', hit);
        return true;
      };
      const hit = cache.getExact(ctx.ws.id, hash);
      if (served(hit)) return;
      // Cluster mode: what another replica stored (one Redis round trip; a failure is a miss).
      if (cache.shared && !hit) { ctx.after(cache.getShared(ctx.ws.id, hash), (shared) => { if (!served(shared)) next(); }); return; }
      next();
    },
    after(ctx, answer) {
      if (ctx.hash && answer.body.length <= config.exact_cache.max_entry_bytes) {
        cache.putExact(ctx.ws.id, ctx.hash, answer, config.exact_cache.ttl_seconds * 1000, ctx.client.requestId);
      }
    },
  };
}
