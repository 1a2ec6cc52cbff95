// Failover: which route the next attempt of a request goes to, and when. Attempts go to
// the first untried route whose breaker admits it; a failure before any byte reached the
// client counts against its route's breaker (an upstream's Retry-After rests the route that
// long) and the request moves on after a short jittered backoff while retries last: to the
// next untried route, or with none left (when the failure may pass, as a 5xx, a 429 or a
// refused connection can) to the same route once its rest is over, if that is soon enough.
import type { Route } from '../router/catalog.js';
import type { RouteHealth } from '../router/health.js';

export interface FailoverPolicy {
  /** Attempts after the first. */
  maxRetries: number;
  /** A same-route retry waits at most this long (its Retry-After); longer, the caller gets the error. */
  maxRetryWaitMs: number;
}

export class Attempts {
  /** Attempts that failed before the current one. */
  retries = 0;
  private readonly tried = new Set<Route>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly routes: readonly Route[], private readonly health: RouteHealth, private readonly policy: FailoverPolicy) {}

  /** The route for the next attempt (now marked tried), or null when none may take it now. */
  next(): Route | null {
    this.timer = null;
    const route = this.routes.find((r) => !this.tried.has(r) && this.health.admits(r.decision));
    if (route) this.tried.add(route);
    return route ?? null;
  }

  /**
   * `route`'s attempt failed (`reason` for its breaker; `retryAfterMs` the upstream's own
   * rest). Schedules `retry` and returns true, or returns false when the caller must answer
   * with the failure (no retries left, nothing to retry on soon enough, or `canRetry` false:
   * nobody waits for the answer any more).
   */
  failed(route: Route, reason: string, retryAfterMs: number | null, sameRoute: boolean, canRetry: boolean, retry: () => void): boolean {
    this.health.failure(route.decision, reason, retryAfterMs);
    if (this.retries >= this.policy.maxRetries || !canRetry) return false;
    // The next attempt goes to another route, so the wait is short: 5, 10, 20 ms … (± 50%).
    let wait = Math.min(1000, 5 * 2 ** this.retries) * (0.5 + Math.random());
    if (!this.routes.some((r) => !this.tried.has(r))) {
      const rest = this.health.waitMs([route.decision]);
      if (!sameRoute || rest === null) return false;
      wait = Math.max(wait, rest);
      if (wait > this.policy.maxRetryWaitMs) return false;
      this.tried.delete(route);
    }
    this.retries++;
    this.timer = setTimeout(retry, wait);
    return true;
  }

  /** How long until some route may take the request again (for Retry-After), or null. */
  waitMs(): number | null {
    return this.health.waitMs(this.routes.map((r) => r.decision));
  }

  /** No further attempt: a scheduled retry is dropped. */
  cancel(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
  }
}
