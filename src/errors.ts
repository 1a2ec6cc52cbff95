// The error catalogue: every error a client can see is defined here once, with its
// HTTP status, OpenAI envelope type and stable code. Modules throw `GatewayError`
// (never a bare Error across a module boundary); the server turns it into the envelope.

export interface ErrorSpec {
  readonly status: number;
  readonly type: string;
  readonly code: string;
}

export const Errors = {
  invalidJson: { status: 400, type: 'invalid_request_error', code: 'invalid_json' },
  jsonTooDeep: { status: 400, type: 'invalid_request_error', code: 'json_too_deep' },
  invalidId: { status: 400, type: 'invalid_request_error', code: 'invalid_id' },
  invalidRequest: { status: 400, type: 'invalid_request_error', code: 'invalid_request' },
  previousResponseNotFound: { status: 400, type: 'invalid_request_error', code: 'previous_response_not_found' },
  contextLength: { status: 400, type: 'invalid_request_error', code: 'context_length_exceeded' },
  missingKey: { status: 401, type: 'authentication_error', code: 'missing_api_key' },
  invalidKey: { status: 401, type: 'authentication_error', code: 'invalid_api_key' },
  insufficientCredits: { status: 402, type: 'insufficient_quota', code: 'insufficient_credits' },
  forbidden: { status: 403, type: 'permission_error', code: 'forbidden' },
  modelNotAllowed: { status: 403, type: 'permission_error', code: 'model_not_allowed' },
  rateLimited: { status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  registrationThrottled: { status: 429, type: 'rate_limit_error', code: 'registration_throttled' },
  clientClosed: { status: 499, type: 'invalid_request_error', code: 'client_closed_request' },
  notFound: { status: 404, type: 'invalid_request_error', code: 'not_found' },
  modelNotFound: { status: 404, type: 'invalid_request_error', code: 'model_not_found' },
  conflict: { status: 409, type: 'invalid_request_error', code: 'conflict' },
  methodNotAllowed: { status: 405, type: 'invalid_request_error', code: 'method_not_allowed' },
  bodyTooLarge: { status: 413, type: 'invalid_request_error', code: 'request_too_large' },
  unsupportedEncoding: { status: 415, type: 'invalid_request_error', code: 'unsupported_content_encoding' },
  upstreamError: { status: 502, type: 'upstream_error', code: 'upstream_error' },
  upstreamAuth: { status: 502, type: 'upstream_error', code: 'upstream_auth_error' },
  /** A 200 whose body cannot be read: another route may do better; the same one again would bill again for the same. */
  upstreamBadAnswer: { status: 502, type: 'upstream_error', code: 'upstream_bad_answer' },
  /** An upstream throttling the gateway, after failover: a 503 (429 is the gateway's own limits, which say their kind). */
  upstreamRateLimited: { status: 503, type: 'upstream_error', code: 'upstream_rate_limited' },
  upstreamUnavailable: { status: 503, type: 'upstream_error', code: 'upstream_unavailable' },
  noRoute: { status: 503, type: 'upstream_error', code: 'no_route_available' },
  shuttingDown: { status: 503, type: 'server_error', code: 'shutting_down' },
  /** Cluster mode: the shared store that checks limits and credits cannot be reached (fail closed). */
  storeUnavailable: { status: 503, type: 'server_error', code: 'store_unavailable' },
  upstreamTimeout: { status: 504, type: 'upstream_error', code: 'upstream_timeout' },
  internal: { status: 500, type: 'server_error', code: 'internal_error' },
} as const satisfies Record<string, ErrorSpec>;

export class GatewayError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string;
  readonly param: string | null;
  /** Headers the answer carries (Retry-After, the rate-limit headers). */
  headers: ReadonlyArray<readonly [string, string]> = [];
  /** More members of the error object, as an upstream sent them (Azure's content-filter verdict in `innererror`). */
  extra: Record<string, unknown> | null = null;

  constructor(spec: ErrorSpec, message: string, param: string | null = null) {
    super(message);
    this.name = 'GatewayError';
    this.status = spec.status;
    this.type = spec.type;
    this.code = spec.code;
    this.param = param;
  }

  /** The same error, answered with `Retry-After` (whole seconds, at least 1). */
  retryAfter(ms: number): this {
    this.headers = [...this.headers, ['retry-after', String(Math.max(1, Math.ceil(ms / 1000)))]];
    return this;
  }

  /** The OpenAI error envelope, as bytes ready to send. */
  toJSON(): { error: { message: string; type: string; code: string; param: string | null } } {
    const error = { message: this.message, type: this.type, code: this.code, param: this.param };
    return { error: this.extra ? { ...this.extra, ...error } : error };
  }
}

/** The kinds of key limit a 429 can name (`x-gateway-limit-kind`). */
export type LimitKind = 'rpm' | 'tpm' | 'window' | 'budget' | 'concurrency';

/**
 * A key limit was hit: 429 with Retry-After, the limit's kind, how long to wait, and for a
 * window or a budget which one (`window_seconds`, `period`), also in the error object.
 */
export class LimitError extends GatewayError {
  constructor(
    readonly kind: LimitKind,
    readonly retryAfterSeconds: number,
    message: string,
    headers: ReadonlyArray<readonly [string, string]>,
    readonly detail: Readonly<Record<string, string | number>> = {},
  ) {
    super(Errors.rateLimited, message);
    this.headers = headers;
  }

  override toJSON() {
    return { error: { ...super.toJSON().error, kind: this.kind, retry_after_seconds: this.retryAfterSeconds, ...this.detail } };
  }
}

/**
 * The refusal while the disk has no room for the store (store/headroom.ts): a 503 the caller
 * may retry in a second. `consequence` finishes "so it …" (what was not done, and what that left).
 */
export function diskFull(consequence: string): GatewayError {
  return new GatewayError(Errors.storeUnavailable, `The gateway's disk is full, so it ${consequence} Retry shortly.`).retryAfter(1000);
}

/** The client sees a catalogued error; anything else is a bug, logged here (its stack, never a request's content) and answered as 500. */
export function asGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  // A store write refused for want of room on the disk (store/headroom.ts's NoRoomError, told
  // by name: this module imports no layer): nothing of it was stored, and it may be retried.
  if (err instanceof Error && err.name === 'NoRoomError') {
    return diskFull('could not store this change.');
  }
  console.error('sluice: internal error:', err instanceof Error ? err.stack ?? err.message : String(err));
  return new GatewayError(Errors.internal, 'internal error');
}
