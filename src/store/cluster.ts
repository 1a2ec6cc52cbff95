// Cluster mode's two shared stores: Redis (or Valkey) for hot state every replica changes
// on the request path (limit counters, reservations, credit holds, live balances), and
// Postgres for the durable record (workspaces, keys, balances and ledger rows). Each
// replica keeps its own LMDB as before: a local copy of the records it reads on the hot
// path, and the outbox its ledger rows wait in until they are shipped to Postgres.
//
// Redis is one standalone server or a Sentinel-managed primary (the scripts touch keys
// they compute, which Redis Cluster's slot rules do not allow). Commands fail fast when it
// is unreachable (no offline queue, a command timeout): the caller answers a 503 at once.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { toWellFormed } from '../wire/text.js';

export interface ClusterOptions {
  redisUrl: string;
  postgresUrl: string;
  /** Prefix of every Redis key (several gateways may share one Redis; each needs its own Postgres database). */
  prefix: string;
  /** Redis commands fail after this long (a hung server must not hold requests). */
  redisTimeoutMs: number;
  postgresPoolSize: number;
}

export interface Cluster {
  readonly redis: Redis;
  readonly pg: pg.Pool;
  /** Prefix of every Redis key. */
  readonly prefix: string;
  /** This process, in leases and shipped rows. */
  readonly replica: string;
  close(): Promise<void>;
}

/** The one channel of NOTIFY: `kind` or `kind:payload` (replication.ts dispatches by kind). */
export const NOTIFY_CHANNEL = 'sluice_changes';

/** The tables, created by the first replica to start (under an advisory lock: replicas start together). */
const SCHEMA = `
CREATE SEQUENCE IF NOT EXISTS sluice_version;
CREATE SEQUENCE IF NOT EXISTS sluice_ledger_seq;
CREATE TABLE IF NOT EXISTS sluice_workspaces (
  id text PRIMARY KEY,
  record jsonb NOT NULL,
  balance_nano bigint NOT NULL DEFAULT 0,
  seeded_epoch text,
  version bigint NOT NULL DEFAULT nextval('sluice_version')
);
CREATE TABLE IF NOT EXISTS sluice_keys (
  id text PRIMARY KEY,
  record jsonb NOT NULL,
  version bigint NOT NULL DEFAULT nextval('sluice_version')
);
ALTER TABLE sluice_workspaces ADD COLUMN IF NOT EXISTS mailbox text;
CREATE UNIQUE INDEX IF NOT EXISTS sluice_workspaces_mailbox ON sluice_workspaces (mailbox);
CREATE INDEX IF NOT EXISTS sluice_keys_version ON sluice_keys (version);
CREATE INDEX IF NOT EXISTS sluice_workspaces_version ON sluice_workspaces (version);
CREATE TABLE IF NOT EXISTS sluice_ledger (
  id text PRIMARY KEY,
  workspace text NOT NULL,
  key_id text NOT NULL,
  ts bigint NOT NULL,
  kind text NOT NULL,
  delta_nano bigint NOT NULL,
  charge_usd double precision NOT NULL,
  status int NOT NULL,
  admitted boolean NOT NULL,
  replica text NOT NULL,
  epoch text,
  row jsonb NOT NULL,
  seq bigint NOT NULL DEFAULT nextval('sluice_ledger_seq')
);
CREATE INDEX IF NOT EXISTS sluice_ledger_seq_idx ON sluice_ledger (seq);
CREATE TABLE IF NOT EXISTS sluice_semantic (
  id text PRIMARY KEY,
  ws text NOT NULL,
  context text NOT NULL,
  bucket int NOT NULL,
  exp bigint NOT NULL,
  entry bytea,
  replica text NOT NULL,
  version bigint NOT NULL DEFAULT nextval('sluice_version')
);
CREATE INDEX IF NOT EXISTS sluice_semantic_version ON sluice_semantic (version);
CREATE INDEX IF NOT EXISTS sluice_semantic_bucket ON sluice_semantic (ws, context, bucket);
CREATE INDEX IF NOT EXISTS sluice_semantic_exp ON sluice_semantic (exp);
CREATE TABLE IF NOT EXISTS sluice_responses (
  ws text NOT NULL,
  id text NOT NULL,
  record jsonb,
  exp bigint NOT NULL,
  PRIMARY KEY (ws, id)
);
CREATE SEQUENCE IF NOT EXISTS sluice_router_seq;
CREATE TABLE IF NOT EXISTS sluice_router (
  id text PRIMARY KEY,
  replica text NOT NULL,
  body jsonb NOT NULL,
  seq bigint NOT NULL DEFAULT nextval('sluice_router_seq')
);
CREATE INDEX IF NOT EXISTS sluice_router_seq_idx ON sluice_router (seq);
CREATE INDEX IF NOT EXISTS sluice_router_resets ON sluice_router (seq) WHERE body->>'kind' = 'reset';
CREATE INDEX IF NOT EXISTS sluice_ledger_workspace_ts ON sluice_ledger (workspace, ts);
CREATE INDEX IF NOT EXISTS sluice_ledger_key_ts ON sluice_ledger (key_id, ts);
`;

/**
 * `value` as JSON text Postgres takes as jsonb. JSON.stringify writes a lone surrogate as a
 * `\udXXX` escape and NUL as `\u0000`, and jsonb refuses both: the whole write failed (a
 * workspace or key so named could not be created in cluster mode, a 503 on every retry; a
 * batch of rows holding one such request's model would never ship). Such strings go as
 * well-formed text with U+FFFD in their place. The common case costs one regex test of the
 * text; the rewrite runs only when it finds a suspect escape (a false alarm only costs it).
 */
export function pgJson(value: unknown): string {
  const text = JSON.stringify(value);
  if (!PG_SUSPECT.test(text)) return text;
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'string' ? toWellFormed(v).replaceAll('\u0000', '\ufffd') : v));
}
const PG_SUSPECT = /\\u(?:0000|d[89a-f])/i;

/** A `kind:payload` notice to every replica on the replication channel (Replication.on); one that cannot be sent is dropped (the callers say what covers it). */
export function notify(cluster: Pick<Cluster, 'pg'>, notice: string): Promise<unknown> {
  return cluster.pg.query('SELECT pg_notify($1, $2)', [NOTIFY_CHANNEL, notice]).catch(() => undefined);
}

/**
 * Runs `work` in one Postgres transaction on a pooled client. The client has an error
 * listener while it is out of the pool (pg-pool's own is detached then): a connection that
 * drops mid-transaction rejects the work instead of crashing the process.
 */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | null = null;
  const onError = (err: Error) => { broken = err; };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const out = await work(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken ?? undefined);
  }
}

/**
 * Reads from Postgres, one at a time, where a call made while a read runs is coalesced into
 * one more read after it, and its promise is that read's: a read already under way may have
 * begun before what the caller waits for was written (read your writes across replicas: a
 * workspace made through another replica a moment ago). `read` is called again only once
 * the previous one settled; its failure is logged (one line in 30) and settles the promise.
 */
export class Refresher {
  private reading: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  private failures = 0;

  constructor(private readonly read: () => Promise<void>, private readonly what: string, private readonly after: () => void = () => {}) {}

  refresh(): Promise<void> {
    if (this.reading) return (this.next ??= this.reading.then(() => { this.next = null; return this.refresh(); }));
    this.reading = this.read().then(() => { this.failures = 0; }, (err: unknown) => {
      if (this.failures++ % 30 === 0) console.error(`cluster: reading ${this.what} from Postgres failed: ${err instanceof Error ? err.message : String(err)}`);
    }).finally(() => {
      this.reading = null;
      this.after();
    });
    return this.reading;
  }
}

/** A store cluster mode cannot start without: what and where, said plainly (no stack). */
export class ClusterStartError extends Error {}

/** A URL as the log may show it: the password replaced. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(an unreadable URL)';
  }
}

export async function openCluster(opts: ClusterOptions): Promise<Cluster> {
  const redis = new Redis(opts.redisUrl, {
    // A command while disconnected fails at once instead of queueing behind the reconnect.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.redisTimeoutMs,
    connectTimeout: Math.max(1000, opts.redisTimeoutMs),
    retryStrategy: (times) => Math.min(100 * times, 1000),
    lazyConnect: true,
    // Commands issued in one event-loop turn go out in one write (one syscall, not one each:
    // under load each turn admits and finishes many requests).
    enableAutoPipelining: true,
  });
  // (ioredis emits 'error' on every failed reconnect; the requests that need Redis say so themselves)
  let lastLogged = 0;
  let lastError = '';
  redis.on('error', (err: Error) => {
    lastError = err.message;
    if (Date.now() - lastLogged < 10_000) return;
    lastLogged = Date.now();
    console.error(`cluster: redis: ${err.message}`);
  });
  const pool = new pg.Pool({ connectionString: opts.postgresUrl, max: opts.postgresPoolSize, connectionTimeoutMillis: 5000, idleTimeoutMillis: 30_000, statement_timeout: 30_000 });
  pool.on('error', (err) => console.error(`cluster: postgres: ${err.message}`));
  const fail = async (message: string): Promise<never> => {
    redis.disconnect();
    await pool.end().catch(() => undefined);
    throw new ClusterStartError(message);
  };
  try {
    await redis.connect();
  } catch (err) {
    // (ioredis's own rejection says only "Connection is closed."; the cause came as an 'error' event)
    return fail(`cannot reach Redis at ${redact(opts.redisUrl)}: ${lastError || (err instanceof Error ? err.message : String(err))}`);
  }
  try {
    await inTransaction(pool, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtext('sluice_schema'))");
      await client.query(SCHEMA);
    });
  } catch (err) {
    return fail(`cannot use Postgres at ${redact(opts.postgresUrl)}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return {
    redis, pg: pool, prefix: opts.prefix, replica: randomBytes(6).toString('hex'),
    async close() {
      redis.disconnect();
      await pool.end();
    },
  };
}
