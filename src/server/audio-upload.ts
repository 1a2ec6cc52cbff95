// Speech to text's uploads (/v1/audio/transcriptions and /translations), read as they
// arrive: uWS hands each chunk to a streaming multipart parser (@fastify/busboy, behind an
// inflater when the body is compressed), the fields are kept and the audio goes into a
// Spool (store/spool.ts) that the upstream call reads from, following it as it grows.
//
// Routing needs the model. When the form names it before the file (Python's SDK, curl with
// -F model first) and says how long it is, the request enters the pipeline as the file
// starts, reserved for the Content-Length's worth of audio, and the audio streams upstream
// as it comes. When the file comes first (the Node SDK sends the parts in the order of the
// object it was given, usually `file` first) the audio is spooled to its end, then the
// request goes with its exact size. Either way the audio is held once, mostly on disk, so
// many large uploads at once cost little memory, and a failover attempt sends it again.
import { Busboy, type BusboyFileStream } from '@fastify/busboy';
import type { Writable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { Errors, GatewayError } from '../errors.js';
import type { ChatGateway } from '../gateway/chat.js';
import { precheck } from '../gateway/context.js';
import { withoutMessages, type Endpoint } from '../gateway/endpoints.js';
import { NO_SWITCHES } from '../savings/mechanisms.js';
import { Spool } from '../store/spool.js';
import { AudioRequest, audioSecondsBound, checkAudioFields, type AudioFields } from '../wire/transcriptions.js';
import { edgeOf } from './edge.js';
import { unsupportedEncoding } from './exchange.js';
import type { Caller, Refuse } from './handlers.js';

export interface AudioUploadDeps {
  chat: ChatGateway;
  /** The largest upload (http.max_audio_bytes), as sent and once inflated. */
  maxBytes: number;
  /** Where spools spill (emptied at start). */
  spoolDir: string;
  refuse: Refuse;
}

const INFLATERS: Record<string, () => Writable & NodeJS.ReadableStream> = { gzip: createGunzip, 'x-gzip': createGunzip, deflate: createInflate, br: createBrotliDecompress };
const NO_BODY = Buffer.alloc(0);
/** Reasons to pause reading the body: the spool's writes are behind, or the inflater's. */
const SPOOL = 1;
const INFLATER = 2;
/** Fields that route the request: after the file, once the request is on its way, they would come too late. */
const ROUTING_FIELDS = new Set(['model', 'provider']);
/** The longest field name (OpenAI's are at most 23 characters). */
const MAX_NAME = 100;
/** Values one `name[]` field may carry. */
const MAX_VALUES = 16;

/** The route's handler for `endpoint`: one upload per request. */
export function audioUpload(deps: AudioUploadDeps, endpoint: Endpoint): (caller: Caller) => void {
  return (caller) => {
    const [pin = '', type = ''] = caller.headers;
    const refuse = (err: unknown) => deps.refuse(caller.ex, caller.key, caller.t0, err);
    if (!/^multipart\/form-data\s*;/i.test(type)) {
      refuse(new GatewayError(Errors.invalidRequest, "Send the audio as multipart/form-data with a 'file' part (as the SDKs do).", 'file'));
      return;
    }
    const declared = caller.length === '' ? -1 : Number(caller.length);
    if (declared > deps.maxBytes) { refuse(tooLarge(deps.maxBytes)); return; }
    // Nothing is spooled to disk for a key its limits or its workspace's credits refuse now
    // (the file part may come before the model, and the request's admission after the file).
    try {
      const { deps: chat } = deps.chat;
      precheck(chat, caller.key, chat.keys.chain(caller.key));
    } catch (err) {
      refuse(err);
      return;
    }
    const encoding = edgeOf(caller.ex.res)?.encoding ?? '';
    const inflater = encoding && encoding !== 'identity' ? INFLATERS[encoding] : null;
    if (inflater === undefined) {
      refuse(unsupportedEncoding(encoding));
      return;
    }
    let parser: ReturnType<typeof Busboy>;
    try {
      parser = Busboy({ headers: { 'content-type': type }, limits: { fieldNameSize: MAX_NAME, fieldSize: 10_000, fields: 32, files: 1, parts: 40, headerPairs: 20, fileSize: deps.maxBytes } });
    } catch {
      refuse(new GatewayError(Errors.invalidRequest, 'The multipart Content-Type has no usable boundary.', 'file'));
      return;
    }
    new AudioUpload(deps, endpoint, caller, pin, parser, inflater ? inflater() : null, declared > 0 && !inflater ? declared : -1, refuse).start();
  };
}

function tooLarge(limit: number): GatewayError {
  return new GatewayError(Errors.bodyTooLarge, `The audio upload exceeds the ${limit}-byte limit (http.max_audio_bytes).`, 'file');
}

class AudioUpload {
  private readonly fields: AudioFields = Object.create(null) as AudioFields; // (the caller names the keys)
  private file: { name: string; type: string } | null = null;
  private spool: Spool | null = null;
  /** The request is in the pipeline: failures go to the spool's readers. */
  private started = false;
  /** Nothing more is read (failed, refused, or the exchange is over). */
  private stopped = false;
  private received = 0;
  private inflated = 0;
  /** Why reading is paused (SPOOL | INFLATER); 0: reading. */
  private paused = 0;

  constructor(
    private readonly deps: AudioUploadDeps,
    private readonly endpoint: Endpoint,
    private readonly caller: Caller,
    private readonly pin: string,
    private readonly parser: ReturnType<typeof Busboy>,
    private readonly inflater: (Writable & NodeJS.ReadableStream) | null,
    /** The body's length when it bounds the audio (declared, not compressed); -1 when not. */
    private readonly bound: number,
    private readonly refuse: (err: unknown) => void,
  ) {}

  start(): void {
    const { ex } = this.caller;
    ex.onAbort(() => this.fail(new GatewayError(Errors.clientClosed, 'The client closed the request while sending its body.')));
    ex.onClose(() => { this.stopped = true; this.spool?.close(); this.inflater?.destroy(); });
    const parser = this.parser;
    parser.on('field', (name, value, nameTruncated, valueTruncated) => this.field(name, value, nameTruncated || valueTruncated));
    parser.on('file', (name, stream, filename, _encoding, mimeType) => this.fileStarts(name, stream, filename, mimeType));
    parser.on('finish', () => this.finish());
    parser.on('error', (err: unknown) => this.fail(new GatewayError(Errors.invalidRequest, `The multipart body could not be read (${err instanceof Error ? err.message : String(err)}).`, 'file')));
    parser.on('fieldsLimit', () => this.fail(new GatewayError(Errors.invalidRequest, 'The form has too many fields.', 'file')));
    parser.on('partsLimit', () => this.fail(new GatewayError(Errors.invalidRequest, 'The form has too many parts.', 'file')));
    parser.on('filesLimit', () => this.fail(twice('file')));
    const inflater = this.inflater;
    if (inflater) {
      inflater.on('data', (out: Buffer) => {
        this.inflated += out.length;
        if (this.inflated > this.deps.maxBytes) { this.fail(tooLarge(this.deps.maxBytes)); return; }
        if (!this.stopped) parser.write(out);
      });
      inflater.on('end', () => { if (!this.stopped) parser.end(); });
      inflater.on('error', () => this.fail(new GatewayError(Errors.invalidRequest, 'The body is not valid compressed data (its Content-Encoding).', 'file')));
      inflater.on('drain', () => this.resume(INFLATER));
    }
    const input: Writable = inflater ?? parser;
    ex.res.onData((chunk, isLast) => {
      if (this.stopped) return;
      this.received += chunk.byteLength;
      if (this.received > this.deps.maxBytes) { this.fail(tooLarge(this.deps.maxBytes)); return; }
      // (uWS's chunk is valid during this call only: copied once, then kept by the spool as it is)
      if (chunk.byteLength > 0 && !input.write(Buffer.from(new Uint8Array(chunk))) && inflater) this.pause(INFLATER);
      if (isLast) input.end();
    });
  }

  private field(name: string, value: string, truncated: boolean): void {
    if (this.stopped) return;
    // (busboy bounds a multipart field's value, not its name: the name is bounded here, or 32 names of 80 KB would go upstream)
    if (truncated || name.length > MAX_NAME) { this.fail(new GatewayError(Errors.invalidRequest, `Invalid '${name.slice(0, 64)}': too long.`, name.slice(0, 64))); return; }
    // An array is sent as `name[]` once per value (the SDKs' timestamp_granularities[], include[]).
    if (name.endsWith('[]')) {
      const values = this.fields[name] ??= [];
      if (typeof values === 'string' || values.length >= MAX_VALUES) { this.fail(new GatewayError(Errors.invalidRequest, `Invalid '${name.slice(0, 64)}': too many values.`, name.slice(0, 64))); return; }
      values.push(value);
      return;
    }
    // Otherwise one of each: a second value would be a guess at which one the caller meant.
    if (Object.hasOwn(this.fields, name) || (name === 'file' && this.file)) { this.fail(twice(name)); return; }
    if (this.started && ROUTING_FIELDS.has(name)) {
      this.fail(new GatewayError(Errors.invalidRequest, `'${name}' came after the file, once the request was routed; send it before the file.`, name));
      return;
    }
    this.fields[name] = value;
  }

  private fileStarts(name: string, stream: BusboyFileStream, filename: string, mimeType: string): void {
    if (this.stopped) { stream.resume(); return; }
    if (name !== 'file') { stream.resume(); this.fail(new GatewayError(Errors.invalidRequest, `Unexpected file part '${name.slice(0, 64)}': the audio goes in 'file'.`, name.slice(0, 64))); return; }
    if (Object.hasOwn(this.fields, 'file')) { stream.resume(); this.fail(twice('file')); return; }
    this.file = { name: filename, type: mimeType };
    const spool = this.spool = new Spool(this.deps.spoolDir);
    spool.onDrain = () => this.resume(SPOOL);
    stream.on('data', (chunk: Buffer) => { if (!this.stopped && !spool.append(chunk)) this.pause(SPOOL); });
    stream.on('error', () => undefined); // (the parser reports the same failure)
    stream.on('limit', () => this.fail(tooLarge(this.deps.maxBytes)));
    // The model known and the body's length bounding the audio: the request goes now, the audio streaming behind it.
    if (this.bound > 0 && Object.hasOwn(this.fields, 'model')) {
      const checked = this.checked();
      if (checked) this.begin(checked, audioSecondsBound(this.bound));
    }
  }

  /** The fields checked (the model), or null when they fail (the upload failed with a 400). */
  private checked(): string | null {
    try {
      return checkAudioFields(this.fields);
    } catch (err) {
      this.fail(err);
      return null;
    }
  }

  private finish(): void {
    if (this.stopped) return;
    const spool = this.spool;
    if (!spool || spool.size === 0) { this.fail(new GatewayError(Errors.invalidRequest, "A non-empty 'file' part is required.", 'file')); return; }
    const checked = this.checked();
    if (!checked) return;
    this.stopped = true;
    spool.end();
    if (!this.started) this.begin(checked, audioSecondsBound(spool.size));
  }

  private begin(model: string, secondsBound: number): void {
    const { ex, key, t0 } = this.caller;
    this.started = true;
    const audio = new AudioRequest(model, this.fields, this.file!, this.spool!, secondsBound);
    // (from here the pipeline owns the client's abort; the spool is let go when the exchange is over)
    const provider = this.fields.provider; // (a string: the schema says so)
    this.deps.chat.handle(ex, key, NO_BODY, t0, typeof provider === 'string' ? provider : this.pin, this.endpoint, NO_SWITCHES, withoutMessages(audio));
  }

  private fail(err: unknown): void {
    if (this.stopped) return;
    this.stopped = true;
    // (an inflater left running would go on inflating what is already buffered: a small brotli body can hold gigabytes)
    this.inflater?.destroy();
    this.resume(SPOOL | INFLATER);
    if (this.started) {
      // The request is on its way: whoever reads the audio (the upstream call) gets the failure, and the request ends with it.
      this.spool!.fail(err instanceof GatewayError ? err : new GatewayError(Errors.invalidRequest, String(err)));
      return;
    }
    this.spool?.close();
    this.refuse(err);
  }

  private pause(why: number): void {
    if (this.paused === 0 && !this.caller.ex.finished) this.caller.ex.res.pause();
    this.paused |= why;
  }

  private resume(why: number): void {
    if (this.paused === 0) return;
    this.paused &= ~why;
    if (this.paused === 0 && !this.caller.ex.finished) this.caller.ex.res.resume();
  }
}

function twice(name: string): GatewayError {
  return new GatewayError(Errors.invalidRequest, `The form names '${name.slice(0, 64)}' more than once.`, name.slice(0, 64));
}
