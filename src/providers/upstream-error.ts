// An upstream's error answer, whatever its dialect (OpenAI's envelope, Anthropic's, vLLM's
// flat object, FastAPI's `detail`, plain text), as the gateway's own error in OpenAI's
// envelope: `{"error": {"message", "type", "code", "param"}}`. A 4xx about the request is
// the caller's to see, with the upstream's status and words; the upstream refusing the
// gateway's own credentials is the operator's problem, so the caller gets a 502 that says
// so; throttling (a 503 `upstream_rate_limited`: a 429 is the gateway's own limits') and
// outages pass the upstream's Retry-After on.
import { Errors, GatewayError, type ErrorSpec } from '../errors.js';
import { isRecord } from '../json.js';

const TYPES: Record<number, string> = { 400: 'invalid_request_error', 403: 'permission_error', 404: 'invalid_request_error', 409: 'invalid_request_error', 413: 'invalid_request_error', 422: 'invalid_request_error', 429: 'rate_limit_error' };

/** What the body says, from whichever of the known shapes it has. */
function readBody(body: Buffer): { message: string | null; type: string | null; code: string | null; param: string | null; inner: Record<string, unknown> | null } {
  const none = { message: null, type: null, code: null, param: null, inner: null };
  if (body.length === 0 || body.length > 65_536) return none;
  let parsed: unknown;
  try { parsed = JSON.parse(body.toString('utf8')); } catch {
    const text = body.toString('utf8').trim();
    return { ...none, message: text && !text.startsWith('<') ? text : null }; // not an HTML error page
  }
  if (!isRecord(parsed)) return none;
  const e = isRecord(parsed.error) ? parsed.error : parsed; // OpenAI, Anthropic: under `error`; vLLM: flat
  const str = (v: unknown) => (typeof v === 'string' && v ? v : null);
  const message = str(e.message) ?? str(parsed.message) ?? str(parsed.detail) ?? (typeof parsed.error === 'string' ? parsed.error : null);
  // Google's envelope: a numeric `code` and the meaningful `status` (INVALID_ARGUMENT, RESOURCE_EXHAUSTED)
  return { message, type: str(e.type), code: str(e.code) ?? str(e.status) ?? (typeof e.code === 'number' ? String(e.code) : null), param: str(e.param),
    inner: isRecord(e.innererror) ? e.innererror : null };
}

/**
 * The caller's error for an upstream's non-2xx answer (`decision`: the route that gave it).
 * `retryAfterMs`: the upstream's Retry-After, passed on.
 */
export function upstreamError(status: number, body: Buffer, decision: string, retryAfterMs: number | null): GatewayError {
  const said = readBody(body);
  const words = said.message ? said.message.slice(0, 1000) : null;
  const quoted = words ? `: ${words.replace(/\.+$/, '')}` : ''; // inside a sentence of its own, which ends it
  let err: GatewayError;
  if (status === 401 || status === 407) {
    err = new GatewayError(Errors.upstreamAuth, `The upstream ${decision} refused this gateway's credentials (HTTP ${status}${quoted}). The operator must fix its provider key.`);
  } else if (status === 429) {
    // A 503, not the upstream's 429 and code: a 429 from the gateway is its own limits' (the key's
    // rpm, window…), which a caller must be able to tell from a provider's capacity.
    err = new GatewayError(Errors.upstreamRateLimited, `The upstream ${decision} is rate limiting this gateway${quoted}.`);
  } else if (said.code === 'DeploymentNotFound' || said.code === 'DeploymentNotReady') {
    // Azure: the route names a deployment the resource lacks; the operator's to fix, and another route may serve.
    err = new GatewayError(Errors.upstreamError, `The upstream ${decision} has no such deployment, or it is not ready (HTTP ${status}${quoted}). The operator must fix the route's deployment name.`);
  } else if (status >= 400 && status < 500) {
    const spec: ErrorSpec = { status, type: said.type ?? TYPES[status] ?? 'invalid_request_error', code: said.code ?? said.type ?? `upstream_${status}` };
    err = new GatewayError(spec, words ?? `The upstream ${decision} refused the request (HTTP ${status}).`, said.param);
  } else {
    const spec = status === 503 || status === 529 ? Errors.upstreamUnavailable : status === 504 ? Errors.upstreamTimeout : Errors.upstreamError;
    err = new GatewayError(spec, `The upstream ${decision} failed (HTTP ${status}${quoted}).`);
  }
  // Azure's content-filter verdict (which categories, how severe) is the caller's to read.
  if (said.inner && status >= 400 && status < 500 && err.status < 500) err.extra = { innererror: said.inner };
  return retryAfterMs !== null ? err.retryAfter(retryAfterMs) : err;
}
