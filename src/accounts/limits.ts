// Per-key limits, enforced on the main thread with no I/O: token buckets for rpm and tpm,
// rolling windows of 60 sub-buckets each (e.g. 50 per 6 h counts in 6-minute slices),
// daily and monthly budgets (UTC), allowed models/providers and max concurrency. The
// counters live in memory and are persisted with the ledger's batches, so they survive a
// restart. Keys without limits (and master/operator keys) skip all of this.
import { z } from 'zod';
import { Errors, GatewayError, LimitError } from '../errors.js';
import type { Store } from '../store/lmdb.js';
import type { KeyLimits, KeyRecord } from './keys.js';

type Header = readonly [string, string];

const SLICES = 60;
const MINUTE = 60_000;

/** OpenAI's duration style for x-ratelimit-reset-*: `120ms`, `1.5s`, `6m0s`, `1h2m3s`. */
export function fmtDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.ceil(ms))}ms`;
  const total = Math.ceil(ms / 100) / 10;
  if (total < 60) return `${total}s`;
  const s = Math.ceil(total);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h ? `${h}h` : ''}${m}m${s % 60}s`;
}

const StateSchema = z.object({
  req: z.tuple([z.number(), z.number()]).nullable(),
  tok: z.tuple([z.number(), z.number()]).nullable(),
  windows: z.array(z.object({ seconds: z.number(), head: z.number(), counts: z.array(z.number()) })),
  day: z.tuple([z.string(), z.number()]),
  month: z.tuple([z.string(), z.number()]),
});
type StoredState = z.infer<typeof StateSchema>;

/** A bucket refilling `capacity` per minute: level and the time it was last brought up to date. */
class Bucket {
  constructor(public level: number, public at: number) {}
  refill(capacity: number, now: number): void {
    this.level = Math.min(capacity, this.level + ((now - this.at) * capacity) / MINUTE);
    this.at = now;
  }
  /** Milliseconds until the level reaches `target`. */
  msUntil(capacity: number, target: number): number {
    return target <= this.level ? 0 : ((target - this.level) * MINUTE) / capacity;
  }
}

/** At most N events in any `seconds`, counted in 60 slices (with a running sum, so a check is O(1)). */
class Rolling {
  readonly width: number;
  private sum: number;
  constructor(readonly seconds: number, public head: number, readonly counts: number[]) {
    this.width = (seconds * 1000) / SLICES;
    this.sum = counts.reduce((a, b) => a + b, 0);
  }
  static empty(seconds: number): Rolling {
    return new Rolling(seconds, 0, new Array<number>(SLICES).fill(0));
  }
  private advance(now: number): void {
    const slice = Math.floor(now / this.width);
    if (slice <= this.head) return;
    if (slice - this.head >= SLICES) { this.counts.fill(0); this.sum = 0; }
    else for (let i = this.head + 1; i <= slice; i++) { this.sum -= this.counts[i % SLICES]!; this.counts[i % SLICES] = 0; }
    this.head = slice;
  }
  total(now: number): number {
    this.advance(now);
    return this.sum;
  }
  add(now: number, n: number): void {
    this.advance(now);
    this.counts[this.head % SLICES]! += n;
    this.sum += n;
  }
  /** Milliseconds until the total drops below `limit` as the oldest slices expire. */
  msUntilBelow(now: number, limit: number): number {
    let total = this.total(now);
    for (let k = 0; k < SLICES && total >= limit; k++) {
      const slice = this.head - SLICES + 1 + k;
      total -= this.counts[((slice % SLICES) + SLICES) % SLICES]!;
      if (total < limit) return (slice + SLICES) * this.width - now;
    }
    return this.seconds * 1000;
  }
}

/** UTC day and month keys (YYYY-MM-DD, YYYY-MM), recomputed only when the day changes. */
let dayCache = { from: 0, to: -1, day: '', month: '' };
function calendar(now: number): { day: string; month: string } {
  if (now < dayCache.from || now >= dayCache.to) {
    const d = new Date(now);
    const from = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
    const iso = d.toISOString();
    dayCache = { from, to: from + 86_400_000, day: iso.slice(0, 10), month: iso.slice(0, 7) };
  }
  return dayCache;
}
const utcDay = (now: number) => calendar(now).day;
const utcMonth = (now: number) => calendar(now).month;
function msToNextUtcDay(now: number): number {
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1) - now;
}
function msToNextUtcMonth(now: number): number {
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) - now;
}

class KeyState {
  req: Bucket | null = null;
  tok: Bucket | null = null;
  windows: Rolling[] = [];
  day: [string, number] = ['', 0];
  month: [string, number] = ['', 0];
  inflight = 0;

  static from(stored: StoredState): KeyState {
    const s = new KeyState();
    s.req = stored.req ? new Bucket(stored.req[0], stored.req[1]) : null;
    s.tok = stored.tok ? new Bucket(stored.tok[0], stored.tok[1]) : null;
    s.windows = stored.windows.filter((w) => w.counts.length === SLICES).map((w) => new Rolling(w.seconds, w.head, w.counts));
    s.day = stored.day;
    s.month = stored.month;
    return s;
  }

  toStored(): StoredState {
    return {
      req: this.req ? [this.req.level, this.req.at] : null,
      tok: this.tok ? [this.tok.level, this.tok.at] : null,
      windows: this.windows.map((w) => ({ seconds: w.seconds, head: w.head, counts: [...w.counts] })),
      day: [...this.day], month: [...this.month],
    };
  }

  window(seconds: number): Rolling {
    let w = this.windows.find((x) => x.seconds === seconds);
    if (!w) { w = Rolling.empty(seconds); this.windows.push(w); }
    return w;
  }

  spentDay(now: number): number {
    if (this.day[0] !== utcDay(now)) this.day = [utcDay(now), 0];
    return this.day[1];
  }

  spentMonth(now: number): number {
    if (this.month[0] !== utcMonth(now)) this.month = [utcMonth(now), 0];
    return this.month[1];
  }
}

/** What an admitted request carries to its response, and back to `finish`. */
export interface Admission {
  readonly state: KeyState;
  readonly limits: KeyLimits;
  readonly headers: readonly Header[];
}

function modelAllowed(limits: KeyLimits, slug: string, provider: string): boolean {
  if (limits.providers && !limits.providers.includes(provider)) return false;
  if (!limits.models) return true;
  return limits.models.some((m) => m === slug || (m.endsWith('/*') && slug.startsWith(m.slice(0, -1))));
}

export class Limits {
  private readonly states = new Map<string, KeyState>();
  private readonly dirty = new Set<string>();

  constructor(private readonly store: Store) {
    for (const { key, value } of store.limits.getRange()) {
      const parsed = StateSchema.safeParse(value);
      if (parsed.success) this.states.set(key, KeyState.from(parsed.data));
    }
  }

  private stateOf(id: string): KeyState {
    let s = this.states.get(id);
    if (!s) { s = new KeyState(); this.states.set(id, s); }
    return s;
  }

  /**
   * Checks every limit of the key for one more request to `slug` on `provider`; counts it and
   * returns the rate-limit headers, or throws (403 for a model the key may not use, 429
   * with Retry-After and the limit's kind otherwise). Null when the key has no limits.
   */
  admit(key: KeyRecord, slug: string, provider: string, now = Date.now()): Admission | null {
    const limits = key.limits;
    if (!limits || key.kind === 'master' || key.kind === 'operator') return null;
    if (!modelAllowed(limits, slug, provider)) {
      throw new GatewayError(Errors.modelNotAllowed, `This key may not use '${slug}' via ${provider}.`, 'model');
    }
    const s = this.stateOf(key.id);
    const headers: Header[] = [];
    const refuse = (kind: string, waitMs: number, what: string): never => {
      const seconds = Math.max(1, Math.ceil(waitMs / 1000));
      throw new LimitError(kind, seconds, `Rate limit reached for this key: ${what}. Retry in ${seconds}s.`,
        [...headers, ['retry-after', String(seconds)], ['x-gateway-limit-kind', kind]]);
    };

    if (limits.rpm) {
      s.req ??= new Bucket(limits.rpm, now);
      s.req.refill(limits.rpm, now);
      headers.push(['x-ratelimit-limit-requests', String(limits.rpm)]);
      if (s.req.level < 1) {
        headers.push(['x-ratelimit-remaining-requests', '0'], ['x-ratelimit-reset-requests', fmtDuration(s.req.msUntil(limits.rpm, limits.rpm))]);
        refuse('rpm', s.req.msUntil(limits.rpm, 1), `${limits.rpm} requests per minute`);
      }
    }
    if (limits.tpm) {
      s.tok ??= new Bucket(limits.tpm, now);
      s.tok.refill(limits.tpm, now);
      headers.push(['x-ratelimit-limit-tokens', String(limits.tpm)],
        ['x-ratelimit-remaining-tokens', String(Math.max(0, Math.floor(s.tok.level)))],
        ['x-ratelimit-reset-tokens', fmtDuration(s.tok.msUntil(limits.tpm, limits.tpm))]);
      if (s.tok.level < 1) refuse('tpm', s.tok.msUntil(limits.tpm, 1), `${limits.tpm} tokens per minute`);
    }
    for (const w of limits.windows ?? []) {
      const rolling = s.window(w.seconds);
      if (rolling.total(now) >= w.requests) refuse(`window_${w.seconds}s`, rolling.msUntilBelow(now, w.requests), `${w.requests} requests per ${fmtDuration(w.seconds * 1000)}`);
    }
    if (limits.budget_usd_day && s.spentDay(now) >= limits.budget_usd_day * 1e9) refuse('budget_day', msToNextUtcDay(now), `daily budget of $${limits.budget_usd_day} spent`);
    if (limits.budget_usd_month && s.spentMonth(now) >= limits.budget_usd_month * 1e9) refuse('budget_month', msToNextUtcMonth(now), `monthly budget of $${limits.budget_usd_month} spent`);
    if (limits.max_concurrency && s.inflight >= limits.max_concurrency) refuse('concurrency', 1000, `${limits.max_concurrency} requests at a time`);

    // Admitted: count it.
    if (limits.rpm && s.req) {
      s.req.level -= 1;
      headers.push(['x-ratelimit-remaining-requests', String(Math.max(0, Math.floor(s.req.level)))],
        ['x-ratelimit-reset-requests', fmtDuration(s.req.msUntil(limits.rpm, limits.rpm))]);
    }
    for (const w of limits.windows ?? []) s.window(w.seconds).add(now, 1);
    if (!limits.rpm && limits.windows?.length) {
      // No rpm: the window closest to refusing (least remaining) speaks for the headers.
      let best: { w: { requests: number; seconds: number }; used: number } | null = null;
      for (const w of limits.windows) {
        const used = s.window(w.seconds).total(now);
        if (!best || w.requests - used < best.w.requests - best.used) best = { w, used };
      }
      const { w, used } = best!;
      const rolling = s.window(w.seconds);
      headers.push(['x-ratelimit-limit-requests', String(w.requests)], ['x-ratelimit-remaining-requests', String(Math.max(0, w.requests - used))],
        ['x-ratelimit-reset-requests', fmtDuration(rolling.msUntilBelow(now, 1))]);
    }
    s.inflight++;
    this.dirty.add(key.id);
    return { state: s, limits, headers };
  }

  /** The request is over: release its concurrency slot and count its tokens and spend. */
  finish(key: KeyRecord, admission: Admission, tokens: number, chargeNano: number, now = Date.now()): void {
    const { state: s, limits } = admission;
    s.inflight = Math.max(0, s.inflight - 1);
    if (limits.tpm && s.tok && tokens > 0) { s.tok.refill(limits.tpm, now); s.tok.level -= tokens; }
    if (chargeNano > 0) {
      s.spentDay(now);
      s.spentMonth(now);
      s.day[1] += chargeNano;
      s.month[1] += chargeNano;
    }
    this.dirty.add(key.id);
  }

  private lastPersist = 0;

  /**
   * Called inside the ledger's write batches; changed counters are stored at most every
   * `everyMs` (a crash forgets at most that much of the counting, never a ledger row).
   */
  persistDirty(everyMs = 500, now = Date.now()): void {
    if (this.dirty.size === 0 || now - this.lastPersist < everyMs) return;
    this.lastPersist = now;
    for (const id of this.dirty) {
      const s = this.states.get(id);
      if (s) void this.store.limits.put(id, s.toStored());
    }
    this.dirty.clear();
  }
}
