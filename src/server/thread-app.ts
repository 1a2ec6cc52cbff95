// An event-loop thread's uWS app (SLUICE_THREADS): it serves chat completions itself, on the
// same port as the main thread (SO_REUSEPORT: the kernel spreads connections), and hands
// every other route to the main thread as it came (handover.ts), so each answer is the main
// thread's own. Edge behaviour (CORS, gzip, HEAD) is the same on both.
import uWS, { type HttpRequest, type HttpResponse } from 'uWebSockets.js';
import type { KeyRing } from '../accounts/keys.js';
import type { RequestIds } from '../accounts/ledger.js';
import { Errors, GatewayError } from '../errors.js';
import type { ChatGateway } from '../gateway/chat.js';
import { chatRoute } from './app.js';
import { Edge, type EdgeConfig } from './edge.js';
import { Exchange, useEdge } from './exchange.js';
import { makeHandlers } from './handlers.js';
import { readHead, type Handover, type Head } from './handover.js';

export interface ThreadAppDeps {
  keys: KeyRing;
  ids: RequestIds;
  chat: ChatGateway;
  maxBodyBytes: number;
  trustProxyHops: number;
  traced: boolean;
  edge: EdgeConfig;
  handover: Handover;
  /** Each chat request's head, kept for a hand-over after its body is read (the pipeline's handoff stage). */
  heads: WeakMap<HttpResponse, Head>;
}

export interface ThreadServer {
  draining: boolean;
  stopListening(): void;
  /** Closes every connection (a stop, once nothing is in flight). */
  close(): void;
}

export function startThreadApp(deps: ThreadAppDeps, host: string, port: number): Promise<ThreadServer> {
  const app = uWS.App();
  const state = { draining: false };
  // Registered before the edge is installed: the main thread's answer carries its own CORS and encoding.
  app.any('/*', (res, req) => {
    const head = readHead(res, req);
    const ex = new Exchange(res, deps.ids.next());
    if (state.draining) { ex.sendError(new GatewayError(Errors.shuttingDown, 'The gateway is shutting down; retry shortly.')); return; }
    deps.handover.raw(ex, head, req.getHeader('content-length'));
  });
  const edge = new Edge(deps.edge);
  useEdge(edge);
  edge.install(app);
  const unknownKey = (ex: Exchange, res: HttpResponse, req: HttpRequest) => {
    const head = deps.heads.get(res);
    if (!head) return false;
    deps.handover.raw(ex, head, req.getHeader('content-length'));
    return true;
  };
  const chat = chatRoute(makeHandlers({ ...deps, unknownKey }, state), deps.chat);
  app.post('/v1/chat/completions', (res, req) => {
    deps.heads.set(res, readHead(res, req));
    chat(res, req);
  });
  const listen = app.listen.bind(app) as unknown as (host: string, port: number, options: number, cb: (socket: uWS.us_listen_socket | false) => void) => void;
  return new Promise((resolve, reject) => {
    // (options 0: SO_REUSEPORT, beside the main thread's socket on the same port)
    listen(host, port, 0, (socket) => {
      if (!socket) { reject(new Error(`could not listen on ${host}:${port} beside the main thread`)); return; }
      resolve({
        get draining() { return state.draining; },
        set draining(v: boolean) { state.draining = v; },
        stopListening: () => uWS.us_listen_socket_close(socket),
        close: () => (app as unknown as { close(): void }).close(),
      });
    });
  });
}
