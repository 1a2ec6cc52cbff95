// Provider prompt caching as a pipeline stage: a large prompt's call carries a key for its
// stable head (workspace + system + tools), which OpenAI-kind adapters send as
// `prompt_cache_key` and the Anthropic adapter turns into `cache_control` breakpoints.
import type { Config } from '../config/schema.js';
import { prefixHash } from './canonical.js';
import { M } from './mechanisms.js';
import type { SavingsStage } from './stage.js';

export function promptCache(config: Config['savings']): SavingsStage {
  return {
    bits: M.prompt_cache,
    dispatch(ctx, call) {
      // The head it hashes (model, tools, the leading system messages) is the same before and
      // after the rewrites, which never touch those: the caller's parsed request serves.
      if (ctx.body.length >= config.prompt_cache.min_body_bytes) call.promptCacheKey = prefixHash(ctx.ws.id, ctx.request);
      return false;
    },
  };
}
