// The two shapes every route takes: authenticated with a JSON body (auth and scope are
// checked before a byte of body is read), and without a body (authenticated or public).
// Everything needed from `req` is read synchronously: uWS invalidates it on return.
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { KeyRecord, KeyRing, Scope } from '../accounts/keys.js';
import type { RequestIds } from '../accounts/ledger.js';
import { Errors, GatewayError } from '../errors.js';
import { Exchange } from './exchange.js';

export type BodyHandler = (ex: Exchange, key: KeyRecord, body: Buffer, t0: number, params: string[], headers: string[]) => void;
export type NoBodyHandler = (ex: Exchange, key: KeyRecord | null, params: string[], query: URLSearchParams) => void;
type Route = (res: HttpResponse, req: HttpRequest) => void;

export interface Handlers {
  /** `params`: how many route parameters the handler reads (reading them costs a native call each). */
  withBody(scope: Scope, handler: BodyHandler, params?: number, headers?: readonly string[], exchange?: (res: HttpResponse, id: string) => Exchange): Route;
  noBody(scope: Scope | null, handler: NoBodyHandler): Route;
  /** A public route with a JSON body (no key). */
  publicBody(handler: (ex: Exchange, body: Buffer) => void): Route;
}

export function requireScope(key: KeyRecord, scope: Scope): void {
  if (!key.scopes.includes(scope)) throw new GatewayError(Errors.forbidden, `This key lacks the '${scope}' scope.`);
}

const NO_PARAMS: string[] = [];
const NO_HEADERS: readonly string[] = [];

export function makeHandlers(deps: { keys: KeyRing; ids: RequestIds; maxBodyBytes: number }, state: { draining: boolean }): Handlers {
  return {
    withBody: (scope, handler, params = 0, headerNames = NO_HEADERS, exchange) => (res, req) => {
      const t0 = performance.now();
      const ex = exchange ? exchange(res, deps.ids.next()) : new Exchange(res, deps.ids.next());
      const authorization = req.getHeader('authorization');
      const length = req.getHeader('content-length');
      const values = params === 0 ? NO_PARAMS : Array.from({ length: params }, (_, i) => req.getParameter(i) ?? '');
      const headers = headerNames.length === 0 ? NO_PARAMS : headerNames.map((h) => req.getHeader(h));
      let key: KeyRecord;
      try {
        if (state.draining) throw new GatewayError(Errors.shuttingDown, 'The gateway is shutting down; retry shortly.');
        key = deps.keys.authenticate(authorization);
        requireScope(key, scope);
      } catch (err) {
        ex.sendError(err);
        return;
      }
      ex.readBody(deps.maxBodyBytes, length, (err, body) => {
        if (err) { ex.sendError(err); return; }
        try {
          handler(ex, key, body, t0, values, headers);
        } catch (e) {
          ex.sendError(e);
        }
      });
    },
    publicBody: (handler) => (res, req) => {
      const ex = new Exchange(res, deps.ids.next());
      if (state.draining) { ex.sendError(new GatewayError(Errors.shuttingDown, 'The gateway is shutting down; retry shortly.')); return; }
      ex.readBody(deps.maxBodyBytes, req.getHeader('content-length'), (err, body) => {
        if (err) { ex.sendError(err); return; }
        try {
          handler(ex, body);
        } catch (e) {
          ex.sendError(e);
        }
      });
    },
    noBody: (scope, handler) => (res, req) => {
      const ex = new Exchange(res, deps.ids.next());
      try {
        const key = scope ? deps.keys.authenticate(req.getHeader('authorization')) : null;
        if (key && scope) requireScope(key, scope);
        handler(ex, key, [req.getParameter(0) ?? '', req.getParameter(1) ?? ''], new URLSearchParams(req.getQuery() ?? ''));
      } catch (err) {
        ex.sendError(err);
      }
    },
  };
}
