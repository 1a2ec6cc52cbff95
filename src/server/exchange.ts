// One HTTP exchange on uWebSockets.js: body reading with a size limit (compressed bodies
// inflated, within the same limit), corked writes from async callbacks, streaming with
// backpressure, the error envelope (OpenAI's, or Anthropic's on its routes), and what the
// edge asks of an answer (edge.ts: CORS headers, HEAD, gzip).
import { brotliDecompress, gunzip, gzip, inflate, type InputType, type ZlibOptions } from 'node:zlib';
import type { HttpResponse } from 'uWebSockets.js';
import { anthropicError } from '../wire/messages.js';
import { Errors, GatewayError, asGatewayError } from '../errors.js';
import { edgeOf, type Edge, type EdgeState } from './edge.js';
import type { Client, HeaderList } from '../wire/http.js';

export type { HeaderList };

const STATUS_LINES: Record<number, string> = {
  200: '200 OK', 201: '201 Created', 204: '204 No Content', 400: '400 Bad Request', 401: '401 Unauthorized',
  402: '402 Payment Required', 403: '403 Forbidden', 404: '404 Not Found', 405: '405 Method Not Allowed',
  408: '408 Request Timeout', 409: '409 Conflict', 413: '413 Payload Too Large', 415: '415 Unsupported Media Type',
  422: '422 Unprocessable Entity', 429: '429 Too Many Requests', 499: '499 Client Closed Request',
  500: '500 Internal Server Error', 502: '502 Bad Gateway', 503: '503 Service Unavailable', 504: '504 Gateway Timeout',
};

export function statusLine(status: number): string {
  return STATUS_LINES[status] ?? `${status} Status`;
}

/** The server's edge (one per process): set once when the server starts. */
let edge: Edge | null = null;
export function useEdge(e: Edge): void {
  edge = e;
}

type Inflate = (buf: InputType, options: ZlibOptions, cb: (err: Error | null, out: Buffer) => void) => void;
const INFLATE: Record<string, Inflate> = { gzip: gunzip, 'x-gzip': gunzip, deflate: inflate, br: brotliDecompress as Inflate };

/** A body over `limit` bytes: a 413. */
export function bodyTooLarge(limit: number): GatewayError {
  return new GatewayError(Errors.bodyTooLarge, `Request body exceeds the ${limit}-byte limit.`);
}

/** A body in an encoding no route inflates: a 415 (gzip, deflate and br are). */
export function unsupportedEncoding(encoding: string): GatewayError {
  return new GatewayError(Errors.unsupportedEncoding, `Content-Encoding '${encoding.slice(0, 32)}' is not supported; send the body as is, or gzip, deflate or br.`);
}

/** From this size on, a body is sent as the client takes it (endDrained), not buffered by uWS at once. */
export const DRAINED_FROM = 1024 * 1024;

export class Exchange implements Client {
  /** What the ledger calls the endpoint this exchange answers (the Responses bridge says `responses`). */
  endpoint = 'chat.completions';
  /** The caller's W3C `traceparent` (read only when traces are exported). */
  traceparent = '';
  /** Errors in Anthropic's envelope (the Messages API's routes), else OpenAI's. */
  anthropicErrors = false;
  aborted = false;
  finished = false;
  private abortListener: (() => void) | null = null;

  constructor(readonly res: HttpResponse, readonly requestId: string) {
    res.onAborted(() => {
      this.aborted = true;
      this.finished = true;
      this.abortListener?.();
      this.over();
    });
  }

  private closeListener: (() => void) | null = null;

  /** `listener` runs once the exchange is over: its answer is on its way, or the client left. */
  onClose(listener: () => void): void {
    this.closeListener = listener;
  }

  private over(): void {
    const listener = this.closeListener;
    if (listener) { this.closeListener = null; listener(); }
  }

  onAbort(listener: () => void): void {
    this.abortListener = listener;
  }

  /**
   * Reads the whole body, refusing more than `limit` bytes (413). uWS hands us chunks that
   * are only valid during the callback, so each is copied once into a buffer sized from
   * Content-Length when the client sent one.
   */
  readBody(limit: number, declaredLength: string, done: (err: GatewayError | null, body: Buffer) => void): void {
    const encoding = edgeOf(this.res)?.encoding;
    if (encoding && encoding !== 'identity') {
      const inflate = INFLATE[encoding];
      if (!inflate) { done(unsupportedEncoding(encoding), Buffer.alloc(0)); return; }
      // Read as sent (within the limit), then inflated in libuv's pool, stopping at the same limit.
      this.readRaw(limit, declaredLength, (err, raw) => {
        if (err) { done(err, raw); return; }
        inflate(raw, { maxOutputLength: limit }, (e, out) => {
          if (this.aborted) return;
          if (!e) { done(null, out); return; }
          const tooLarge = (e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
          done(tooLarge ? new GatewayError(Errors.bodyTooLarge, `Request body exceeds the ${limit}-byte limit once decompressed.`)
            : new GatewayError(Errors.invalidRequest, `Request body is not valid ${encoding} data (Content-Encoding: ${encoding}).`), Buffer.alloc(0));
        });
      });
      return;
    }
    this.readRaw(limit, declaredLength, done);
  }

  readRaw(limit: number, declaredLength: string, done: (err: GatewayError | null, body: Buffer) => void): void {
    const declared = declaredLength === '' ? -1 : Number(declaredLength);
    const tooLarge = () => bodyTooLarge(limit);
    if (declared > limit) { done(tooLarge(), Buffer.alloc(0)); return; }
    let buf = Buffer.allocUnsafe(declared > 0 ? declared : 16 * 1024);
    let size = 0;
    let failed = false;
    this.res.onData((chunk, isLast) => {
      if (failed) return;
      const len = chunk.byteLength;
      if (size + len > limit) {
        failed = true;
        done(tooLarge(), Buffer.alloc(0));
        return;
      }
      if (size + len > buf.length) {
        const bigger = Buffer.allocUnsafe(Math.min(limit, Math.max(buf.length * 2, size + len)));
        buf.copy(bigger, 0, 0, size);
        buf = bigger;
      }
      buf.set(new Uint8Array(chunk), size);
      size += len;
      if (isLast) done(null, buf.subarray(0, size));
    });
  }

  send(status: number, contentType: string, body: Uint8Array | string, headers: HeaderList | null): void {
    if (this.finished) return;
    this.finished = true;
    this.over();
    const state = edgeOf(this.res);
    if (state?.gzip && !state.head && edge && body.length >= edge.config.compressMinBytes) {
      // Compressed in libuv's pool, off the event loop; the answer goes once it is.
      gzip(body, { level: 5 }, (err, zipped) => {
        if (this.aborted) return;
        if (err) this.writeAnswer(status, contentType, body, headers, state, null);
        else this.writeAnswer(status, contentType, zipped, headers, state, 'gzip');
      });
      return;
    }
    this.writeAnswer(status, contentType, body, headers, state, null);
  }

  private writeAnswer(status: number, contentType: string, body: Uint8Array | string, headers: HeaderList | null, state: EdgeState | undefined, encoding: string | null): void {
    let rest = `\r\nx-request-id: ${this.requestId}`;
    if (headers) rest = folded(rest, headers);
    if (state) {
      if (edge) rest = folded(rest, edge.corsHeaders(state));
      if (encoding) rest += `\r\ncontent-encoding: ${encoding}\r\nvary: accept-encoding`;
    }
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status)).writeHeader('content-type', contentType + rest);
      // HEAD: no body, and no Content-Length (uWS's endWithoutBody(n) for n > 0 waits for bytes that never come).
      if (state?.head) this.res.endWithoutBody();
      else this.endWith(body);
    });
  }

  /** Ends the response with `body`: at once, or (DRAINED_FROM and up) as the client takes it. */
  private endWith(body: string | Uint8Array): void {
    if (typeof body === 'string' || body.length < DRAINED_FROM) this.res.end(body);
    else this.endDrained(body);
  }

  /**
   * A large body, written as the client's socket takes it: what `end` cannot send at once it
   * copies into uWS's buffer, and a fresh buffer of tens of MB (a 60 MB embeddings answer)
   * costs ~150 ms of page faults on the event loop (this VM). `tryEnd` sends what the socket
   * takes and keeps nothing; the rest follows from `onWritable`, from the offset uWS reached.
   */
  private endDrained(body: Uint8Array): void {
    const total = body.length;
    const [ok, done] = this.res.tryEnd(body, total);
    if (ok || done) return;
    this.res.onWritable((offset) => {
      if (this.aborted) return true;
      const [sent, over] = this.res.tryEnd(body.subarray(offset), total);
      return sent || over;
    });
  }

  sendJson(status: number, value: unknown, headers: HeaderList | null = null): void {
    this.send(status, 'application/json', JSON.stringify(value), headers);
  }

  sendError(error: unknown, headers: HeaderList | null = null): void {
    const err = asGatewayError(error);
    if (err.headers.length) headers = headers ? [...headers, ...err.headers] : err.headers;
    this.send(err.status, 'application/json', JSON.stringify(this.anthropicErrors ? anthropicError(err.status, err.message, err.code, err.toJSON().error) : err.toJSON()), headers);
  }

  /**
   * Status and headers for a streamed body. They are not sent on their own: they go out
   * with the first body bytes, in the same corked write (one syscall instead of two).
   * `onWritable` fires when a full buffer drains.
   */
  startStream(status: number, contentType: string, headers: HeaderList, onWritable: () => void): void {
    if (this.finished) return;
    this.pendingHead = { status, contentType, headers };
    this.res.onWritable(() => {
      onWritable();
      return true;
    });
  }

  private pendingHead: { status: number; contentType: string; headers: HeaderList } | null = null;
  /** The pending head is another server's, relayed as it is (relay()): none of this exchange's own headers are added. */
  private rawHead = false;

  private writeHead(): void {
    const head = this.pendingHead!;
    this.pendingHead = null;
    if (this.rawHead) { this.writeRawHead(head.status, head.headers); return; }
    let rest = folded(`\r\ncache-control: no-cache\r\nx-request-id: ${this.requestId}`, head.headers);
    const state = edgeOf(this.res);
    if (state && edge) rest = folded(rest, edge.corsHeaders(state));
    this.res.writeStatus(statusLine(head.status)).writeHeader('content-type', head.contentType + rest);
  }

  /**
   * An answer another server made (the main thread's, for a request an event-loop thread
   * handed over), relayed as it is: its status and headers (CORS, encoding and request id
   * included), then `write`/`end` its body. `onWritable` fires when a full buffer drains.
   */
  relay(status: number, headers: HeaderList, onWritable: () => void): void {
    if (this.finished) return;
    this.rawHead = true;
    this.startStream(status, '', headers, onWritable);
  }

  /** Closes the connection without ending the answer (a relayed stream that broke off): the client sees it cut, not complete. */
  abortConnection(): void {
    if (this.finished) return;
    this.finished = true;
    this.over();
    this.res.close();
  }

  /** A relayed answer read whole: its head and its body in one write (`body` null: a HEAD's, no body and no Content-Length of uWS's own). */
  sendRelayed(status: number, headers: HeaderList, body: Uint8Array | null): void {
    if (this.finished) return;
    this.finished = true;
    this.over();
    this.res.cork(() => {
      this.writeRawHead(status, headers);
      if (!body) this.res.endWithoutBody();
      else this.endWith(body);
    });
  }

  /** Another server's status and headers, as they are. */
  private writeRawHead(status: number, headers: HeaderList): void {
    this.res.writeStatus(statusLine(status));
    if (headers.length) this.res.writeHeader(headers[0]![0], folded(headers[0]![1], headers.slice(1)));
  }

  /** Runs `fn` with writes corked: everything it writes leaves in one syscall. */
  corked(fn: () => void): void {
    if (this.finished) return;
    this.res.cork(fn);
  }

  /** Returns false when uWS is buffering (backpressure): pause the producer until onWritable. */
  /** Call inside `corked()`. */
  write(chunk: Uint8Array): boolean {
    if (this.finished) return true;
    if (this.pendingHead) this.writeHead();
    return this.res.write(chunk);
  }

  end(chunk?: Uint8Array): void {
    if (this.finished) return;
    this.finished = true;
    this.over();
    this.res.cork(() => {
      if (this.pendingHead) this.writeHead();
      this.res.end(chunk);
    });
  }

  cut(): void {
    if (this.finished) return;
    this.finished = true;
    this.over();
    this.res.close();
  }
}

/**
 * `head` with each header appended as `\r\nname: value`: the headers of an answer go to uWS
 * in one writeHeader call, the first header's value carrying the rest. uWS writes each call
 * as `name: value\r\n`, so the bytes on the wire are the same, and one call replaces one per
 * header (each a crossing into C++ and two strings converted to UTF-8; about 17 on a chat
 * answer): writing an answer went from 8.6% to 6.9% of the gateway's CPU on the limited path
 * (same-session profiles). A value never holds CR or LF:
 * the ones relayed come from HTTP parsers (uWS's, undici's) that split on them, and Sluice's
 * own are ids, numbers and names from validated config; a value with one would inject a
 * header through writeHeader just the same.
 */
function folded(head: string, headers: HeaderList): string {
  for (const [k, v] of headers) head += `\r\n${k}: ${v}`;
  return head;
}
