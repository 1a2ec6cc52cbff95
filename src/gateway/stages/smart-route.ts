// smart route: for model `auto`, the classifier (in the worker pool) scores the prompt and
// router/smart.ts picks the bucket's model; every other request goes straight on.
import { pick } from '../../router/smart.js';
import type { ChatDeps } from '../deps.js';
import type { Stage } from '../context.js';

export function smartRoute(deps: ChatDeps): Stage {
  return (ctx) => {
    if (ctx.request.model !== 'auto' || !ctx.endpoint.smartRouter) { ctx.next(); return; }
    ctx.beforeAdmission(() => deps.pool.classify(ctx.body), (score) => {
      ctx.router = pick(deps.router, score);
      ctx.next();
    });
  };
}
