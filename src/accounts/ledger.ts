// One ledger row per request. The rows of one event turn are written in one transaction:
// committed on this thread in no-sync mode (the default), or by lmdb-js's writer thread, one
// commit at a time, when every commit is fsynced.
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { NoRoomError } from '../store/headroom.js';
import { forgetUnsavedStructures, tryGet, type Store } from '../store/lmdb.js';
import type { Workspace, Workspaces } from './workspaces.js';

export const LedgerRowSchema = z.object({
  id: z.string(),
  ts: z.number(),
  /** request = one API call (a charge when metered); topup and refund credit a workspace. */
  kind: z.enum(['request', 'topup', 'refund']),
  workspace: z.string(),
  key_id: z.string(),
  endpoint: z.string(),
  requested_model: z.string(),
  served: z.string().nullable(),
  router_bucket: z.string().nullable(),
  router_score: z.number().nullable(),
  /** The classifier's task type (model `auto`). */
  router_task: z.string().nullable().default(null),
  /** The model the adaptive policy chose (null: the buckets chose, or no router), its estimated quality then, and why. */
  router_model: z.string().nullable().default(null),
  router_quality: z.number().nullable().default(null),
  router_reason: z.string().nullable().default(null),
  /** It was admitted (counted against its key's limits and windows); false: refused before, or a credit row. */
  admitted: z.boolean().default(false),
  /** How the answer was served; `none`: it was not (refused before the route and the caches). */
  cache: z.enum(['miss', 'exact', 'semantic', 'dedupe', 'none']),
  stream: z.boolean(),
  prompt_tokens: z.number(),
  cached_tokens: z.number(),
  /** Prompt tokens written to a provider cache (billed at its cache_write price). */
  cache_write_tokens: z.number().default(0),
  completion_tokens: z.number(),
  usage_source: z.enum(['upstream', 'estimate', 'none']),
  saved_tokens: z.record(z.string(), z.number()),
  /** The saving in dollars by where it came from (routing and each mechanism; see savingsOf). */
  savings_usd: z.record(z.string(), z.number()).default({}),
  cost_usd: z.number(),
  benchmark_usd: z.number(),
  charge_usd: z.number(),
  saved_usd: z.number(),
  ttfb_ms: z.number().nullable(),
  total_ms: z.number(),
  overhead_ms: z.number(),
  status: z.number(),
  retries: z.number(),
  error: z.string().nullable(),
  /** The workspace balance change this row records, in nano-USD (charges are negative). */
  delta_nano: z.number().int(),
  /** The workspace balance after this row (metered workspaces), in nano-USD. */
  balance_nano: z.number().int().nullable(),
  note: z.string().nullable(),
});
export type LedgerRow = z.infer<typeof LedgerRowSchema>;

/** The error a request is told, and counted under, when its answer's row could not be committed. */
export const NOT_RECORDED = 'ledger_not_recorded';

/**
 * A row whose batch did not commit, as its client was told: an answer (200) went out as a 500
 * not recorded (a stream: an error event) and was charged nothing; a refusal or a failure was
 * told as it was. What the metrics count and the access log writes for such a row.
 */
export function asToldUncommitted(row: LedgerRow): LedgerRow {
  return row.status === 200 ? { ...row, status: 500, error: NOT_RECORDED, charge_usd: 0 } : row;
}

/** When a request reached each point (performance.now() readings; 0: it did not). */
export interface RequestTiming {
  t0: number;
  /** Admitted: the holds taken. */
  tAdmitted: number;
  /** The last attempt sent upstream. */
  tDispatch: number;
  tFirstByte: number;
  /** The upstream's answer ended (or failed). */
  tUpstreamEnd: number;
  tDone: number;
  /** The caller's W3C `traceparent` ('' for none): the trace the request's spans join. */
  parent: string;
}

/**
 * A row whose figures are all zero or empty, with the given fields set: refusals, top-ups
 * and refunds. (A served request builds its row in one literal: ChatExchange.record.)
 */
export function ledgerRow(fields: Pick<LedgerRow, 'id' | 'kind' | 'workspace' | 'key_id' | 'endpoint'> & Partial<LedgerRow>): LedgerRow {
  return {
    ts: Date.now(), admitted: false, requested_model: '', served: null, router_bucket: null, router_score: null, router_task: null, router_model: null, router_quality: null, router_reason: null, cache: 'miss', stream: false,
    prompt_tokens: 0, cached_tokens: 0, cache_write_tokens: 0, completion_tokens: 0, usage_source: 'none', saved_tokens: {}, savings_usd: {},
    cost_usd: 0, benchmark_usd: 0, charge_usd: 0, saved_usd: 0, ttfb_ms: null, total_ms: 0, overhead_ms: 0,
    status: 0, retries: 0, error: null, delta_nano: 0, balance_nano: null, note: null, ...fields,
  };
}

function failed(what: string, err: unknown): void {
  console.error(`ledger: ${what} failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
}

function guarded(what: string, run: () => void): void {
  try {
    run();
  } catch (err) {
    failed(what, err);
  }
}

/**
 * Request ids sort by time: base36 ms timestamp, a per-process random tag, a counter.
 * Cheap to make (no crypto per request) and unique across restarts.
 */
export class RequestIds {
  private readonly tag = randomBytes(3).toString('hex');
  private seq = 0;
  next(): string {
    this.seq = (this.seq + 1) % 0x1000000;
    return `req_${Date.now().toString(36).padStart(9, '0')}${this.tag}${this.seq.toString(36).padStart(5, '0')}`;
  }
}

/**
 * The ledger is the only way a balance changes: `append` applies the row's delta to the
 * in-memory workspace and queues the row; a flush writes the queued rows together with the
 * changed workspaces in one LMDB transaction (lmdb-js puts issued in one event turn share a
 * transaction), so after any crash every stored balance equals the sum of its stored rows.
 *
 * Group commit: a flush is scheduled as soon as something is queued (next event-loop turn
 * when `flushMs` is 0), and `whenCommitted` callbacks run once that batch is committed —
 * responses that must not complete before their row is durable wait on it, and all the
 * requests of one turn share one commit.
 */
/** What a request's end needs of the ledger: its row appended, and a call once it is committed. */
export type RowSink = Pick<Ledger, 'append' | 'whenCommitted' | 'observer'>;

export class Ledger {
  private pending: LedgerRow[] = [];
  private waiters: Array<(err: unknown) => void> = [];
  private scheduled = false;
  private lastCommit: Promise<unknown> = Promise.resolve();
  private readonly persisters: Array<(force: boolean) => void> = [];
  private forcing = false;
  private readonly rowListeners: Array<(row: LedgerRow, relayed: boolean) => void> = [];
  /** Rows of the batch being built that an event-loop thread sent (it logs their requests itself). */
  private relayed = new Set<LedgerRow>();
  /** Credit rows (top-ups, refunds) of the batch being built, for `credited`. */
  private creditRows: Array<readonly [LedgerRow, Workspace]> = [];
  /** The batch being built's balance changes, applied in memory: undone should its commit fail. */
  private changed: Array<readonly [LedgerRow, Workspace]> = [];
  /** What state derived from the rows keeps in memory goes back to what is stored (a batch failed to commit). */
  private readonly rollbackListeners: Array<() => void> = [];

  /**
   * Cluster mode: each row also goes into the outbox in its transaction (shipper.ts), and a
   * credit row's change is applied to the shared live balance once it is committed, before
   * its waiters hear (a top-up answered here is spendable through every replica).
   */
  cluster: { credited(row: LedgerRow, ws: Workspace): Promise<void> } | null = null;

  /** Cluster mode: a row any replica wrote, from Postgres (null: none there yet). */
  lookup: ((id: string) => Promise<LedgerRow | null>) | null = null;

  /** Cluster mode: a workspace's credit rows (top-ups, refunds) written through any replica, newest first. */
  creditsEverywhere: ((workspace: string, limit: number) => Promise<LedgerRow[]>) | null = null;

  /**
   * `mainThreadCommit`: each batch commits in a synchronous transaction on this thread (the
   * default with `ledger.fsync` off); else lmdb-js's writer thread commits it (with fsync on,
   * a commit waits for the disk, which must not block the event loop).
   */
  constructor(private readonly store: Store, private readonly workspaces: Workspaces, private readonly flushMs: number, private readonly mainThreadCommit = false) {
    if (!mainThreadCommit && store.writableMap) throw new Error('A ledger committing on lmdb-js\'s writer thread needs a store not mapped writable (openStore with fsync, or writableMap: false).');
    // (a writer-thread batch is a child transaction committed later: puts carried in it would wait on the disk's sync, and gain no hop)
    if (mainThreadCommit) store.along.carry(() => this.schedule());
  }

  /** State derived from the rows (limit counters, rollups) is written by these, in each batch. */
  addPersister(persist: (force: boolean) => void): void {
    this.persisters.push(persist);
  }

  /** Sees every row as its batch is written (before the persisters run); `relayed`: an event-loop thread sent it. */
  onRow(listen: (row: LedgerRow, relayed: boolean) => void): void {
    this.rowListeners.push(listen);
  }

  private readonly settledListeners: Array<(row: LedgerRow, committed: boolean) => void> = [];

  /**
   * Sees every row once its batch's commit is over: `committed` false when it failed (the
   * request was answered with an error, not charged). What counts answers (the metrics) reads
   * rows here, not as they are written, so a row that was never stored does not count as served.
   */
  onSettled(listen: (row: LedgerRow, committed: boolean) => void): void {
    this.settledListeners.push(listen);
  }

  /**
   * Called when a batch fails to commit (a full disk, an I/O error): its rows, their markers
   * and the derived state written with them are not stored, and whatever keeps that state in
   * memory must go back to what is (the usage rollups reload).
   */
  onRollback(listen: () => void): void {
    this.rollbackListeners.push(listen);
  }

  private readonly answeredListeners: Array<(row: LedgerRow, relayed: boolean, committed: boolean) => void> = [];

  /**
   * Sees every row once its batch's waiters have been told (the responses that waited for it
   * are out); `committed` false: its batch failed (an answer it held went out as a 500);
   * `relayed`: an event-loop thread sent it. For what must not
   * delay a response: the access log's line (≈5 µs of the wait at concurrency 1, inside the
   * commit's transaction when it was an `onRow` listener).
   */
  onAnswered(listen: (row: LedgerRow, relayed: boolean, committed: boolean) => void): void {
    this.answeredListeners.push(listen);
  }

  private readonly importListeners: Array<(row: LedgerRow) => void> = [];

  /** Cluster mode: sees each row another replica wrote, as it is imported (the usage rollups, the router's observations). */
  onImport(listen: (row: LedgerRow) => void): void {
    this.importListeners.push(listen);
  }

  /**
   * Cluster mode: rows other replicas wrote, read back from Postgres, kept here as if written
   * here (the usage APIs, the drill-down and the dashboard read every replica's requests),
   * but in no outbox and in no balance (theirs were shipped and applied where they were
   * made). Rows already here are skipped. Returns how many were new.
   */
  importRows(rows: readonly LedgerRow[]): number {
    let added = 0;
    for (const row of rows) {
      if (this.has(row.id)) continue;
      added++;
      void this.store.ledger.put(row.id, row);
      if (row.kind === 'request') void this.store.requests.put([row.workspace, row.id], row.key_id);
      else void this.store.credits.put([row.workspace, row.id], row.kind);
      for (const listen of this.importListeners) guarded('an import listener', () => listen(row));
    }
    if (added) for (const persist of this.persisters) guarded('a persister', () => persist(false));
    return added;
  }

  /**
   * Sees each request's row with its timings as it is appended (null: nobody watches, and
   * the timings are not even gathered): tracing, which must only queue what it is given.
   */
  observer: ((row: LedgerRow, timing: RequestTiming) => void) | null = null;

  /** Applies the row's balance change to `ws` (when it is non-zero) and queues the row (`relayed`: from an event-loop thread). */
  append(row: LedgerRow, ws: Workspace | undefined, relayed = false): void {
    if (relayed) this.relayed.add(row);
    if (ws && row.delta_nano !== 0) {
      row.balance_nano = this.workspaces.applyDelta(ws, row.delta_nano);
      this.changed.push([row, ws]);
    }
    if (this.cluster && ws && row.kind !== 'request' && row.delta_nano !== 0) this.creditRows.push([row, ws]);
    this.pending.push(row);
    this.schedule();
  }

  /** Calls `done` once everything appended so far is committed (with the error if the commit failed). */
  whenCommitted(done: (err: unknown) => void): void {
    this.waiters.push(done);
    this.schedule();
  }

  /** Resolves once everything appended so far is committed. */
  committed(): Promise<void> {
    return new Promise((resolve, reject) => this.whenCommitted((err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve())));
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    if (this.flushMs === 0) setImmediate(this.write);
    else setTimeout(this.write, this.flushMs);
  }

  private readonly write = (): void => {
    this.scheduled = false;
    // (writer-thread commits go one at a time: see below)
    if (this.committing) { this.deferred = true; return; }
    const rows = this.pending;
    const waiters = this.waiters;
    const credits = this.creditRows;
    const changed = this.changed;
    const relayed = this.relayed;
    this.pending = [];
    this.waiters = [];
    this.creditRows = [];
    if (changed.length) this.changed = [];
    if (relayed.size) this.relayed = new Set();
    if (this.mainThreadCommit) {
      // One synchronous write transaction on this thread: in no-sync mode its commit writes
      // the pages into the OS page cache and returns (tens of µs, no disk wait), which is as
      // safe against a killed process as the writer thread's commit, without the hops to
      // that thread and back (≈0.14 ms per response at concurrency 1, and CPU under load).
      let error: unknown = null;
      let taken: readonly Workspace[] = [];
      try {
        // (a put refused outright aborts the whole transaction: the balances are undone below, so nothing of the batch may stay)
        this.store.root.transactionSync(() => {
          const batch = this.putBatch(rows, relayed);
          taken = batch.taken;
          if (batch.error) throw batch.error;
          this.store.along.drain();
        });
      } catch (err) {
        error = err;
      }
      if (error) this.rollBack(changed, taken);
      this.store.along.over(!error);
      // Writes made through lmdb-js's asynchronous batch (a key, the router's state, a cache
      // entry over 64 KiB, a bridged Response's conversation; smaller ones and a passed-through
      // Response's record ride in this transaction, store/along.ts) are committed
      // by its writer thread. A response waits for those of its turn too, so what it stored is
      // there for the client's next request, as when the ledger shared that batch. With none
      // pending this is a microtask, not a thread hop.
      // (Their failure is theirs: the rows are committed, and the responses say what the rows say.)
      this.lastCommit = Promise.resolve(this.store.root.committed).then(() => this.answer(waiters, rows, error, credits, relayed),
        (err: unknown) => { console.error(`ledger: writes beside a batch failed to commit: ${String(err)}`); return this.answer(waiters, rows, error, credits, relayed); });
      return;
    }
    // On lmdb-js's writer thread (fsync on): the batch's puts run in a child transaction of the
    // writer's next one, so a put refused inside it aborts the whole batch (loose puts in its
    // asynchronous batch could commit around the refused one). One such commit is in flight at
    // a time, and rows appended meanwhile wait and grow the next batch (group commit): were the
    // next batch put while this one's commit is undecided, its workspace records would carry
    // this batch's balance changes, stored even if this batch then fails.
    this.committing = true;
    // The workspaces as this batch's rows left them, taken now (copies): the writer runs the
    // transaction later, and rows appended meanwhile change the balances in memory (theirs are
    // the next batch's records).
    const taken = this.workspaces.takeDirty();
    let txn: Promise<unknown>;
    try {
      txn = this.store.root.childTransaction(() => {
        const batch = this.putBatch(rows, relayed, taken);
        if (batch.error) throw batch.error;
      });
    } catch (err) {
      txn = Promise.reject(err); // (the store closed under it: its waiters hear so)
    }
    this.lastCommit = txn.then(() => this.answer(waiters, rows, null, credits, relayed), (err: unknown) => {
      this.rollBack(changed, taken);
      return this.answer(waiters, rows, err, [], relayed);
    }).finally(() => {
      this.committing = false;
      if (this.deferred) { this.deferred = false; this.schedule(); }
    });
  };

  /** A writer-thread commit is in flight (fsync on); `deferred`: a batch waits for it. */
  private committing = false;
  private deferred = false;

  /**
   * A batch failed to commit: none of its rows is stored, so the balance changes they made in
   * memory are undone (their requests are answered with an error, not charged), the
   * workspaces it would have written are written with the next batch, and what derived state
   * keeps in memory goes back to what is stored. The stored balances stay the sum of the
   * stored rows.
   */
  private rollBack(changed: ReadonlyArray<readonly [LedgerRow, Workspace]>, taken: readonly Workspace[]): void {
    forgetUnsavedStructures(this.store.ledger);
    for (const [row, ws] of changed) this.workspaces.applyDelta(ws, -row.delta_nano);
    this.workspaces.markDirty(taken.map((ws) => ws.id));
    for (const listen of this.rollbackListeners) guarded('a rollback listener', listen);
  }

  private failedAt = 0;
  private committedAt = 0;
  private refusedRows = 0;
  private refusedLoggedAt = 0;

  /**
   * The last batch failed to commit (a full disk, an I/O error), within the last 10 s, and
   * none has committed since: /health says so with a 503, so a load balancer sends this
   * replica's traffic elsewhere. After 10 s it says ok again, and the traffic it gets then
   * tells anew (a health check writes nothing that could). Or the disk has no room for the
   * store (store/headroom.ts): every batch would be refused, and that is known without one.
   */
  get failing(): boolean {
    return !this.store.headroom.room || (this.failedAt > this.committedAt && Date.now() - this.failedAt < 10_000);
  }

  /** The batch's commit is over: its waiters hear how it went (`err` null: committed), then the `onAnswered` listeners see its rows. */
  private answer(waiters: ReadonlyArray<(err: unknown) => void>, rows: readonly LedgerRow[], err: unknown, credits: ReadonlyArray<readonly [LedgerRow, Workspace]>, relayed: ReadonlySet<LedgerRow>): void | Promise<void> {
    if (err) {
      const now = Date.now();
      if (err instanceof NoRoomError) {
        // (refused before LMDB, batch after batch while the disk is full: counted, and said once a second)
        this.refusedRows += rows.length;
        if (now - this.refusedLoggedAt >= 1000) {
          console.error(`ledger: ${this.refusedRows} row(s) refused, their requests not charged: ${err.message}`);
          this.refusedLoggedAt = now;
          this.refusedRows = 0;
        }
      } else console.error(`ledger: a batch of ${rows.length} rows failed to commit: ${String(err)}`);
      this.failedAt = now;
    } else if (this.failedAt) this.committedAt = Date.now();
    const committed = !err;
    for (const listen of this.settledListeners) {
      for (const row of rows) {
        try { listen(row, committed); } catch (e) { failed('a settled-row listener', e); }
      }
    }
    const tell = () => {
      for (const w of waiters) guarded('a commit waiter', () => w(err));
      if (this.answeredListeners.length === 0) return;
      for (const row of rows) {
        const fromThread = relayed.has(row);
        for (const listen of this.answeredListeners) {
          try { listen(row, fromThread, committed); } catch (e) { failed('an answered-row listener', e); }
        }
      }
    };
    if (err || credits.length === 0 || !this.cluster) { tell(); return; }
    const cluster = this.cluster;
    return Promise.all(credits.map(([row, ws]) => cluster.credited(row, ws))).then(tell, tell);
  }

  /**
   * The batch's puts, inside the caller's transaction (synchronous on this thread, or a child
   * of the writer thread's), and what derives from the rows (listeners, persisters), guarded
   * one by one: a fault there is logged and never keeps a row, a balance or a waiting
   * response from its commit. `error`: a put refused, for the caller to abort the transaction.
   * `records`: the workspaces to write (null: those changed so far, taken now).
   */
  private putBatch(rows: readonly LedgerRow[], relayedRows: ReadonlySet<LedgerRow>, records: readonly Workspace[] | null = null): { error: unknown; taken: readonly Workspace[] } {
    let error: unknown = null;
    let taken: readonly Workspace[] = [];
    try {
      for (const row of rows) {
        void this.store.ledger.put(row.id, row);
        if (this.cluster) void this.store.outbox.put(row.id, 1);
        if (row.kind === 'request') void this.store.requests.put([row.workspace, row.id], row.key_id);
        else void this.store.credits.put([row.workspace, row.id], row.kind);
        const relayed = relayedRows.has(row);
        // (guarded inline: a closure per listener per row was measurable at this rate)
        for (const listen of this.rowListeners) {
          try { listen(row, relayed); } catch (err) { failed('a row listener', err); }
        }
      }
      taken = records ?? this.workspaces.takeDirty();
      for (const ws of taken) void this.store.workspaces.put(ws.id, ws);
    } catch (err) {
      // A put LMDB refused outright (it cannot happen with the ids Sluice makes): the waiters hear of it.
      error = err;
    }
    for (const persist of this.persisters) guarded('a persister', () => persist(this.forcing));
    return { error, taken };
  }

  // ---- reading (committed rows; each validated: a stored record is a boundary) ----------

  /** One row by id; null when there is none, or it does not read as a row. */
  row(id: string): LedgerRow | null {
    const parsed = LedgerRowSchema.safeParse(tryGet(this.store.ledger, id));
    return parsed.success ? parsed.data : null;
  }

  /** One row by id, here or (cluster mode) served by another replica and shipped to Postgres; null when there is none. */
  find(id: string): Promise<LedgerRow | null> {
    const local = this.row(id);
    return local || !this.lookup ? Promise.resolve(local) : this.lookup(id);
  }

  /** True when a row with this id exists (read or not). Nothing is decoded: cluster mode asks it of every row another replica wrote, each pass. */
  has(id: string): boolean {
    return this.store.ledger.doesExist(id);
  }

  /** A workspace's credit rows (top-ups, refunds), newest first. */
  *credits(workspace: string, limit: number): Generator<LedgerRow> {
    for (const key of this.store.credits.getKeys({ start: [workspace, '~'], end: [workspace, ''], reverse: true, limit })) {
      const row = this.row((key as string[])[1]!);
      if (row) yield row;
    }
  }

  /**
   * A workspace's request ids from `upper` down to `lower` (request ids sort by time),
   * newest first; the caller reads the rows it wants (`row`), and may stop at any point.
   */
  *requestIds(workspace: string, upper: string, lower: string): Generator<string> {
    for (const key of this.store.requests.getKeys({ start: [workspace, upper], end: [workspace, lower], reverse: true })) yield (key as string[])[1]!;
  }

  /** Writes whatever is queued, and all derived state however recent, and waits until it is committed. */
  async flush(): Promise<void> {
    await this.lastCommit; // (a writer-thread commit in flight would defer the write below)
    this.forcing = true;
    try {
      this.write();
    } finally {
      this.forcing = false;
    }
    await this.lastCommit;
  }
}
