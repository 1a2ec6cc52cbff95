// Workspaces (tenants) and their credits. 1 credit = 1 USD; balances are kept in integer
// nano-dollars so that a balance is exactly the sum of its ledger rows. Everything is held
// in memory (checks on the hot path are Map lookups); a balance changes only together with
// a ledger row, and the ledger writes the row and the workspace's new balance in one LMDB
// transaction (see Ledger.flush).
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import { mustStore } from '../store/headroom.js';
import { readableRange, type Store } from '../store/lmdb.js';
import { normalizeEmail } from './registration.js';

export const NANO = 1e9;
export const toNano = (usd: number): number => Math.round(usd * NANO);
export const fromNano = (nano: number): number => nano / NANO;

export const WorkspaceSchema = z.object({
  id: z.string(),
  name: z.string(),
  email: z.string().nullable(),
  /** Unmetered workspaces (the operator's default one) are never refused for credits. */
  metered: z.boolean(),
  balance_nano: z.number().int(),
  created_at: z.number(),
});
export type Workspace = z.infer<typeof WorkspaceSchema>;

export const DEFAULT_WORKSPACE = 'default';

/** What the API shows: dollars, plus what is held for requests in flight. */
export function workspaceView(ws: Workspace, reservedNano: number) {
  return {
    id: ws.id, object: 'workspace', name: ws.name, email: ws.email, metered: ws.metered,
    balance_usd: fromNano(ws.balance_nano), reserved_usd: fromNano(reservedNano),
    available_usd: fromNano(ws.balance_nano - reservedNano), created_at: ws.created_at,
  };
}

export class Workspaces {
  private readonly byId = new Map<string, Workspace>();
  private readonly byEmail = new Map<string, Workspace>();
  /** Estimated cost of requests in flight, held against the balance so concurrency cannot overspend. */
  private readonly reserved = new Map<string, number>();
  private readonly dirty = new Set<Workspace>();
  /**
   * Cluster mode: credits are held and balances kept in the shared store (shared-limits.ts),
   * which refuses what the balance does not cover; the checks here then let everything through.
   */
  shared = false;
  /** Cluster mode: the live balances and holds (nano) of these workspaces, from the shared store (absent: not there yet). */
  live: ((ids: readonly string[]) => Promise<Map<string, { balance: number; held: number }>>) | null = null;

  /**
   * Brings the balances and holds the API shows up to date (cluster mode: from the shared
   * store, where every replica's requests move them; a failure leaves this replica's figures).
   */
  async refreshed(ids: readonly string[]): Promise<void> {
    if (!this.live) return;
    const got = await this.live(ids).catch(() => null);
    for (const [id, { balance, held }] of got ?? []) {
      const ws = this.byId.get(id);
      if (!ws) continue;
      ws.balance_nano = balance;
      if (held > 0) this.reserved.set(id, held); else this.reserved.delete(id);
    }
  }

  /** Cluster mode: writes a new workspace (and its mailbox, unique there) to the shared record (replication.ts). */
  publisher: ((ws: Workspace, mailbox: string | null) => Promise<void>) | null = null;
  /** Cluster mode: reads what other replicas wrote (workspaces and keys) now, rather than within `sync_ms`. */
  catchUp: (() => Promise<void>) | null = null;
  /** Mailboxes of workspaces being written to the shared record: a second registration waits its turn as a 409. */
  private readonly creating = new Set<string>();

  constructor(private readonly store: Store) {
    for (const { key, value } of readableRange(store.workspaces)) {
      const parsed = WorkspaceSchema.safeParse(value);
      if (parsed.success) this.index(parsed.data);
      else console.error(`workspaces: skipping the stored workspace ${String(key).slice(0, 80)}, which ${value === undefined ? 'does not read' : `does not validate: ${parsed.error.issues[0]?.message}`}`);
    }
    if (!this.byId.has(DEFAULT_WORKSPACE)) {
      this.index({ id: DEFAULT_WORKSPACE, name: 'default', email: null, metered: false, balance_nano: 0, created_at: Date.now() });
      this.dirty.add(this.byId.get(DEFAULT_WORKSPACE)!);
    }
  }

  private index(ws: Workspace): void {
    this.byId.set(ws.id, ws);
    if (ws.email) this.byEmail.set(normalizeEmail(ws.email), ws);
    this.onChange?.(ws);
  }

  /** Event-loop threads (server/threads.ts): a workspace as it is created or changed here (not its balance), for their copies. */
  onChange: ((ws: Workspace) => void) | null = null;
  /** Event-loop threads: settles once every thread's copy has the changes so far. */
  propagated: (() => Promise<void>) | null = null;

  get(id: string): Workspace | undefined {
    return this.byId.get(id);
  }

  require(id: string): Workspace {
    const ws = this.byId.get(id);
    if (!ws) throw new GatewayError(Errors.notFound, `No workspace with id ${id}.`, 'id');
    return ws;
  }

  /**
   * `require`, for an admin call that may follow at once one made through another replica
   * (cluster mode: a workspace not here yet is read from the shared record first).
   */
  async find(id: string): Promise<Workspace> {
    if (!this.byId.has(id) && this.catchUp) await this.catchUp();
    return this.require(id);
  }

  byEmailAddress(email: string): Workspace | undefined {
    return this.byEmail.get(normalizeEmail(email));
  }

  list(): Workspace[] {
    return [...this.byId.values()];
  }

  /**
   * A new metered workspace with a zero balance; credits arrive as top-up rows. One per
   * mailbox (see normalizeEmail). In cluster mode it is written to the shared record first
   * (which refuses a mailbox another replica registered meanwhile): a failure creates nothing.
   */
  async create(name: string, email: string | null): Promise<Workspace> {
    // (written with the ledger's next batch: on a full disk it would be answered, then lost at a restart)
    mustStore(this.store.headroom, 'a new workspace');
    const lower = email?.trim().toLowerCase() ?? null;
    const mailbox = lower ? normalizeEmail(lower) : null;
    if (mailbox && (this.byEmail.has(mailbox) || this.creating.has(mailbox))) throw new GatewayError(Errors.conflict, 'A workspace with this email already exists.', 'email');
    const ws: Workspace = { id: `ws_${randomBytes(8).toString('hex')}`, name, email: lower, metered: true, balance_nano: 0, created_at: Date.now() };
    if (this.publisher) {
      if (mailbox) this.creating.add(mailbox);
      try {
        await this.publisher(ws, mailbox);
      } catch (err) {
        if (err instanceof GatewayError) throw err;
        throw new GatewayError(Errors.storeUnavailable, `The workspace could not be written to the shared record (${err instanceof Error ? err.message.slice(0, 200) : String(err)}); nothing was created. Retry shortly.`).retryAfter(1000);
      } finally {
        if (mailbox) this.creating.delete(mailbox);
      }
    }
    this.index(ws);
    this.dirty.add(ws);
    await this.propagated?.();
    return ws;
  }

  /**
   * Cluster mode: a workspace another replica wrote, with its balance in the shared record.
   * An event-loop thread's copy: one the main thread created or changed (its balance is not
   * read there: `shared` is set, the main thread admits; nothing persists the copy).
   */
  applyRemote(record: Omit<Workspace, 'balance_nano'>, balanceNano: number): void {
    const ws = this.byId.get(record.id);
    if (ws) { ws.name = record.name; ws.metered = record.metered; this.onChange?.(ws); return; }
    const fresh: Workspace = { ...record, balance_nano: balanceNano };
    this.index(fresh);
    this.dirty.add(fresh);
  }

  reservedNano(id: string): number {
    return this.reserved.get(id) ?? 0;
  }

  availableNano(ws: Workspace): number {
    if (this.shared) return Number.MAX_SAFE_INTEGER;
    return ws.balance_nano - (this.reserved.get(ws.id) ?? 0);
  }

  /** Holds `nano` against the balance while a request is in flight. */
  reserve(ws: Workspace, nano: number): void {
    this.reserved.set(ws.id, (this.reserved.get(ws.id) ?? 0) + nano);
  }

  release(ws: Workspace, nano: number): void {
    const left = (this.reserved.get(ws.id) ?? 0) - nano;
    if (left > 0) this.reserved.set(ws.id, left);
    else this.reserved.delete(ws.id);
  }

  /** Only the ledger calls this, with the row that records the change. */
  applyDelta(ws: Workspace, deltaNano: number): number {
    ws.balance_nano += deltaNano;
    this.dirty.add(ws);
    return ws.balance_nano;
  }

  /** These workspaces' records are to be written again (a batch that took them failed to commit). */
  markDirty(ids: readonly string[]): void {
    for (const id of ids) {
      const ws = this.get(id);
      if (ws) this.dirty.add(ws);
    }
  }

  /** Workspaces changed since the last call; the ledger persists them with its rows. */
  takeDirty(): Workspace[] {
    if (this.dirty.size === 0) return [];
    const out = [...this.dirty].map((ws) => ({ ...ws }));
    this.dirty.clear();
    return out;
  }
}
