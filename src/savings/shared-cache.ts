// Cluster mode's exact cache: what one replica stored, every other can answer from. The
// local LMDB cache is read first (no round trip for a repeat on the same replica); a miss
// there asks Redis, and a hit there is kept locally too. Entries expire in Redis by their
// own TTL. The cache fails open: Redis unreachable is a miss, never a refusal.
import { Packr } from 'msgpackr';
import type { Cluster } from '../store/cluster.js';
import { ExactSchema, type CachedAnswer } from './cache.js';

const packr = new Packr({ useRecords: false });

export class SharedExactCache {
  private readonly prefix: string;
  constructor(private readonly cluster: Cluster) {
    this.prefix = `${cluster.prefix}c:`;
  }

  private key(ws: string, hash: string): string {
    return `${this.prefix}${ws}:${hash}`;
  }

  /** The entry, or null (absent, expired, unreadable, or Redis not answering). */
  get(ws: string, hash: string, now = Date.now()): Promise<(CachedAnswer & { exp: number }) | null> {
    return this.cluster.redis.getBuffer(this.key(ws, hash)).then((raw) => {
      if (!raw) return null;
      let value: unknown;
      try { value = packr.unpack(raw); } catch { return null; }
      const parsed = ExactSchema.safeParse(value); // (a boundary: validated)
      return parsed.success && parsed.data.exp > now ? parsed.data : null;
    }, () => null);
  }

  put(ws: string, hash: string, answer: CachedAnswer, exp: number): void {
    const ttl = Math.ceil(exp - Date.now());
    if (ttl <= 0) return;
    this.cluster.redis.set(this.key(ws, hash), packr.pack({ exp, decision: answer.decision, body: answer.body, usage: answer.usage }), 'PX', ttl)
      .catch(() => undefined); // (a cache write that fails is a later miss, nothing more)
  }

  /** An entry evicted here (feedback said it was wrong) goes everywhere. */
  remove(ws: string, hash: string): Promise<unknown> {
    return this.cluster.redis.del(this.key(ws, hash)).catch(() => undefined);
  }
}
