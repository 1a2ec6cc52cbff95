// Usage rollups, maintained incrementally: each ledger batch adds its request rows into
// minute, hour and day buckets — per workspace (total, by key, by model, by provider) and
// across workspaces (the same, plus by workspace) — and the touched buckets are written in
// the batch's transaction. Summaries and time series read a range of buckets; nothing
// scans the ledger per query. Money is summed in integer nano-USD, so totals are exact.
import { z } from 'zod';
import { keyPart, readableRange, tryGet, type Store } from '../store/lmdb.js';
import { LedgerRowSchema, type LedgerRow } from './ledger.js';
import { fromNano, toNano } from './workspaces.js';

export const GRANULARITY = { minute: 60, hour: 3600, day: 86400 } as const;
export type Granularity = keyof typeof GRANULARITY;
const GRANS = Object.keys(GRANULARITY) as Granularity[];

/**
 * `cache`: by cache status of answered requests (miss, exact, semantic, dedupe).
 * `saving`: by where a saving came from (routing, each mechanism), where a bucket's totals
 * read [requests it saved on, tokens it saved, 0, 0, 0, 0, dollars it saved].
 * `outcome`: served (2xx), refused (by the gateway, before any route or cache), failed (an
 * upstream error or an abandoned request). `provider` counts only requests a route took.
 */
export type Dim = 'all' | 'key' | 'model' | 'provider' | 'workspace' | 'cache' | 'saving' | 'outcome';

/** A row's outcome (the `outcome` dimension). */
export function outcomeOf(row: Pick<LedgerRow, 'cache' | 'status'>): 'served' | 'refused' | 'failed' {
  if (row.cache === 'none' && row.status !== 499) return 'refused';
  return row.status < 400 ? 'served' : 'failed';
}
/** Workspace scope for rollups across all workspaces. */
export const ALL_WORKSPACES = '*';

const TotalsSchema = z.tuple([z.number(), z.number(), z.number(), z.number(), z.number(), z.number(), z.number()]);
/** requests, prompt_tokens, completion_tokens, cost, charge, benchmark, saved (money in nano-USD). */
type Totals = z.infer<typeof TotalsSchema>;

/** The fields every summary and rollup reports. */
export interface UsageFigures {
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: number;
  charge_usd: number;
  benchmark_usd: number;
  saved_usd: number;
}

export function figures(t: Totals): UsageFigures {
  return {
    requests: t[0], prompt_tokens: t[1], completion_tokens: t[2],
    cost_usd: fromNano(t[3]), charge_usd: fromNano(t[4]), benchmark_usd: fromNano(t[5]), saved_usd: fromNano(t[6]),
  };
}

const zero = (): Totals => [0, 0, 0, 0, 0, 0, 0];
/** The rows a fold sums together before touching buckets: same workspace, key, model, provider, cache, outcome and minute. */
const groupKey = (row: LedgerRow, outcome: string, minute: number): string =>
  `${row.workspace}\u0000${row.key_id}\u0000${row.requested_model}\u0000${row.served ?? ''}\u0000${row.cache}\u0000${outcome}\u0000${minute}`;

function add(into: Totals, t: Totals): void {
  for (let i = 0; i < 7; i++) into[i]! += t[i]!;
}

type BucketKey = [string, Granularity, number, Dim, string];

/** Rows of one workspace, key, model, route, cache, outcome and minute, summed before they are folded into the buckets. */
interface Group { workspace: string; keyId: string; model: string; served: string | null; cache: string; minute: number; outcome: string; totals: Totals; ids: string[] }
/** A saving one row carries, by mechanism. */
interface SavingEntry { workspace: string; minute: number; mechanism: string; tokens: number; nano: number }

/** A range query's buckets, folded by dimension value. */
export interface RangeResult {
  granularity: Granularity;
  start: number;
  end: number;
  totals: UsageFigures;
  by: Array<{ value: string } & UsageFigures>;
  points: Array<{ start: number } & UsageFigures>;
}

/**
 * Rows reach the rollups through the ledger's write batches. Each batch leaves one marker
 * (`rollup_pending`: `batch:…` → its request rows' ids, in the rows' own transaction);
 * buckets are folded in memory and written at most every `everyMs`, in a ledger batch that
 * also removes the markers of the rows they contain. So a commit carries one put per batch
 * rather than a bucket per granularity and dimension (or a marker per row: a put and a
 * remove per row were a tenth of the ledger's CPU), and after a crash the rows still
 * marked are folded again at start: the stored rollups always add up to the stored rows.
 * (A marker `<row id>` → 1, from before batch markers, is read the same way.)
 */
export class UsageRollups {
  /** Buckets touched since start (loaded from LMDB on first touch), by encoded key. */
  private readonly hot = new Map<string, { key: BucketKey; totals: Totals }>();
  /** Buckets whose in-memory totals are ahead of LMDB. */
  private readonly dirty = new Set<string>();
  /**
   * Rows not folded yet, summed as they come into groups (workspace, key, model, route, cache,
   * outcome, minute) and the savings they carry: no row is kept until the fold. (Rows kept
   * the 250 ms between folds outlived the young generation's collections, and every one was
   * copied and promoted: ~700 B a request, measured under load.)
   */
  private groups = new Map<string, Group>();
  /** The group the last row went to: rows in a burst mostly share it, compared field by field before a key is built. */
  private last: Group | null = null;
  private savings: SavingEntry[] = [];
  /** Markers of rows folded, not removed yet; this batch's rows, not marked yet. */
  private folded: string[] = [];
  private unmarked: string[] = [];
  private marks = 0;
  private lastPersist = 0;

  constructor(private readonly store: Store) {
    this.loadPending();
  }

  /** Rows committed but not in the stored buckets (when the process stopped, or when a batch failed to commit). */
  private loadPending(): void {
    const store = this.store;
    for (const { key, value } of readableRange(store.rollupPending)) {
      const marker = String(key);
      const ids = Array.isArray(value) ? value.filter((id): id is string => typeof id === 'string') : [marker];
      for (const id of ids) {
        const row = LedgerRowSchema.safeParse(tryGet(store.ledger, id));
        if (row.success) this.group(row.data);
        else this.quarantine(id, `the stored row does not validate: ${row.error.issues[0]?.message ?? 'missing'}`);
      }
      this.folded.push(marker); // (removed once what it marks is folded and stored)
    }
  }

  /**
   * A ledger batch failed to commit: its rows, their marker and any buckets written with it
   * are not stored. What is in memory goes back to what is: buckets are read again as they
   * are touched, and the rows still to fold are those the stored markers name.
   */
  reload(): void {
    this.hot.clear();
    this.dirty.clear();
    this.groups = new Map();
    this.last = null;
    this.savings = [];
    this.folded = [];
    this.unmarked = [];
    this.loadPending();
  }

  /** Sees each row as the ledger writes its batch (its marker goes with the batch's persisters: the same transaction). */
  add(row: LedgerRow): void {
    if (row.kind !== 'request') return;
    this.group(row);
    this.unmarked.push(row.id);
  }

  /** Adds the row to its group's totals and its savings to the list, to be folded into the buckets. */
  private group(row: LedgerRow): void {
    const minute = Math.floor(row.ts / 60_000) * 60;
    if (!Number.isFinite(minute)) { this.quarantine(row.id, 'its time is not a number'); return; }
    for (const mechanism in row.saved_tokens) {
      const tokens = row.saved_tokens[mechanism]!;
      if (tokens > 0) this.savings.push({ workspace: row.workspace, minute, mechanism, tokens, nano: toNano(row.savings_usd[mechanism] ?? 0) });
    }
    for (const mechanism in row.savings_usd) {
      const usd = row.savings_usd[mechanism]!;
      if (usd !== 0 && !(row.saved_tokens[mechanism]! > 0)) this.savings.push({ workspace: row.workspace, minute, mechanism, tokens: 0, nano: toNano(usd) });
    }
    const outcome = outcomeOf(row);
    const last = this.last;
    let group: Group | undefined = last && last.minute === minute && last.outcome === outcome && last.workspace === row.workspace && last.keyId === row.key_id
      && last.model === row.requested_model && last.served === row.served && last.cache === row.cache ? last : undefined;
    if (!group) {
      const key = groupKey(row, outcome, minute);
      group = this.groups.get(key);
      if (!group) {
        group = { workspace: row.workspace, keyId: row.key_id, model: row.requested_model, served: row.served, cache: row.cache, minute, outcome, totals: zero(), ids: [] };
        this.groups.set(key, group);
      }
    }
    const t = group.totals;
    t[0] += 1; t[1] += row.prompt_tokens; t[2] += row.completion_tokens;
    t[3] += toNano(row.cost_usd); t[4] += toNano(row.charge_usd); t[5] += toNano(row.benchmark_usd); t[6] += toNano(row.saved_usd);
    group.ids.push(row.id);
    this.last = group;
  }

  /** The rows added since the last call, marked in one record (called by persistDirty, inside the ledger's batch). */
  private mark(): void {
    if (this.unmarked.length === 0) return;
    const key = `batch:${Date.now().toString(36)}:${(this.marks++).toString(36)}`;
    void this.store.rollupPending.put(key, this.unmarked);
    this.folded.push(key);
    this.unmarked = [];
  }

  private bucket(key: BucketKey): Totals {
    const id = key.join('\u0000');
    let entry = this.hot.get(id);
    if (!entry) {
      // A damaged bucket (undecodable, or not totals) starts again from zero, with a log line:
      // its old totals are lost either way, and the rows folded from now on still count.
      let value: unknown;
      let unreadable = false;
      try { value = this.store.rollups.get(key); } catch { unreadable = true; }
      const stored = TotalsSchema.safeParse(value);
      if (!stored.success && (unreadable || value !== undefined)) console.error(`usage rollups: the stored bucket ${JSON.stringify(key).slice(0, 200)} ${unreadable ? 'does not read' : 'does not validate'}; counting it again from zero`);
      entry = { key, totals: stored.success ? stored.data : zero() };
      this.hot.set(id, entry);
    }
    this.dirty.add(id);
    return entry.totals;
  }

  /** Folds the groups summed since the last fold (see `group`), and their savings, into the in-memory buckets. */
  private fold(): void {
    if (this.groups.size === 0 && this.savings.length === 0) return;
    const groups = this.groups;
    const savings = this.savings;
    this.groups = new Map();
    this.last = null;
    this.savings = [];
    for (const { workspace, keyId, model: requested, served, cache, minute, outcome, totals: t, ids } of groups.values()) {
      try {
        // Every string that reaches a bucket's key is bounded (keyPart): a key LMDB refuses would throw inside a write batch.
        const provider = keyPart(served ? served.slice(0, served.indexOf('/')) : '');
        const model = keyPart(requested);
        const key = keyPart(keyId);
        const ws = keyPart(workspace);
        for (const g of GRANS) {
          const start = minute - (minute % GRANULARITY[g]);
          for (const scope of [ws, ALL_WORKSPACES]) {
            add(this.bucket([scope, g, start, 'all', '']), t);
            add(this.bucket([scope, g, start, 'key', key]), t);
            add(this.bucket([scope, g, start, 'model', model]), t);
            if (served) add(this.bucket([scope, g, start, 'provider', provider]), t);
            if (cache !== 'none') add(this.bucket([scope, g, start, 'cache', cache]), t);
            add(this.bucket([scope, g, start, 'outcome', outcome]), t);
            if (scope === ALL_WORKSPACES) add(this.bucket([scope, g, start, 'workspace', ws]), t);
          }
        }
      } catch (err) {
        for (const rowId of ids) this.quarantine(rowId, String(err));
      }
    }
    for (const { workspace, minute, mechanism, tokens, nano } of savings) {
      for (const g of GRANS) {
        const start = minute - (minute % GRANULARITY[g]);
        for (const scope of [keyPart(workspace), ALL_WORKSPACES]) add(this.bucket([scope, g, start, 'saving', keyPart(mechanism)]), [1, tokens, 0, 0, 0, 0, nano]);
      }
    }
  }

  /**
   * A row that cannot be folded is set aside (its id and why, in the quarantine database,
   * and a log line) rather than stopping the batch or, at the next start, the gateway.
   */
  private quarantine(rowId: string, why: string): void {
    console.error(`usage rollups: request row ${rowId.slice(0, 80)} could not be folded (${why.slice(0, 200)}); quarantined`);
    void this.store.quarantine.put(keyPart(rowId), { db: 'rollups', why: why.slice(0, 500), at: Date.now() });
  }

  /** Called inside the ledger's write batches: buckets and marker removals go out together, at most every `everyMs`. */
  persistDirty(everyMs = 250, now = Date.now()): void {
    this.mark();
    if (now - this.lastPersist < everyMs) return;
    this.fold();
    if (this.folded.length === 0 && this.dirty.size === 0) return;
    this.lastPersist = now;
    for (const id of this.dirty) {
      const entry = this.hot.get(id)!;
      void this.store.rollups.put(entry.key, entry.totals);
    }
    for (const id of this.folded) void this.store.rollupPending.remove(id);
    this.dirty.clear();
    this.folded = [];
    this.evict();
  }

  /** Old, clean buckets leave memory (they are in LMDB); only late rows would load them again. */
  private evict(): void {
    if (this.hot.size < 50_000) return;
    const horizon = Math.floor(Date.now() / 1000) - 2 * 86400;
    for (const [id, entry] of this.hot) {
      if (!this.dirty.has(id) && (entry.key[2] < horizon || (entry.key[1] === 'minute' && entry.key[2] < horizon + 86400))) this.hot.delete(id);
    }
  }

  /** Picks a bucket size that keeps a range to at most ~1,500 buckets. */
  static granularityFor(start: number, end: number): Granularity {
    const span = end - start;
    if (span <= 1500 * 60) return 'minute';
    if (span <= 1500 * 3600) return 'hour';
    return 'day';
  }

  /** Totals for [start, end) (unix seconds, widened to whole buckets), folded by one dimension. */
  range(scope: string, start: number, end: number, by: Dim, granularity = UsageRollups.granularityFor(start, end)): RangeResult {
    const size = GRANULARITY[granularity];
    const from = start - (start % size);
    const to = end % size === 0 ? end : end - (end % size) + size;
    this.fold();
    const found = new Map<string, { key: BucketKey; totals: Totals }>();
    for (const { key, value } of readableRange(this.store.rollups, { start: [scope, granularity, from], end: [scope, granularity, to] })) {
      const parsed = TotalsSchema.safeParse(value);
      if (parsed.success && Array.isArray(key)) found.set((key as BucketKey).join('\u0000'), { key: key as BucketKey, totals: parsed.data });
    }
    // Buckets ahead of LMDB (folded, not written yet) count with their in-memory totals.
    for (const id of this.dirty) {
      const entry = this.hot.get(id)!;
      const [s0, g, start] = entry.key;
      if (s0 === scope && g === granularity && start >= from && start < to) found.set(id, entry);
    }
    const total = zero();
    const groups = new Map<string, Totals>();
    const points = new Map<number, Totals>();
    for (const { key: k, totals: t } of found.values()) {
      if (k[3] === 'all') {
        add(total, t);
        const p = points.get(k[2]) ?? zero();
        add(p, t);
        points.set(k[2], p);
      } else if (k[3] === by) {
        const g = groups.get(k[4]) ?? zero();
        add(g, t);
        groups.set(k[4], g);
      }
    }
    return {
      granularity, start: from, end: to, totals: figures(total),
      by: [...groups].map(([value, t]) => ({ value, ...figures(t) })).sort((a, b) => b.charge_usd - a.charge_usd || b.requests - a.requests),
      points: [...points].sort((a, b) => a[0] - b[0]).map(([s, t]) => ({ start: s, ...figures(t) })),
    };
  }
}
