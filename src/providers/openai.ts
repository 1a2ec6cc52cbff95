// Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, Groq, Together, OpenRouter, …).
// One undici Pool per origin with keep-alive; the response is relayed as bytes through
// undici's handler callbacks, so nothing is decoded or re-encoded on the way.
import { Pool, type Dispatcher } from 'undici';
import { Errors, GatewayError, asGatewayError } from '../errors.js';
import type { ChatCall, Provider, ResponseSink, UpstreamHandle } from './provider.js';

export interface OpenAIProviderOptions {
  name: string;
  baseUrl: string;
  apiKey: string | undefined;
  headers: Record<string, string>;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  connections: number;
  keepAliveTimeoutMs: number;
  /** Send OpenAI's `prompt_cache_key` (provider prompt caching). */
  promptCacheKey?: boolean;
}

/** Retry-After as milliseconds from now (delta-seconds or an HTTP date); null when absent or unreadable. */
export function retryAfterMs(value: string | string[] | undefined, now = Date.now()): number | null {
  if (typeof value !== 'string' || !value.trim()) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - now) : null;
}

const INCLUDE_USAGE = Buffer.from('"stream_options":{"include_usage":true},');

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

  constructor(private readonly sink: ResponseSink) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.aborted) controller.abort(new AbortedByClient('client went away'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    const ct = headers['content-type'];
    try {
      this.sink.onStart(status, typeof ct === 'string' ? ct : '', status === 429 || status >= 500 ? retryAfterMs(headers['retry-after']) : null);
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
    this.sink.onError(upstreamFailure(err));
  }

  private fault(err: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.controller?.abort(new AbortedByClient('the answer could not be relayed'));
    this.sink.onError(new GatewayError(Errors.upstreamError, `The upstream's answer could not be relayed (${asGatewayError(err).message}).`));
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

/** The keep-alive pool for an upstream's origin, and the path prefix of its API. */
export function openPool(opts: OpenAIProviderOptions): { pool: Pool; basePath: string } {
  const url = new URL(opts.baseUrl);
  const pool = new Pool(url.origin, {
    connections: opts.connections,
    keepAliveTimeout: opts.keepAliveTimeoutMs,
    connect: { timeout: opts.connectTimeoutMs },
    pipelining: 1,
  });
  return { pool, basePath: url.pathname.replace(/\/+$/, '') };
}

export class OpenAIProvider implements Provider {
  readonly kind = 'openai' as const;
  readonly name: string;
  private readonly pool: Pool;
  private readonly chatPath: string;
  private readonly responsesPath: string;
  private readonly headers: Record<string, string>;
  private readonly headersTimeout: number;
  private readonly bodyTimeout: number;
  private readonly sendsCacheKey: boolean;

  constructor(opts: OpenAIProviderOptions) {
    this.name = opts.name;
    this.sendsCacheKey = opts.promptCacheKey ?? false;
    const { pool, basePath } = openPool(opts);
    this.pool = pool;
    this.chatPath = `${basePath}/chat/completions`;
    this.responsesPath = `${basePath}/responses`;
    this.headers = { 'content-type': 'application/json', ...opts.headers };
    if (opts.apiKey) this.headers.authorization = `Bearer ${opts.apiKey}`;
    this.headersTimeout = opts.headersTimeoutMs;
    this.bodyTimeout = opts.bodyTimeoutMs;
  }

  chat(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    const relay = new Relay(sink);
    this.pool.dispatch({
      path: call.api === 'responses' ? this.responsesPath : this.chatPath,
      method: 'POST',
      headers: this.headers,
      body: this.encode(call),
      headersTimeout: this.headersTimeout,
      bodyTimeout: this.bodyTimeout,
      blocking: true,
    }, relay);
    return relay;
  }

  /**
   * Forward the client's bytes untouched when we can. Streams need the usage chunk (billing
   * reads it; the gateway strips it again if the caller did not ask for it): when the body
   * has no `stream_options` at all, that member is spliced in after the opening brace rather
   * than re-encoding the whole request. Re-encode only to swap the model id for the
   * upstream's or to amend a `stream_options` the caller sent.
   */
  private encode(call: ChatCall): Buffer | string {
    const { request } = call;
    if (call.api === 'responses') {
      // The Responses API reports usage by itself; only the model id or the pin field change the bytes.
      if (request.model === call.upstreamModel && !('provider' in request)) return call.body;
      // (`messages` is the gateway's own empty placeholder on a Responses request; neither goes upstream)
      const { provider: _pin, messages: _none, ...rest } = request;
      return JSON.stringify({ ...rest, model: call.upstreamModel });
    }
    const needsUsage = call.stream && request.stream_options?.include_usage !== true;
    const cacheKey = this.sendsCacheKey && call.promptCacheKey && request.prompt_cache_key === undefined ? call.promptCacheKey : null;
    // `provider` is the gateway's own pin field; upstreams would reject it.
    if (request.model !== call.upstreamModel || (needsUsage && 'stream_options' in request) || 'provider' in request) {
      const { provider: _pin, ...rest } = request;
      const out: Record<string, unknown> = { ...rest, model: call.upstreamModel };
      if (needsUsage) out.stream_options = { ...(request.stream_options ?? {}), include_usage: true };
      if (cacheKey) out.prompt_cache_key = cacheKey;
      return JSON.stringify(out);
    }
    if (!needsUsage && !cacheKey) return call.body;
    const open = call.body.indexOf(123); // '{' (the body parsed as an object, so it is there)
    const head = [call.body.subarray(0, open + 1)];
    if (needsUsage) head.push(INCLUDE_USAGE);
    if (cacheKey) head.push(Buffer.from(`"prompt_cache_key":${JSON.stringify(cacheKey)},`));
    return Buffer.concat([...head, call.body.subarray(open + 1)]);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
