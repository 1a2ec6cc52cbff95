// Cluster mode's adaptive router: one policy learned from every replica's evidence.
//
// Quality signals (an app's /v1/feedback, the judge's scores), simulated prices and resets
// are events in one Postgres table, `sluice_router`. A replica writes its event there first
// and applies it only once Postgres has it; every other replica reads the events it has not
// applied (on a notification, and every `pollMs` in case one was missed) and applies them
// the same way. So:
// - a request has one signal per source cluster-wide (the event's id is the request's and
//   source's): a second /v1/feedback through another replica is a 409, as on one node;
// - a simulated price is the last one Postgres took (its `seq`), on every replica;
// - a reset is the latest `at`; events from before it (signals about requests answered
//   before it, prices set before it) move nothing, whichever replica reads them when.
// Pulls, costs and token means need no events: they come from every replica's ledger rows,
// which each replica reads back (main.ts). What is not shared is each replica's generator:
// the draws differ, the posteriors they draw from do not.
//
// Postgres down: /v1/feedback, /v1/simulate-price and /v1/reset answer 503 (nothing is
// applied anywhere, so nothing diverges), and the judge's scores meanwhile are lost
// (counted in its `failed`). Routing itself never waits on Postgres.
import { z } from 'zod';
import { PricesSchema, type Prices } from '../config/schema.js';
import { Errors, GatewayError } from '../errors.js';
import { NOTIFY_CHANNEL, type Cluster } from '../store/cluster.js';
import { FUTURE_MS, SignalSchema, type AdaptiveRouter, type RouterPublisher, type Signal, type SignalSource } from './adaptive.js';

/** Events commit out of `seq` order: each read goes back this far behind the highest applied. */
const OVERLAP = 256;
/** Events read per query (a replica catching up reads in pages). */
const PAGE = 2000;

const EventSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('signal'), request_id: z.string().min(1).max(256), source: z.enum(['app', 'judge']), signal: SignalSchema }).strict(),
  z.object({ kind: z.literal('price'), model: z.string().min(1).max(256), prices: PricesSchema.nullable(), at: z.number().int().min(0) }).strict(),
  z.object({ kind: z.literal('reset'), at: z.number().int().min(0) }).strict(),
]);
type RouterEvent = z.infer<typeof EventSchema>;

export class SharedRouter implements RouterPublisher {
  private timer: NodeJS.Timeout | null = null;
  private reading: Promise<void> | null = null;
  private again = false;
  private failures = 0;
  /** Per model, the `seq` of the simulated price applied here (a price Postgres took earlier is older). */
  private readonly priceSeq = new Map<string, number>();

  constructor(private readonly cluster: Cluster, private readonly adaptive: AdaptiveRouter, private readonly pollMs = 1000) {}

  /** Applies what other replicas published (before the gateway serves), then follows. */
  async start(onNotice: (kind: string, hear: () => void) => void): Promise<void> {
    await this.read();
    this.adaptive.shared = this;
    onNotice('router', () => void this.refresh());
    this.timer = setInterval(() => void this.refresh(), this.pollMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Inserts an event (its id: null for a fresh one) and notifies; its `seq`, or null when the id is taken. */
  private async publish(id: string | null, event: RouterEvent): Promise<number | null> {
    try {
      const got = await this.cluster.pg.query<{ seq: string }>(`WITH ins AS (INSERT INTO sluice_router (id, replica, body) VALUES (COALESCE($1, gen_random_uuid()::text), $2, $3)
        ON CONFLICT (id) DO NOTHING RETURNING seq)
        SELECT seq, pg_notify('${NOTIFY_CHANNEL}', 'router:') FROM ins`, [id, this.cluster.replica, JSON.stringify(event)]);
      return got.rows.length ? Number(got.rows[0]!.seq) : null;
    } catch (err) {
      throw new GatewayError(Errors.storeUnavailable, `The router's shared state (Postgres) cannot be written: ${err instanceof Error ? err.message : String(err)}. Nothing was applied; try again.`).retryAfter(1000);
    }
  }

  async signal(requestId: string, source: SignalSource, signal: Signal): Promise<boolean> {
    return (await this.publish(`${source}:${requestId}`, { kind: 'signal', request_id: requestId, source, signal })) !== null;
  }

  async price(model: string, prices: Prices | null): Promise<void> {
    const at = Date.now();
    const seq = await this.publish(null, { kind: 'price', model, prices, at });
    if (seq !== null) await this.applyPrice(seq, model, prices, at);
  }

  async reset(at: number): Promise<void> {
    await this.publish(`reset:${at}`, { kind: 'reset', at });
    if (at > this.adaptive.lastReset) await this.adaptive.resetTo(at);
  }

  private async applyPrice(seq: number, model: string, prices: Prices | null, at: number): Promise<void> {
    if (at < this.adaptive.lastReset || seq <= (this.priceSeq.get(model) ?? 0)) return;
    this.priceSeq.set(model, seq);
    await this.adaptive.setPrice(model, prices);
  }

  /** Reads what is new (coalescing calls made while a read runs into one more). */
  refresh(): Promise<void> {
    if (this.reading) { this.again = true; return this.reading; }
    this.reading = this.read().then(() => { this.failures = 0; }, (err: unknown) => {
      if (this.failures++ % 30 === 0) console.error(`cluster: reading the router's shared state from Postgres failed: ${err instanceof Error ? err.message : String(err)}`);
    }).finally(() => {
      this.reading = null;
      if (this.again) { this.again = false; void this.refresh(); }
    });
    return this.reading;
  }

  /**
   * Applies the events after the last applied, in the order Postgres took them: this
   * replica's own too (a price it set, then another replica's set later, ends as the later
   * one). Applying one twice changes nothing: a signal is a duplicate, a price or a reset
   * not newer is skipped.
   */
  private async read(): Promise<void> {
    let from = Math.max(0, this.adaptive.followed - OVERLAP);
    for (let page = 0; page < 10_000; page++) {
      const got = await this.cluster.pg.query<{ seq: string; body: unknown }>('SELECT seq, body FROM sluice_router WHERE seq > $1 ORDER BY seq LIMIT $2', [from, PAGE]);
      let top = this.adaptive.followed;
      // Signals apply at once and are committed together; a price or a reset waits for
      // what came before it (a reset clears what is written, so it goes in order).
      let signals: Promise<unknown>[] = [];
      for (const r of got.rows) {
        const seq = Number(r.seq);
        from = seq;
        top = Math.max(top, seq);
        const parsed = EventSchema.safeParse(r.body);
        if (!parsed.success) { console.error(`cluster: router event ${seq} does not validate; skipped`); continue; }
        const e = parsed.data;
        if (e.kind === 'signal') { signals.push(this.adaptive.signal(e.request_id, e.source, e.signal, true)); continue; }
        await Promise.all(signals);
        signals = [];
        if (e.kind === 'price') await this.applyPrice(seq, e.model, e.prices, e.at);
        else if (e.at > Date.now() + FUTURE_MS) console.error(`cluster: router event ${seq} resets at ${new Date(e.at).toISOString()}, ahead of this clock: skipped`);
        else if (e.at > this.adaptive.lastReset) await this.adaptive.resetTo(e.at);
      }
      await Promise.all(signals);
      if (top > this.adaptive.followed) await this.adaptive.follow(top);
      if (got.rows.length < PAGE) return;
    }
  }
}
