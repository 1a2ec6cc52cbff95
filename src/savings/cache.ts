// The exact and semantic caches, in LMDB (survive restarts, shared by every app on the
// gateway, always scoped by workspace). Reads are memory-mapped gets; writes are lmdb's
// batched async puts. Every stored record is validated when read back.
//
// Each semantic entry has its own threshold (vCache's idea: learned per entry rather than
// one for all): the configured one until an answer near it is found wrong. Every request
// that stores or is served an answer leaves a ref (its request id → where), so feedback or
// an operator can evict by request id. Evicting a wrong semantic hit also leaves a scar —
// the query it was wrongly served for — and raises the threshold of every entry that would
// have answered that query to halfway between its similarity to it and 1; an entry stored
// later near a scar starts there too. So one report stops that neighbourhood answering that query
// (and anything as far), and re-asking the evicted prompt does not bring the mistake back.
import { z } from 'zod';
import type { SharedExactCache } from './shared-cache.js';
import { utf8Bound } from '../store/along.js';
import { UsageSchema, type Usage } from '../wire/usage.js';
import { ExpirySweep, tryGet as read, type Store } from '../store/lmdb.js';
import { compare, signature, type Signature } from './guard.js';

export interface CachedAnswer {
  /** The route that produced it (provider/model). */
  decision: string;
  /** The chat.completion JSON as the upstream sent it (without the gateway object). */
  body: string;
  usage: Usage;
}

/** A stored answer's usage as a hit reports it: the upstream's counts, less its cache writes (a hit writes no provider cache). */
const StoredUsage = UsageSchema.omit({ cache_write_tokens: true });
export const ExactSchema = z.object({ exp: z.number(), decision: z.string(), body: z.string(), usage: StoredUsage });
const VecBytes = z.instanceof(Uint8Array);
export const SemanticSchema = ExactSchema.extend({ text: z.string(), vec: VecBytes, thr: z.number().optional() });
const ScarSchema = z.object({ exp: z.number(), vec: VecBytes });
/** A request's use of the exact cache: the entry it stored or was served. */
const ExactRefSchema = z.object({ exp: z.number(), ws: z.string().max(256), hash: z.string().max(128) });
/** A request's use of the semantic cache: the entry it stored, or the one it was served (with the query, for the scar). */
const SemanticRefSchema = z.object({ exp: z.number(), ws: z.string().max(256), context: z.string().max(128), bucket: z.number().int(), id: z.string().max(128),
  hit: z.object({ vec: VecBytes, similarity: z.number() }).nullable() });

/** An entry's threshold once a query at similarity `dot` was wrong for it or near it: halfway from there to 1 (so the wrong query and anything as far are refused, nearer paraphrases still served). */
const above = (dot: number) => Math.max(dot + 1e-6, (dot + 1) / 2);

/**
 * Sign bits of this many fixed random projections pick a vector's bucket (64 buckets). A
 * lookup probes every bucket within Hamming distance 2 (22 of 64): two prompts at cosine
 * 0.9 (25.8°) differ in a given bit with probability 0.14, so they share a probed bucket
 * ~96% of the time, and ~98% at 0.95.
 */
const PLANES = 6;
const DIM = 512;

/** Deterministic hyperplanes (a fixed-seed PRNG), so buckets mean the same after a restart. */
function hyperplanes(): Float32Array[] {
  let seed = 0x9e3779b9;
  const next = () => {
    seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return seed / 0x100000000 - 0.5;
  };
  return Array.from({ length: PLANES }, () => Float32Array.from({ length: DIM }, next));
}
const PLANE_SET = hyperplanes();

function bucketOf(vec: Float32Array): number {
  let b = 0;
  for (let p = 0; p < PLANES; p++) {
    const plane = PLANE_SET[p]!;
    let dot = 0;
    for (let i = 0; i < DIM; i++) dot += plane[i]! * vec[i]!;
    if (dot >= 0) b |= 1 << p;
  }
  return b;
}

/** Bit masks of Hamming weight 0, 1 and 2 over PLANES bits. */
const PROBES: number[] = [0];
for (let i = 0; i < PLANES; i++) PROBES.push(1 << i);
for (let i = 0; i < PLANES; i++) for (let j = i + 1; j < PLANES; j++) PROBES.push((1 << i) | (1 << j));

function normalize(vec: Float32Array): Float32Array {
  let n = 0;
  for (let i = 0; i < vec.length; i++) n += vec[i]! * vec[i]!;
  const inv = n > 0 ? 1 / Math.sqrt(n) : 0;
  const out = new Float32Array(vec.length);
  for (let i = 0; i < vec.length; i++) out[i] = vec[i]! * inv;
  return out;
}

export interface SemanticHit extends CachedAnswer {
  similarity: number;
  /** Where the entry is: what a ref to it keeps. */
  bucket: number;
  id: string;
  exp: number;
  /** The cached prompt. */
  text: string;
}

/** What an eviction removed. */
export interface Evicted {
  exact: boolean;
  semantic: boolean;
  /** Entries whose threshold rose (a wrong semantic hit's neighbourhood). */
  tightened: number;
}

/** A stored vector, or null when it is not one: the wrong size, or a value that is not finite (NaN compares false with every threshold). */
function vecOf(bytes: Uint8Array): Float32Array | null {
  if (bytes.byteLength !== DIM * 4) return null;
  const vec = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  for (let i = 0; i < DIM; i++) if (!Number.isFinite(vec[i]!)) return null;
  return vec;
}

/** A stored answer is a JSON object with choices (a chat.completion), data (an embeddings list) or results (moderations); written only by us, anything else is damage, read as a miss. */
const isCompletion = (body: string) => body.startsWith('{') && body.endsWith('}') && (body.includes('"choices"') || body.includes('"data"') || body.includes('"results"'));

/** Semantic keys are [workspace, context, integer bucket, id]; anything else in the range is not an entry. */
const isEntryKey = (key: unknown): key is [string, string, number, string] =>
  Array.isArray(key) && key.length === 4 && typeof key[1] === 'string' && Number.isInteger(key[2]) && typeof key[3] === 'string';

/** At most this many candidates are checked by the guards per lookup, the most similar first (each check reads both prompts). */
const MAX_GUARDED = 8;

function dotOf(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < DIM; i++) dot += a[i]! * b[i]!;
  return dot;
}

const bytesOf = (vec: Float32Array) => Buffer.from(vec.buffer, vec.byteOffset, vec.byteLength);

/** Candidates read per probed bucket, newest ids last: bounds the work of one lookup. */
const PER_BUCKET = 64;

/** A database's entry count (LMDB keeps it; no scan). */
function entries(db: { getStats(): unknown }): number {
  const n = (db.getStats() as { entryCount?: unknown }).entryCount;
  return typeof n === 'number' ? n : 0;
}

export class ResponseCache {
  /** Entries per database, kept in step with puts and removals and resynced at each sweep. */
  private readonly counts: { cache: number; semantic: number };

  /** `maxEntries`: past this, answers are not stored until the sweeper frees room (the caches share LMDB with the ledger). */
  private readonly sweeps: { cache: ExpirySweep; semantic: ExpirySweep; cacheRefs: ExpirySweep; scars: ExpirySweep };

  constructor(private readonly store: Store, private readonly maxEntries = { cache: 200_000, semantic: 100_000 }) {
    this.counts = { cache: entries(store.cache), semantic: entries(store.semantic) };
    this.sweeps = { cache: new ExpirySweep(store.cache), semantic: new ExpirySweep(store.semantic), cacheRefs: new ExpirySweep(store.cacheRefs), scars: new ExpirySweep(store.scars) };
  }

  /** Cluster mode: the exact cache every replica shares (Redis), behind this one's. */
  shared: SharedExactCache | null = null;
  /** Cluster mode: where semantic entries stored or evicted here go, for every replica (shared-semantic.ts). */
  semanticShared: { put(ws: string, context: string, bucket: number, id: string, value: { exp: number }): void; remove(ws: string, context: string, bucket: number, id: string): void;
    purge(ws: string): Promise<void>; dropPending(ws: string): void } | null = null;

  /**
   * Cluster mode: a `cache:` notice another replica (or this one) sent: `evict:<ws>:<hash>`,
   * an exact entry evicted (this replica's copy goes); `unsemantic:<ws>:<context>:<bucket>:<id>`,
   * a semantic one (likewise; its tombstone follows); or `purge:<ws>`, a workspace's entries
   * purged (this replica's copies go; the shared stores were purged by the sender).
   */
  heard(payload: string): void {
    const [what, ws, hash, bucket, id] = payload.split(':');
    if (what === 'evict' && ws && hash) {
      if (read(this.store.cache, [ws, hash]) !== undefined) { this.counts.cache = Math.max(0, this.counts.cache - 1); void this.store.cache.remove([ws, hash]); }
    } else if (what === 'unsemantic' && ws && hash && bucket && id && Number.isInteger(Number(bucket))) {
      this.applySemantic(ws, hash, Number(bucket), id, null);
    } else if (what === 'purge' && ws) {
      this.purgeHere(ws).catch((err: unknown) => console.error(`cache: purging workspace ${ws.slice(0, 80)} here failed: ${String(err)}`));
    }
  }

  /**
   * Cluster mode: drops every exact entry held here (they are copies: Redis has the cache), in
   * slices. At start and whenever this replica starts listening again: it may have missed
   * notices of evictions and purges meanwhile, and a copy kept would answer what was evicted.
   */
  async forgetCopies(slice = 2000): Promise<void> {
    for (;;) {
      const keys = [...this.store.cache.getKeys({ limit: slice })];
      if (!keys.length) break;
      await Promise.all(keys.map((k) => this.store.cache.remove(k)));
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.counts.cache = entries(this.store.cache);
  }

  /** Cluster mode: an entry another replica stored (or evicted: null), kept here as if stored here. */
  applySemantic(ws: string, context: string, bucket: number, id: string, value: z.infer<typeof SemanticSchema> | null): void {
    const key = [ws, context, bucket, id];
    const here = read(this.store.semantic, key) as { exp?: unknown; thr?: unknown } | undefined;
    if (value === null) {
      if (here !== undefined) { this.counts.semantic = Math.max(0, this.counts.semantic - 1); void this.store.semantic.remove(key); }
      return;
    }
    if (here !== undefined && here.exp === value.exp && here.thr === value.thr) return;
    if (here === undefined) {
      if (this.counts.semantic >= this.maxEntries.semantic) return;
      this.counts.semantic++;
    }
    void this.store.semantic.put(key, value);
  }

  /**
   * Cluster mode, after a local miss: the shared entry, kept here too when there is one
   * (a later repeat on this replica needs no round trip).
   */
  getShared(ws: string, hash: string): Promise<(CachedAnswer & { exp: number }) | null> {
    if (!this.shared) return Promise.resolve(null);
    return this.shared.get(ws, hash).then((hit) => {
      if (hit && isCompletion(hit.body) && this.counts.cache < this.maxEntries.cache) {
        this.counts.cache++;
        void this.store.cache.put([ws, hash], { exp: hit.exp, decision: hit.decision, body: hit.body, usage: hit.usage });
      }
      return hit && isCompletion(hit.body) ? hit : null;
    });
  }

  getExact(ws: string, hash: string, now = Date.now()): (CachedAnswer & { exp: number }) | null {
    const parsed = ExactSchema.safeParse(read(this.store.cache, [ws, hash]));
    if (!parsed.success || parsed.data.exp <= now || !isCompletion(parsed.data.body)) return null;
    return parsed.data;
  }

  /** `requestId`: the request whose answer it is (its ref). */
  putExact(ws: string, hash: string, answer: CachedAnswer, ttlMs: number, requestId: string): void {
    if (this.counts.cache >= this.maxEntries.cache) return;
    this.counts.cache++;
    const exp = Date.now() + ttlMs;
    this.store.along.put(this.store.cache, [ws, hash], { exp, decision: answer.decision, body: answer.body, usage: answer.usage }, utf8Bound(answer.body));
    this.shared?.put(ws, hash, answer, exp);
    this.refExact(requestId, ws, hash, exp);
  }

  /** The request was answered from the exact entry `hash` (until `exp`, the entry's own expiry). */
  refExact(requestId: string, ws: string, hash: string, exp: number): void {
    this.ref(requestId, 'exact', { exp, ws, hash });
  }

  /** A request's ref, kept here (and in cluster mode in Redis too, for feedback through another replica). */
  private ref<T extends { exp: number }>(requestId: string, kind: 'exact' | 'semantic', value: T): void {
    this.store.along.put(this.store.cacheRefs, [requestId, kind], value);
    this.shared?.putRef(requestId, kind, value);
  }

  /** The request was answered from this semantic entry, for the query `embedding`. */
  refSemanticHit(requestId: string, ws: string, context: string, embedding: Float32Array, hit: SemanticHit): void {
    this.ref(requestId, 'semantic', { exp: hit.exp, ws, context, bucket: hit.bucket, id: hit.id,
      hit: { vec: bytesOf(normalize(embedding)), similarity: hit.similarity } });
  }

  /**
   * The most similar cached prompt with the same context (workspace and everything but the
   * final user turn), if it reaches `threshold` and passes the guards. Probes the vector's
   * LSH bucket and its neighbours up to Hamming distance 2; nothing else is read.
   */
  findSimilar(ws: string, context: string, embedding: Float32Array, text: string | Signature, threshold: number, now = Date.now()): SemanticHit | null {
    return this.nearest(ws, context, embedding, text, threshold, (verdict) => verdict === 'same', now);
  }

  /**
   * For verification (verify.ts), after findSimilar found nothing: the most similar cached
   * prompt from `minSimilarity` up (and its own threshold) that the guards find only
   * reworded or the same — never one they find different.
   */
  findCandidate(ws: string, context: string, embedding: Float32Array, text: string | Signature, minSimilarity: number, now = Date.now()): SemanticHit | null {
    return this.nearest(ws, context, embedding, text, minSimilarity, (verdict) => verdict !== 'different', now);
  }

  /** `text`: the query's last turn, or its signature when the caller has read it already. */
  private nearest(ws: string, context: string, embedding: Float32Array, text: string | Signature, threshold: number,
    accept: (verdict: ReturnType<typeof compare>) => boolean, now: number): SemanticHit | null {
    const vec = normalize(embedding);
    // Every close enough entry first (dot products only), then the guards on the most similar
    // few: a lookup's main-thread work stays bounded however many near-copies a tenant stores.
    const close: SemanticHit[] = [];
    this.near(this.store.semantic, ws, context, bucketOf(vec), (value, key) => {
      const parsed = SemanticSchema.safeParse(value);
      if (!parsed.success || parsed.data.exp <= now || !isEntryKey(key) || !isCompletion(parsed.data.body)) return;
      const e = parsed.data;
      const other = vecOf(e.vec);
      if (!other) return;
      const dot = dotOf(vec, other);
      if (dot < threshold || dot < (e.thr ?? 0)) return;
      close.push({ decision: e.decision, body: e.body, usage: e.usage, similarity: dot, bucket: key[2], id: key[3], exp: e.exp, text: e.text });
    });
    if (!close.length) return null;
    close.sort((x, y) => y.similarity - x.similarity);
    const sig: Signature = typeof text === 'string' ? signature(text) : text;
    for (const c of close.slice(0, MAX_GUARDED)) if (accept(compare(sig, signature(c.text)))) return c;
    return null;
  }

  /**
   * Stores a miss's answer under its prompt's embedding (`id`: the request's id, also its
   * ref). It starts at `threshold` (the configured one), or just above any scar near it.
   */
  putSimilar(ws: string, context: string, id: string, embedding: Float32Array, text: string, answer: CachedAnswer, ttlMs: number, threshold: number): void {
    if (this.counts.semantic >= this.maxEntries.semantic) return;
    this.counts.semantic++;
    const vec = normalize(embedding);
    const bucket = bucketOf(vec);
    let thr = threshold;
    this.near(this.store.scars, ws, context, bucket, (value) => {
      const scar = ScarSchema.safeParse(value);
      const other = scar.success ? vecOf(scar.data.vec) : null;
      const dot = other ? dotOf(vec, other) : -1;
      if (dot >= thr) thr = above(dot);
    });
    const exp = Date.now() + ttlMs;
    const entry = { exp, decision: answer.decision, body: answer.body, usage: answer.usage, text, vec: bytesOf(vec), ...(thr > threshold ? { thr } : {}) };
    this.store.along.put(this.store.semantic, [ws, context, bucket, id], entry, utf8Bound(answer.body) + utf8Bound(text) + vec.length * 4);
    this.semanticShared?.put(ws, context, bucket, id, entry);
    this.ref(id, 'semantic', { exp, ws, context, bucket, id, hit: null });
  }

  /** Calls `each` for the records of `db` in the LSH buckets near `bucket` (the probes a lookup makes). */
  private near(db: Store['semantic'], ws: string, context: string, bucket: number, each: (value: unknown, key: Array<string | number>) => void): void {
    for (const mask of PROBES) {
      const b = bucket ^ mask;
      // Keys first, then each value on its own: a record that cannot be decoded is skipped, not thrown through the lookup.
      for (const key of db.getKeys({ start: [ws, context, b + 1], end: [ws, context, b], reverse: true, limit: PER_BUCKET })) {
        const value = read(db, key);
        if (value !== undefined) each(value, key as Array<string | number>);
      }
    }
  }

  /**
   * Evicts what a request stored or was served (its refs): the exact entry, and the semantic
   * entry — when the request was a semantic hit, that entry was wrong for this query, so a
   * scar is left and the neighbourhood tightened (see the top of this file). `threshold`: the
   * configured one. null when the request left no ref (not cached, or long expired).
   */
  async evict(requestId: string, threshold: number, scarTtlMs: number): Promise<Evicted | null> {
    let exact = ExactRefSchema.safeParse(read(this.store.cacheRefs, [requestId, 'exact']));
    let semantic = SemanticRefSchema.safeParse(read(this.store.cacheRefs, [requestId, 'semantic']));
    if (!exact.success && !semantic.success && this.shared) {
      // Cluster mode: served through another replica; its refs are in Redis too.
      const there = await this.shared.refs(requestId);
      exact = ExactRefSchema.safeParse(there.exact);
      semantic = SemanticRefSchema.safeParse(there.semantic);
      if (exact.success || semantic.success) void this.shared.forgetRefs(requestId);
    }
    if (!exact.success && !semantic.success) return null;
    const out: Evicted = { exact: false, semantic: false, tightened: 0 };
    const writes: Promise<unknown>[] = [];
    if (exact.success) {
      const { ws, hash } = exact.data;
      if (read(this.store.cache, [ws, hash]) !== undefined) { out.exact = true; writes.push(this.store.cache.remove([ws, hash])); }
      if (this.shared) writes.push(this.shared.remove(ws, hash).then((held) => { if (held) out.exact = true; }));
      writes.push(this.store.cacheRefs.remove([requestId, 'exact']));
    }
    if (semantic.success) {
      const { ws, context, bucket, id, hit } = semantic.data;
      if (read(this.store.semantic, [ws, context, bucket, id]) !== undefined) { out.semantic = true; writes.push(this.store.semantic.remove([ws, context, bucket, id])); }
      this.semanticShared?.remove(ws, context, bucket, id);
      const query = hit ? vecOf(hit.vec) : null;
      if (query) out.tightened = this.scar(ws, context, requestId, query, threshold, scarTtlMs, writes, [bucket, id]);
      writes.push(this.store.cacheRefs.remove([requestId, 'semantic']));
    }
    await Promise.all(writes);
    // Refs left behind by a purge point at nothing: as if there were none.
    return out.exact || out.semantic ? out : null;
  }

  /**
   * `query` (of request `requestId`) must not be answered from this neighbourhood: a scar is
   * left, and every entry that would answer it from `floor` up gets its threshold raised
   * above it. Returns how many; `skip`: an entry being removed. Writes go into `writes`.
   */
  scar(ws: string, context: string, requestId: string, query: Float32Array, floor: number, ttlMs: number, writes: Promise<unknown>[] = [],
    skip: [number, string] | null = null): number {
    const vec = normalize(query);
    const qBucket = bucketOf(vec);
    let tightened = 0;
    writes.push(this.store.scars.put([ws, context, qBucket, requestId], { exp: Date.now() + ttlMs, vec: bytesOf(vec) }));
    this.near(this.store.semantic, ws, context, qBucket, (value, key) => {
      const e = SemanticSchema.safeParse(value);
      const other = e.success ? vecOf(e.data.vec) : null;
      if (!e.success || !other || (skip && key[2] === skip[0] && key[3] === skip[1])) return;
      const dot = dotOf(vec, other);
      if (dot < Math.max(floor, e.data.thr ?? 0)) return;
      const raised = { ...e.data, thr: above(dot) };
      writes.push(this.store.semantic.put(key, raised));
      this.semanticShared?.put(ws, context, key[2] as number, key[3] as string, raised);
      tightened++;
    });
    return tightened;
  }

  /**
   * Removes every exact and semantic entry (and scar) of a workspace. Cluster mode: first from
   * the shared stores (Redis, Postgres's semantic rows), then here, and every replica is told
   * to drop its copies; `exact` then counts what Redis held when that is more.
   */
  async purgeWorkspace(ws: string, slice = 2000): Promise<{ exact: number; semantic: number }> {
    const shared = this.shared ? await this.shared.purge(ws) : 0;
    await this.semanticShared?.purge(ws);
    const out = await this.purgeHere(ws, slice);
    return { exact: Math.max(out.exact, shared), semantic: out.semantic };
  }

  /** This replica's entries (and scars) of a workspace, in slices of `slice` so the event loop keeps turning. */
  private async purgeHere(ws: string, slice = 2000): Promise<{ exact: number; semantic: number }> {
    const out = { exact: 0, semantic: 0 };
    // (a purge another replica sent: what this one stored of the workspace and has not yet sent to Postgres goes too)
    this.semanticShared?.dropPending(ws);
    for (const [name, db] of [['exact', this.store.cache], ['semantic', this.store.semantic], ['scars', this.store.scars]] as const) {
      for (;;) {
        const keys: Array<Array<string | number>> = [];
        // Only this workspace's array keys; a stray scalar key (one that encodes like [ws]) is stepped over, not a stop.
        for (const k of (db as Store['semantic']).getKeys({ start: [ws], limit: slice + 1 })) {
          if (!Array.isArray(k)) continue;
          if (k[0] !== ws) break;
          keys.push(k);
        }
        if (!keys.length) break;
        await Promise.all(keys.map((k) => (db as Store['semantic']).remove(k)));
        if (name !== 'scars') out[name] += keys.length;
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    this.counts.cache = entries(this.store.cache);
    this.counts.semantic = entries(this.store.semantic);
    return out;
  }


  /**
   * True when the last sweep removed at least a quarter of a budget from some database: what
   * expires comes faster than one sweep every few seconds takes away, and the next should come
   * sooner (a ref is written per hit and per store: at hundreds a second they outgrew the sweep).
   */
  behind = false;

  /** Removes expired entries (and refs and scars), at most `budget` records read per database per call (a timer calls it); returns the entries removed. */
  sweep(budget = 2000, now = Date.now()): number {
    let total = 0;
    let most = 0;
    for (const name of ['cache', 'semantic'] as const) {
      const removed = this.sweeps[name].run(budget, now);
      total += removed;
      most = Math.max(most, removed);
      this.counts[name] = Math.max(0, entries(this.store[name]) - removed);
    }
    // Refs and scars expire with what they point at; not counted as entries.
    most = Math.max(most, this.sweeps.cacheRefs.run(budget, now), this.sweeps.scars.run(budget, now));
    this.behind = most * 4 >= budget;
    return total;
  }
}
