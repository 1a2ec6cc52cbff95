// An event-loop thread's hand-over (server/threads.ts): a request the thread does not serve
// itself goes to the main thread, over a private unix socket the main thread's app also
// listens on, and the main thread's answer comes back as it wrote it (status, headers,
// bytes; a stream as it streams, with backpressure both ways). The main thread reads the
// caller's address from `x-sluice-peer`, which it honours only on that socket.
import { Readable } from 'node:stream';
import { Pool } from 'undici';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { Errors, GatewayError } from '../errors.js';
import { bodyTooLarge, type Exchange, type HeaderList } from './exchange.js';

/** What a hand-over needs of the request, read while uWS's `req` is valid. */
export interface Head {
  method: string;
  /** Path and query. */
  url: string;
  /** Name, value, name, value… (lower-case names; hop-by-hop ones left out). */
  headers: string[];
  /** The socket's peer address. */
  peer: string;
}

/**
 * Not passed on: the connection's own (`expect: 100-continue` too: uWS answered it on the
 * client's connection already; Host is the socket's), and the peer header only this side may set.
 */
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'proxy-connection', 'content-length', 'expect', 'host', 'x-sluice-peer']);
/** Not relayed back: the connection's own, and those uWS writes itself on every answer. */
const HOP_BACK = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'date', 'uwebsockets']);

export const PEER_HEADER = 'x-sluice-peer';

export function readHead(res: HttpResponse, req: HttpRequest): Head {
  const headers: string[] = [];
  req.forEach((name, value) => { if (!HOP.has(name)) headers.push(name, value); });
  const query = req.getQuery();
  return { method: req.getMethod().toUpperCase(), url: query ? `${req.getUrl()}?${query}` : req.getUrl(), headers, peer: Buffer.from(res.getRemoteAddressAsText()).toString() };
}

export class Handover {
  private readonly pool: Pool;
  /** Requests handed over and not yet answered (a graceful stop waits for them). */
  inFlight = 0;

  constructor(socketPath: string, private readonly maxBodyBytes: number) {
    // (keep-alive connections over the socket: a hand-over costs no connect)
    this.pool = new Pool('http://sluice.main', { socketPath, connections: 128, keepAliveTimeout: 30_000, headersTimeout: 0, bodyTimeout: 0 });
  }

  /**
   * A request no route of this thread serves, handed over as sent. A body of declared length
   * streams through as it arrives (an audio upload reaches the upstream while the client still
   * sends it; the main thread applies each route's limit); one without is read first, up to
   * the largest any route takes.
   */
  raw(ex: Exchange, head: Head, declaredLength: string): void {
    if (head.method === 'GET' || head.method === 'HEAD' || head.method === 'DELETE') { this.forward(ex, head, null, false); return; }
    const length = declaredLength === '' ? -1 : Number(declaredLength);
    if (Number.isSafeInteger(length) && length > 0) {
      if (length > this.maxBodyBytes) { ex.sendError(bodyTooLarge(this.maxBodyBytes)); return; }
      const body = new Readable({ read() { /* pushed as uWS hands chunks over */ } });
      body.on('error', () => undefined); // (the request's failure is undici's to report; an unheard 'error' would end the thread)
      let got = 0;
      ex.res.onData((chunk, last) => {
        got += chunk.byteLength;
        if (got > length) { body.destroy(new Error('more bytes than Content-Length')); return; }
        body.push(Buffer.from(chunk.slice(0))); // (uWS's chunk is valid only during this call)
        if (last) body.push(null);
      });
      this.forward(ex, { ...head, headers: [...head.headers, 'content-length', String(length)] }, body, false);
      return;
    }
    ex.readRaw(this.maxBodyBytes, declaredLength, (err, body) => {
      if (err) { ex.sendError(err); return; }
      this.forward(ex, head, body, false);
    });
  }

  /**
   * Hands the request over and relays the answer. `inflated`: the body was read through
   * its Content-Encoding (the pipeline's copy), so that header no longer describes it.
   */
  forward(ex: Exchange, head: Head, body: Buffer | Readable | null, inflated: boolean): void {
    const headers = inflated ? dropEncoding(head.headers) : head.headers.slice();
    headers.push(PEER_HEADER, head.peer);
    const abort = new AbortController();
    ex.onAbort(() => abort.abort());
    this.inFlight++;
    let counted = true;
    const done = () => { if (counted) { counted = false; this.inFlight--; } };
    this.pool.request({ path: head.url, method: head.method as 'GET', headers, body, signal: abort.signal }).then(({ statusCode, headers: got, body: stream }) => {
      if (ex.aborted) { discard(stream); done(); return; }
      const list: Array<readonly [string, string]> = [];
      let length = -1;
      for (const [name, value] of Object.entries(got)) {
        if (name === 'content-length') length = Number(value);
        if (HOP_BACK.has(name) || value === undefined) continue;
        if (Array.isArray(value)) for (const v of value) list.push([name, v]);
        else list.push([name, value]);
      }
      relayBody(ex, head.method === 'HEAD', statusCode, list, length, stream, done);
    }, (err: unknown) => {
      done();
      if (ex.aborted) return;
      // A request undici will not send as it is (a header value with a control character, say): the client's to fix, not to retry.
      const code = (err as { code?: unknown } | null)?.code;
      if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED') {
        if (head.method === 'HEAD') { ex.sendRelayed(400, [], null); return; }
        ex.sendError(new GatewayError(Errors.invalidRequest, `The request cannot be passed on as sent (${err instanceof Error ? err.message.slice(0, 200) : String(err)}).`));
        return;
      }
      if (head.method === 'HEAD') { ex.sendRelayed(500, [], null); return; } // (a HEAD's answer has no body)
      ex.sendError(new GatewayError(Errors.internal, `The gateway's main thread did not answer this request (${err instanceof Error ? err.message.slice(0, 200) : String(err)}); retry shortly.`).retryAfter(1000));
    });
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

function dropEncoding(headers: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (headers[i] !== 'content-encoding') out.push(headers[i]!, headers[i + 1]!);
  return out;
}

/** A body not read: destroyed, its abort error heard (unheard, an 'error' event ends the thread). */
function discard(stream: Body): void {
  stream.on('error', () => undefined);
  stream.destroy();
}

type Body = AsyncIterable<Buffer> & NodeJS.ReadableStream & { destroy(err?: Error): void };

/**
 * The main thread's answer to the client: with a Content-Length, read whole and sent in one
 * write (so the client gets a Content-Length too); without, streamed as it comes, the main
 * thread's socket paused while the client's buffer is full.
 */
function relayBody(ex: Exchange, head: boolean, status: number, headers: HeaderList, length: number, stream: Body, done: () => void): void {
  if (head) { discard(stream); ex.sendRelayed(status, headers, null); done(); return; }
  const parts: Buffer[] = [];
  if (length < 0) ex.relay(status, headers, () => { if (stream.isPaused()) stream.resume(); });
  stream.on('data', (chunk: Buffer) => {
    if (ex.aborted) { stream.destroy(); return; }
    if (length >= 0) { parts.push(chunk); return; }
    let ok = true;
    ex.corked(() => { ok = ex.write(chunk); });
    if (!ok) stream.pause();
  });
  stream.on('end', () => {
    done();
    if (length >= 0) ex.sendRelayed(status, headers, Buffer.concat(parts));
    else ex.end();
  });
  // The main thread's answer broke off: so does this one (the connection closes; nothing pretends it ended).
  stream.on('error', () => { done(); ex.abortConnection(); });
}
