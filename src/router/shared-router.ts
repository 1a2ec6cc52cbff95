// Cluster mode's adaptive router: one policy learned from every replica's evidence.
//
// Quality signals (an app's /v1/feedback, the judge's scores), simulated prices and resets
// are events in one Postgres table, `sluice_router`, in one total order: each is inserted
// under a transaction-scoped advisory lock, so `seq` order is commit order and a reader
// that has seen `seq` n has seen everything before it. Every replica, the one that
// published an event included, applies the events in that order and only from the log: the
// same events in the same order give every replica the same posteriors (the tenant cap's
// rescaling and the memory bound depend on order). A publisher waits until its own event
// is applied here, so its answer says what the event did. Hence:
// - a request has one signal per source cluster-wide (the event's id is the request's and
//   source's): a second /v1/feedback through another replica is a 409, as on one node;
// - a simulated price is the last one Postgres took, on every replica;
// - a reset is stamped by Postgres's clock (one clock for all replicas, never going back
//   between resets); a replica applies a reset once (the stamp is kept with its state).
// Pulls, costs and token means need no events: they come from every replica's ledger rows,
// which each replica reads back (main.ts). What is not shared is each replica's generator:
// the draws differ, the posteriors they draw from do not.
//
// Postgres down: /v1/feedback, /v1/simulate-price and /v1/reset answer 503 (nothing is
// applied anywhere, so nothing diverges), and the judge's scores meanwhile are lost
// (counted in its `failed`). Routing itself never waits on Postgres.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { PricesSchema, type Prices } from '../config/schema.js';
import { Errors, GatewayError } from '../errors.js';
import { inTransaction, NOTIFY_CHANNEL, pgJson, Refresher, type Cluster } from '../store/cluster.js';
import { FUTURE_MS, SignalSchema, type AdaptiveRouter, type RouterPublisher, type Signal, type SignalSource } from './adaptive.js';

/** Events read per query (a replica catching up reads in pages). */
const PAGE = 2000;
/** A publisher waits this long for its event to be applied here before it answers 503 (the event stands: it applies later). */
const APPLY_WAIT_MS = 10_000;
/** Names in events are as long as a task type's or a model's at most (they become LMDB keys). */
const Name = z.string().min(1).max(256);

const EventSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('signal'), request_id: Name, source: z.enum(['app', 'judge']),
    signal: SignalSchema.extend({ workspace: Name, task: Name.nullable(), model: Name.nullable(), comment: z.string().max(10_000).nullable() }) }).strict(),
  z.object({ kind: z.literal('price'), model: Name, prices: PricesSchema.nullable(), at: z.number().optional() }).strict(),
  z.object({ kind: z.literal('reset'), at: z.number().int().min(0) }).strict(),
]);
type RouterEvent = z.infer<typeof EventSchema>;
type Outcome = 'applied' | 'stored' | 'duplicate';

export class SharedRouter implements RouterPublisher {
  private timer: NodeJS.Timeout | null = null;
  /** Publishers waiting for their event (by id) to be applied here, with what it did. */
  private readonly waiting = new Map<string, (outcome: Outcome) => void>();

  constructor(private readonly cluster: Cluster, private readonly adaptive: AdaptiveRouter, private readonly pollMs = 1000) {}

  /** Applies what was published (before the gateway serves), then follows. */
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

  /**
   * Inserts an event in the total order, then waits until it is applied here: what it did,
   * or 'duplicate' when its id is taken. A reset's `at` is Postgres's clock, and after the
   * last reset's.
   */
  private async publish(id: string, event: RouterEvent): Promise<Outcome> {
    if (this.waiting.has(id)) return 'duplicate';
    // The waiter is there before the insert (a read may apply the event the moment it
    // commits); the wait's bound starts once it has committed (a slow insert is the
    // insert's to time out, not this).
    let timer: NodeJS.Timeout | null = null;
    let fail: (err: Error) => void = () => undefined;
    const applied = new Promise<Outcome>((resolve, reject) => {
      fail = reject;
      this.waiting.set(id, (outcome) => { if (timer) clearTimeout(timer); resolve(outcome); });
    });
    applied.catch(() => undefined); // (settled with no one waiting when the insert fails: never an unhandled rejection)
    // Not published: the waiter goes (its promise settled for no one: the caller gets the answer below).
    const forget = () => { this.waiting.get(id)?.('duplicate'); this.waiting.delete(id); };
    let inserted: boolean;
    try {
      inserted = await inTransaction(this.cluster.pg, async (client) => {
        await client.query("SELECT pg_advisory_xact_lock(hashtext('sluice_router'))");
        if (event.kind === 'reset') {
          // After the last reset the replicas applied (one stamped ahead of the clock was skipped by all: it does not count).
          const got = await client.query<{ ms: string; last: string | null }>(`SELECT c.ms, (SELECT (body->>'at')::bigint FROM sluice_router WHERE body->>'kind' = 'reset'
            AND (body->>'at')::bigint <= c.ms + $1 ORDER BY seq DESC LIMIT 1) AS last FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms) c`, [FUTURE_MS]);
          event.at = Math.max(Number(got.rows[0]!.ms), Number(got.rows[0]!.last ?? 0) + 1);
        }
        const got = await client.query('INSERT INTO sluice_router (id, replica, body) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING', [id, this.cluster.replica, pgJson(event)]);
        if (got.rowCount) await client.query(`SELECT pg_notify('${NOTIFY_CHANNEL}', 'router:')`);
        return Boolean(got.rowCount);
      });
    } catch (err) {
      forget();
      // (a connection lost as the COMMIT went out leaves it unknown whether Postgres took it)
      throw new GatewayError(Errors.storeUnavailable, `The router's shared state (Postgres) did not take the write: ${err instanceof Error ? err.message : String(err)}. If it did not reach Postgres, nothing was applied; if it did, it applies on every replica (feedback sent again then answers 409). Try again.`).retryAfter(1000);
    }
    if (!inserted) {
      forget();
      return 'duplicate';
    }
    if (this.waiting.has(id)) {
      timer = setTimeout(() => {
        this.waiting.delete(id);
        fail(new GatewayError(Errors.storeUnavailable, 'Published to the cluster, but not applied on this replica yet (Postgres is slow to read). It will apply; do not send it again.').retryAfter(1000));
      }, APPLY_WAIT_MS);
      timer.unref();
    }
    void this.refresh();
    return applied;
  }

  signal(requestId: string, source: SignalSource, signal: Signal): Promise<Outcome> {
    return this.publish(`${source}:${requestId}`, { kind: 'signal', request_id: requestId, source, signal });
  }

  async price(model: string, prices: Prices | null): Promise<void> {
    await this.publish(`price:${randomUUID()}`, { kind: 'price', model, prices });
  }

  async reset(): Promise<void> {
    await this.publish(`reset:${randomUUID()}`, { kind: 'reset', at: 0 });
  }

  /** Reads what is new; settles once a read begun after the call is over (see Refresher). */
  refresh(): Promise<void> {
    return this.refresher.refresh();
  }

  private readonly refresher = new Refresher(() => this.read(), "the router's shared state");

  /**
   * Applies the events after the last applied, in order. An event that does not validate,
   * or that this replica cannot apply, is skipped with a log line (once: the position moves
   * past it): one bad record never stops the log, nor a start. Signals change the state at
   * once and are committed together; a price or a reset waits for what came before it (a
   * reset clears what is written, so it goes in order).
   */
  private async read(): Promise<void> {
    for (let page = 0; page < 10_000; page++) {
      // (Postgres's clock with them: a reset's stamp is checked against the clock that made it, not this replica's)
      const got = await this.cluster.pg.query<{ id: string; seq: string; body: unknown; now: string }>(`SELECT id, seq, body, (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now
        FROM sluice_router WHERE seq > $1 ORDER BY seq LIMIT $2`, [this.adaptive.followed, PAGE]);
      let top = this.adaptive.followed;
      let signals: Array<Promise<unknown>> = [];
      for (const r of got.rows) {
        const seq = Number(r.seq);
        top = Math.max(top, seq);
        const waiter = this.waiting.get(r.id);
        if (waiter) this.waiting.delete(r.id);
        const skipped = (err: unknown): Outcome => {
          console.error(`cluster: router event ${seq} skipped: ${err instanceof Error ? err.message.slice(0, 300) : String(err)}`);
          return 'stored';
        };
        const parsed = EventSchema.safeParse(r.body);
        if (!parsed.success) {
          const outcome = skipped(new Error(`it does not validate: ${parsed.error.issues[0]?.message ?? ''}`));
          waiter?.(outcome);
          continue;
        }
        const e = parsed.data;
        if (e.kind === 'signal') {
          let done: Promise<Outcome>;
          try { done = this.adaptive.signal(e.request_id, e.source, e.signal, true); } catch (err) { done = Promise.reject(err instanceof Error ? err : new Error(String(err))); }
          signals.push(done.catch(skipped).then((outcome) => waiter?.(outcome)));
          continue;
        }
        await Promise.all(signals);
        signals = [];
        const outcome = await this.apply(e, seq, Number(r.now)).catch(skipped); // (not inside `waiter?.(…)`: without a waiter its arguments are never evaluated)
        waiter?.(outcome);
      }
      await Promise.all(signals);
      if (top > this.adaptive.followed) await this.adaptive.follow(top);
      if (got.rows.length < PAGE) return;
    }
  }

  /** A price or a reset, applied here. */
  private async apply(e: Exclude<RouterEvent, { kind: 'signal' }>, seq: number, now: number): Promise<Outcome> {
    if (e.kind === 'price') {
      if (this.adaptive.candidates.some((c) => c.name === e.model)) await this.adaptive.setPrice(e.model, e.prices);
      return 'applied';
    }
    // (a stamp ahead of Postgres's clock is a forged record: it would make every signal until then move nothing)
    if (e.at > now + FUTURE_MS) throw new Error(`it resets at ${new Date(e.at).toISOString()}, ahead of Postgres's clock`);
    // (the position is kept with the reset: a restart goes on after it, never replaying what it cleared)
    if (e.at > this.adaptive.lastReset) await this.adaptive.resetTo(e.at, seq);
    return 'applied';
  }
}
