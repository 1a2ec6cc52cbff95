// Cluster mode's semantic cache: every replica's entries, in Postgres (one row per entry,
// its LSH bucket an indexed column), copied into every replica's own LMDB semantic cache.
// A lookup stays local (no round trip on the request path: the embedding already costs the
// pool's time); what another replica stored is found here within `cluster.sync_ms`. Entries
// written here go to Postgres in batches; an eviction (feedback) is a tombstone every
// replica applies. Expired rows are deleted by whichever replica gets there.
import { Packr } from 'msgpackr';
import { Errors, GatewayError } from '../errors.js';
import { notify, type Cluster } from '../store/cluster.js';
import { SemanticSchema, type ResponseCache } from './cache.js';

const packr = new Packr({ useRecords: false });
/** As in replication.ts: reads go back this many versions (writes commit in any order). */
const OVERLAP = 1024;

interface Pending {
  id: string;
  ws: string;
  context: string;
  bucket: number;
  exp: number;
  /** The entry's LMDB value, packed; null: removed. */
  entry: Buffer | null;
}

export class SharedSemanticCache {
  private pending: Pending[] = [];
  private seen = 0;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private lastPurge = 0;
  private failures = 0;

  constructor(private readonly cluster: Cluster, private readonly cache: ResponseCache, private readonly syncMs = 1000) {}

  /** Reads what the other replicas stored (before the gateway serves), then keeps in step. */
  async start(): Promise<void> {
    await this.pull();
    this.cache.semanticShared = this;
    const tick = () => {
      this.timer = setTimeout(() => void this.sync().finally(tick), Math.min(this.syncMs, 1000) * Math.min(20, 2 ** this.failures));
      this.timer.unref();
    };
    tick();
  }

  /** An entry stored (or its threshold raised) here: queued for Postgres. */
  put(ws: string, context: string, bucket: number, id: string, value: { exp: number }): void {
    if (this.pending.length < 10_000) this.pending.push({ id, ws, context, bucket, exp: value.exp, entry: packr.pack(value) });
  }

  /**
   * An entry evicted here: every replica removes it, at once on a notice (a wrong answer is
   * not served meanwhile), and for good with the tombstone (a replica that missed the notice).
   */
  remove(ws: string, context: string, bucket: number, id: string): void {
    if (this.pending.length < 10_000) this.pending.push({ id, ws, context, bucket, exp: Date.now() + 86_400_000, entry: null });
    void notify(this.cluster, `cache:unsemantic:${ws}:${context}:${bucket}:${id}`);
  }

  /**
   * A purge of `ws`, through this replica or heard from another: this replica's entries of it
   * not yet sent are dropped. Sent after the purge's tombstones, each would be a live row again
   * (an id Postgres had not seen), read back by every replica: a purged answer served on.
   */
  dropPending(ws: string): void {
    this.pending = this.pending.filter((p) => p.ws !== ws);
  }

  /**
   * A workspace's entries, purged through this replica: its changes not yet sent are dropped,
   * and every row of it becomes a tombstone, which the other replicas apply as they read.
   */
  async purge(ws: string): Promise<void> {
    this.dropPending(ws);
    try {
      await this.cluster.pg.query(`UPDATE sluice_semantic SET entry = NULL, exp = $2, replica = $3, version = nextval('sluice_version')
        WHERE ws = $1 AND entry IS NOT NULL`, [ws, Date.now() + 86_400_000, this.cluster.replica]);
    } catch (err) {
      throw new GatewayError(Errors.storeUnavailable, `The shared semantic cache could not be purged (${err instanceof Error ? err.message : String(err)}); retry shortly.`);
    }
  }

  private async sync(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      // (what the others stored is read even when this replica's own writes fail)
      const pushed = await this.push().then(() => null, (err: unknown) => err);
      await this.pull();
      if (pushed) throw pushed;
      if (Date.now() - this.lastPurge > 60_000) {
        this.lastPurge = Date.now();
        await this.cluster.pg.query('DELETE FROM sluice_semantic WHERE exp < $1', [Date.now() - 60_000]);
      }
      this.failures = 0;
    } catch (err) {
      if (this.failures++ % 30 === 0) console.error(`cluster: the shared semantic cache could not sync with Postgres: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      this.running = false;
    }
  }

  private async push(): Promise<void> {
    if (!this.pending.length) return;
    const taken = this.pending.splice(0, 500);
    // A tombstone is final (the WHERE below): an entry's id is the request that stored it, and
    // an eviction through another replica can reach Postgres before this replica's batch with
    // the entry, which brought it back, live, for every replica to read again.
    // One row per entry, its last change: Postgres refuses an INSERT … ON CONFLICT DO UPDATE
    // that would update one row twice, and an entry stored and evicted (or its threshold
    // raised) within one interval is two changes to it. (Refused, the batch went back and
    // failed again on every pass: this replica's entries and evictions never left it.)
    const last = new Map<string, Pending>();
    for (const p of taken) { last.delete(p.id); last.set(p.id, p); }
    const batch = [...last.values()];
    try {
      await this.cluster.pg.query(`INSERT INTO sluice_semantic (id, ws, context, bucket, exp, entry, replica)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::bytea[], $7::text[])
        ON CONFLICT (id) DO UPDATE SET entry = EXCLUDED.entry, exp = EXCLUDED.exp, replica = EXCLUDED.replica, version = nextval('sluice_version')
        WHERE sluice_semantic.entry IS NOT NULL`, [
        batch.map((p) => p.id), batch.map((p) => p.ws), batch.map((p) => p.context), batch.map((p) => p.bucket), batch.map((p) => p.exp),
        batch.map((p) => p.entry), batch.map(() => this.cluster.replica)]);
    } catch (err) {
      this.pending.unshift(...batch);
      throw err;
    }
  }

  private async pull(): Promise<void> {
    const from = Math.max(0, this.seen - OVERLAP);
    const rows = await this.cluster.pg.query<{ id: string; ws: string; context: string; bucket: number; entry: Buffer | null; version: string; replica: string }>(
      'SELECT id, ws, context, bucket, entry, version, replica FROM sluice_semantic WHERE version > $1 AND exp > $2 ORDER BY version LIMIT 5000', [from, Date.now()]);
    for (const r of rows.rows) {
      this.seen = Math.max(this.seen, Number(r.version));
      if (r.replica === this.cluster.replica) continue; // (its own: here already)
      if (r.entry === null) { this.cache.applySemantic(r.ws, r.context, r.bucket, r.id, null); continue; }
      let value: unknown;
      try { value = packr.unpack(r.entry); } catch { continue; }
      const parsed = SemanticSchema.safeParse(value); // (a boundary: validated)
      if (parsed.success) this.cache.applySemantic(r.ws, r.context, r.bucket, r.id, parsed.data);
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
