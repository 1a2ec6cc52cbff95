// Cluster mode's exact cache: what one replica stored, every other can answer from. The
// local LMDB cache is read first (no round trip for a repeat on the same replica); a miss
// there asks Redis, and a hit there is kept locally too. Entries expire in Redis by their
// own TTL. The cache fails open: Redis unreachable is a miss, never a refusal. An entry
// evicted, or a workspace's entries purged, through any replica leave Redis and every
// replica's own copies (a notice on the replication channel; a replica that may have missed
// one, having not been listening, drops every copy it holds: see ResponseCache.forgetCopies).
import { Packr } from 'msgpackr';
import { Errors, GatewayError } from '../errors.js';
import { notify, type Cluster } from '../store/cluster.js';
import { ExactSchema, type CachedAnswer } from './cache.js';

const packr = new Packr({ useRecords: false });

function unpacked(raw: Buffer | null | undefined): unknown {
  if (!raw) return undefined;
  try { return packr.unpack(raw); } catch { return undefined; }
}

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

  /** An entry evicted here (feedback said it was wrong) goes everywhere: out of Redis, and every replica drops its copy. Resolves to whether Redis held it. */
  remove(ws: string, hash: string): Promise<boolean> {
    return Promise.all([this.cluster.redis.del(this.key(ws, hash)).catch(() => 0), this.notice(`evict:${ws}:${hash}`)]).then(([n]) => n > 0);
  }

  /**
   * A request's ref (what it stored or was answered from, `kind` exact or semantic), beside
   * the one kept where it was served: feedback or a delete through any replica finds it.
   */
  putRef<T extends { exp: number }>(requestId: string, kind: 'exact' | 'semantic', ref: T): void {
    const ttl = Math.ceil(ref.exp - Date.now());
    if (ttl <= 0) return;
    this.cluster.redis.set(`${this.prefix}r:${requestId}:${kind}`, packr.pack(ref), 'PX', ttl).catch(() => undefined);
  }

  /** A request's refs, as putRef wrote them (unvalidated: the caller's schemas read them); absent or unreadable: undefined. */
  refs(requestId: string): Promise<{ exact: unknown; semantic: unknown }> {
    return this.cluster.redis.mgetBuffer(`${this.prefix}r:${requestId}:exact`, `${this.prefix}r:${requestId}:semantic`).then(([e, s]) => ({ exact: unpacked(e), semantic: unpacked(s) }), () => ({ exact: undefined, semantic: undefined }));
  }

  /** A request's refs in Redis, once it was evicted. */
  forgetRefs(requestId: string): Promise<unknown> {
    return this.cluster.redis.del(`${this.prefix}r:${requestId}:exact`, `${this.prefix}r:${requestId}:semantic`).catch(() => undefined);
  }

  /**
   * A workspace's entries, out of Redis (scanned in slices) and out of every replica's copies.
   * Returns how many Redis held; a 503 when Redis does not answer (nothing is half-promised:
   * the caller may purge again).
   */
  async purge(ws: string): Promise<number> {
    let removed = 0;
    try {
      let cursor = '0';
      do {
        const [next, keys] = await this.cluster.redis.scan(cursor, 'MATCH', `${this.prefix}${ws}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) removed += await this.cluster.redis.unlink(...keys);
      } while (cursor !== '0');
    } catch (err) {
      throw new GatewayError(Errors.storeUnavailable, `The shared cache could not be purged (${err instanceof Error ? err.message : String(err)}); retry shortly.`);
    }
    await this.notice(`purge:${ws}`);
    return removed;
  }

  /** Tells every replica (`cache:` notices, ResponseCache.heard); a notice that cannot be sent is covered by the TTL, and by forgetCopies after a replica's listener was down. */
  private notice(payload: string): Promise<unknown> {
    return notify(this.cluster, `cache:${payload}`);
  }
}
