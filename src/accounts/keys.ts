// API keys: shown once, stored as SHA-256, compared in constant time. Every key is held
// in memory by its hash (loaded from LMDB at start), so authenticating is a hash and a
// Map lookup — no I/O on the hot path.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { sha256Hex } from '../digest.js';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import { mustStore } from '../store/headroom.js';
import { readableRange, tryGet, type Store } from '../store/lmdb.js';
import { MECHANISMS } from '../wire/savings.js';
import { childLimits } from './key-limits.js';

/** `feedback`: only POST /v1/feedback (an app's quality signals), for a key that should not run inference. */
export const Scope = z.enum(['inference', 'usage:read', 'keys:write', 'admin', 'feedback']);
export type Scope = z.infer<typeof Scope>;

/** A rolling window: at most `requests` in any `seconds`. */
export const WindowSchema = z.object({
  requests: z.number().int().positive(),
  seconds: z.number().int().min(60).max(90 * 86400),
}).strict();

/**
 * Windows of one length are one limit, the strictest: kept once, with the fewest requests.
 * As given, each counted every request in the one count kept per length (a key with three
 * windows of 6 per minute was held to 2 a minute), and in cluster mode they broke the
 * window's running total in Redis (it then let through far more than 6). Applied as a key is
 * read, stored keys included, so every copy of a key counts the same windows.
 */
function strictestPerLength(windows: Array<z.infer<typeof WindowSchema>>): Array<z.infer<typeof WindowSchema>> {
  if (windows.length < 2) return windows;
  const out: Array<z.infer<typeof WindowSchema>> = [];
  for (const w of windows) {
    const same = out.findIndex((x) => x.seconds === w.seconds);
    if (same === -1) out.push(w);
    else if (w.requests < out[same]!.requests) out[same] = w;
  }
  return out;
}

export const KeyLimitsSchema = z.object({
  rpm: z.number().int().positive().optional(),
  tpm: z.number().int().positive().optional(),
  windows: z.array(WindowSchema).max(8).transform(strictestPerLength).optional(),
  budget_usd_day: z.number().positive().optional(),
  budget_usd_month: z.number().positive().optional(),
  /** Model slugs (or `provider/*`) this key may call. */
  models: z.array(z.string().min(1)).min(1).optional(),
  providers: z.array(z.string().min(1)).min(1).optional(),
  max_concurrency: z.number().int().positive().optional(),
  /** Only routes served in these regions (the sim counts as 'local'). */
  regions: z.array(z.string().min(1)).min(1).optional(),
  /** Only routes whose provider keeps no data. */
  zdr_only: z.boolean().optional(),
  /** Savings mechanisms turned off for this key (`all` for every one). */
  savings_off: z.array(z.enum(['all', ...MECHANISMS])).min(1).optional(),
}).strict();
export type KeyLimits = z.infer<typeof KeyLimitsSchema>;

/** Self-registered keys: 50 requests per 6 h and 600 per 7 days, rolling. */
export const REGISTERED_LIMITS: KeyLimits = { windows: [{ requests: 50, seconds: 6 * 3600 }, { requests: 600, seconds: 7 * 86400 }] };

export const KeyRecordSchema = z.object({
  id: z.string(),
  name: z.string(),
  /** master and operator keys come from config and are exempt from limits. */
  kind: z.enum(['master', 'operator', 'minted', 'registered']),
  workspace: z.string(),
  scopes: z.array(Scope),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  prefix: z.string(),
  created_at: z.number(),
  revoked_at: z.number().nullable(),
  limits: KeyLimitsSchema.nullable().default(null),
  /** The key that minted this one (self-serve), or null. */
  created_by: z.string().nullable().default(null),
});
export type KeyRecord = z.infer<typeof KeyRecordSchema>;

/** The public view of a key: never the hash, never the secret. */
export type KeyView = Omit<KeyRecord, 'hash'>;

import { DEFAULT_WORKSPACE } from './workspaces.js';


function newSecret(kind: 'master' | 'key'): string {
  return `sk-sluice-${kind === 'master' ? 'master-' : ''}${randomBytes(24).toString('base64url')}`;
}

/** The operator's own keys (the master key, config `api_keys`): exempt from limits, trusted by the router, allowed its controls. */
export function isOperatorKey(key: Pick<KeyRecord, 'kind'>): boolean {
  return key.kind === 'master' || key.kind === 'operator';
}

export function viewOf(record: KeyRecord): KeyView {
  const { hash: _hash, ...view } = record;
  return view;
}

/** Self-serve minting nests at most this deep (a key, its child, …); deeper chains are refused at mint. */
const MAX_CHAIN = 8;

/** The refusal of a self-serve mint past the workspace's live key cap. */
export function capMessage(cap: number): string {
  return `This workspace has ${cap} live keys, the most self-serve minting allows; revoke some first.`;
}

export class KeyRing {
  private readonly byHash = new Map<string, { record: KeyRecord; digest: Buffer }>();
  private readonly byId = new Map<string, KeyRecord>();
  /** Each key's chain (itself, its parent, …), built on first use; any change to the ring clears it. */
  private readonly chains = new Map<string, readonly KeyRecord[]>();
  /** The keys each key minted, so a family is walked down without scanning every key. */
  private readonly children = new Map<string, Set<string>>();
  /** Live (unrevoked) stored keys per workspace: self-serve minting stops at `maxPerWorkspace`. */
  private readonly live = new Map<string, number>();
  /** Keys being minted (their put not committed yet), counted as live so concurrent mints cannot pass a cap together. */
  private readonly minting = new Map<string, number>();

  /**
   * Cluster mode: writes changed records to the shared record (Postgres) before they are
   * in force here (replication.ts); a failure refuses the change. Null on one node.
   */
  publisher: ((records: readonly KeyRecord[], cap?: number) => Promise<void>) | null = null;

  /** Event-loop threads (server/threads.ts): each record as it comes into force here, for their copies of the ring. */
  onChange: ((record: KeyRecord) => void) | null = null;
  /** Event-loop threads: settles once every thread's copy has the changes so far (a change answers only then: in force everywhere). */
  propagated: (() => Promise<void>) | null = null;

  private constructor(private readonly store: Store) {}

  /** An event-loop thread's copy: a record the main thread put in force (it wrote it; nothing is written here). */
  follow(record: KeyRecord): void {
    this.index(record);
  }

  /** Cluster mode: a record another replica wrote (or this one, read back), in force from now. */
  applyRemote(record: KeyRecord): void {
    if (record.kind !== 'minted' && record.kind !== 'registered') return;
    const before = this.byId.get(record.id);
    if (before && JSON.stringify(before) === JSON.stringify(record)) return;
    this.index(record);
    void this.store.keys.put(record.id, record);
  }

  /** `cap`: a new key of a workspace, written only while it has fewer live stored keys than this, every replica's counted (else a 403). */
  private async publish(records: readonly KeyRecord[], cap?: number): Promise<void> {
    if (!this.publisher) return;
    try {
      await this.publisher(records, cap);
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      throw new GatewayError(Errors.storeUnavailable, `The change could not be written to the shared record (${err instanceof Error ? err.message.slice(0, 200) : String(err)}); nothing changed. Retry shortly.`).retryAfter(1000);
    }
  }

  /**
   * Loads stored keys, adds the operator keys from config and the master key (from config,
   * or generated on first start into `<data_dir>/master.key`, mode 0600).
   */
  static async open(store: Store, opts: { dataDir: string; masterKey?: string | undefined; operatorKeys: readonly string[] }):
    Promise<{ ring: KeyRing; masterKeyFile: string | null }> {
    const ring = new KeyRing(store);
    for (const { key, value } of readableRange(store.keys)) {
      const parsed = KeyRecordSchema.safeParse(value);
      if (parsed.success) ring.index(parsed.data);
      // (its id only: a key record's id is no secret, its hash is never logged)
      else console.error(`keys: skipping the stored key ${String(key).slice(0, 80)}, which ${value === undefined ? 'does not read' : `does not validate: ${parsed.error.issues[0]?.message}`}`);
    }
    let masterKeyFile: string | null = null;
    let master = opts.masterKey;
    if (!master) {
      masterKeyFile = join(opts.dataDir, 'master.key');
      master = await readFile(masterKeyFile, 'utf8').then((s) => s.trim(), () => undefined);
      if (!master) {
        master = newSecret('master');
        await writeFile(masterKeyFile, `${master}\n`, { mode: 0o600 });
      }
      await chmod(masterKeyFile, 0o600);
    }
    ring.index(ring.configKey('master', master, 'master', ['inference', 'usage:read', 'keys:write', 'admin']));
    for (const secret of opts.operatorKeys) {
      ring.index(ring.configKey('operator', secret, 'operator key', ['inference', 'usage:read', 'keys:write']));
    }
    return { ring, masterKeyFile };
  }

  /** Keys from config live in memory only; their id is derived from the hash so it is stable. */
  private configKey(kind: 'master' | 'operator', secret: string, name: string, scopes: Scope[]): KeyRecord {
    const hash = sha256Hex(secret);
    return {
      id: `${kind === 'master' ? 'key_master' : 'key_op'}_${hash.slice(0, 10)}`,
      name, kind, workspace: DEFAULT_WORKSPACE, scopes, hash,
      prefix: secret.slice(0, 14), created_at: 0, revoked_at: null, limits: null, created_by: null,
    };
  }

  private index(record: KeyRecord): void {
    this.chains.clear();
    const before = this.byId.get(record.id);
    const stored = record.kind === 'minted' || record.kind === 'registered';
    if (stored) {
      const delta = (record.revoked_at === null ? 1 : 0) - (before && before.revoked_at === null ? 1 : 0);
      if (delta) this.live.set(record.workspace, (this.live.get(record.workspace) ?? 0) + delta);
    }
    if (record.created_by) {
      let kids = this.children.get(record.created_by);
      if (!kids) this.children.set(record.created_by, kids = new Set());
      kids.add(record.id);
    }
    this.byId.set(record.id, record);
    if (record.revoked_at === null) this.byHash.set(record.hash, { record, digest: Buffer.from(record.hash, 'hex') });
    else this.byHash.delete(record.hash);
    this.onChange?.(record);
  }

  /** The key for a bearer token, or a 401. */
  authenticate(authorization: string): KeyRecord {
    if (!authorization) throw new GatewayError(Errors.missingKey, 'Missing API key: send "Authorization: Bearer <key>" (or "x-api-key: <key>", as Anthropic clients do).');
    const space = authorization.indexOf(' ');
    const token = space > 0 && authorization.slice(0, space).toLowerCase() === 'bearer' ? authorization.slice(space + 1).trim() : '';
    if (!token) throw new GatewayError(Errors.missingKey, 'Malformed Authorization header: expected "Bearer <key>".');
    const hex = sha256Hex(token);
    const entry = this.byHash.get(hex);
    // The map is keyed by the hash; confirm with a constant-time compare of the digests.
    if (!entry || !timingSafeEqual(entry.digest, Buffer.from(hex, 'hex'))) {
      throw new GatewayError(Errors.invalidKey, 'Invalid API key.');
    }
    // A minted key lives only as long as the keys above it.
    if (entry.record.created_by && this.chain(entry.record).some((k) => k.revoked_at !== null)) {
      throw new GatewayError(Errors.invalidKey, 'Invalid API key (the key that minted it was revoked).');
    }
    return entry.record;
  }

  /**
   * A new key. `createdBy` (self-serve minting): the key minting it, whose limits it may not
   * loosen (what it leaves out it inherits; see childLimits) and whose quota it shares.
   */
  async mint(opts: { name: string; workspace?: string; scopes?: Scope[]; limits?: KeyLimits | null | undefined; kind?: 'minted' | 'registered'; createdBy?: string | null;
    /** Self-serve minting: the workspace's live key cap, checked again across every replica (cluster mode) as the key is written. */
    cap?: number }):
    Promise<{ record: KeyRecord; secret: string }> {
    mustStore(this.store.headroom, 'a new key');
    const parent = opts.createdBy ? this.byId.get(opts.createdBy) : undefined;
    if (parent && this.chain(parent).length >= MAX_CHAIN) {
      throw new GatewayError(Errors.forbidden, `Keys minted by minted keys nest at most ${MAX_CHAIN} deep.`);
    }
    const limits = parent ? childLimits(parent.limits, opts.limits) : opts.limits ?? null;
    const workspace = opts.workspace ?? DEFAULT_WORKSPACE;
    this.minting.set(workspace, (this.minting.get(workspace) ?? 0) + 1);
    const secret = newSecret('key');
    const record: KeyRecord = {
      id: `key_${randomBytes(8).toString('hex')}`,
      name: opts.name,
      kind: opts.kind ?? 'minted',
      workspace,
      scopes: opts.scopes ?? ['inference'],
      hash: sha256Hex(secret),
      prefix: secret.slice(0, 14),
      created_at: Date.now(),
      revoked_at: null,
      limits,
      created_by: opts.createdBy ?? null,
    };
    try {
      await this.publish([record], opts.cap);
      await this.store.keys.put(record.id, record);
      this.index(record);
    } finally {
      // (counted live from index on: counted as minting too while the threads are told, a
      // concurrent mint was refused below the cap)
      const left = (this.minting.get(workspace) ?? 1) - 1;
      if (left > 0) this.minting.set(workspace, left); else this.minting.delete(workspace);
    }
    await this.propagated?.();
    return { record, secret };
  }

  /**
   * Name, scopes and limits of a stored key; in effect from the next request. A minted key's
   * new limits may not be looser than its parent's (403); the keys below it are clamped to
   * what it now allows (scopes and limits).
   */
  async update(id: string, patch: { name?: string | undefined; scopes?: Scope[] | undefined; limits?: KeyLimits | null | undefined }): Promise<KeyRecord> {
    const record = this.byId.get(id);
    if (!record || (record.kind !== 'minted' && record.kind !== 'registered')) throw new GatewayError(Errors.notFound, `No stored key with id ${id}.`, 'id');
    mustStore(this.store.headroom, 'the key\'s change');
    const parent = record.created_by ? this.byId.get(record.created_by) : undefined;
    const next: KeyRecord = {
      ...record,
      ...(patch.name !== undefined ? { name: patch.name } : {}),
      ...(patch.scopes !== undefined ? { scopes: parent ? patch.scopes.filter((sc) => parent.scopes.includes(sc)) : patch.scopes } : {}),
      ...(patch.limits !== undefined ? { limits: childLimits(parent?.limits ?? null, patch.limits) } : {}),
    };
    const writes: Array<Promise<unknown>> = [];
    const changed = new Map<string, KeyRecord>([[id, next]]);
    for (const d of this.descendants(id)) {
      const above = changed.get(d.created_by!) ?? this.byId.get(d.created_by!)!;
      const clamped: KeyRecord = { ...d, scopes: d.scopes.filter((sc) => above.scopes.includes(sc)), limits: childLimits(above.limits, d.limits, 'clamp') };
      changed.set(d.id, clamped);
    }
    await this.publish([...changed.values()]);
    for (const r of changed.values()) {
      this.index(r);
      writes.push(this.store.keys.put(r.id, r));
    }
    await Promise.all(writes);
    await this.propagated?.();
    return next;
  }

  /**
   * Revocation is in memory at once (the next request fails) and durable once committed.
   * The keys it minted (and theirs) go with it: a leaked key cannot live on through its children.
   */
  async revoke(id: string): Promise<KeyRecord> {
    const record = this.byId.get(id);
    if (!record || (record.kind !== 'minted' && record.kind !== 'registered')) throw new GatewayError(Errors.notFound, `No revocable key with id ${id}.`, 'id');
    if (record.revoked_at !== null) {
      // Revoked here already. One whose write failed (a full disk: the 500 the caller saw) is
      // written now, with any of its family's, so a retry's 200 means it is stored and a
      // restart does not bring the key back. (It stayed revoked in memory meanwhile.)
      const unsaved = [record, ...this.descendants(id)].filter((k) => k.revoked_at !== null
        && (tryGet(this.store.keys, k.id) as { revoked_at?: unknown } | undefined)?.revoked_at == null);
      await Promise.all(unsaved.map((k) => this.store.keys.put(k.id, k)));
      return record;
    }
    const now = Date.now();
    const revoked = { ...record, revoked_at: now };
    const family = [record, ...this.descendants(id)].filter((k) => k.revoked_at === null).map((k) => (k === record ? revoked : { ...k, revoked_at: now }));
    await this.publish(family);
    const writes: Array<Promise<unknown>> = [];
    for (const r of family) {
      this.index(r);
      writes.push(this.store.keys.put(r.id, r));
    }
    await Promise.all(writes);
    await this.propagated?.();
    return revoked;
  }

  get(id: string): KeyRecord | undefined {
    return this.byId.get(id);
  }

  /**
   * The key, then the key that minted it, and so on up (what its requests count against).
   * Cached: on the hot path this is one Map hit.
   */
  chain(key: KeyRecord): readonly KeyRecord[] {
    let chain = this.chains.get(key.id);
    if (chain && chain[0] === key) return chain;
    const out: KeyRecord[] = [key];
    for (let k = key; k.created_by && out.length <= MAX_CHAIN;) {
      const parent = this.byId.get(k.created_by);
      if (!parent || out.includes(parent)) break;
      out.push(parent);
      k = parent;
    }
    chain = out;
    this.chains.set(key.id, chain);
    return chain;
  }

  /** Keys minted by `id`, and by those, all the way down (parents before their children). */
  descendants(id: string): KeyRecord[] {
    const out: KeyRecord[] = [];
    const seen = new Set<string>([id]);
    for (let frontier = [id]; frontier.length;) {
      const next: string[] = [];
      for (const parent of frontier) {
        for (const child of this.children.get(parent) ?? []) {
          if (seen.has(child)) continue;
          seen.add(child);
          out.push(this.byId.get(child)!);
          next.push(child);
        }
      }
      frontier = next;
    }
    return out;
  }

  /** Live stored keys of a workspace, with those being minted. */
  liveKeys(workspace: string): number {
    return (this.live.get(workspace) ?? 0) + (this.minting.get(workspace) ?? 0);
  }

  /** Stored keys (not the ones from config), optionally of one workspace. */
  list(workspace?: string): KeyRecord[] {
    return [...this.byId.values()].filter((k) => (k.kind === 'minted' || k.kind === 'registered') && (!workspace || k.workspace === workspace));
  }
}
