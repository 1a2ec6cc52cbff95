// parse: a request the ledger could not record refused at once (mustRecord); the body through
// the endpoint's schema (unless the route already read it), and which savings mechanisms are
// on for this request: config's, those the endpoint can use, minus the key's `savings_off`
// and the request's own switches.
import { maskOf } from '../../savings/mechanisms.js';
import type { ChatDeps } from '../deps.js';
import { mustRecord, type Stage } from '../context.js';

export function parse(deps: ChatDeps): Stage {
  const enabled = deps.savings.enabled;
  return (ctx) => {
    mustRecord(deps);
    ctx.request ??= ctx.endpoint.parse(ctx.body);
    ctx.model = ctx.request.model;
    ctx.bits = enabled & ctx.endpoint.savings & ~ctx.switches.off & ~maskOf(ctx.key.limits?.savings_off);
    ctx.next();
  };
}
