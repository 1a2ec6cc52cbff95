// One LMDB environment in the data dir, named sub-databases, msgpackr values (lmdb's
// default encoding). Writes use lmdb's batched async commits: all puts of one event turn share a
// transaction; the ledger's rows, and what rides with them (store/along.ts), commit on this thread.
import { sha256Text } from '../digest.js';
import { existsSync } from 'node:fs';
import { mkdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { Along } from './along.js';
import { Headroom, NoRoomError } from './headroom.js';

export interface Store {
  readonly root: RootDatabase;
  readonly keys: Database<unknown, string>;
  readonly ledger: Database<unknown, string>;
  readonly workspaces: Database<unknown, string>;
  readonly limits: Database<unknown, string>;
  /** Usage buckets: [workspace, granularity, start, dimension, value] → totals. */
  readonly rollups: Database<unknown, Array<string | number>>;
  /** Request rows not yet in the stored rollups (see UsageRollups). */
  readonly rollupPending: Database<unknown, string>;
  /** Per-workspace request index: [workspace, request id] → key id. */
  readonly requests: Database<unknown, string[]>;
  /** Per-workspace credit history: [workspace, row id] → kind (topup, refund). */
  readonly credits: Database<unknown, string[]>;
  /** Exact cache: [workspace, request hash] → cached answer. */
  readonly cache: Database<unknown, string[]>;
  /** Semantic cache: [workspace, context hash, LSH bucket, id] → embedded prompt and answer. */
  readonly semantic: Database<unknown, Array<string | number>>;
  /** What each request did with the caches, so a bad answer can be evicted by request id: [request id, 'exact' | 'semantic'] → where (savings/cache.ts). */
  readonly cacheRefs: Database<unknown, string[]>;
  /** Queries a semantic entry was wrongly served for: [workspace, context hash, LSH bucket, request id] → vector and similarity (savings/cache.ts). */
  readonly scars: Database<unknown, Array<string | number>>;
  /** Stored records a start could not use (row id → why), kept for the operator instead of stopping the start. */
  readonly quarantine: Database<unknown, string>;
  /** Responses API ids made through the passthrough: [workspace, response id] → tokens it carried, expiry. */
  readonly responses: Database<unknown, string[]>;
  /** The adaptive router's learned state: ['arm', task, model], ['tokens', task], ['price', model], ['rng', 'state'] (router/adaptive.ts). */
  readonly router: Database<unknown, string[]>;
  /** Quality signals, one per request and source: [request id, 'app' | 'judge'] → score and what it applied to. */
  readonly feedback: Database<unknown, string[]>;
  /** Cluster mode: ledger rows not yet shipped to Postgres (row id → 1), written with the rows (accounts/shipper.ts). */
  readonly outbox: Database<unknown, string>;
  /** The room reserved on the disk for the store's file; while there is none, writes are refused (store/headroom.ts). */
  readonly headroom: Headroom;
  /** The file is mapped writable (no-sync mode, room reservable): lmdb-js has no child transactions then. */
  readonly writableMap: boolean;
  /** Bytes of the file LMDB uses (when it is mapped writable, the file's size is the map's, mostly holes). */
  usedBytes(): number;
  /** Puts carried by the ledger's next transaction on this thread, or else lmdb-js's asynchronous batch (store/along.ts). */
  readonly along: Along;
  close(): Promise<void>;
}

/**
 * A string that goes into an LMDB key, bounded. LMDB refuses keys over 1,978 bytes and the
 * refusal is a throw inside a write batch; strings a caller influences (a requested model
 * name) are kept as they are up to 96 characters (at most 384 bytes of UTF-8) and beyond
 * that become their head plus a hash of the whole, so keys stay short and distinct.
 */
export function keyPart(s: string): string {
  if (s.length <= 96) return s;
  return `${s.slice(0, 64)}…${sha256Text(s).slice(0, 22)}`;
}

/** A record's value, or undefined when it cannot be read (undecodable bytes, a key LMDB refuses): damage reads as absent, never a throw. */
export function tryGet(db: { get(key: never): unknown }, key: unknown): unknown {
  try {
    return db.get(key as never);
  } catch {
    return undefined;
  }
}

/**
 * The records of a database in key order, as getRange yields them, but read one by one: a
 * value msgpackr cannot decode (a damaged record) comes as undefined, which the caller's
 * validation sets aside, where getRange's iterator would throw and end the loop (at a start:
 * the start; one such record in the keys, workspaces, limits, rollup markers or the router's
 * state stopped every start).
 */
export function* readableRange<K extends import('lmdb').Key>(db: Database<unknown, K>, options?: import('lmdb').RangeOptions): Generator<{ key: K; value: unknown }> {
  for (const key of db.getKeys(options)) yield { key, value: tryGet(db, key) };
}

/**
 * A record's `exp` for the sweep: read from its bytes when it leads the record (peekExp), else
 * by decoding the record. (Decoding every entry of a cache to read one number took its whole
 * answer apart: 3,000 answers of 400 KB held the event loop ~3 s each sweep.)
 */
function expOf(db: Database<unknown, import('lmdb').Key>, key: import('lmdb').Key): unknown {
  let bytes: Uint8Array | undefined;
  try { bytes = db.getBinaryFast(key); } catch { bytes = undefined; }
  const peeked = bytes ? peekExp(bytes) : undefined;
  return peeked !== undefined ? peeked : (tryGet(db, key) as { exp?: unknown } | undefined)?.exp;
}

/**
 * The number a msgpack record written by lmdb-js keeps first under the key `exp`, read from
 * its bytes without decoding the rest; undefined when the bytes are not such a record (the
 * caller decodes them then). lmdb-js (msgpackr, records on) writes an object as its record's
 * definition (ext `d4 72 <id>`, an array of its keys) followed by its values in that order.
 * By hand because it is ours to read one number: msgpackr has no partial decode.
 */
export function peekExp(b: Uint8Array): number | undefined {
  if (b.length < 9 || b[0] !== 0xd4 || b[1] !== 0x72) return undefined;
  const keys = b[3]!;
  if (keys < 0x91 || keys > 0x9f) return undefined; // (a fixarray of 1-15 keys)
  if (b[4] !== 0xa3 || b[5] !== 0x65 || b[6] !== 0x78 || b[7] !== 0x70) return undefined; // the first key is "exp"
  let i = 4;
  for (let k = keys & 0x0f; k > 0; k--) {
    const h = b[i];
    if (h === undefined) return undefined;
    if (h >= 0xa0 && h <= 0xbf) i += 1 + (h & 0x1f);
    else if (h === 0xd9 && i + 1 < b.length) i += 2 + b[i + 1]!;
    else return undefined;
  }
  const h = b[i];
  if (h === undefined) return undefined;
  if (h <= 0x7f) return h;
  if (h >= 0xe0) return h - 0x100;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const need = (n: number) => i + 1 + n <= b.length;
  switch (h) {
    case 0xcb: return need(8) ? view.getFloat64(i + 1) : undefined;
    case 0xca: return need(4) ? view.getFloat32(i + 1) : undefined;
    case 0xcc: return need(1) ? view.getUint8(i + 1) : undefined;
    case 0xcd: return need(2) ? view.getUint16(i + 1) : undefined;
    case 0xce: return need(4) ? view.getUint32(i + 1) : undefined;
    case 0xd0: return need(1) ? view.getInt8(i + 1) : undefined;
    case 0xd1: return need(2) ? view.getInt16(i + 1) : undefined;
    case 0xd2: return need(4) ? view.getInt32(i + 1) : undefined;
    default: return undefined; // (64-bit integers and anything else: decoded by the caller)
  }
}

/**
 * Removes the records of a database whose `exp` (ms) has passed, at most `budget` read per
 * run, each run going on after the last key the previous one read (wrapping at the end):
 * what a timer calls, so a large database is swept in slices.
 */
export class ExpirySweep {
  /** Where the next run starts: the last key the previous one read (itself skipped), whatever its type. */
  private from: unknown = undefined;

  constructor(private readonly db: Database<unknown, Array<string | number>> | Database<unknown, string[]>) {}

  run(budget: number, now = Date.now()): number {
    const db = this.db as unknown as Database<unknown, import('lmdb').Key>;
    let removed = 0;
    let last: unknown = undefined;
    let seen = 0;
    const skip = this.from === undefined ? null : JSON.stringify(this.from);
    for (const key of db.getKeys(this.from === undefined ? { limit: budget } : { start: this.from as never, limit: budget })) {
      seen++;
      last = key;
      if (skip !== null && seen === 1 && JSON.stringify(key) === skip) continue;
      // Each value read on its own: one that cannot be decoded is removed like an expired one, never a throw that stops every later sweep here.
      const exp = expOf(db, key);
      if (typeof exp !== 'number' || exp <= now) { void db.remove(key as never); removed++; }
    }
    this.from = seen < budget ? undefined : last;
    return removed;
  }
}

/**
 * A failed asynchronous commit (a full disk, an I/O error) must not end the process. lmdb-js
 * rejects the promise of every write in the failed batch ("Commit failed"), and then a
 * promise of its own that carries the cause (each rejection's \`commitError\`), which no
 * caller can have a handler on. Unhandled, either ends a Node process. Those writes are the
 * caches' entries, a key, the router's state: the ledger's rows commit in their own
 * transaction and its waiters hear of a failure (their responses are errors), so nothing
 * acknowledged is lost with them. So for the process (main.ts and thread.ts, not a library's
 * import): such a rejection is logged, at most once a second with a count, and the process
 * goes on; any other unhandled rejection still ends it, as Node's default does.
 */
export function surviveFailedCommits(): void {
  let lastLog = 0;
  let unlogged = 0;
  const log = (cause: unknown) => {
    unlogged++;
    const now = Date.now();
    if (now - lastLog < 1000) return;
    console.error(`store: ${unlogged} write(s) lost to a failed commit (the disk full, or an I/O error?): ${cause instanceof Error ? cause.message : String(cause)}`);
    lastLog = now;
    unlogged = 0;
  };
  let refused = 0;
  let lastRefusal = 0;
  process.on('unhandledRejection', (reason, promise) => {
    if (reason instanceof NoRoomError) {
      // (a write refused before it reached LMDB: the disk has no room for the store; headroom.ts logs when that starts and ends)
      refused++;
      const now = Date.now();
      if (now - lastRefusal >= 1000) { console.error(`store: ${refused} write(s) refused: no room on the disk`); lastRefusal = now; refused = 0; }
      return;
    }
    if (reason instanceof Error && 'commitError' in reason && reason.commitError instanceof Promise) {
      // The cause's promise is rejected right after: handled here before Node finds it unhandled.
      reason.commitError.catch(log);
      log(reason);
      return;
    }
    // (the cause's own promise, should it be reported first: lmdb-js gives it a \`reject\` of its own)
    if (typeof (promise as unknown as { reject?: unknown }).reject === 'function') { log(reason); return; }
    throw reason;
  });
}

/**
 * After a write transaction that put ledger rows was aborted, or failed to commit: msgpackr
 * keeps in memory a record structure it minted in that transaction, whose save went with the
 * transaction. Rows written later would use that structure's id, which the stored structures
 * lack: unreadable after a restart ("Data read, but end of buffer not reached"), and a start
 * that read one failed (seen on a full disk). Marked uninitialized, the encoder reloads the
 * stored structures before its next write, and mints the structure again if it needs it.
 */
export function forgetUnsavedStructures(db: Database<unknown, string>): void {
  const structures = (db as unknown as { encoder?: { structures?: { uninitialized?: boolean } } }).encoder?.structures;
  if (structures) structures.uninitialized = true;
}

/**
 * The ledger's msgpack records share their structure (field names are stored once in the
 * DB, not in every row): ~25% less encoding CPU per row and smaller rows. Readers must open
 * it with the same options.
 */
export const LEDGER_DB = { name: 'ledger', encoding: 'msgpack', sharedStructuresKey: Symbol.for('structures') } as const;

/**
 * `fsync: false` (the default) commits into the OS page cache: a commit survives the
 * process being killed (kill -9, OOM, crash) but not the machine losing power. `true`
 * also syncs each batch to disk, which puts the disk's sync latency (milliseconds here)
 * on every response that waits for its ledger row.
 */
export async function openStore(dataDir: string, opts: { fsync: boolean; /** false: never mapped writable (a writer-thread ledger's child transactions need that). */ writableMap?: boolean } = { fsync: false }): Promise<Store> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // A new store's lock file is mapped into memory before a byte of it is on the disk: on a full
  // disk the first touch of it is a SIGBUS that ends the process with no word. Said plainly instead.
  if (!existsSync(join(dataDir, 'sluice.mdb-lock'))) {
    const disk = await statfs(dataDir);
    const free = Number(disk.bavail) * Number(disk.bsize);
    if (free < 2 ** 20) throw new Error(`No room on the disk for a new store in ${dataDir} (${free} bytes free): free some space and start again.`);
  }
  const file = join(dataDir, 'sluice.mdb');
  const headroom = new Headroom(file);
  // A writable map (no-sync mode): a commit writes its pages into the map, not with a pwrite
  // each (8 system calls per commit fewer; measured ~25 µs less per commit at concurrency 1,
  // 24.8 → 7.2 µs back to back). As safe against a killed process: the map is the OS's page
  // cache. Not with fsync (lmdb-js has no child transactions on a writable map, which the
  // ledger's writer-thread commits use), and only where the disk's room can be reserved inside
  // the file (headroom.ts): the file is then as long as the map, sparse.
  const writemap = !opts.fsync && opts.writableMap !== false && await headroom.canReserveInside();
  const root = open({ path: file, compression: false, mapSize: 2 ** 32, maxDbs: 32, noSync: !opts.fsync, overlappingSync: opts.fsync, useWritemap: writemap });
  const keys = root.openDB<unknown, string>({ name: 'keys', encoding: 'msgpack' });
  const ledger = root.openDB<unknown, string>(LEDGER_DB);
  const workspaces = root.openDB<unknown, string>({ name: 'workspaces', encoding: 'msgpack' });
  const limits = root.openDB<unknown, string>({ name: 'limits', encoding: 'msgpack' });
  const rollups = root.openDB<unknown, Array<string | number>>({ name: 'rollups', encoding: 'msgpack' });
  const requests = root.openDB<unknown, string[]>({ name: 'requests', encoding: 'msgpack' });
  const rollupPending = root.openDB<unknown, string>({ name: 'rollup_pending', encoding: 'msgpack' });
  const cache = root.openDB<unknown, string[]>({ name: 'cache', encoding: 'msgpack' });
  const credits = root.openDB<unknown, string[]>({ name: 'credits', encoding: 'msgpack' });
  const semantic = root.openDB<unknown, Array<string | number>>({ name: 'semantic', encoding: 'msgpack' });
  const quarantine = root.openDB<unknown, string>({ name: 'quarantine', encoding: 'msgpack' });
  const responses = root.openDB<unknown, string[]>({ name: 'responses', encoding: 'msgpack' });
  const router = root.openDB<unknown, string[]>({ name: 'router', encoding: 'msgpack' });
  const feedback = root.openDB<unknown, string[]>({ name: 'feedback', encoding: 'msgpack' });
  const cacheRefs = root.openDB<unknown, string[]>({ name: 'cache_refs', encoding: 'msgpack' });
  const scars = root.openDB<unknown, Array<string | number>>({ name: 'semantic_scars', encoding: 'msgpack' });
  const outbox = root.openDB<unknown, string>({ name: 'outbox', encoding: 'msgpack' });
  const pageSize = (root.getStats() as { pageSize: number }).pageSize;
  const env = (root as unknown as { env: { info(): { lastPageNumber: number } } }).env;
  /** Where LMDB's pages end in its file (its size, unless mapped writable). */
  const usedBytes = () => (env.info().lastPageNumber + 1) * pageSize;
  await headroom.start(writemap ? usedBytes : null);
  guardWrites(headroom, [root, keys, ledger, workspaces, limits, rollups, requests, rollupPending, cache, credits, semantic, quarantine, responses, router, feedback, cacheRefs, scars, outbox]);
  return {
    headroom,
    writableMap: writemap,
    usedBytes,
    along: new Along(),
    outbox,
    cacheRefs,
    scars,
    router,
    feedback,
    quarantine,
    responses,
    root,
    cache,
    semantic,
    credits,
    keys,
    ledger,
    workspaces,
    limits,
    rollups,
    rollupPending,
    requests,
    async close() {
      headroom.stop();
      // After a commit that failed (a full disk without the reserved room, an I/O error),
      // lmdb-js's flush promise rejects (or may stay pending), and its close waits on it: the
      // close threw, and a shutdown stopped there and hung, or (with nothing else keeping the
      // event loop alive) ended with exit 0 and the store never closed. Each is waited for
      // 3 s at most, a failure said and passed; whatever a client was told is stored was
      // committed before.
      const flushed = await settlesWithin(root.flushed, 3000);
      if (flushed !== true) console.error(`store: the last writes did not flush (${flushed}); closing anyway`);
      const closed = await settlesWithin(root.close(), 3000);
      if (closed !== true) console.error(`store: the store did not close cleanly (${closed})`);
    },
  };
}

/** True once `p` resolves; else what it rejected with, or that it did not settle within `ms`. */
function settlesWithin(p: PromiseLike<unknown>, ms: number): Promise<true | string> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(`not settled within ${ms} ms`), ms);
    Promise.resolve(p).then(() => { clearTimeout(timer); resolve(true); },
      (err: unknown) => { clearTimeout(timer); resolve(err instanceof Error ? err.message : String(err)); });
  });
}

/** lmdb-js's write methods, as `guardWrites` wraps them. */
const ASYNC_WRITES = ['put', 'remove', 'ifVersion', 'clearAsync', 'drop'] as const;
const SYNC_WRITES = ['putSync', 'removeSync', 'clearSync', 'dropSync'] as const;
const TRANSACTIONS = ['transactionSync', 'transaction', 'transactionAsync', 'childTransaction'] as const;

/**
 * While the disk has no room for the store (`headroom.room` false), every write of these
 * databases is refused before it reaches LMDB, as a failed commit would be: an asynchronous
 * one with a rejected promise, a synchronous one or a transaction with a NoRoomError thrown
 * (the ledger then refuses the batch's requests, not charged). Writes inside a transaction
 * that began with room go on: it was let in whole. (Each database object gets its own
 * wrappers; lmdb-js keeps them on a shared prototype.)
 */
function guardWrites(headroom: Headroom, dbs: readonly object[]): void {
  /** Transaction callbacks running now: their writes are part of a transaction already let in. */
  let inside = 0;
  const within = (callback: () => unknown) => () => {
    inside++;
    try { return callback(); } finally { inside--; }
  };
  for (const db of dbs) {
    const methods = db as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const name of ASYNC_WRITES) {
      const write = methods[name]!;
      methods[name] = function (this: unknown, a: unknown, b: unknown, c: unknown, d: unknown) {
        if (!headroom.room && !inside) return Promise.reject(new NoRoomError());
        headroom.wrote = true;
        return write.call(this, a, b, c, d);
      };
    }
    for (const name of SYNC_WRITES) {
      const write = methods[name]!;
      methods[name] = function (this: unknown, a: unknown, b: unknown) {
        if (!headroom.room && !inside) throw new NoRoomError();
        headroom.wrote = true;
        return write.call(this, a, b);
      };
    }
    for (const name of TRANSACTIONS) {
      const transact = methods[name]!;
      const sync = name === 'transactionSync';
      methods[name] = function (this: unknown, callback: unknown, flags: unknown) {
        if (!headroom.room && !inside) {
          if (sync) throw new NoRoomError();
          return Promise.reject(new NoRoomError());
        }
        headroom.wrote = true;
        // (an asynchronous transaction's callback runs later, when the writer reaches it: refused then if the room has gone)
        const run = sync ? within(callback as () => unknown)
          : within(() => { if (!headroom.room) throw new NoRoomError(); return (callback as () => unknown)(); });
        return transact.call(this, run, flags);
      };
    }
  }
}
