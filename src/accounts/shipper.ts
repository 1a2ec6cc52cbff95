// Cluster mode's durable record: ledger rows go from each replica's LMDB to Postgres. A row
// is committed locally first (in the same transaction as its outbox entry, before the
// response completes), so a replica killed at any point has every row it acknowledged in its
// outbox, and ships it when it starts again. Postgres takes each row once (its id is the
// primary key) and, in the same transaction, adds the rows it did take to their
// workspaces' balances: a balance in Postgres is always the sum of its rows.
//
// The live balance every replica checks is in Redis (shared-limits.ts). It is seeded from
// Postgres per workspace and per Redis "epoch" (a Redis that restarts empty starts a new
// one), under the workspace's row lock. Each row is stored with the epoch its workspace was
// seeded in when Postgres took it; the shipper applies its change to a Redis of that epoch
// unless finish applied it already (a marker says so), and never to a later one (whose seed
// read the row). So a Redis restart neither gives credit away nor takes any twice.
import { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import { inTransaction, pgJson, type Cluster } from '../store/cluster.js';
import { tryGet, type Store } from '../store/lmdb.js';
import { LedgerRowSchema, type LedgerRow } from './ledger.js';
import type { KeyCounts, SharedLimits } from './shared-limits.js';
import { WorkspaceSchema, type Workspace, type Workspaces } from './workspaces.js';

/** A workspace's record as Postgres keeps it: everything but the balance, which is its own column. */
export function workspaceRecord(ws: Workspace): Omit<Workspace, 'balance_nano'> {
  const { balance_nano: _b, ...record } = ws;
  return record;
}

/** How far behind the highest `seq` seen each read of other replicas' rows starts (their commits come in any order). */
const SEQ_OVERLAP = 1000;

/** How many written rows a replica keeps in memory for shipping (each about 1 kB). */
const WRITTEN_CAP = 20_000;

export class Shipper {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private failures = 0;
  private loggedWait = 0;
  limits: SharedLimits | null = null;
  /** The highest `seq` of other replicas' rows read back (importRows). */
  private seenSeq = 0;
  /**
   * The `seq`s of other replicas' rows within SEQ_OVERLAP of seenSeq that are here already:
   * each pass reads that overlap again, and asks the ledger only about the others (asking of
   * every row in it, every pass, was a fifth of an idle replica's CPU).
   */
  private readonly handled = new Set<number>();
  /** Where other replicas' rows go (the local ledger); null: not read back. */
  importer: { has(id: string): boolean; importRows(rows: readonly LedgerRow[]): number } | null = null;

  /**
   * Rows this replica wrote since it started, by id, until shipped: what a pass ships without
   * reading each row back from LMDB and validating it again (that reading took 2.5% of a
   * replica's CPU on metered requests). Bounded: past the cap (Postgres away a while) rows
   * are read back. (A row whose batch failed to commit has no outbox entry: it stays here.)
   */
  private readonly written = new Map<string, LedgerRow>();

  constructor(private readonly cluster: Cluster, private readonly store: Store, private readonly workspaces: Workspaces,
    private readonly everyMs = 200, private readonly batch = 500) {}

  /** A row the ledger is writing (with its outbox entry), kept for the pass that ships it. */
  wrote(row: LedgerRow): void {
    if (this.written.size < WRITTEN_CAP) this.written.set(row.id, row);
  }

  start(): void {
    const tick = () => {
      this.timer = setTimeout(() => { this.ship().finally(tick); }, this.everyMs * Math.min(25, 2 ** this.failures));
      this.timer.unref();
    };
    tick();
  }

  /** Rows waiting to be shipped. */
  get waiting(): number {
    return this.store.outbox.getCount();
  }

  /** One pass (or waits for the one running). */
  ship(): Promise<void> {
    this.running ??= this.pass().then(() => { this.failures = 0; }, (err: unknown) => {
      this.failures++;
      if (this.failures <= 3 || this.failures % 50 === 0) console.error(`cluster: shipping ledger rows to Postgres failed (they wait in the outbox): ${err instanceof Error ? err.message : String(err)}`);
    }).finally(() => { this.running = null; });
    return this.running;
  }

  /** Ships until the outbox is empty (a graceful stop), or throws. */
  async drain(): Promise<void> {
    for (let i = 0; i < 10_000 && this.waiting > 0; i++) {
      await this.ship();
      if (this.failures) throw new Error('Postgres did not take the rows');
    }
  }

  private async pass(): Promise<void> {
    await this.shipOwn();
    await this.readOthers();
  }

  /**
   * Other replicas' rows, into this replica's ledger (usage, drill-down, dashboard), in the
   * order Postgres took them. Rows commit out of `seq` order, so each read goes back
   * SEQ_OVERLAP behind the highest seen and skips the rows already here.
   */
  private async readOthers(): Promise<void> {
    if (!this.importer) return;
    const importer = this.importer;
    const ids = await this.cluster.pg.query<{ id: string; seq: string }>('SELECT id, seq FROM sluice_ledger WHERE seq > $1 AND replica <> $2 ORDER BY seq LIMIT 5000',
      [Math.max(0, this.seenSeq - SEQ_OVERLAP), this.cluster.replica]);
    const missing: string[] = [];
    for (const r of ids.rows) {
      const seq = Number(r.seq);
      if (seq > this.seenSeq) this.seenSeq = seq;
      if (this.handled.has(seq)) continue;
      if (importer.has(r.id)) this.handled.add(seq);
      else missing.push(r.id);
    }
    this.forgetBelow(this.seenSeq - SEQ_OVERLAP);
    if (!missing.length) return;
    const got = await this.cluster.pg.query<{ row: unknown; seq: string }>('SELECT row, seq FROM sluice_ledger WHERE id = ANY($1::text[]) ORDER BY seq', [missing]);
    const rows: LedgerRow[] = [];
    for (const r of got.rows) {
      // (a row that does not read is not asked for again either: it would not read next time)
      this.handled.add(Number(r.seq));
      const parsed = LedgerRowSchema.safeParse(r.row);
      if (parsed.success) rows.push(parsed.data);
    }
    importer.importRows(rows);
  }

  /** Drops the handled seqs the next read no longer reaches (at most once per SEQ_OVERLAP rows: cheap). */
  private forgetBelow(floor: number): void {
    if (this.handled.size < 2 * SEQ_OVERLAP) return;
    for (const seq of this.handled) if (seq <= floor) this.handled.delete(seq);
  }

  private async shipOwn(): Promise<void> {
    const ids: string[] = [];
    for (const key of this.store.outbox.getKeys({ limit: this.batch })) ids.push(key as string);
    if (ids.length === 0) return;
    const rows: LedgerRow[] = [];
    for (const id of ids) {
      const held = this.written.get(id);
      if (held) { rows.push(held); continue; }
      const parsed = LedgerRowSchema.safeParse(tryGet(this.store.ledger, id));
      if (parsed.success) rows.push(parsed.data);
      else {
        // A row that does not read cannot be shipped; it stays in the local ledger for the operator.
        console.error(`cluster: ledger row ${id.slice(0, 80)} does not validate and is not shipped`);
        await this.store.outbox.remove(id);
      }
    }
    if (rows.length === 0) return;
    const epochs = await this.toPostgres(rows);
    // Balance changes Redis may not have yet (finish failed, or ran before a seed): applied once.
    const changes = rows.filter((r) => r.delta_nano !== 0 && epochs.get(r.id));
    let keep = new Set<string>();
    if (changes.length && this.limits) {
      try {
        await this.limits.apply(changes.map((r) => [r.id, r.workspace, r.delta_nano, epochs.get(r.id)!] as const));
      } catch (err) {
        // Postgres has them; their entries stay so the change reaches Redis when it is back.
        keep = new Set(changes.map((r) => r.id));
        if (Date.now() - this.loggedWait > 10_000) {
          this.loggedWait = Date.now();
          console.error(`cluster: ${changes.length} balance change(s) in Postgres wait for Redis: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    }
    await this.store.outbox.transaction(() => {
      for (const r of rows) if (!keep.has(r.id)) void this.store.outbox.remove(r.id);
    });
    for (const r of rows) if (!keep.has(r.id)) this.written.delete(r.id);
    // Out of the outbox: no pass will apply them again, so their markers can go (a marker left
    // by a failure here expires on its own).
    const done = changes.filter((r) => !keep.has(r.id)).map((r) => r.id);
    if (done.length && this.limits) this.limits.forget(done).catch(() => undefined);
  }

  /** One Postgres transaction: the rows (each once), their workspaces' balances; returns each changing row's epoch (see APPLY). */
  private async toPostgres(rows: readonly LedgerRow[]): Promise<Map<string, string | null>> {
    const wsIds = [...new Set(rows.map((r) => r.workspace))].sort();
    return inTransaction(this.cluster.pg, async (client) => {
      const records = wsIds.map((id) => { const ws = this.workspaces.get(id); return ws ? pgJson(workspaceRecord(ws)) : null; });
      await client.query(`INSERT INTO sluice_workspaces (id, record) SELECT id, record FROM unnest($1::text[], $2::jsonb[]) AS t(id, record)
        WHERE record IS NOT NULL ON CONFLICT (id) DO NOTHING`, [wsIds, records]);
      // Locked in one order by every replica (no deadlock), and against a seed running meanwhile.
      const locked = await client.query<{ id: string; seeded_epoch: string | null }>('SELECT id, seeded_epoch FROM sluice_workspaces WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE', [wsIds]);
      const seeded = new Map(locked.rows.map((r) => [r.id, r.seeded_epoch]));
      // Each row keeps the epoch its workspace was seeded in when Postgres took it: only a Redis
      // of that epoch can lack its change (a later seed read it from here).
      // The rows go as one JSON array that Postgres takes apart. (As arrays of columns, pg escaped
      // each row's JSON into an array literal, every quote doubled: this transaction took 6.2%
      // of a replica's CPU on metered requests, 3.0% now, by the cluster bench's profile.)
      // Column order as in the table; `row` is the element itself.
      const json = pgJson(rows);
      const inserted = await client.query<{ workspace: string; delta_nano: string }>(`INSERT INTO sluice_ledger (id, workspace, key_id, ts, kind, delta_nano, charge_usd, replica, epoch, row, status, admitted)
        SELECT r->>'id', r->>'workspace', r->>'key_id', round((r->>'ts')::float8)::bigint, r->>'kind', (r->>'delta_nano')::bigint, (r->>'charge_usd')::float8,
          $2, $3::jsonb->>(r->>'workspace'), r, (r->>'status')::int, (r->>'admitted')::bool
        FROM jsonb_array_elements($1::jsonb) AS r
        ON CONFLICT (id) DO NOTHING RETURNING workspace, delta_nano`, [json, this.cluster.replica, pgJson(Object.fromEntries(seeded))]);
      const sums = new Map<string, bigint>();
      for (const r of inserted.rows) if (r.delta_nano !== '0') sums.set(r.workspace, (sums.get(r.workspace) ?? 0n) + BigInt(r.delta_nano));
      if (sums.size) {
        await client.query(`UPDATE sluice_workspaces w SET balance_nano = w.balance_nano + d.delta FROM unnest($1::text[], $2::bigint[]) AS d(id, delta) WHERE w.id = d.id`,
          [[...sums.keys()], [...sums.values()].map(String)]);
      }
      // (a row shipped before, by a pass that stopped short of Redis, answers with the epoch it was taken in;
      // only this very row: another replica's row of the same id, a refund it took over from this one
      // (shared-limits.ts claimRefund), was applied by its own shipper, and this one's change is not to be)
      const epochs = await client.query<{ id: string; epoch: string | null }>(`SELECT l.id, l.epoch FROM jsonb_array_elements($1::jsonb) AS r
        JOIN sluice_ledger l ON l.id = r->>'id' WHERE l.delta_nano <> 0 AND l.row = r`, [json]);
      return new Map(epochs.rows.map((r) => [r.id, r.epoch]));
    });
  }

  /**
   * A workspace's balance from Postgres into Redis, for Redis's current epoch (a new one when
   * it has none): under the row's lock, so no shipped row can fall between the read and the
   * seed. The rows still in outboxes are applied by their shippers when they arrive.
   */
  async seed(ws: Workspace, credits: readonly string[] = []): Promise<void> {
    await inTransaction(this.cluster.pg, async (client) => {
      await client.query('INSERT INTO sluice_workspaces (id, record) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING', [ws.id, pgJson(workspaceRecord(ws))]);
      const row = await client.query<{ balance_nano: string }>('SELECT balance_nano FROM sluice_workspaces WHERE id = $1 FOR UPDATE', [ws.id]);
      const epoch = await this.limits!.seedScript(ws.id, row.rows[0]?.balance_nano ?? '0');
      await client.query('UPDATE sluice_workspaces SET seeded_epoch = $2 WHERE id = $1', [ws.id, epoch]);
      if (credits.length) {
        // Credit rows whose change this balance already holds (shipped before this epoch's seed)
        // are marked applied, so the credit that asked for the seed does not apply them again.
        const held = await client.query<{ id: string }>('SELECT id FROM sluice_ledger WHERE id = ANY($1::text[]) AND epoch IS DISTINCT FROM $2', [credits, epoch]);
        if (held.rows.length) await this.limits!.markApplied(epoch, held.rows.map((r) => r.id));
      }
    });
  }

  /**
   * What a key family's shipped rows count against its limits: charges this UTC day and
   * month, the last minute's admitted requests and tokens per second (`minute`: for the rpm
   * and tpm buckets), and per window the requests admitted in each of its 60 slices (a request refused
   * before admission, a 503 while Redis was down among them, was never counted).
   */
  async keyCounts(family: readonly string[], windows: ReadonlyArray<{ seconds: number }>, now: number, minute: boolean): Promise<KeyCounts> {
    const d = new Date(now);
    const dayStart = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
    const monthStart = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    const spend = await this.cluster.pg.query<{ day: number | null; month: number | null }>(`SELECT sum(charge_usd) FILTER (WHERE ts >= $2) AS day, sum(charge_usd) AS month
      FROM sluice_ledger WHERE key_id = ANY($1::text[]) AND kind = 'request' AND ts >= $3`, [family, dayStart, monthStart]);
    const out: KeyCounts = { dayNano: (spend.rows[0]?.day ?? 0) * 1e9, monthNano: (spend.rows[0]?.month ?? 0) * 1e9, minute: [], windows: [] };
    if (minute) {
      // (tokens as the finish counts them against tpm: the row's prompt and completion tokens)
      const got = await this.cluster.pg.query<{ s: string; n: string; tok: number | null }>(`SELECT floor(ts / 1000)::bigint AS s, count(*) AS n,
        sum((row->>'prompt_tokens')::float8 + (row->>'completion_tokens')::float8) AS tok FROM sluice_ledger
        WHERE key_id = ANY($1::text[]) AND kind = 'request' AND ts >= $2 AND admitted GROUP BY 1 ORDER BY 1`, [family, now - 60_000]);
      out.minute = got.rows.map((r) => [(Number(r.s) + 1) * 1000, Number(r.n), r.tok ?? 0]);
    }
    for (const { seconds } of windows) {
      const width = (seconds * 1000) / 60;
      const from = (Math.floor(now / width) - 59) * width;
      const slices = await this.cluster.pg.query<{ slice: string; n: string }>(`SELECT floor(ts / $2::float8)::bigint AS slice, count(*) AS n FROM sluice_ledger
        WHERE key_id = ANY($1::text[]) AND kind = 'request' AND ts >= $3 AND admitted GROUP BY 1`, [family, width, Math.floor(from)]);
      out.windows.push({ seconds, slices: slices.rows.map((r) => [Number(r.slice), Number(r.n)]) });
    }
    return out;
  }

  /**
   * A workspace's credit rows, newest first: those in Postgres, and this replica's still in
   * its outbox (so a top-up answered here shows at once).
   */
  async credits(workspace: string, limit: number, local: Iterable<LedgerRow>): Promise<LedgerRow[]> {
    const got = await this.cluster.pg.query<{ row: unknown }>("SELECT row FROM sluice_ledger WHERE workspace = $1 AND kind <> 'request' ORDER BY ts DESC LIMIT $2", [workspace, limit]);
    const byId = new Map<string, LedgerRow>();
    for (const r of got.rows) { const parsed = LedgerRowSchema.safeParse(r.row); if (parsed.success) byId.set(parsed.data.id, parsed.data); }
    for (const row of local) byId.set(row.id, row);
    return [...byId.values()].sort((a, b) => b.ts - a.ts).slice(0, limit);
  }

  /**
   * A row as Postgres has it, or null. A request answered through another replica moments
   * ago may still be in that replica's outbox: a request id from the last hour (its time is
   * in it) is looked for again until two ship intervals have passed, so feedback or a refund
   * sent at once through another replica finds it, and an unknown id answers no slower.
   */
  async rowSoon(id: string): Promise<LedgerRow | null> {
    const bornAt = requestIdTime(id);
    const recent = bornAt !== null && bornAt > Date.now() - 3_600_000 && bornAt <= Date.now() + 60_000;
    const until = Date.now() + 2 * this.everyMs + 100;
    for (;;) {
      const row = await this.row(id);
      if (row || !recent || Date.now() >= until) return row;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** A row as Postgres has it (validated: a stored record is a boundary), or null. */
  async row(id: string): Promise<LedgerRow | null> {
    const got = await this.cluster.pg.query<{ row: unknown }>('SELECT row FROM sluice_ledger WHERE id = $1', [id]).catch((err: unknown) => {
      throw new GatewayError(Errors.storeUnavailable, `The ledger in Postgres cannot be read right now (${err instanceof Error ? err.message.slice(0, 200) : String(err)}). Retry shortly.`).retryAfter(1000);
    });
    const parsed = LedgerRowSchema.safeParse(got.rows[0]?.row);
    return parsed.success ? parsed.data : null;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** When a request id was made (RequestIds: `req_` then the time in base 36, 9 digits), or null when it is not one. */
export function requestIdTime(id: string): number | null {
  const m = /^req_([0-9a-z]{9})[0-9a-z]{11}$/.exec(id);
  return m ? parseInt(m[1]!, 36) : null;
}

/** A workspace record read back from Postgres (a boundary: validated). */
export const StoredWorkspace = WorkspaceSchema.omit({ balance_nano: true });
export type StoredWorkspace = z.infer<typeof StoredWorkspace>;
