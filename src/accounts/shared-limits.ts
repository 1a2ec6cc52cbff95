// Cluster mode's limits and credits: the checks and counts of limits.ts and the credit hold
// of workspaces.ts, done by one Lua script per admission in the Redis every replica shares
// (shared-scripts.ts), so a key's rpm is its rpm however many replicas serve it. One round
// trip at admission, one at finish (not awaited). A request whose key has no limits in a
// workspace that is not metered (the operator's) never touches Redis.
//
// When Redis cannot be reached, a request that needs it is refused at once with a 503 and
// Retry-After (fail closed: nothing metered is served unmetered). Holds of a replica that
// dies are released when their lease runs out (`leaseMs`; live replicas renew theirs).
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { Errors, GatewayError } from '../errors.js';
import type { Cluster } from '../store/cluster.js';
import { isOperatorKey, type KeyLimits, type KeyRecord } from './keys.js';
import { describe, fmtDuration, msToNextUtcDay, msToNextUtcMonth, refusalError, utcDay, utcMonth, type AdmissionStore, type Header, type HeldAdmission, type Reservation } from './limits.js';
import { ABANDON, ADMIT, APPLY, CLAIM, FINISH, FORGET, REGISTER, RENEW, RUN, SEED, SEED_KEY, SETTLE_CLAIM } from './shared-scripts.js';
import type { Workspace } from './workspaces.js';

type Reply = Array<string | number | null>;
type Scripted = Redis & {
  sluiceAdmit(...args: Array<string | number>): Promise<Reply>;
  sluiceFinish(...args: Array<string | number>): Promise<Reply>;
  sluiceApply(...args: Array<string | number>): Promise<number>;
  sluiceSeed(...args: Array<string | number>): Promise<string>;
  sluiceSeedKey(...args: Array<string | number>): Promise<number>;
  sluiceForget(...args: Array<string | number>): Promise<number>;
  sluiceRun(...args: Array<string | number>): Promise<string>;
  sluiceClaim(...args: Array<string | number>): Promise<number>;
  sluiceRegister(...args: Array<string | number>): Promise<number>;
  sluiceRenew(...args: Array<string | number>): Promise<number>;
  sluiceAbandon(...args: Array<string | number>): Promise<number>;
  sluiceSettleClaim(...args: Array<string | number>): Promise<number>;
};

/**
 * A balance change applied once: its marker lives until the shipper has the row in Postgres
 * (then it is deleted), at most this long (a replica killed in between and back after more
 * than a week would apply its last rows' changes twice to the live balance; Postgres is exact).
 */
export const MARKER_SECONDS = 7 * 86400;

/** A workspace's balance as the ledger's record: seeds Redis from Postgres, where rows are shipped. */
export interface BalanceSeeder {
  /** `credits`: credit rows about to be applied, marked applied when the seeded balance holds them already. */
  seed(ws: Workspace, credits?: readonly string[]): Promise<void>;
  /** What the keys of `family` (a key and those it minted) spent this UTC day and month (nano), and their admitted requests per window slice, from the shipped rows. */
  keyCounts(family: readonly string[], windows: ReadonlyArray<{ seconds: number }>, now: number, minute: boolean): Promise<KeyCounts>;
}

export interface KeyCounts {
  dayNano: number;
  monthNano: number;
  /** The last minute's admitted requests, per second: [the second's end (ms), requests, tokens used], oldest first (empty unless asked for). */
  minute: Array<[number, number, number]>;
  /** Per window: [slice number, requests] (slices of seconds/60, as the script counts them). */
  windows: Array<{ seconds: number; slices: Array<[number, number]> }>;
}

/**
 * A token bucket of `cap` per minute as the last minute's requests left it: [level, when]
 * for the script ('' '': full, or no such limit). It starts full a minute ago (a bucket is
 * full again after a minute at most, whatever came before) and pays each second's requests
 * (`field` 1: one each; 2: their tokens) at that second's end, which refills no earlier than
 * they were made: it never leaves more than the requests did.
 */
export function bucketOf(cap: number | undefined, minute: ReadonlyArray<readonly [number, number, number]>, field: 1 | 2, now: number): [string | number, string | number] {
  if (!cap || minute.length === 0) return ['', ''];
  let level = cap;
  let at = now - 60_000;
  for (const second of minute) {
    const end = Math.min(now, second[0]);
    level = Math.min(cap, level + (Math.max(0, end - at) * cap) / 60_000) - second[field];
    at = Math.max(at, end);
  }
  return [level, at];
}

/** What an admission in Redis holds, released once (the ticket calls `finish`). */
export class SharedAdmission implements HeldAdmission {
  private open = true;
  constructor(private readonly owner: SharedLimits, readonly id: string, readonly ws: string,
    /** What it holds (credit hold, budget reservation, tokens), then per key of the admission: its id, rpm, tpm, 1 when it has a budget, how many windows, their seconds (FINISH's ARGV). */
    readonly held: ReadonlyArray<string | number>, readonly headers: readonly Header[],
    /** The Redis epoch it was admitted in, and when (ms). */
    readonly epoch: string, readonly admittedAt: number) {}

  /** Settles once Redis has the holds back (or could not be told: the lease frees them then); null until `finish`. */
  released: Promise<void> | null = null;

  /** The request is over: releases its holds, counts what it used, applies its balance change (`delta`, nano). */
  finish(tokens: number, chargeNano: number, delta: number): void {
    if (!this.open) return;
    this.open = false;
    this.released = new Promise((done) => this.owner.finish(this, tokens, chargeNano, delta, done));
  }
}

export class SharedLimits implements AdmissionStore {
  private readonly redis: Scripted;
  private readonly prefix: string;
  /** This replica's admissions still held, whose leases it renews. */
  private readonly held = new Set<string>();
  /** The check that this connection's server run holds the epoch's state (null: not connected). */
  private run: Promise<void> | null = null;
  /** Seeds in progress here, by workspace or key and epoch: concurrent requests share one read of Postgres. */
  private readonly seeding = new Map<string, Promise<void>>();
  private readonly renewer: NodeJS.Timeout;

  /**
   * `localWhenDown` (config cluster.unmetered_without_redis: local_limits): with Redis
   * unreachable, a key with limits in an unmetered workspace is admitted on this replica's own
   * counts (each replica then allows the limit: N× it cluster-wide) rather than refused.
   */
  constructor(cluster: Cluster, private readonly seeder: BalanceSeeder, private readonly leaseMs = 30_000, readonly localWhenDown = false,
    /** A key and every key below it (what its limits count). */
    private readonly family: (id: string) => string[] = (id) => [id]) {
    const redis = cluster.redis as Scripted;
    this.timeoutMs = redis.options.commandTimeout ?? 1000;
    for (const [name, lua] of [['sluiceAdmit', ADMIT], ['sluiceFinish', FINISH], ['sluiceApply', APPLY], ['sluiceSeed', SEED], ['sluiceSeedKey', SEED_KEY],
      ['sluiceRenew', RENEW], ['sluiceForget', FORGET], ['sluiceRun', RUN], ['sluiceClaim', CLAIM], ['sluiceRegister', REGISTER], ['sluiceAbandon', ABANDON], ['sluiceSettleClaim', SETTLE_CLAIM]] as const) {
      if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: 0, lua });
    }
    this.redis = redis;
    // Each (re)connection: is this the server run whose state we trust? (RUN; admissions wait for the answer)
    const check = () => {
      const run = this.checkRun();
      run.catch(() => undefined); // (an admission waiting on it says why; none waiting, the next connection checks again)
      this.run = run;
    };
    redis.on('close', () => { this.run = null; });
    if (redis.status === 'ready') check();
    redis.on('ready', check);
    this.prefix = cluster.prefix;
    this.renewer = setInterval(() => this.renew(), Math.max(1000, Math.floor(leaseMs / 3)));
    this.renewer.unref();
  }

  /** How long this replica waits for a command (ioredis's commandTimeout; cluster.redis_timeout_ms). */
  private readonly timeoutMs: number;

  /**
   * Redis's clock less this replica's monotonic one (performance.now(), which a step of the
   * wall clock does not move): an admission's deadline is told in Redis's time. Each reading
   * is Redis's TIME against the middle of its round trip, so it is off by up to half of it (a
   * TIME queued behind admissions reads late); the reading with the shortest round trip of the
   * last few is the one used.
   */
  private clockOffset = 0;
  private readings: Array<{ offset: number; rtt: number }> = [];

  /** Takes `samples` readings of the offset, one after another, and keeps the best of the recent ones. */
  private async measureClock(samples = 1): Promise<void> {
    for (let i = 0; i < samples; i++) {
      const before = performance.now();
      const [s, us] = await this.redis.time();
      const after = performance.now();
      this.readings.push({ offset: Number(s) * 1000 + Number(us) / 1000 - (before + after) / 2, rtt: after - before });
    }
    // (the last 6: a minute of renewals by default; old ones go, so a clock that stepped is followed)
    this.readings = this.readings.slice(-6);
    this.clockOffset = this.readings.reduce((best, r) => (r.rtt < best.rtt ? r : best)).offset;
  }

  /** RUN, with this server's run_id: a Redis restarted (empty or from a snapshot) or failed over starts a new epoch. */
  private async checkRun(): Promise<void> {
    this.readings = []; // (another server, maybe: its clock is measured afresh)
    await this.measureClock(3);
    const info = await this.redis.info('server');
    const runId = /run_id:(\w+)/.exec(info)?.[1];
    if (!runId) throw new Error('Redis did not say its run_id');
    await this.redis.sluiceRun(this.prefix, runId, randomBytes(8).toString('hex'));
  }

  /** Does this request need Redis: limits anywhere in its chain, or credits to hold? */
  needed(chain: readonly KeyRecord[], ws: Workspace): boolean {
    return ws.metered || chain.some((k) => !isOperatorKey(k) && k.limits !== null);
  }

  /**
   * Checks and counts the chain's limits and holds `holdNano` of the workspace's credits, in
   * one script. Rejects with the 429 limits.ts would give, a 402 (from `insufficient`, given
   * what is available), or a 503 when Redis cannot be reached.
   */
  async admit(id: string, chain: readonly KeyRecord[], reserve: Reservation, ws: Workspace, holdNano: number,
    insufficient: (availableNano: number) => GatewayError): Promise<SharedAdmission> {
    if (!this.run) throw unavailable('not connected to Redis');
    await this.run.catch((err: unknown) => { this.run = null; throw unavailable(err instanceof Error ? err.message : String(err)); });
    const now = Date.now();
    const entries: Array<{ id: string; limits: KeyLimits }> = [];
    for (const k of chain) if (!isOperatorKey(k) && k.limits) entries.push({ id: k.id, limits: k.limits });
    // What it holds, for the record a lease's end releases (FINISH is told it again: nothing to decode).
    const budgeted = entries.map(({ limits: l }) => (l.budget_usd_day !== undefined || l.budget_usd_month !== undefined ? 1 : 0));
    const record = JSON.stringify({ ws: ws.id, wn: holdNano, k: entries.map((e) => e.id), kn: reserve.nano, b: budgeted, tk: reserve.tokens });
    const args: Array<string | number> = [this.prefix, id, this.leaseMs, ws.id, holdNano, reserve.tokens, reserve.nano, utcDay(now), utcMonth(now),
      Math.ceil(msToNextUtcDay(now)), Math.ceil(msToNextUtcMonth(now)), record, entries.length];
    for (const { id: keyId, limits: l } of entries) {
      const windows = l.windows ?? [];
      args.push(keyId, l.rpm ?? 0, l.tpm ?? 0, budgetNano(l.budget_usd_day), budgetNano(l.budget_usd_month), l.max_concurrency ?? 0, windows.length);
      for (const w of windows) args.push(w.seconds, w.requests);
    }
    // Last: the deadline, in Redis's time, past which the script must count nothing: this
    // replica may have answered 503 by the time the answer arrives (its command timed out; a
    // stalled Redis runs it later). Half the timeout, so an answer counted just before it still
    // has the other half to arrive (an event loop busy, a clock read a little off) before the timeout.
    args.push(0);
    let sent = 0;
    const admit = () => {
      sent = performance.now();
      args[args.length - 1] = Math.ceil(sent + this.clockOffset + this.timeoutMs / 2);
      return this.call(() => this.redis.sluiceAdmit(...args)).catch((err: unknown) => {
        // Given up on (a timeout, most often): Redis may have run it before its deadline and
        // its answer be waiting unread (this event loop held up). What it would hold is
        // released now, behind it on the connection, not when its lease runs out (a slot of
        // a key allowed one request at a time, held for the lease). Failing, the lease does it.
        this.redis.sluiceAbandon(this.prefix, id).catch(() => undefined);
        throw err;
      });
    };
    let reply = await admit();
    // 'late' sooner than it could be: the offset was wrong (Redis's clock stepped). Measured again, once.
    if (reply[0] === 'late' && performance.now() - sent < this.timeoutMs / 4) {
      this.readings = [];
      await this.call(() => this.measureClock(3));
      reply = await admit();
    }
    // A workspace or keys this Redis has not seen in its epoch: read from Postgres once, then again.
    for (let round = 0; round < 3 && (reply[0] === 'seed' || reply[0] === 'seedkeys'); round++) {
      if (reply[0] === 'seed') await this.once(`w:${ws.id}`, () => this.seed(ws));
      else {
        const epoch = String(reply[1]);
        await Promise.all(reply.slice(2).map((i) => entries[Number(i)]!).map((e) => this.once(`k:${epoch}:${e.id}`, () => this.seedKey(epoch, e, now))));
      }
      reply = await admit();
    }
    switch (reply[0]) {
      case 'late': throw unavailable('Redis answered after this replica stopped waiting');
      case 'ok': {
        this.held.add(id);
        const held: Array<string | number> = [holdNano, reserve.nano, reserve.tokens];
        entries.forEach((e, i) => { const w = e.limits.windows ?? []; held.push(e.id, e.limits.rpm ?? 0, e.limits.tpm ?? 0, budgeted[i]!, w.length, ...w.map((x) => x.seconds)); });
        return new SharedAdmission(this, id, ws.id, held, entries.length ? remaining(entries[0]!.limits, reply) : [], String(reply[1]), now);
      }
      case 'credits': throw insufficient(Number(reply[1]));
      case 'limit': {
        const index = Number(reply[1]);
        const e = entries[index]!;
        const kind = String(reply[2]) as 'rpm' | 'tpm' | 'window' | 'budget' | 'concurrency';
        const waitMs = Number(reply[3]);
        const w = kind === 'window' ? { seconds: Number(reply[4]), requests: Number(reply[5]) } : null;
        const own: Header[] = [];
        const first = entries[0]!.limits;
        if (first.rpm) own.push(['x-ratelimit-limit-requests', String(first.rpm)]);
        else if (index === 0 && w) own.push(['x-ratelimit-limit-requests', String(w.requests)]);
        if (first.tpm) own.push(['x-ratelimit-limit-tokens', String(first.tpm)]);
        throw refusalError(index, e.id, describe(kind, e.limits, waitMs, w, reply[6] === 'month' ? 'month' : 'day'), own);
      }
      default: throw unavailable('an unexpected answer from Redis');
    }
  }

  /** Its balance as Postgres has it, into this Redis (once per workspace and epoch). */
  private async seed(ws: Workspace): Promise<void> {
    try {
      await this.seeder.seed(ws);
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      throw unavailable(`the balance could not be read from Postgres (${err instanceof Error ? err.message : String(err)})`);
    }
  }

  /** Runs `work` once for `what` at a time here: requests arriving meanwhile wait for the same one. */
  private once(what: string, work: () => Promise<void>): Promise<void> {
    let running = this.seeding.get(what);
    if (!running) {
      running = work().finally(() => this.seeding.delete(what));
      this.seeding.set(what, running);
    }
    return running;
  }

  /**
   * A key as this Redis epoch first uses it: its spend today and this month, its windows'
   * counts and its rpm and tpm buckets, from the rows in Postgres over the key's family (a
   * parent's limits count what the keys it minted did). Rows still in an outbox (the last
   * ship_ms of requests) are not counted. A key with no limit but concurrency needs nothing
   * from Postgres.
   */
  private async seedKey(epoch: string, { id, limits }: { id: string; limits: KeyLimits }, now: number): Promise<void> {
    try {
      const windows = limits.windows ?? [];
      const buckets = Boolean(limits.rpm || limits.tpm);
      const counts = limits.budget_usd_day || limits.budget_usd_month || windows.length || buckets
        ? await this.seeder.keyCounts(this.family(id), windows, now, buckets)
        : { dayNano: 0, monthNano: 0, minute: [], windows: [] };
      const args: Array<string | number> = [this.prefix, epoch, id, utcDay(now), Math.round(counts.dayNano), utcMonth(now), Math.round(counts.monthNano),
        ...bucketOf(limits.rpm, counts.minute, 1, now), ...bucketOf(limits.tpm, counts.minute, 2, now)];
      for (const w of counts.windows) {
        args.push(w.seconds, w.slices.length);
        for (const [slice, n] of w.slices) args.push(slice, n);
      }
      await this.redis.sluiceSeedKey(...args);
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      throw unavailable(`the key's counts could not be read from Postgres (${err instanceof Error ? err.message : String(err)})`);
    }
  }

  /** Run by the seeder while Postgres holds the workspace's row: sets the balance unless Redis has one. Returns the epoch. */
  seedScript(wsId: string, balanceNano: bigint | string): Promise<string> {
    return this.redis.sluiceSeed(this.prefix, wsId, String(balanceNano), randomBytes(8).toString('hex'));
  }

  /**
   * The ledger, whose commit a request's finish waits for: a balance change must never reach
   * Redis before its row is durable (a replica killed in between would leave a charge with no
   * row). Killed after the commit instead, the row's change is applied by the shipper, and
   * the holds are released when their lease runs out.
   */
  ledger: { whenCommitted(done: (err: unknown) => void): void } | null = null;

  /** Called once per admission (SharedAdmission.finish), as its row is appended; not awaited: a failure leaves the lease and the shipper to put it right. */
  finish(a: SharedAdmission, tokens: number, chargeNano: number, delta: number, done: () => void = () => undefined): void {
    // (a row that failed to commit charges nothing: only the holds are released)
    if (this.ledger) this.ledger.whenCommitted((err) => (err ? this.send(a, 0, 0, 0, done) : this.send(a, tokens, chargeNano, delta, done)));
    else this.send(a, tokens, chargeNano, delta, done);
  }

  private send(a: SharedAdmission, tokens: number, chargeNano: number, delta: number, done: () => void): void {
    this.held.delete(a.id);
    const now = Date.now();
    this.redis.sluiceFinish(this.prefix, a.id, tokens, chargeNano, a.ws, delta, a.id, utcDay(now), utcMonth(now), MARKER_SECONDS, a.epoch, a.admittedAt, ...a.held)
      .catch((err: unknown) => logFailure(`a request's holds were not released (its lease will be): ${String(err)}`)).then(done, done);
  }

  /**
   * A credit row (top-up, refund) committed here: its change applied to the live balance,
   * seeding the workspace first when Redis does not have it yet. A failure is left to the shipper.
   */
  async credit(rowId: string, ws: Workspace, delta: number): Promise<void> {
    const now = Date.now();
    const run = () => this.redis.sluiceFinish(this.prefix, '', 0, 0, ws.id, delta, rowId, utcDay(now), utcMonth(now), MARKER_SECONDS, '', now, 0, 0, 0);
    try {
      const reply = await run();
      if (reply[1] === '' || reply[1] === null) {
        // Not in Redis yet (a new workspace, or Redis restarted): seeded from Postgres, which may
        // hold this very row already (the shipper was quicker): then the seed marks it applied.
        await this.once(`w:${ws.id}:${rowId}`, () => this.seeder.seed(ws, [rowId]));
        await run();
      }
    } catch (err) {
      logFailure(`a credit of ${delta / 1e9} USD to ${ws.id} waits for the shipper: ${String(err)}`);
    }
  }

  /** Live balances and holds of workspaces (those Redis has). */
  async live(ids: readonly string[]): Promise<Map<string, { balance: number; held: number }>> {
    const batch = this.redis.pipeline();
    for (const id of ids) batch.hmget(`${this.prefix}w:${id}`, 'b', 'h');
    const results = (await batch.exec()) ?? [];
    const out = new Map<string, { balance: number; held: number }>();
    results.forEach(([err, value], i) => {
      const [b, h] = (value ?? []) as Array<string | null>;
      if (!err && b !== null && b !== undefined) out.set(ids[i]!, { balance: Number(b), held: Number(h ?? 0) });
    });
    return out;
  }

  /** A key's live counters, as Limits.view gives them on one node (for the operator's GET /admin/keys/{id}). */
  async keyView(id: string, now = Date.now()): Promise<{ in_flight: number; reserved_usd: number; spent_today_usd: number; spent_month_usd: number }> {
    const [fl, rv, dd, ds, md, ms] = await this.redis.hmget(`${this.prefix}k:${id}`, 'fl', 'rv', 'dd', 'ds', 'md', 'ms');
    return {
      in_flight: Number(fl ?? 0), reserved_usd: Number(rv ?? 0) / 1e9,
      spent_today_usd: dd === utcDay(now) ? Number(ds ?? 0) / 1e9 : 0, spent_month_usd: md === utcMonth(now) ? Number(ms ?? 0) / 1e9 : 0,
    };
  }

  /** The shipper's rows are in Postgres and out of its outbox: their markers can go. */
  forget(rowIds: readonly string[]): Promise<number> {
    return this.redis.sluiceForget(this.prefix, ...rowIds);
  }

  /**
   * A refund of `requestId`, claimed for the whole cluster: null when it was made already
   * (409), else what to say once its row is committed (`made`) or failed to (`release`: a
   * retry may make it). Another replica's claim is pending until its row commits (it may yet
   * fail): waited for, up to two seconds, then a 503 to retry. A 503 too when Redis cannot
   * say; a claim Redis made while this replica had stopped waiting for it is released behind it.
   */
  async claimRefund(requestId: string): Promise<RefundClaim | null> {
    const token = randomBytes(8).toString('hex');
    const settle = (how: 'made' | 'dropped', failing: string) => () => {
      this.redis.sluiceSettleClaim(this.prefix, requestId, token, how)
        .catch((err: unknown) => logFailure(`the refund claim of ${requestId} was not ${how} (${failing}): ${String(err)}`));
    };
    const claim: RefundClaim = {
      made: settle('made', 'a retry waits for it, and takes it over after a minute: the refund applies once'),
      release: settle('dropped', 'a retry waits for it, and takes it over after a minute'),
    };
    // Another replica's pending claim is usually made or released within milliseconds (its
    // row's commit): asked again for up to two seconds, so the answer is the 409 or the refund.
    for (let waited = 0; ; waited += 50) {
      let got: number;
      try {
        got = await this.redis.sluiceClaim(this.prefix, requestId, token, REFUND_CLAIM_STALE_MS);
      } catch (err) {
        claim.release();
        throw refundUnavailable(`Redis cannot say whether it was refunded already (${err instanceof Error ? err.message : String(err)})`);
      }
      if (got !== 2) return got === 1 ? claim : null;
      if (waited >= 2000) throw refundUnavailable('a refund of it is being made through another replica right now');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * One registration from address unit `unit`, counted for the whole cluster: null when
   * allowed, else the milliseconds until one more would be (rejects when Redis cannot say).
   */
  async register(unit: string, perHour: number): Promise<number | null> {
    const member = `${Date.now()}:${randomBytes(6).toString('hex')}`;
    try {
      const wait = await this.redis.sluiceRegister(this.prefix, unit, perHour, member);
      return wait < 0 ? null : wait;
    } catch (err) {
      // (counted if Redis ran it after this replica stopped waiting: uncounted behind it, as the caller counts it on its own instead)
      this.redis.zrem(`${this.prefix}reg:${unit}`, member).catch(() => undefined);
      throw err;
    }
  }

  /** Rows whose balance change a seeded balance already holds: finish and the shipper leave them be. */
  async markApplied(epoch: string, rowIds: readonly string[]): Promise<void> {
    const batch = this.redis.pipeline();
    for (const id of rowIds) batch.set(`${this.prefix}a:${epoch}:${id}`, 1, 'EX', MARKER_SECONDS);
    const results = await batch.exec();
    const failed = results?.find(([err]) => err);
    if (failed) throw failed[0]!;
  }

  /** The shipper's pass: rows in Postgres whose change finish did not apply (ARGV of APPLY after the prefix). */
  apply(rows: ReadonlyArray<readonly [string, string, number, string]>): Promise<number> {
    return this.redis.sluiceApply(this.prefix, MARKER_SECONDS, ...rows.flat());
  }

  private renew(): void {
    // (the clocks drift apart slowly: measured again each time, connected or not)
    if (this.run) this.measureClock().catch(() => undefined);
    if (this.held.size === 0) return;
    this.redis.sluiceRenew(this.prefix, this.leaseMs, ...this.held).catch((err: unknown) => logFailure(`leases not renewed: ${String(err)}`));
  }

  private async call<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw unavailable(err instanceof Error ? err.message : String(err));
    }
  }

  close(): void {
    clearInterval(this.renewer);
  }
}

/** A budget in nano-USD for the script (0: none): at least 1, so a budget under a nano-dollar still refuses once anything is spent, as on one node. */
function budgetNano(usd: number | undefined): number {
  return usd === undefined ? 0 : Math.max(1, Math.ceil(usd * 1e9));
}

/** A claim still pending after this long is stale: its replica died between the claim and the refund's row. */
const REFUND_CLAIM_STALE_MS = 60_000;

/** A refund claimed for the cluster: `made` once its row is committed, else `release`. */
export interface RefundClaim { made(): void; release(): void }

function refundUnavailable(why: string): GatewayError {
  return new GatewayError(Errors.storeUnavailable, `The refund cannot be made right now: ${why}. Nothing was refunded; retry shortly.`).retryAfter(1000);
}

/** Redis (or the record behind it) cannot be reached: refused at once, to be retried. */
export function unavailable(why: string): GatewayError {
  return new GatewayError(Errors.storeUnavailable, `The gateway cannot check this key's limits and credits right now (${why.slice(0, 200)}); nothing was charged. Retry shortly.`).retryAfter(1000);
}

let lastLog = 0;
function logFailure(message: string): void {
  if (Date.now() - lastLog < 10_000) return;
  lastLog = Date.now();
  console.error(`cluster: ${message}`);
}

/** x-ratelimit-* after an admission, from key 0's state as the script left it (see limits.ts's remainingHeaders). */
function remaining(limits: KeyLimits, reply: Reply): Header[] {
  const out: Header[] = [];
  if (limits.rpm) {
    const level = Number(reply[3]);
    out.push(['x-ratelimit-limit-requests', String(limits.rpm)], ['x-ratelimit-remaining-requests', String(Math.max(0, Math.floor(level)))],
      ['x-ratelimit-reset-requests', fmtDuration(((limits.rpm - level) * 60_000) / limits.rpm)]);
  } else if (reply[5] !== '') {
    const requests = Number(reply[5]);
    out.push(['x-ratelimit-limit-requests', String(requests)], ['x-ratelimit-remaining-requests', String(Math.max(0, requests - Number(reply[6])))],
      ['x-ratelimit-reset-requests', fmtDuration(Number(reply[7]))]);
  }
  if (limits.tpm) {
    const level = Number(reply[4]);
    out.push(['x-ratelimit-limit-tokens', String(limits.tpm)], ['x-ratelimit-remaining-tokens', String(Math.max(0, Math.floor(level)))],
      ['x-ratelimit-reset-tokens', fmtDuration(((limits.tpm - level) * 60_000) / limits.tpm)]);
  }
  return out;
}
