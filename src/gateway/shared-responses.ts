// Cluster mode's stored Responses: what each replica keeps for `previous_response_id` and
// GET / DELETE /v1/responses/{id} (response-ids.ts), also in Postgres, so a conversation can
// go on through any replica. Writes are not awaited (the answer does not wait on Postgres);
// a lookup that finds nothing tries again briefly, for a follow-up sent through another
// replica in the milliseconds before the write lands.
import { NOTIFY_CHANNEL, pgJson, type Cluster } from '../store/cluster.js';
import type { StoredResponse } from './response-ids.js';

const RETRIES = 4;
const RETRY_MS = 50;
/**
 * Lookups waiting to try again, at most: past it a lookup that finds nothing is a miss at
 * once. An id nobody stored costs a query and four more over 200 ms; ids a client makes up
 * (GET /v1/responses/{anything}, several hundred a second) kept the pool's connections busy
 * with retries and slowed every other query. Legitimate retries are rare (a follow-up in the
 * milliseconds before another replica's write lands), so this bound is never reached by them.
 */
const MAX_RETRYING = 16;

export class SharedResponses {
  private lastLog = 0;

  constructor(private readonly cluster: Cluster) {}

  save(ws: string, id: string, record: StoredResponse | null): void {
    // A forgotten response is a row without a record (a tombstone every replica reads), and a
    // notification, so the replicas holding a copy drop it at once.
    this.cluster.pg.query(`WITH up AS (INSERT INTO sluice_responses (ws, id, record, exp) VALUES ($1, $2, $3, $4)
      ON CONFLICT (ws, id) DO UPDATE SET record = EXCLUDED.record, exp = EXCLUDED.exp RETURNING 1)
      SELECT CASE WHEN $3::jsonb IS NULL THEN pg_notify('${NOTIFY_CHANNEL}', 'response:' || $1 || ':' || $2) END FROM (SELECT count(*) FROM up) c`,
    [ws, id, record === null ? null : pgJson(record), record?.exp ?? Date.now() + 86_400_000])
      .catch((err: unknown) => {
        if (Date.now() - this.lastLog < 10_000) return;
        this.lastLog = Date.now();
        console.error(`cluster: a stored response was not written to Postgres (it answers through this replica only): ${err instanceof Error ? err.message : String(err)}`);
      });
  }

  private retrying = 0;

  /** The record (unvalidated: the caller validates), null when forgotten or unknown. */
  async load(ws: string, id: string): Promise<unknown> {
    const query = async () => (await this.cluster.pg.query<{ record: unknown }>('SELECT record FROM sluice_responses WHERE ws = $1 AND id = $2 AND exp > $3', [ws, id, Date.now()])).rows[0];
    const first = await query();
    if (first) return first.record;
    if (this.retrying >= MAX_RETRYING) return null;
    this.retrying++;
    try {
      for (let attempt = 0; attempt < RETRIES; attempt++) {
        await new Promise((r) => setTimeout(r, RETRY_MS));
        const got = await query();
        if (got) return got.record;
      }
      return null;
    } finally {
      this.retrying--;
    }
  }
}
