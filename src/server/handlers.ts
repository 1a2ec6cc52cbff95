// The two shapes every route takes: authenticated with a JSON body (auth and scope are
// checked before a byte of body is read), and without a body (authenticated or public).
// Everything needed from `req` is read synchronously: uWS invalidates it on return.
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { KeyRecord, KeyRing, Scope } from '../accounts/keys.js';
import type { RequestIds } from '../accounts/ledger.js';
import { Errors, GatewayError } from '../errors.js';
import { Exchange } from './exchange.js';
import { PEER_HEADER } from './handover.js';

export type BodyHandler = (ex: Exchange, key: KeyRecord, body: Buffer, t0: number, params: string[], headers: string[]) => void;
export type NoBodyHandler = (ex: Exchange, key: KeyRecord | null, params: string[], query: URLSearchParams) => void;
type Route = (res: HttpResponse, req: HttpRequest) => void;
/** How an inference route refuses once the key is known: a ledger row, then the error (ChatGateway.reject). */
export type Refuse = (ex: Exchange, key: KeyRecord, t0: number, err: unknown) => void;

export interface Handlers {
  /** `params`: how many route parameters the handler reads (reading them costs a native call each). */
  withBody(scope: Scopes, handler: BodyHandler, params?: number, headers?: readonly string[], anthropic?: boolean): Route;
  /**
   * An inference route: like withBody with the `inference` scope, but every refusal after
   * the key is known (a missing scope, a body too large or unreadable, the handler's own
   * throw) goes through `refuse`, so it is a request with a row like any other.
   */
  /**
   * `endpoint`: what the ledger calls the route (`chat.completions`, `responses`);
   * `anthropic`: the route speaks Anthropic's API, so its errors go out in Anthropic's envelope.
   */
  inference(handler: BodyHandler, refuse: Refuse, headers?: readonly string[], endpoint?: string, anthropic?: boolean): Route;
  /** An inference route that reads its own body as it arrives (an upload): called once the key and scope pass. */
  upload(handler: (caller: Caller) => void, refuse: Refuse, headers: readonly string[], endpoint: string): Route;
  noBody(scope: Scopes | null, handler: NoBodyHandler): Route;
  /** A public route with a JSON body (no key); `client` is the caller's address (see clientAddress). */
  publicBody(handler: (ex: Exchange, body: Buffer, client: string) => void): Route;
}

/** An authenticated request before its body: what the route read from it. */
export interface Caller {
  ex: Exchange;
  key: KeyRecord;
  t0: number;
  values: string[];
  headers: string[];
  /** The Content-Length header ('' when absent). */
  length: string;
}

/** A scope, or several of which the key needs any one. */
export type Scopes = Scope | readonly Scope[];

export function requireScope(key: KeyRecord, scope: Scopes): void {
  if (typeof scope === 'string') {
    if (!key.scopes.includes(scope)) throw new GatewayError(Errors.forbidden, `This key lacks the '${scope}' scope.`);
    return;
  }
  if (!scope.some((s) => key.scopes.includes(s))) throw new GatewayError(Errors.forbidden, `This key needs one of the scopes ${scope.map((s) => `'${s}'`).join(', ')}.`);
}

const NO_PARAMS: string[] = [];
const NO_HEADERS: readonly string[] = [];

/**
 * The caller's address: the socket's peer, or with `trustProxyHops` proxies in front (each
 * appending to X-Forwarded-For) the entry that many from the right, which is the last one
 * no client could have written itself.
 */
export function clientAddress(peer: string, forwardedFor: string, trustProxyHops: number): string {
  if (trustProxyHops <= 0 || !forwardedFor) return peer;
  const hops = forwardedFor.split(',').map((h) => h.trim()).filter(Boolean);
  return hops[hops.length - trustProxyHops] ?? hops[0] ?? peer;
}

/**
 * The caller's key as an Authorization value: the header itself, or Anthropic's `x-api-key`
 * (what Anthropic's SDKs and tools built on them send) when there is no Authorization.
 */
export function authorizationOf(req: HttpRequest): string {
  const authorization = req.getHeader('authorization');
  if (authorization) return authorization;
  const apiKey = req.getHeader('x-api-key');
  return apiKey ? `Bearer ${apiKey}` : '';
}

export interface HandlerDeps {
  keys: KeyRing;
  ids: RequestIds;
  maxBodyBytes: number;
  trustProxyHops: number;
  traced: boolean;
  /**
   * An event-loop thread (thread-app.ts): a key its copy of the ring does not know may be one
   * the main thread has just put in force; the request goes there (true: it was handed over).
   */
  unknownKey?: ((ex: Exchange, res: HttpResponse, req: HttpRequest) => boolean) | undefined;
}

export function makeHandlers(deps: HandlerDeps, state: { draining: boolean }): Handlers {
  const shuttingDown = () => new GatewayError(Errors.shuttingDown, 'The gateway is shutting down; retry shortly.');
  const plain: Refuse = (ex, _key, _t0, err) => ex.sendError(err);
  /**
   * What every authenticated route with a body does before its body: the exchange, the
   * key (a refusal without one is a plain error), the scope (a refusal with one goes through
   * `refuse`), and what the handler reads from `req`. Null when the request was answered.
   */
  const caller = (res: HttpResponse, req: HttpRequest, scope: Scopes, params: number, headerNames: readonly string[], endpoint: string | undefined, refuse: Refuse, anthropic: boolean): Caller | null => {
    const t0 = performance.now();
    const ex = new Exchange(res, deps.ids.next());
    if (endpoint) ex.endpoint = endpoint;
    ex.anthropicErrors = anthropic;
    const authorization = authorizationOf(req);
    const length = req.getHeader('content-length');
    if (deps.traced) ex.traceparent = req.getHeader('traceparent');
    const values = params === 0 ? NO_PARAMS : Array.from({ length: params }, (_, i) => req.getParameter(i) ?? '');
    const headers = headerNames.length === 0 ? NO_PARAMS : headerNames.map((h) => req.getHeader(h));
    let key: KeyRecord;
    try {
      if (state.draining) throw shuttingDown();
      key = deps.keys.authenticate(authorization);
    } catch (err) {
      if (deps.unknownKey && err instanceof GatewayError && err.code === Errors.invalidKey.code && deps.unknownKey(ex, res, req)) return null;
      ex.sendError(err);
      return null;
    }
    try {
      requireScope(key, scope);
    } catch (err) {
      refuse(ex, key, t0, err);
      return null;
    }
    return { ex, key, t0, values, headers, length };
  };
  const bodyRoute = (scope: Scopes, handler: BodyHandler, params: number, headerNames: readonly string[], endpoint: string | undefined, refuse: Refuse, anthropic = false): Route => (res, req) => {
    const c = caller(res, req, scope, params, headerNames, endpoint, refuse, anthropic);
    if (!c) return;
    const { ex, key, t0 } = c;
    // A client that leaves while its body is still arriving is a request too (it gets its row
    // through `refuse`); once the body is read, the handler's own path owns the abort.
    let read = false;
    ex.onAbort(() => { if (!read) refuse(ex, key, t0, new GatewayError(Errors.clientClosed, 'The client closed the request while sending its body.')); });
    ex.readBody(deps.maxBodyBytes, c.length, (err, body) => {
      read = true;
      if (err) { refuse(ex, key, t0, err); return; }
      try {
        handler(ex, key, body, t0, c.values, c.headers);
      } catch (e) {
        refuse(ex, key, t0, e);
      }
    });
  };
  return {
    withBody: (scope, handler, params = 0, headerNames = NO_HEADERS, anthropic = false) => bodyRoute(scope, handler, params, headerNames, undefined, plain, anthropic),
    inference: (handler, refuse, headerNames = NO_HEADERS, endpoint, anthropic = false) => bodyRoute('inference', handler, 0, headerNames, endpoint, refuse, anthropic),
    upload: (handler, refuse, headerNames, endpoint) => (res, req) => {
      const c = caller(res, req, 'inference', 0, headerNames, endpoint, refuse, false);
      if (c) handler(c);
    },
    publicBody: (handler) => (res, req) => {
      const ex = new Exchange(res, deps.ids.next());
      if (state.draining) { ex.sendError(shuttingDown()); return; }
      // (no peer address: the private socket an event-loop thread hands requests over on, which says whose it was)
      const peer = Buffer.from(res.getRemoteAddressAsText()).toString() || req.getHeader(PEER_HEADER);
      const client = clientAddress(peer, req.getHeader('x-forwarded-for'), deps.trustProxyHops);
      ex.readBody(deps.maxBodyBytes, req.getHeader('content-length'), (err, body) => {
        if (err) { ex.sendError(err); return; }
        try {
          handler(ex, body, client);
        } catch (e) {
          ex.sendError(e);
        }
      });
    },
    noBody: (scope, handler) => (res, req) => {
      const ex = new Exchange(res, deps.ids.next());
      try {
        const key = scope ? deps.keys.authenticate(authorizationOf(req)) : null;
        if (key && scope) requireScope(key, scope);
        handler(ex, key, [req.getParameter(0) ?? '', req.getParameter(1) ?? ''], new URLSearchParams(req.getQuery() ?? ''));
      } catch (err) {
        ex.sendError(err);
      }
    },
  };
}
