// What the request pipeline writes its answer to. The server's uWebSockets.js Exchange
// implements it; a translator (the Responses bridge) wraps one and rewrites what passes.
// Kept here, below every layer, so the gateway never imports the server.

export type HeaderList = ReadonlyArray<readonly [string, string]>;

export interface Client {
  readonly requestId: string;
  /** What the ledger calls the endpoint this answers (`chat.completions`, `responses`, …). */
  readonly endpoint: string;
  /** The caller's W3C `traceparent` header ('' or absent: none, or traces are off). */
  readonly traceparent?: string;
  /** The client went away (its connection closed before the answer ended). */
  readonly aborted: boolean;
  /** One listener: called once when the client goes away. */
  onAbort(listener: () => void): void;
  /** A whole answer: status, type, body and headers in one corked write. */
  send(status: number, contentType: string, body: Uint8Array | string, headers: HeaderList | null): void;
  /** An error in OpenAI's envelope, with its own headers (Retry-After, limit headers) after `headers`. */
  sendError(error: unknown, headers?: HeaderList | null): void;
  /** Status and headers of a stream; they leave with its first bytes. `onWritable`: a full buffer drained. */
  startStream(status: number, contentType: string, headers: HeaderList, onWritable: () => void): void;
  /** Runs `fn` with writes corked (one syscall for everything it writes). */
  corked(fn: () => void): void;
  /** Inside `corked()`. False: the client is buffering (backpressure); pause until onWritable. */
  write(chunk: Uint8Array): boolean;
  /** The stream's last bytes and its end, in one write. */
  end(chunk?: Uint8Array): void;
  /**
   * Ends an answer whose end must not be sent (its ledger row could not be committed) and
   * that has no error framing (a binary body): the connection closes without the end, so the
   * caller sees a cut answer, never a complete one.
   */
  cut(): void;
}
