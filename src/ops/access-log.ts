// Structured JSON access logs with pino, one line per request from its ledger row. Off the
// hot path: rows are queued as the ledger writes them and logged in a later turn, and pino
// writes through an asynchronous buffered destination. Never a key or prompt text: key id,
// workspace, route, status, cache, tokens, dollars and timings.
import pino, { type Logger } from 'pino';
import type { LedgerRow } from '../accounts/ledger.js';

export class AccessLog {
  private readonly logger: Logger;
  private readonly dest: ReturnType<typeof pino.destination>;
  private queue: LedgerRow[] = [];
  private timer: NodeJS.Timeout | null = null;

  /** `destination`: 'stdout', or a file path (appended). */
  constructor(destination: string) {
    this.dest = pino.destination({ dest: destination === 'stdout' ? 1 : destination, sync: false, minLength: 0, mkdir: true });
    this.logger = pino({ base: null, messageKey: 'msg', timestamp: pino.stdTimeFunctions.isoTime }, this.dest);
  }

  add(row: LedgerRow): void {
    if (row.kind !== 'request') return;
    this.queue.push(row);
    this.timer ??= setTimeout(this.drain, 50);
  }

  private readonly drain = (): void => {
    this.timer = null;
    const rows = this.queue;
    this.queue = [];
    for (const r of rows) {
      this.logger.info({
        request_id: r.id, workspace: r.workspace, key_id: r.key_id, endpoint: r.endpoint, model: r.requested_model, served: r.served,
        status: r.status, error: r.error, cache: r.cache, stream: r.stream, retries: r.retries,
        prompt_tokens: r.prompt_tokens, completion_tokens: r.completion_tokens, cached_tokens: r.cached_tokens, saved_tokens: r.saved_tokens,
        cost_usd: r.cost_usd, charge_usd: r.charge_usd, saved_usd: r.saved_usd,
        ttfb_ms: r.ttfb_ms, total_ms: r.total_ms, overhead_ms: r.overhead_ms,
      }, 'request');
    }
  };

  /** Writes what is queued and flushes the destination (at shutdown). */
  close(): void {
    if (this.timer) { clearTimeout(this.timer); this.drain(); }
    try { this.dest.flushSync(); } catch { /* not ready or already closed */ }
  }
}
