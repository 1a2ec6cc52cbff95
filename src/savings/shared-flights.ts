// Cluster mode's in-flight dedupe across replicas: a replica that sends a cacheable request
// upstream marks it in flight in Redis; the same request arriving through another replica
// meanwhile waits for that answer to land in the shared exact cache and is answered from it,
// instead of paying for the same call again. (Identical requests on one replica still join the
// call itself, live: dedupe.ts.) A streamed request does not wait (its first byte would come
// only with the leader's last); a leader that fails or vanishes lets the waiters go upstream
// themselves. Redis unreachable: nothing is marked and nobody waits.
import type { Cluster } from '../store/cluster.js';
import type { CachedAnswer } from './cache.js';
import type { SharedExactCache } from './shared-cache.js';

/** A flight's mark outlives a replica that died mid-call by at most this long. */
const FLIGHT_MS = 120_000;
/** How often a waiter looks for the answer, and how long it waits at most. */
const POLL_MS = 25;
const MAX_WAIT_MS = 60_000;

export class SharedFlights {
  private readonly prefix: string;

  constructor(private readonly cluster: Cluster, private readonly cache: SharedExactCache) {
    this.prefix = `${cluster.prefix}f:`;
  }

  private key(ws: string, hash: string): string {
    return `${this.prefix}${ws}:${hash}`;
  }

  /** Is another replica calling upstream for this request now? (false when Redis cannot say) */
  flying(ws: string, hash: string): Promise<boolean> {
    return this.cluster.redis.exists(this.key(ws, hash)).then((n) => n === 1, () => false);
  }

  /** The answer of the flight once it lands, or null when the flight ends without one (or takes too long). */
  async follow(ws: string, hash: string): Promise<(CachedAnswer & { exp: number }) | null> {
    const end = Date.now() + MAX_WAIT_MS;
    for (;;) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      const hit = await this.cache.get(ws, hash);
      if (hit) return hit;
      if (Date.now() > end || !(await this.flying(ws, hash))) return this.cache.get(ws, hash);
    }
  }

  /** This replica calls upstream for the request: marked in flight (best effort: two replicas may both lead). */
  lead(ws: string, hash: string): void {
    this.cluster.redis.set(this.key(ws, hash), this.cluster.replica, 'PX', FLIGHT_MS, 'NX').catch(() => undefined);
  }

  /** Its call ended (answered or not): waiters find the answer in the cache, or go themselves. */
  land(ws: string, hash: string): void {
    this.cluster.redis.del(this.key(ws, hash)).catch(() => undefined);
  }
}
