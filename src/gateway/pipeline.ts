// The request pipeline, in order. Every inference endpoint (chat completions, the Responses
// API, and those to come) runs the same list; what differs per endpoint is data
// (endpoints.ts). Each stage moves the request on with ctx.next() or answers it; a pool
// step is a callback (context.ts's runner), never a per-request await chain.
//
//   receive      server/handlers.ts: auth, scope, the body read with its size limit
//   parse        stages/parse.ts         the endpoint's schema; the savings bits for this request
//   smart route  stages/smart-route.ts   model `auto`: the classifier picks the model (pool)
//   route        stages/route.ts         router/select.ts: eligible routes best first; workspace; benchmark
//   shape        stages/shape.ts         output cap spliced into the bytes; rewrites (pool)
//   admit        stages/admit.ts         context window, reservation, credits; limits and holds
//   savings      stages/savings.ts       exact cache, dedupe, semantic cache (savings/*): any may answer
//   dispatch     stages/dispatch.ts      upstream-call.ts: prompt-cache key, failover attempts (failover.ts)
//   respond      upstream-call.ts        buffered with the gateway object, or SSE tapped; fanned out to followers
//   settle       settle.ts               one row builder (miss, hit, follower, refusal); holds released; caches fed
import type { ChatDeps } from './deps.js';
import type { Stage } from './context.js';
import type { SavingsStage } from '../savings/stage.js';
import type { Verifier } from './verifier.js';
import { dedupe } from '../savings/dedupe.js';
import { exactCache } from '../savings/exact-cache.js';
import { promptCache } from '../savings/prompt-cache.js';
import { semanticCache } from '../savings/semantic-cache.js';
import { admit } from './stages/admit.js';
import { dispatch } from './stages/dispatch.js';
import { parse } from './stages/parse.js';
import { route } from './stages/route.js';
import { cacheKey, saving } from './stages/savings.js';
import { outputCap, rewrites } from './stages/shape.js';
import { smartRoute } from './stages/smart-route.js';

export interface Pipeline {
  readonly stages: readonly Stage[];
  readonly savings: readonly SavingsStage[];
}

export function buildPipeline(deps: ChatDeps, verifier: Verifier | null = null): Pipeline {
  const s = deps.savings;
  // In the order their hooks run. Dedupe is checked before the semantic lookup (an embed
  // takes a while) and again at dispatch, where a call that found none to join becomes one.
  const savings: SavingsStage[] = [
    exactCache(s.cache, s.config),
    dedupe({ flights: s.flights ?? null }),
    semanticCache(s.cache, deps.pool, s.config, verifier),
    promptCache(s.config),
  ];
  const stages: Stage[] = [
    parse(deps),
    ...(deps.handoff ? [deps.handoff] : []),
    smartRoute(deps),
    route(deps),
    outputCap(deps),
    rewrites(deps),
    admit(deps),
    cacheKey,
    ...savings.filter((stage) => stage.before).map(saving),
    dispatch(savings),
  ];
  return { stages, savings };
}
