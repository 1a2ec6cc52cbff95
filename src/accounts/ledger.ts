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

export class Ledger {
  private pending = new Set<Promise<unknown>>();

  constructor(private readonly store: Store) {}

  append(row: LedgerRow): Promise<unknown> {
    const commit = this.store.ledger.put(row.id, row);
    this.pending.add(commit);
    void commit.finally(() => this.pending.delete(commit));
    return commit;
  }

  async flush(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }
}
