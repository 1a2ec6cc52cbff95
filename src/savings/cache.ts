// The exact and semantic caches, in LMDB (survive restarts, shared by every app on the
// gateway, always scoped by workspace). Reads are memory-mapped gets; writes are lmdb's
// batched async puts. Every stored record is validated when read back.
import { z } from 'zod';
import { UsageSchema, type Usage } from '../wire/usage.js';
import { ExpirySweep, type Store } from '../store/lmdb.js';
import { sameQuestion, signature, type Signature } from './guard.js';

export interface CachedAnswer {
  /** The route that produced it (provider/model). */
  decision: string;
  /** The chat.completion JSON as the upstream sent it (without the gateway object). */
  body: string;
  usage: Usage;
}

/** A stored answer's usage as a hit reports it: the upstream's counts, less its cache writes (a hit writes no provider cache). */
const StoredUsage = UsageSchema.omit({ cache_write_tokens: true });
const ExactSchema = z.object({ exp: z.number(), decision: z.string(), body: z.string(), usage: StoredUsage });
const SemanticSchema = ExactSchema.extend({ text: z.string(), vec: z.instanceof(Uint8Array) });

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
}

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
  private readonly sweeps: { cache: ExpirySweep; semantic: ExpirySweep };

  constructor(private readonly store: Store, private readonly maxEntries = { cache: 200_000, semantic: 100_000 }) {
    this.counts = { cache: entries(store.cache), semantic: entries(store.semantic) };
    this.sweeps = { cache: new ExpirySweep(store.cache), semantic: new ExpirySweep(store.semantic) };
  }

  getExact(ws: string, hash: string, now = Date.now()): CachedAnswer | null {
    const parsed = ExactSchema.safeParse(this.store.cache.get([ws, hash]));
    if (!parsed.success || parsed.data.exp <= now) return null;
    return parsed.data;
  }

  putExact(ws: string, hash: string, answer: CachedAnswer, ttlMs: number): void {
    if (this.counts.cache >= this.maxEntries.cache) return;
    this.counts.cache++;
    void this.store.cache.put([ws, hash], { exp: Date.now() + ttlMs, decision: answer.decision, body: answer.body, usage: answer.usage });
  }

  /**
   * The most similar cached prompt with the same context (workspace and everything but the
   * final user turn), if it reaches `threshold` and passes the guards. Probes the vector's
   * LSH bucket and its neighbours up to Hamming distance 2; nothing else is read.
   */
  findSimilar(ws: string, context: string, embedding: Float32Array, text: string, threshold: number, now = Date.now()): SemanticHit | null {
    const vec = normalize(embedding);
    const home = bucketOf(vec);
    const sig: Signature = signature(text);
    let best: SemanticHit | null = null;
    for (const mask of PROBES) {
      const bucket = home ^ mask;
      for (const { value } of this.store.semantic.getRange({ start: [ws, context, bucket + 1], end: [ws, context, bucket], reverse: true, limit: PER_BUCKET })) {
        const parsed = SemanticSchema.safeParse(value);
        if (!parsed.success || parsed.data.exp <= now) continue;
        const e = parsed.data;
        if (e.vec.byteLength !== DIM * 4) continue;
        const other = new Float32Array(e.vec.buffer.slice(e.vec.byteOffset, e.vec.byteOffset + e.vec.byteLength));
        let dot = 0;
        for (let i = 0; i < DIM; i++) dot += vec[i]! * other[i]!;
        if (dot < threshold || (best && dot <= best.similarity)) continue;
        if (!sameQuestion(sig, signature(e.text))) continue;
        best = { decision: e.decision, body: e.body, usage: e.usage, similarity: dot };
      }
    }
    return best;
  }

  putSimilar(ws: string, context: string, id: string, embedding: Float32Array, text: string, answer: CachedAnswer, ttlMs: number): void {
    if (this.counts.semantic >= this.maxEntries.semantic) return;
    this.counts.semantic++;
    const vec = normalize(embedding);
    void this.store.semantic.put([ws, context, bucketOf(vec), id], {
      exp: Date.now() + ttlMs, decision: answer.decision, body: answer.body, usage: answer.usage, text,
      vec: Buffer.from(vec.buffer, vec.byteOffset, vec.byteLength),
    });
  }


  /** Removes expired entries, at most `budget` records read per database per call (a timer calls it). */
  sweep(budget = 2000, now = Date.now()): number {
    let total = 0;
    for (const name of ['cache', 'semantic'] as const) {
      const removed = this.sweeps[name].run(budget, now);
      total += removed;
      this.counts[name] = Math.max(0, entries(this.store[name]) - removed);
    }
    return total;
  }
}
