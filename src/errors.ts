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
  invalidRequest: { status: 400, type: 'invalid_request_error', code: 'invalid_request' },
  contextLength: { status: 400, type: 'invalid_request_error', code: 'context_length_exceeded' },
  missingKey: { status: 401, type: 'authentication_error', code: 'missing_api_key' },
  invalidKey: { status: 401, type: 'authentication_error', code: 'invalid_api_key' },
  insufficientCredits: { status: 402, type: 'insufficient_quota', code: 'insufficient_credits' },
  forbidden: { status: 403, type: 'permission_error', code: 'forbidden' },
  modelNotAllowed: { status: 403, type: 'permission_error', code: 'model_not_allowed' },
  rateLimited: { status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  notFound: { status: 404, type: 'invalid_request_error', code: 'not_found' },
  modelNotFound: { status: 404, type: 'invalid_request_error', code: 'model_not_found' },
  conflict: { status: 409, type: 'invalid_request_error', code: 'conflict' },
  methodNotAllowed: { status: 405, type: 'invalid_request_error', code: 'method_not_allowed' },
  bodyTooLarge: { status: 413, type: 'invalid_request_error', code: 'request_too_large' },
  upstreamError: { status: 502, type: 'upstream_error', code: 'upstream_error' },
  noRoute: { status: 503, type: 'upstream_error', code: 'no_route_available' },
  shuttingDown: { status: 503, type: 'server_error', code: 'shutting_down' },
  upstreamTimeout: { status: 504, type: 'upstream_error', code: 'upstream_timeout' },
  internal: { status: 500, type: 'server_error', code: 'internal_error' },
} as const satisfies Record<string, ErrorSpec>;

export class GatewayError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string;
  readonly param: string | null;

  constructor(spec: ErrorSpec, message: string, param: string | null = null) {
    super(message);
    this.name = 'GatewayError';
    this.status = spec.status;
    this.type = spec.type;
    this.code = spec.code;
    this.param = param;
  }

  /** The OpenAI error envelope, as bytes ready to send. */
  toJSON(): { error: { message: string; type: string; code: string; param: string | null } } {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

/** A key limit was hit: 429 with Retry-After, the limit's kind, and how long to wait. */
export class LimitError extends GatewayError {
  constructor(
    readonly kind: string,
    readonly retryAfterSeconds: number,
    message: string,
    readonly headers: ReadonlyArray<readonly [string, string]>,
  ) {
    super(Errors.rateLimited, message);
  }

  override toJSON() {
    return { error: { ...super.toJSON().error, kind: this.kind, retry_after_seconds: this.retryAfterSeconds } };
  }
}

/** An upstream's own error body, relayed with its status (4xx from the provider are the caller's to see). */
export class UpstreamStatusError extends GatewayError {
  readonly upstreamStatus: number;
  readonly body: Buffer;
  constructor(status: number, body: Buffer) {
    super(Errors.upstreamError, `upstream returned HTTP ${status}`);
    this.upstreamStatus = status;
    this.body = body;
  }
}

export function asGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError(Errors.internal, 'internal error');
}
