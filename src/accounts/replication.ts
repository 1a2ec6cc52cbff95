// Cluster mode: keys and workspaces are written to Postgres first, then every replica copies
// them into its memory (and its LMDB, so a restart while Postgres is down still knows them).
// A write bumps the row's version from one sequence and NOTIFYs; each replica LISTENs and
// reads what changed at once, and also reads every `pollMs` in case a notification was
// missed. A revocation or a limit change made through any replica is in force on every
// other within `pollMs` at worst (milliseconds when the notification arrives).
import type pg from 'pg';
import { Errors, GatewayError } from '../errors.js';
import { inTransaction, NOTIFY_CHANNEL as CHANNEL, pgJson, Refresher, type Cluster } from '../store/cluster.js';
import { capMessage, KeyRecordSchema, type KeyRecord, type KeyRing } from './keys.js';
import { StoredWorkspace, workspaceRecord } from './shipper.js';
import type { Workspace, Workspaces } from './workspaces.js';

/**
 * Versions come from one sequence, but transactions commit in any order: each read goes
 * back this many versions behind the highest seen, so a write that committed late is still
 * read (reading a record twice changes nothing).
 */
const OVERLAP = 256;

export class Replication {
  private seen = 0;
  private timer: NodeJS.Timeout | null = null;
  private listener: pg.PoolClient | null = null;

  /** Notifications of other kinds (`kind:payload` on the same channel), by kind. */
  private readonly others = new Map<string, (payload: string) => void>();

  constructor(private readonly cluster: Cluster, private readonly keys: KeyRing, private readonly workspaces: Workspaces, private readonly pollMs = 1000) {}

  /** Hears `kind:payload` notifications (SharedResponses's forgotten responses, the caches' evictions). */
  on(kind: string, hear: (payload: string) => void): void {
    this.others.set(kind, hear);
  }

  /** Runs each time this replica starts listening again after its listener failed (notices sent meanwhile were missed). */
  onRelisten: (() => void) | null = null;
  private listened = false;

  /** Reads everything once (before the gateway serves), then follows changes. */
  async start(): Promise<void> {
    await this.read();
    this.keys.publisher = (records, cap) => (cap === undefined ? this.publishKeys(records) : this.publishCapped(records[0]!, cap));
    this.workspaces.publisher = (ws, mailbox) => this.publishWorkspace(ws, mailbox);
    this.workspaces.catchUp = () => this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.pollMs);
    this.timer.unref();
    await this.listen();
  }

  private async listen(): Promise<void> {
    try {
      const client = await this.cluster.pg.connect();
      client.on('notification', (n) => {
        const payload = n.payload ?? '';
        const colon = payload.indexOf(':');
        const other = colon > 0 ? this.others.get(payload.slice(0, colon)) : undefined;
        if (other) other(payload.slice(colon + 1));
        else void this.refresh();
      });
      client.on('error', () => { this.dropListener(); });
      await client.query(`LISTEN ${CHANNEL}`);
      this.listener = client;
      if (this.listened) this.onRelisten?.();
      this.listened = true;
    } catch {
      // The poll carries on; the next refresh tries to listen again.
      this.dropListener();
    }
  }

  private dropListener(): void {
    const l = this.listener;
    this.listener = null;
    l?.release(true);
  }

  /** Reads what changed; settles once a read begun after the call is over (see Refresher). */
  refresh(): Promise<void> {
    return this.refresher.refresh();
  }

  private readonly refresher = new Refresher(() => this.read(), 'keys and workspaces', () => { if (!this.listener && this.timer) void this.listen(); });

  private async read(): Promise<void> {
    const from = Math.max(0, this.seen - OVERLAP);
    // Workspaces first: a key read with its workspace in the same pass finds it.
    const ws = await this.cluster.pg.query<{ record: unknown; balance_nano: string; version: string }>('SELECT record, balance_nano, version FROM sluice_workspaces WHERE version > $1 ORDER BY version', [from]);
    const keys = await this.cluster.pg.query<{ record: unknown; version: string }>('SELECT record, version FROM sluice_keys WHERE version > $1 ORDER BY version', [from]);
    for (const r of ws.rows) {
      const parsed = StoredWorkspace.safeParse(r.record);
      if (parsed.success) this.workspaces.applyRemote(parsed.data, Number(r.balance_nano));
      else console.error('cluster: a workspace record in Postgres does not validate; skipped');
      this.seen = Math.max(this.seen, Number(r.version));
    }
    for (const r of keys.rows) {
      const parsed = KeyRecordSchema.safeParse(r.record);
      if (parsed.success) this.keys.applyRemote(parsed.data);
      else console.error('cluster: a key record in Postgres does not validate; skipped');
      this.seen = Math.max(this.seen, Number(r.version));
    }
  }

  private async publishKeys(records: readonly KeyRecord[]): Promise<void> {
    await this.cluster.pg.query(`WITH up AS (INSERT INTO sluice_keys (id, record) SELECT id, record FROM unnest($1::text[], $2::jsonb[]) AS t(id, record)
      ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, version = nextval('sluice_version') RETURNING 1)
      SELECT pg_notify('${CHANNEL}', 'keys') FROM (SELECT count(*) FROM up) c`, [records.map((r) => r.id), records.map((r) => pgJson(r))]);
  }

  /**
   * A new key, written only while its workspace has fewer than `cap` live stored keys in the
   * shared record: counted and written under a lock on the workspace, so replicas minting at
   * once cannot pass the cap together (each checked only its own copy before).
   */
  private async publishCapped(record: KeyRecord, cap: number): Promise<void> {
    await inTransaction(this.cluster.pg, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtext('sluice_keys:' || $1))", [record.workspace]);
      const live = await client.query<{ n: string }>(`SELECT count(*) AS n FROM sluice_keys WHERE record->>'workspace' = $1 AND record->>'revoked_at' IS NULL
        AND record->>'kind' IN ('minted', 'registered')`, [record.workspace]);
      if (Number(live.rows[0]?.n ?? 0) >= cap) throw new GatewayError(Errors.forbidden, capMessage(cap));
      await client.query(`INSERT INTO sluice_keys (id, record) VALUES ($1, $2)`, [record.id, pgJson(record)]);
      await client.query(`SELECT pg_notify('${CHANNEL}', 'keys')`);
    });
  }

  private async publishWorkspace(ws: Workspace, mailbox: string | null): Promise<void> {
    try {
      await this.cluster.pg.query(`WITH up AS (INSERT INTO sluice_workspaces (id, record, mailbox) VALUES ($1, $2, $3)
        ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, version = nextval('sluice_version') RETURNING 1)
        SELECT pg_notify('${CHANNEL}', 'workspaces') FROM (SELECT count(*) FROM up) c`, [ws.id, pgJson(workspaceRecord(ws)), mailbox]);
    } catch (err) {
      // One workspace per mailbox across every replica: the unique index says another has it.
      if ((err as { code?: string }).code === '23505') throw new GatewayError(Errors.conflict, 'A workspace with this email already exists.', 'email');
      throw err;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.dropListener();
  }
}
