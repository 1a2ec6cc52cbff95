// Route health: a circuit breaker per route (closed → open after N failures in a row →
// half-open after a cooldown, where one probe decides), a latency EWMA, counters, and the
// operator's enable/disable switch. All in memory; checked per attempt. With event-loop
// threads, the main thread's decides and each thread holds a copy (reporter / onState).

import type { Route } from './catalog.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

interface Health {
  state: BreakerState;
  failuresInRow: number;
  /** While open: no request before this time (the cooldown, or the upstream's Retry-After if later). */
  openUntil: number;
  probing: boolean;
  disabled: boolean;
  requests: number;
  errors: number;
  ewmaMs: number | null;
  lastError: string | null;
}

const ALPHA = 0.2;

/** A request the route answered: counted, and its latency in the average. */
function served(h: Health, latencyMs: number): void {
  h.requests++;
  h.ewmaMs = h.ewmaMs === null ? latencyMs : h.ewmaMs + ALPHA * (latencyMs - h.ewmaMs);
}

const stateOf = (h: Health): RouteState => ({ state: h.state, openUntil: h.openUntil, failuresInRow: h.failuresInRow, disabled: h.disabled });

/** What of a route's health decides where requests go: what every event-loop thread holds alike. */
export interface RouteState { state: BreakerState; openUntil: number; failuresInRow: number; disabled: boolean }

/** An outcome an event-loop thread saw, for the main thread's health (which decides for all). */
export type HealthEvent =
  | { kind: 'success'; decision: string; latencyMs: number }
  | { kind: 'failure'; decision: string; reason: string; retryAfterMs: number | null; now: number }
  | { kind: 'disabled'; decision: string; disabled: boolean };

export class RouteHealth {
  private readonly routes = new Map<string, Health>();
  /**
   * Event-loop threads (server/threads.ts). On a thread: each outcome it sees, sent to the
   * main thread. On the main thread: each change of a route's state, sent to every thread,
   * which adopts it. So one breaker, one rest after a Retry-After, and the operator's switch
   * hold on every thread (a half-open route may get one probe per thread).
   */
  reporter: ((e: HealthEvent) => void) | null = null;
  /**
   * On a thread: each success that changes nothing here (most of them), for the main thread's
   * counts and latency only (tally): it batches them, where one that ends failures is reported
   * at once, in order with the failures.
   */
  counted: ((decision: string, latencyMs: number) => void) | null = null;
  onState: ((decision: string, s: RouteState) => void) | null = null;
  /** The main thread: settles once every thread has the states told so far. */
  propagated: (() => Promise<void>) | null = null;

  constructor(private readonly opts: { failures: number; cooldownMs: number }) {}

  get cooldownMs(): number {
    return this.opts.cooldownMs;
  }

  private of(decision: string): Health {
    let h = this.routes.get(decision);
    if (!h) {
      h = { state: 'closed', failuresInRow: 0, openUntil: 0, probing: false, disabled: false, requests: 0, errors: 0, ewmaMs: null, lastError: null };
      this.routes.set(decision, h);
    }
    return h;
  }

  /** May this route take a request now? An open breaker lets one probe through after its cooldown. */
  admits(decision: string, now = Date.now()): boolean {
    const h = this.of(decision);
    if (h.disabled) return false;
    if (h.state === 'closed') return true;
    if (h.state === 'open' && now >= h.openUntil) h.state = 'half_open';
    if (h.state === 'half_open' && !h.probing) {
      h.probing = true;
      return true;
    }
    return false;
  }

  success(decision: string, latencyMs: number): void {
    const h = this.of(decision);
    // (a success changes the breaker only after failures: a thread reports those at once, and batches the rest as `counted`)
    const changes = h.failuresInRow !== 0 || h.state !== 'closed';
    served(h, latencyMs);
    h.failuresInRow = 0;
    h.state = 'closed';
    h.probing = false;
    if (!changes) { this.counted?.(decision, latencyMs); return; }
    this.reporter?.({ kind: 'success', decision, latencyMs });
    this.tell(decision, h);
  }

  private tell(decision: string, h: Health): void {
    this.onState?.(decision, stateOf(h));
  }

  /** An event-loop thread: the main thread's view of a route, in force here. */
  adopt(decision: string, s: RouteState): void {
    const h = this.of(decision);
    h.state = s.state;
    h.openUntil = s.openUntil;
    h.failuresInRow = s.failuresInRow;
    h.disabled = s.disabled;
    if (s.state !== 'half_open') h.probing = false;
  }

  /** The main thread: an outcome a thread saw. */
  heard(e: HealthEvent): void {
    if (e.kind === 'success') this.success(e.decision, e.latencyMs);
    else if (e.kind === 'failure') this.failure(e.decision, e.reason, e.retryAfterMs, e.now);
    else this.setDisabled(e.decision, e.disabled);
  }

  /** The main thread: successes a thread counted (`counted`), in the route's request count and latency; the breaker is not touched. */
  tally(decision: string, latenciesMs: readonly number[]): void {
    const h = this.of(decision);
    for (const ms of latenciesMs) served(h, ms);
  }

  /** Every route's state (a thread that starts adopts them). */
  states(): Array<[string, RouteState]> {
    return [...this.routes].map(([d, h]) => [d, stateOf(h)]);
  }

  /** `retryAfterMs`: the upstream asked for a pause (429/503 Retry-After): the route rests that long. */
  failure(decision: string, reason: string, retryAfterMs: number | null = null, now = Date.now()): void {
    const h = this.of(decision);
    h.requests++;
    h.errors++;
    h.lastError = reason;
    h.failuresInRow++;
    h.probing = false;
    if (retryAfterMs !== null && retryAfterMs > 0) {
      h.state = 'open';
      h.openUntil = Math.max(h.openUntil, now + Math.min(retryAfterMs, 10 * 60_000));
    } else if (h.state === 'half_open' || h.failuresInRow >= this.opts.failures) {
      h.state = 'open';
      h.openUntil = now + this.opts.cooldownMs;
    }
    this.reporter?.({ kind: 'failure', decision, reason, retryAfterMs, now });
    this.tell(decision, h);
  }

  /**
   * How long until one of these routes may take a request again: 0 if one may now, the
   * soonest end of a rest or cooldown otherwise, null if every one is disabled by the operator.
   */
  waitMs(decisions: readonly string[], now = Date.now()): number | null {
    let soonest: number | null = null;
    for (const d of decisions) {
      const h = this.of(d);
      if (h.disabled) continue;
      const wait = h.state === 'open' ? Math.max(0, h.openUntil - now) : 0;
      soonest = soonest === null ? wait : Math.min(soonest, wait);
    }
    return soonest;
  }

  /** Neither a success nor a failure (the client went away): a probe slot is released. */
  release(decision: string): void {
    this.of(decision).probing = false;
  }

  setDisabled(decision: string, disabled: boolean): void {
    const h = this.of(decision);
    h.disabled = disabled;
    this.reporter?.({ kind: 'disabled', decision, disabled });
    this.tell(decision, h);
  }

  view(decision: string) {
    const h = this.of(decision);
    return {
      state: h.disabled ? 'disabled' : h.state, enabled: !h.disabled, failures_in_row: h.failuresInRow,
      requests: h.requests, errors: h.errors, error_rate: h.requests ? h.errors / h.requests : 0,
      latency_ewma_ms: h.ewmaMs === null ? null : Math.round(h.ewmaMs * 1000) / 1000, last_error: h.lastError,
      resting_until: h.state === 'open' ? new Date(h.openUntil).toISOString() : null,
    };
  }
}

/** Each deployment (a route, named by its decision) once, with the models it serves, its provider and its health. */
export function deploymentViews(routes: readonly Route[], health: RouteHealth) {
  const seen = new Map<string, { decision: string; provider: string; kind: string; upstream_model: string; models: string[] }>();
  for (const r of routes) {
    const d = seen.get(r.decision) ?? { decision: r.decision, provider: r.provider.name, kind: r.provider.kind, upstream_model: r.upstreamModel, models: [] };
    d.models.push(r.slug);
    seen.set(r.decision, d);
  }
  return [...seen.values()].map((d) => ({ ...d, ...health.view(d.decision) }));
}
