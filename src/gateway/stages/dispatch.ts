// dispatch: the call upstream (upstream-call.ts: failover attempts, respond, settle). The
// savings stages take part as it leaves: a prompt-cache key, and dedupe, which joins a
// flight that started meanwhile or makes this call one that identical requests may join.
import type { SavingsStage } from '../../savings/stage.js';
import type { Stage } from '../context.js';
import { UpstreamCall } from '../upstream-call.js';

export function dispatch(savings: readonly SavingsStage[]): Stage {
  const hooks = savings.filter((s) => s.dispatch);
  return (ctx) => {
    const call = new UpstreamCall(ctx);
    for (const s of hooks) if (ctx.bits & s.bits && s.dispatch!(ctx, call)) return;
    call.lead();
    call.dispatch();
  };
}
