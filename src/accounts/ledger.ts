// One ledger row per request. Rows are written with LMDB's batched async commit; the
// writer tracks in-flight commits so shutdown can wait for all of them.
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Store } from '../store/lmdb.js';

export const LedgerRowSchema = z.object({
  id: z.string(),
  ts: z.number(),
  workspace: z.string(),
  key_id: z.string(),
  endpoint: z.string(),
  requested_model: z.string(),
  served: z.string().nullable(),
  router_bucket: z.string().nullable(),
  router_score: z.number().nullable(),
  cache: z.enum(['miss', 'exact', 'semantic', 'dedupe']),
  stream: z.boolean(),
  prompt_tokens: z.number(),
  cached_tokens: z.number(),
  completion_tokens: z.number(),
  usage_source: z.enum(['upstream', 'estimate', 'none']),
  saved_tokens: z.record(z.string(), z.number()),
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
});
export type LedgerRow = z.infer<typeof LedgerRowSchema>;

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
 * Rows are buffered and written in batches: one lmdb write batch (one commit, one wake of
 * lmdb's writer thread) every `flushMs`, or sooner when `maxBatch` rows are waiting.
 * Measured (bench, 4k rows/s spread over time): one put per request cost ~200 µs of process
 * CPU per row, as every event-loop turn became its own commit; batched every 20–50 ms it
 * is ~20–40 µs, most of it msgpack encoding and LMDB page writes.
 */
export class Ledger {
  private pending: LedgerRow[] = [];
  private timer: NodeJS.Timeout | null = null;
  private lastCommit: Promise<unknown> = Promise.resolve();

  constructor(private readonly store: Store, private readonly flushMs: number, private readonly maxBatch = 1024) {}

  append(row: LedgerRow): void {
    this.pending.push(row);
    if (this.pending.length >= this.maxBatch) this.write();
    else this.timer ??= setTimeout(this.write, this.flushMs);
  }

  private readonly write = (): void => {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    const rows = this.pending;
    if (rows.length === 0) return;
    this.pending = [];
    let commit: Promise<unknown> = this.lastCommit;
    for (const row of rows) commit = this.store.ledger.put(row.id, row);
    // Puts in one turn share a transaction: the last one settles when the batch commits.
    this.lastCommit = commit.catch((err: unknown) => {
      console.error(`ledger: a batch of ${rows.length} rows failed to commit: ${String(err)}`);
    });
  };

  /** Writes whatever is buffered and waits until it is committed. */
  async flush(): Promise<void> {
    this.write();
    await this.lastCommit;
  }
}
