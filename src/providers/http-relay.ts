// The HTTP side every HTTP provider adapter shares: one undici keep-alive Pool per origin,
// and the Relay that carries an upstream's answer to the gateway's sink through undici's
// handler callbacks as bytes (nothing decoded or re-encoded on the way), with backpressure,
// abort, and undici's failures mapped to the gateway's error catalogue.
import { Pool, type Dispatcher } from 'undici';
import { Errors, GatewayError, asGatewayError } from '../errors.js';
import type { ResponseSink, UpstreamHandle } from './provider.js';

/** How to reach an upstream over HTTP (config's provider entry). */
export interface HttpUpstreamOptions {
  name: string;
  baseUrl: string;
  apiKey: string | undefined;
  headers: Record<string, string>;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  connections: number;
  keepAliveTimeoutMs: number;
}

/** Retry-After as milliseconds from now (delta-seconds or an HTTP date); null when absent or unreadable. */
export function retryAfterMs(value: string | string[] | undefined, now = Date.now()): number | null {
  if (typeof value !== 'string' || !value.trim()) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - now) : null;
}

class AbortedByClient extends Error {
  override name = 'AbortedByClient';
}

/** Maps undici's failure codes to the gateway's catalogue. */
function upstreamFailure(err: Error & { code?: string }): GatewayError {
  switch (err.code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return new GatewayError(Errors.upstreamTimeout, `Upstream timed out (${err.code}).`);
    default:
      return new GatewayError(Errors.upstreamError, `Upstream connection failed (${err.code ?? err.name}).`);
  }
}

/**
 * One upstream call's lifecycle; also the handle the gateway uses to abort or resume it
 * (shared by the HTTP adapters). The sink's callbacks run inside undici's: a throw there
 * (a translator meeting an answer it cannot handle) ends this call with an error for the
 * gateway instead of escaping into undici.
 */
export class Relay implements Dispatcher.DispatchHandler, UpstreamHandle {
  private controller: Dispatcher.DispatchController | null = null;
  private aborted = false;
  /** False while dispatchWhen waits to send the request. */
  sent = true;

  constructor(private readonly sink: ResponseSink) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.aborted) controller.abort(new AbortedByClient('client went away'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    const ct = headers['content-type'];
    try {
      const length = headers['content-length'];
      this.sink.onStart(status, typeof ct === 'string' ? ct : '', status === 429 || status >= 500 ? retryAfterMs(headers['retry-after']) : null,
        typeof length === 'string' && /^\d{1,15}$/.test(length) ? Number(length) : null);
    } catch (err) {
      this.fault(err);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.aborted) return;
    try {
      if (!this.sink.onData(chunk)) controller.pause();
    } catch (err) {
      this.fault(err);
    }
  }

  onResponseEnd(): void {
    if (this.aborted) return;
    try {
      this.sink.onEnd();
    } catch (err) {
      this.fault(err);
    }
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.aborted) return;
    // A GatewayError is the request body's own (an upload that failed as it streamed): the caller's, as it is.
    this.sink.onError(err instanceof GatewayError ? err : upstreamFailure(err));
  }

  private fault(err: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.controller?.abort(new AbortedByClient('the answer could not be relayed'));
    // A translator's own verdict on the answer (a malformed frame, an oversized event) goes as it is; anything else is a bug's.
    this.sink.onError(err instanceof GatewayError ? err : new GatewayError(Errors.upstreamError, `The upstream's answer could not be relayed (${asGatewayError(err).message}).`));
  }

  /** True once the gateway aborted the call (or it failed in the sink): nothing more goes upstream. */
  get closed(): boolean {
    return this.aborted;
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.controller?.abort(new AbortedByClient('client went away'));
  }

  resume(): void {
    this.controller?.resume();
  }
}

/**
 * Dispatches once `ready` resolves: for upstreams whose request needs an await first (a
 * SigV4 signature, an OAuth access token). A call aborted meanwhile is never sent; a
 * `ready` that fails ends the call with `failed`'s error.
 */
export function dispatchWhen(pool: Pool, ready: Promise<Dispatcher.DispatchOptions>, relay: Relay, sink: ResponseSink, failed: (err: unknown) => GatewayError): void {
  relay.sent = false;
  ready.then((opts) => { if (!relay.closed) { relay.sent = true; pool.dispatch(opts, relay); } },
    (err: unknown) => { if (!relay.closed) sink.onError(failed(err)); });
}

/** The keep-alive pool for an upstream's origin, and the path prefix of its API. */
export function openPool(opts: HttpUpstreamOptions): { pool: Pool; basePath: string } {
  const url = new URL(opts.baseUrl);
  const pool = new Pool(url.origin, {
    connections: opts.connections,
    keepAliveTimeout: opts.keepAliveTimeoutMs,
    connect: { timeout: opts.connectTimeoutMs },
    pipelining: 1,
  });
  return { pool, basePath: url.pathname.replace(/\/+$/, '') };
}
