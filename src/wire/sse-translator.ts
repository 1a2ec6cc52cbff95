// A Client that wraps another and rewrites an answer on its way out: the base of the
// bridges that serve one API's request on another's path (Responses and legacy completions
// on the chat path). It splits the SSE it is written into whole frames (a frame, or a
// character, may arrive split across writes), passes the gateway's comment frames as they
// are, and hands each data payload to `translate`; a buffered answer goes to `send`.
import { StringDecoder } from 'node:string_decoder';
import { Errors, GatewayError } from '../errors.js';
import { isRecord, type Json } from '../json.js';
import type { Client, HeaderList } from './http.js';
import { dataOf } from './sse.js';

export abstract class SseTranslator implements Client {
  private buffer = '';
  private readonly decoder = new StringDecoder('utf8');

  /** True when the route speaks the caller's API itself: bytes pass through untranslated. */
  passthrough = false;

  protected constructor(protected readonly inner: Client) {}

  get requestId(): string { return this.inner.requestId; }
  get endpoint(): string { return this.inner.endpoint; }
  get traceparent(): string | undefined { return this.inner.traceparent; }
  get aborted(): boolean { return this.inner.aborted; }
  onAbort(listener: () => void): void { this.inner.onAbort(listener); }
  sendError(error: unknown, headers?: HeaderList | null): void { this.inner.sendError(error, headers); }
  startStream(status: number, contentType: string, headers: HeaderList, onWritable: () => void): void { this.inner.startStream(status, contentType, headers, onWritable); }
  corked(fn: () => void): void { this.inner.corked(fn); }

  abstract send(status: number, contentType: string, body: Uint8Array | string, headers: HeaderList | null): void;

  /** A buffered chat answer, parsed; null once it has been answered as a 502 (it could not be read). */
  protected chatAnswer(body: Uint8Array | string, headers: HeaderList | null): Json | null {
    try {
      const chat: unknown = JSON.parse(typeof body === 'string' ? body : Buffer.from(body).toString('utf8'));
      if (isRecord(chat)) return chat;
    } catch { /* answered below */ }
    this.inner.sendError(new GatewayError(Errors.upstreamError, 'The upstream answer could not be bridged.'), headers);
    return null;
  }

  /** One SSE data payload (`[DONE]` included) in, the caller's frames out ('' for none). */
  protected abstract translate(data: string): string;

  /**
   * Set by `translate` when the frames it returns may go only once this settles (the stored
   * Response's record is committed): they, and all that follows them, wait for it.
   */
  protected hold: Promise<unknown> | null = null;

  write(chunk: Uint8Array): boolean {
    if (this.passthrough) return this.inner.write(chunk);
    this.buffer += this.decoder.write(chunk);
    const frames = this.buffer.split('\n\n');
    this.buffer = frames.pop() ?? '';
    let out = '';
    for (const frame of frames) out += this.frame(frame);
    if (!out) return true;
    if (this.hold) { const bytes = Buffer.from(out); this.hold = this.hold.then(() => this.inner.corked(() => this.inner.write(bytes))); return true; }
    return this.inner.write(Buffer.from(out));
  }

  cut(): void {
    this.inner.cut();
  }

  end(chunk?: Uint8Array): void {
    if (this.passthrough) { this.inner.end(chunk); return; }
    let out = '';
    if (chunk) {
      this.buffer += this.decoder.write(chunk) + this.decoder.end();
      for (const frame of this.buffer.split('\n\n')) out += this.frame(frame);
      this.buffer = '';
    }
    const last = out ? Buffer.from(out) : undefined;
    if (this.hold) void this.hold.then(() => this.inner.end(last));
    else this.inner.end(last);
  }

  private frame(frame: string): string {
    if (frame.startsWith(':')) return `${frame}\n\n`; // the gateway's figures comment
    const data = dataOf(frame);
    return data === null ? '' : this.translate(data);
  }
}
