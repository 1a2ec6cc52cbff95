// In-flight dedupe as a pipeline stage: a request identical to one in flight (same
// workspace, same answer-determining body, same delivery) follows that call instead of
// making its own, receiving the bytes written so far and then the live ones. Checked before
// the semantic lookup (an embed takes a while) and again as the call leaves, where a call
// that found no flight to join becomes one.
import type { ChatRequest } from '../wire/chat.js';
import { M } from './mechanisms.js';
import type { SharedFlights } from './shared-flights.js';
import { allows, type Flight, type SavingsContext, type SavingsStage } from './stage.js';

/** The delivery is part of the key: a stream and a buffered answer are different bytes. */
function flightKey(ctx: SavingsContext, hash: string): string {
  const r: ChatRequest = ctx.request;
  return `${ctx.ws.id}\n${hash}\n${r.stream === true ? (r.stream_options?.include_usage === true ? 'su' : 's') : 'j'}`;
}

/** `shared`: cluster mode's flights across replicas (null on one node, or while none is set). */
export function dedupe(shared: { flights: SharedFlights | null } = { flights: null }): SavingsStage {
  const flights = new Map<string, Flight>();
  /** Follows the flight for this request, if there is one it may join: every route the leader may end on is one this request may use too. */
  const join = (ctx: SavingsContext, key: string): boolean => {
    const leader = flights.get(key);
    if (!leader?.joinable() || !leader.routes.every((r) => ctx.routes.includes(r))) return false;
    ctx.follow(leader);
    return true;
  };
  return {
    bits: M.dedupe,
    before(ctx, next) {
      if (ctx.hash && join(ctx, flightKey(ctx, ctx.hash))) return;
      const flights = shared.flights;
      if (ctx.hash && flights && ctx.request.stream !== true) {
        // Cluster mode: the same request in flight through another replica? Its answer, once it lands.
        const ws = ctx.ws.id;
        const hash = ctx.hash;
        ctx.after(flights.flying(ws, hash).then((yes) => (yes ? flights.follow(ws, hash) : null)), (hit) => {
          if (hit && allows(ctx.routes, hit.decision)) ctx.replay('exact', hit);
          else next();
        });
        return;
      }
      next();
    },
    dispatch(ctx, call) {
      if (!ctx.hash) return false;
      const key = flightKey(ctx, ctx.hash);
      if (join(ctx, key)) return true;
      flights.set(key, call);
      const marked = shared.flights;
      const ws = ctx.ws.id;
      const hash = ctx.hash;
      marked?.lead(ws, hash);
      call.onLand = () => {
        if (flights.get(key) === call) flights.delete(key);
        marked?.land(ws, hash);
      };
      return false;
    },
  };
}
