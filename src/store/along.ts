// Writes that need no transaction of their own (a cache's entry, a request's cache ref, a
// stored Response's record), carried by the ledger's next transaction when the ledger commits
// on this thread.
//
// Why: a response waits for what its turn stored (the ledger's row, and its cache entry, so a
// repeat of the request finds it). Put through lmdb-js's asynchronous batch, a cache entry
// commits in a second transaction, on lmdb-js's writer thread, for every cache miss. Carried by
// the ledger's synchronous commit, it is one more put in a transaction that commits anyway:
// measured 1.3–2.7% less CPU per request under load (bench/ab.ts, 8 paired rounds, unique
// requests); at concurrency 1 the difference was below this machine's noise.
import type { Database, Key } from 'lmdb';

type Db = Database<unknown, never>;

/**
 * A larger value goes through lmdb-js's asynchronous batch, whose writer thread copies it into
 * the file. Measured on the event loop (a transaction with a ledger-sized row, plus the value):
 * up to 64 KiB the carried put and the asynchronous put's own call (its encoding and copy) cost
 * about the same, ~10–190 µs by size; at 1 MiB the carried one took ~2.4 ms, the call ~0.25 ms.
 */
export const CARRY_MAX = 64 * 1024;

/**
 * What one carrier's transaction takes in all: past it, puts go through the asynchronous batch.
 * The ledger's batch stays about as large as its rows make it (a commit that needs more room
 * than the disk has fails, and with it the rows, whose requests are then errors), and its
 * event-loop time bounded.
 */
export const CARRY_BATCH_MAX = 1024 * 1024;

/** An upper bound of a string's UTF-8 bytes, without reading it (3 bytes at most per UTF-16 unit). */
export const utf8Bound = (text: string): number => 3 * text.length;

/**
 * The way a write went: `carried` by the carrier's next transaction, or `async` through lmdb-js's
 * asynchronous batch. Each way keeps its own writes in order, but not against the other's: the
 * writer thread may commit before or after the carrier's transaction.
 */
export type Way = 'carried' | 'async';

/** A remove, queued like a put (a value no caller stores). */
const REMOVE = Symbol('remove');

/** Resolves (true: committed) once the carrier's transaction that took a batch of writes is over. */
class Batch {
  readonly done: Promise<boolean>;
  resolve!: (committed: boolean) => void;
  constructor() {
    this.done = new Promise((resolve) => { this.resolve = resolve; });
  }
}

export class Along {
  /** [db, key, value] triples, flat (no object per put). */
  private queue: unknown[] = [];
  private carrier: (() => void) | null = null;
  /** Told when the queued writes' transaction is over (made only when a caller asks: see `write`). */
  private batch: Batch | null = null;
  /** The drained writes' batch, until the carrier says how its transaction went. */
  private draining: Batch | null = null;

  /**
   * `db.put(key, value)`, committed with the carrier's next transaction (the carrier is told a
   * put waits, so one runs this turn); with no carrier, or a value of more than `CARRY_MAX`
   * bytes (`bytes`, the caller's upper bound), or past `CARRY_BATCH_MAX` queued, lmdb-js's
   * asynchronous batch, as before. Either way a failed commit loses it with the rest of its
   * batch: only for what may be lost.
   */
  put<K extends Key>(db: Database<unknown, K>, key: K, value: unknown, bytes = 0): void {
    if (!this.carrier || !this.fits(bytes)) { void db.put(key, value); return; }
    this.queue.push(db, key, value);
    this.bytes += bytes;
    this.carrier();
  }

  /**
   * A put (or, `value` undefined, a remove) for a caller that keeps one key's writes in order
   * and must know when each is committed (stored Responses: a put, then a DELETE's remove).
   * `follow`: the way a write of the same key still pending went; this one goes the same way,
   * whatever its size, so it cannot land before it. `committed` resolves once it is committed
   * or known lost (a failed commit loses it, as the rest of its batch).
   */
  write<K extends Key>(db: Database<unknown, K>, key: K, value: unknown, bytes: number, follow: Way | null): { way: Way; committed: PromiseLike<unknown> } {
    const carried = this.carrier !== null && (follow === 'carried' || (follow === null && this.fits(bytes)));
    if (!carried) return { way: 'async', committed: value === undefined ? db.remove(key) : db.put(key, value) };
    this.queue.push(db, key, value === undefined ? REMOVE : value);
    this.bytes += Math.min(bytes, CARRY_BATCH_MAX); // (a write that follows may be of any size: the batch is full after it)
    this.carrier!();
    return { way: 'carried', committed: (this.batch ??= new Batch()).done };
  }

  /** The bytes queued (the callers' bounds). */
  private bytes = 0;

  /** A value of `bytes` may be carried: at most CARRY_MAX, and the batch within CARRY_BATCH_MAX with it. */
  private fits(bytes: number): boolean {
    return bytes <= CARRY_MAX && this.bytes + bytes <= CARRY_BATCH_MAX;
  }

  /** The ledger commits on this thread: `schedule` makes it run a transaction soon, which calls `drain` inside. */
  carry(schedule: () => void): void {
    this.carrier = schedule;
  }

  /**
   * The carrier's transaction is over. Committed: the writes it drained are told so. Not (no
   * room on the disk, a failed commit): what it drained, and what still waited for it, are
   * lost with it, as with a failed asynchronous commit.
   */
  over(committed: boolean): void {
    this.draining?.resolve(committed);
    this.draining = null;
    if (committed) return;
    this.queue = [];
    this.bytes = 0;
    this.batch?.resolve(false);
    this.batch = null;
  }

  /**
   * Inside the carrier's write transaction: the queued writes, in order, each on its own. One LMDB refuses
   * outright (a key too long, a value msgpack cannot encode) is dropped with a log line: it
   * never aborts the carrier's transaction (a refused put leaves an lmdb-js transaction usable).
   */
  drain(): void {
    const q = this.queue;
    if (q.length === 0) return;
    this.queue = [];
    this.bytes = 0;
    this.draining = this.batch;
    this.batch = null;
    for (let i = 0; i < q.length; i += 3) {
      try {
        const db = q[i] as Db;
        if (q[i + 2] === REMOVE) void db.remove(q[i + 1] as never);
        else void db.put(q[i + 1] as never, q[i + 2]);
      } catch (err) {
        console.error(`store: a write carried with the ledger's batch was refused and dropped: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
}
