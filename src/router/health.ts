// Route health: a circuit breaker per route (closed → open after N failures in a row →
// half-open after a cooldown, where one probe decides), a latency EWMA, counters, and the
// operator's enable/disable switch. All in memory on the main thread; checked per attempt.

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

export class RouteHealth {
  private readonly routes = new Map<string, Health>();

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
    h.requests++;
    h.failuresInRow = 0;
    h.state = 'closed';
    h.probing = false;
    h.ewmaMs = h.ewmaMs === null ? latencyMs : h.ewmaMs + ALPHA * (latencyMs - h.ewmaMs);
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
    this.of(decision).disabled = disabled;
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
