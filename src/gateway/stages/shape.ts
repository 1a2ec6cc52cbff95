// shape: a max_tokens for a request that sets none, spliced into the bytes (the body is
// not re-encoded): the savings engine's output cap when it is on, else, for a model whose
// catalog entry has no max output either, billing.default_output_cap, so that what is
// reserved for the output is what the upstream may really generate. Then the rewrites
// (chunk dedupe, compression) in the worker pool, whose reply carries the exact prompt count.
import { M } from '../../savings/mechanisms.js';
import type { SavedTokens } from '../../wire/savings.js';
import type { ChatDeps } from '../deps.js';
import type { Stage } from '../context.js';
import { maxOutputOf } from './admit.js';

export function outputCap(deps: ChatDeps): Stage {
  /** Output caps by model slug or alias (a Map: request model names never reach Object.prototype). */
  const caps = new Map(Object.entries(deps.savings.config.output_cap.models));
  const fallback = deps.savings.config.output_cap.default;
  /** The spliced `,"max_tokens":N` bytes, one per field and cap. */
  const members = new Map<string, Buffer>();
  return (ctx) => {
    const req = ctx.request;
    if (ctx.endpoint.cappable && ctx.endpoint.askedCap(req, ctx.routes[0]!.model) === null) {
      const route = ctx.routes[0]!;
      const savingsCap = ctx.bits & M.output_cap ? caps.get(req.model) ?? caps.get(route.slug) ?? fallback : null;
      // Every route it may fail over to must be capped: by this, or by its model's own max output.
      const asked = savingsCap ?? (maxOutputOf(ctx.routes) !== null ? null : deps.defaultOutputCap);
      const cap = asked ? Math.min(asked, route.model.max_output_tokens ?? asked) : 0;
      // Only where the cap surely fits beside the prompt (a prompt has at most as many tokens as
      // the body has bytes): near the context window a cap could turn an answerable request
      // into a context_length_exceeded the caller never asked for.
      if (cap && ctx.body.length + ctx.extra.bytes + cap <= route.model.context_window) {
        const field = ctx.endpoint.capField(route);
        // Set on the parsed request itself (it is this call's own object): the caches then key on
        // the request with its cap, which is what the upstream answers.
        req[field] = cap;
        const name = `${field}:${cap}`;
        let member = members.get(name);
        if (!member) members.set(name, member = Buffer.from(`,"${field}":${cap}`));
        // Spliced as the body's last member: a body may already name the field (`"max_tokens":
        // null`, or twice), and JSON parsers take the last one, as the gateway's own parse did.
        const close = ctx.body.lastIndexOf(125); // '}' (the body parsed as an object)
        ctx.body = Buffer.concat([ctx.body.subarray(0, close), member, ctx.body.subarray(close)]);
        ctx.outputCap = cap;
      }
    }
    ctx.next();
  };
}

export function rewrites(deps: ChatDeps): Stage {
  const cfg = deps.savings.config;
  const c = cfg.compression;
  const compression = { budgetTokens: c.budget_tokens, keepLast: c.keep_last, staleMaxChars: c.stale_max_chars };
  return (ctx) => {
    const size = ctx.body.length;
    if (!(ctx.bits & (M.compression | M.chunk_dedupe)) || size < cfg.rewrite_min_bytes || size > cfg.rewrite_max_bytes) { ctx.next(); return; }
    const route = ctx.routes[0]!;
    ctx.beforeAdmission(() => deps.pool.rewrite(route.model.tokenizer, ctx.body, ctx.bits & M.chunk_dedupe ? cfg.chunk_dedupe.min_chars : 0,
      ctx.bits & M.compression ? compression : null, ctx.cacheable), (r) => {
      if (r.hash) ctx.hash = r.hash;
      if (r.body !== null) {
        ctx.rewritten(Buffer.from(r.body));
        const saved: SavedTokens = {};
        if (r.savedChunk) saved.chunk_dedupe = r.savedChunk;
        if (r.savedCompression) saved.compression = r.savedCompression;
        ctx.saved = saved;
      }
      ctx.knownTokens = r.promptTokens;
      ctx.next();
    });
  };
}
