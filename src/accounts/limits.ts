// Per-key limits, enforced on the main thread with no I/O: token buckets for rpm and tpm,
// rolling windows of 60 sub-buckets each (e.g. 50 per 6 h counts in 6-minute slices),
// daily and monthly budgets (UTC), and max concurrency. The counters live in memory and
// are persisted with the ledger's batches, so they survive a restart. Keys without limits
// (and master/operator keys) skip all of this.
//
// Tokens and dollars are reserved at admission (the request's prompt estimate plus its
// output cap, and the most it can cost) and settled at finish with what it really used, so
// concurrent requests cannot overshoot a tpm or a budget beyond the one request admitted in
// good faith while the limit still had room. A minted key is checked against its own limits
// and every ancestor's, whose counters its requests also move: a family of keys shares its
// parent's quota, and minting a fresh key never resets one.
import { z } from 'zod';
import { Errors, GatewayError, LimitError, type LimitKind } from '../errors.js';
import { readableRange, type Store } from '../store/lmdb.js';
import { isOperatorKey, type KeyLimits, type KeyRecord } from './keys.js';
import type { Workspace } from './workspaces.js';

export type Header = readonly [string, string];

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

const finite = z.number().finite();
const StateSchema = z.object({
  req: z.tuple([finite, finite]).nullable(),
  tok: z.tuple([finite, finite]).nullable(),
  windows: z.array(z.object({ seconds: z.number().int().min(60), head: z.number().int().min(0), counts: z.array(z.number().finite().min(0)).length(60) })),
  day: z.tuple([z.string(), finite]),
  month: z.tuple([z.string(), finite]),
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

/**
 * At most N events in a rolling `seconds`, counted in 60 slices of seconds/60 (with a running
 * sum, so a check is O(1)): an event stops counting when its slice leaves, between 59/60 of
 * `seconds` and all of it after the event, so N is held in any span of 59/60 of `seconds`.
 */
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
export const utcDay = (now: number) => calendar(now).day;
export const utcMonth = (now: number) => calendar(now).month;
export function msToNextUtcDay(now: number): number {
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1) - now;
}
export function msToNextUtcMonth(now: number): number {
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
  /** Most that requests in flight may still cost (nano-USD), held against both budgets. */
  reservedNano = 0;

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

/** What a request may use at most, reserved at admission: tokens (prompt estimate + output cap) and dollars (its most expensive outcome). */
export interface Reservation {
  tokens: number;
  nano: number;
}

/** One key of the chain whose limits an admission counted against. */
interface Entry {
  readonly id: string;
  readonly state: KeyState;
  readonly limits: KeyLimits;
}

/** What an admitted request carries to its response, and back to `finish`. */
export interface Admission {
  readonly entries: readonly Entry[];
  readonly reserved: Reservation;
  readonly headers: readonly Header[];
}

/**
 * Holds granted outside this thread's memory (cluster mode: in Redis; an event-loop thread:
 * by the main thread), released once, by the request's ticket.
 */
export interface HeldAdmission {
  readonly headers: readonly Header[];
  /** Settles once the holds are given back (or, cluster mode, could not be told); null until `finish`. */
  readonly released: Promise<void> | null;
  /** The request is over: releases its holds, counts what it used, applies its balance change (`delta`, nano). */
  finish(tokens: number, chargeNano: number, delta: number): void;
}

/** Where requests are admitted when it is not this thread's memory (shared-limits.ts, server/threads.ts). */
export interface AdmissionStore {
  /** Cluster mode, Redis down: an unmetered workspace's keys may be held to this replica's own counts. */
  readonly localWhenDown: boolean;
  /** Does this request need the store: limits in its chain, or credits to hold? */
  needed(chain: readonly KeyRecord[], ws: Workspace): boolean;
  /**
   * Checks and counts the chain's limits and holds `holdNano` of the workspace's credits at
   * once; rejects with the 429 limits.ts would give, a 402 from `insufficient` (given what is
   * available), or a 503 when the store cannot be reached.
   */
  admit(id: string, chain: readonly KeyRecord[], reserve: Reservation, ws: Workspace, holdNano: number,
    insufficient: (availableNano: number) => GatewayError): Promise<HeldAdmission>;
}

/**
 * Cluster mode: may a request the shared store could not admit (`err`) be held to this
 * replica's own counts instead? Only when the store was unreachable, the workspace is
 * unmetered, and config allows it (cluster.unmetered_without_redis: local_limits).
 */
export function localWhenUnavailable(store: AdmissionStore, ws: Workspace, err: unknown): boolean {
  return !ws.metered && store.localWhenDown && err instanceof GatewayError && err.code === Errors.storeUnavailable.code;
}

/** A refusal in the making: its kind, wait, text and the extra fields the error carries. */
export interface Refusal {
  kind: LimitKind;
  waitMs: number;
  what: string;
  detail?: Record<string, string | number>;
}

/** A refusal of `kind` by a key with `limits`: what it says, and the fields its error carries. */
export function describe(kind: LimitKind, limits: KeyLimits, waitMs: number, w: { seconds: number; requests: number } | null = null, period: 'day' | 'month' = 'day'): Refusal {
  switch (kind) {
    case 'rpm': return { kind, waitMs, what: `${limits.rpm} requests per minute` };
    case 'tpm': return { kind, waitMs, what: `${limits.tpm} tokens per minute (requests in flight reserve their prompt and output cap)` };
    case 'window': return { kind, waitMs, what: `${w!.requests} requests per ${fmtDuration(w!.seconds * 1000)} (rolling)`, detail: { window_seconds: w!.seconds, window_requests: w!.requests } };
    case 'budget': return period === 'day'
      ? { kind, waitMs, what: `daily budget of $${limits.budget_usd_day} spent or reserved by requests in flight`, detail: { period: 'day', budget_usd: limits.budget_usd_day! } }
      : { kind, waitMs, what: `monthly budget of $${limits.budget_usd_month} spent or reserved by requests in flight`, detail: { period: 'month', budget_usd: limits.budget_usd_month! } };
    case 'concurrency': return { kind, waitMs, what: `${limits.max_concurrency} requests at a time`, detail: { max_concurrency: limits.max_concurrency! } };
  }
}

/**
 * The 429 for a refusal by the `index`th key of a chain (0: the key itself), with the key's
 * own rate-limit headers (`own`): the refused dimension's x-ratelimit-* say what Retry-After
 * says, nothing left and when there will be.
 */
export function refusalError(index: number, keyId: string, refusal: Refusal, own: readonly Header[]): LimitError {
  const seconds = Math.max(1, Math.ceil(refusal.waitMs / 1000));
  const whose = index === 0 ? 'this key' : `this key's parent key ${keyId} (its limits apply to the keys it minted too)`;
  const family = refusal.kind === 'tpm' ? 'tokens' : refusal.kind === 'rpm' || refusal.kind === 'window' ? 'requests' : null;
  let out: Header[] = [...own];
  if (family) {
    out = [...out.filter(([k]) => k !== `x-ratelimit-remaining-${family}` && k !== `x-ratelimit-reset-${family}`),
      [`x-ratelimit-remaining-${family}`, '0'], [`x-ratelimit-reset-${family}`, fmtDuration(refusal.waitMs)]];
  }
  return new LimitError(refusal.kind, seconds, `Rate limit reached for ${whose}: ${refusal.what}. Retry in ${seconds}s.`,
    [...out, ['retry-after', String(seconds)], ['retry-after-ms', String(Math.ceil(refusal.waitMs))], ['x-gateway-limit-kind', refusal.kind]], refusal.detail);
}

export class Limits {
  private readonly states = new Map<string, KeyState>();
  private dirty = new Set<string>();

  /** `load` false: counts start empty (an event-loop thread, whose limits the main thread keeps). */
  constructor(private readonly store: Store, load = true) {
    for (const { key, value } of load ? readableRange(store.limits) : []) {
      const parsed = StateSchema.safeParse(value);
      if (parsed.success) this.states.set(key, KeyState.from(parsed.data));
      else console.error(`limits: skipping the stored counters of ${String(key).slice(0, 80)}, which ${value === undefined ? 'do not read' : 'do not validate'}`);
    }
  }

  private stateOf(id: string): KeyState {
    let s = this.states.get(id);
    if (!s) { s = new KeyState(); this.states.set(id, s); }
    return s;
  }

  /**
   * Checks every limit of the key and of its ancestors (`chain`: the key first) for one more
   * request that may use up to `reserve`; on success counts and reserves it on every one of
   * them and returns the key's rate-limit headers, else throws a 429 (LimitError) with
   * Retry-After and the limit's kind. Null when nobody in the chain has limits.
   */
  admit(chain: readonly KeyRecord[], reserve: Reservation, now = Date.now()): Admission | null {
    const entries = this.entriesOf(chain);
    if (!entries) return null;
    const headers = this.checkAll(entries, now);
    for (const e of entries) this.count(e, reserve, now);
    // The remaining counts after this request, as OpenAI reports them.
    const after = remainingHeaders(entries[0]!, now);
    return { entries, reserved: reserve, headers: after.length ? after : headers };
  }

  /**
   * Would the chain's limits refuse a request now? Throws the refusal admit would, counting
   * nothing: the gateway asks before it spends worker time on a request (tokenizing, the
   * rewrites), so a key that is out of quota cannot make the pool work for free.
   */
  precheck(chain: readonly KeyRecord[], now = Date.now()): void {
    const entries = this.entriesOf(chain);
    if (entries) this.checkAll(entries, now);
  }

  private entriesOf(chain: readonly KeyRecord[]): Entry[] | null {
    let entries: Entry[] | null = null;
    for (const k of chain) {
      if (isOperatorKey(k) || !k.limits) continue;
      (entries ??= []).push({ id: k.id, state: this.stateOf(k.id), limits: k.limits });
    }
    return entries;
  }

  /** Every entry checked (all before any is counted: a refusal leaves no counter moved); the key's own rate-limit headers. */
  private checkAll(entries: readonly Entry[], now: number): Header[] {
    let headers: Header[] = [];
    for (let i = 0; i < entries.length; i++) {
      const own: Header[] = [];
      const refusal = this.check(entries[i]!, now, own);
      if (i === 0) headers = own;
      if (refusal) throw refusalError(i, entries[i]!.id, refusal, headers);
    }
    return headers;
  }

  /** One key's limits against one more request; the rate-limit headers of the state before it go into `headers`. */
  private check(e: Entry, now: number, headers: Header[]): Refusal | null {
    const { state: s, limits } = e;
    if (limits.rpm) {
      s.req ??= new Bucket(limits.rpm, now);
      s.req.refill(limits.rpm, now);
      headers.push(['x-ratelimit-limit-requests', String(limits.rpm)]);
      if (s.req.level < 1) return describe('rpm', limits, s.req.msUntil(limits.rpm, 1));
    }
    if (limits.tpm) {
      s.tok ??= new Bucket(limits.tpm, now);
      s.tok.refill(limits.tpm, now);
      headers.push(['x-ratelimit-limit-tokens', String(limits.tpm)]);
      if (s.tok.level < 1) return describe('tpm', limits, s.tok.msUntil(limits.tpm, 1));
    }
    for (const w of limits.windows ?? []) {
      const rolling = s.window(w.seconds);
      if (rolling.total(now) >= w.requests) {
        const wait = rolling.msUntilBelow(now, w.requests);
        if (!limits.rpm) headers.push(['x-ratelimit-limit-requests', String(w.requests)]);
        return describe('window', limits, wait, w);
      }
    }
    if (limits.budget_usd_day && s.spentDay(now) + s.reservedNano >= limits.budget_usd_day * 1e9) {
      return describe('budget', limits, msToNextUtcDay(now), null, 'day');
    }
    if (limits.budget_usd_month && s.spentMonth(now) + s.reservedNano >= limits.budget_usd_month * 1e9) {
      return describe('budget', limits, msToNextUtcMonth(now), null, 'month');
    }
    if (limits.max_concurrency && s.inflight >= limits.max_concurrency) {
      return describe('concurrency', limits, 1000);
    }
    return null;
  }

  private count(e: Entry, reserve: Reservation, now: number): void {
    const { state: s, limits } = e;
    if (limits.rpm && s.req) s.req.level -= 1;
    if (limits.tpm && s.tok) s.tok.level -= reserve.tokens;
    for (const w of limits.windows ?? []) s.window(w.seconds).add(now, 1);
    if (limits.budget_usd_day || limits.budget_usd_month) s.reservedNano += reserve.nano;
    s.inflight++;
    this.dirty.add(e.id);
  }

  /** The request is over: its slot and reservations are released, and what it really used is counted. */
  finish(_key: KeyRecord, admission: Admission, tokens: number, chargeNano: number, now = Date.now()): void {
    const { reserved } = admission;
    for (const { id, state: s, limits } of admission.entries) {
      s.inflight = Math.max(0, s.inflight - 1);
      // What was reserved and not used goes back, never past a full bucket (a long request's refund would otherwise mint tokens).
      if (limits.tpm && s.tok) { s.tok.refill(limits.tpm, now); s.tok.level = Math.min(limits.tpm, s.tok.level + reserved.tokens - tokens); }
      if (limits.budget_usd_day || limits.budget_usd_month) s.reservedNano = Math.max(0, s.reservedNano - reserved.nano);
      if (chargeNano > 0) {
        s.spentDay(now);
        s.spentMonth(now);
        s.day[1] += chargeNano;
        s.month[1] += chargeNano;
      }
      this.dirty.add(id);
    }
  }

  /** A key's live counters, for the operator (`GET /admin/keys/{id}`). */
  view(id: string, now = Date.now()): { in_flight: number; reserved_usd: number; spent_today_usd: number; spent_month_usd: number } {
    const s = this.states.get(id);
    if (!s) return { in_flight: 0, reserved_usd: 0, spent_today_usd: 0, spent_month_usd: 0 };
    return { in_flight: s.inflight, reserved_usd: s.reservedNano / 1e9, spent_today_usd: s.spentDay(now) / 1e9, spent_month_usd: s.spentMonth(now) / 1e9 };
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
    this.written = this.dirty;
    this.dirty = new Set();
  }

  /** The counters the last persist wrote (its batch may yet fail). */
  private written = new Set<string>();

  /**
   * The ledger batch that carried the last persist failed to commit: those counters are
   * written again with the next batch (else the stored copy would stay stale until the key's
   * next request, and a restart in between would read older counts).
   */
  rewrite(): void {
    for (const id of this.written) this.dirty.add(id);
    this.lastPersist = 0;
  }
}

/** x-ratelimit-* after an admitted request: what remains, and how long until the bucket or window is back to full. */
function remainingHeaders(e: Entry, now: number): Header[] {
  const { state: s, limits } = e;
  const out: Header[] = [];
  if (limits.rpm && s.req) {
    out.push(['x-ratelimit-limit-requests', String(limits.rpm)], ['x-ratelimit-remaining-requests', String(Math.max(0, Math.floor(s.req.level)))],
      ['x-ratelimit-reset-requests', fmtDuration(s.req.msUntil(limits.rpm, limits.rpm))]);
  } else if (limits.windows?.length) {
    // No rpm: the window closest to refusing (least remaining) speaks for the headers.
    let best: { requests: number; rolling: Rolling; used: number } | null = null;
    for (const w of limits.windows) {
      const rolling = s.window(w.seconds);
      const used = rolling.total(now);
      if (!best || w.requests - used < best.requests - best.used) best = { requests: w.requests, rolling, used };
    }
    out.push(['x-ratelimit-limit-requests', String(best!.requests)], ['x-ratelimit-remaining-requests', String(Math.max(0, best!.requests - best!.used))],
      ['x-ratelimit-reset-requests', fmtDuration(best!.rolling.msUntilBelow(now, 1))]);
  }
  if (limits.tpm && s.tok) {
    out.push(['x-ratelimit-limit-tokens', String(limits.tpm)], ['x-ratelimit-remaining-tokens', String(Math.max(0, Math.floor(s.tok.level)))],
      ['x-ratelimit-reset-tokens', fmtDuration(s.tok.msUntil(limits.tpm, limits.tpm))]);
  }
  return out;
}
