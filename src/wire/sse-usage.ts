// Reads what billing needs from an OpenAI-format SSE stream while passing its bytes
// through untouched: the usage frame (parsed, and dropped if the caller did not ask for
// it) and the `[DONE]` frame (where the gateway slips in its own figures as an SSE
// comment). Everything else is forwarded as slices of the upstream's buffers. An Anthropic
// Messages stream passed through is read the same way: usage from message_start and
// message_delta, message_stop as its terminal event.
import { dataOf } from './sse.js';
import { readUsage, type Usage } from './usage.js';

const USAGE_KEY = Buffer.from('"usage"');
const DONE = Buffer.from('[DONE]');
const CHOICES_KEY = Buffer.from('"choices"');
const EVENT = Buffer.from('event:');
const MESSAGE_STOP = Buffer.from('message_stop');
const DATA = Buffer.from('data:');
const TYPE_KEY = Buffer.from('"type"');
/** The terminal events of a Responses stream (and of a streamed transcript), by name. */
const TYPED_TERMINALS = ['response.completed', 'response.incomplete', 'response.failed', 'transcript.text.done'].map((t) => Buffer.from(t));
const QUOTED_TERMINALS = TYPED_TERMINALS.map((t) => Buffer.from(`"${t.toString()}"`));

const WS = (b: number | undefined) => b === 32 || b === 10 || b === 13 || b === 9;

/** An SSE event longer than this is refused, as the translating providers refuse theirs (an upstream that never ends one would hold the gateway's memory). */
export const MAX_EVENT_BYTES = 16 * 1024 * 1024;

/** The first index from `at` (before `end`) whose byte is not a blank, nor a ':' when `colon`: past the space JSON may have between tokens. */
function skipBlanks(buf: Buffer, at: number, end: number, colon = false): number {
  while (at < end && (WS(buf[at]) || (colon && buf[at] === 58))) at++;
  return at;
}

/** Index of the `}` closing the object that opens at `open`, skipping strings; -1 if unclosed. */
function closingBrace(buf: Buffer, open: number): number {
  let depth = 0;
  for (let i = open; i < buf.length; i++) {
    const b = buf[i];
    if (b === 34) { // a string: skip to its unescaped closing quote
      for (i++; i < buf.length && buf[i] !== 34; i++) if (buf[i] === 92) i++;
    } else if (b === 123) depth++;
    else if (b === 125 && --depth === 0) return i;
  }
  return -1;
}

export interface CompletionScan {
  /** The body is a JSON object (first and last non-blank bytes are braces). */
  isObject: boolean;
  /** Index of the object's closing brace (where the gateway splices in its figures). */
  close: number;
  /** True when the object has no members (`{}`). */
  empty: boolean;
  usage: Usage | null;
}

/**
 * What billing needs from a non-streamed chat.completion, without parsing the whole body:
 * the last `"usage"` key (OpenAI puts the top-level usage last; a `"usage"` inside a string
 * would be escaped as `\"usage\"`) and the small object after it. Measured in the
 * gateway under load, this saves the full JSON.parse of every response (~10 µs per request
 * in situ, more for long answers).
 */
export function scanCompletion(body: Buffer): CompletionScan {
  const first = skipBlanks(body, 0, body.length);
  let close = body.length - 1;
  while (close > first && WS(body[close])) close--;
  if (body[first] !== 123 || body[close] !== 125) return { isObject: false, close: -1, empty: false, usage: null };
  let inner = close - 1;
  while (inner > first && WS(body[inner])) inner--;
  const empty = inner === first;
  let usage: Usage | null = null;
  let at = body.lastIndexOf(USAGE_KEY, close);
  if (at !== -1) {
    at = skipBlanks(body, at + USAGE_KEY.length, close, true);
    const end = body[at] === 123 ? closingBrace(body, at) : -1;
    // The usage object's brace is the body's last: the object that holds it never closes (an answer cut short).
    if (end === close) return { isObject: false, close: -1, empty: false, usage: null };
    if (end !== -1) {
      try {
        usage = readUsage(JSON.parse(body.toString('utf8', at, end + 1)));
      } catch {
        usage = null;
      }
    }
  }
  return { isObject: true, close, empty, usage };
}

const RESPONSE_ID = /"id"\s*:\s*"([^"\\]{1,256})"/;

/** A Responses object's `id` (its first member, as OpenAI writes it; read from the head, not parsed), or null. */
export function responseIdOf(body: Buffer): string | null {
  const m = RESPONSE_ID.exec(body.toString('utf8', 0, Math.min(body.length, 512)));
  return m ? m[1]! : null;
}

/**
 * The body with `"gateway":<json>` spliced in before its closing brace (no re-encoding of the
 * body). `room`: the buffer the body starts, with space after it (an answer gathered whole,
 * wire/answer-bytes.ts): the member is written there, in place, when it fits, and the body's
 * bytes are not copied (a fresh buffer the size of a 60 MB answer costs ~170 ms of page faults
 * on this VM); the body itself is then the answer's start, so its last use must be this one.
 */
export function spliceGateway(body: Buffer, scan: CompletionScan, gatewayJson: string, room: Buffer | null = null): Buffer {
  const extra = `${scan.empty ? '' : ','}"gateway":${gatewayJson}}`;
  const extraLen = Buffer.byteLength(extra);
  const size = body.length + extraLen - 1;
  if (room && room.buffer === body.buffer && room.byteOffset === body.byteOffset && size <= room.length) {
    room.copy(room, scan.close + extraLen, scan.close + 1, body.length); // (what follows the brace, moved first: the regions may overlap)
    room.write(extra, scan.close, 'utf8');
    return room.subarray(0, size);
  }
  const out = Buffer.allocUnsafe(size);
  body.copy(out, 0, 0, scan.close);
  out.write(extra, scan.close, 'utf8');
  body.copy(out, scan.close + extraLen, scan.close + 1);
  return out;
}

/** Index just past the blank line ending the event that starts at `from`, or -1. */
function eventEnd(buf: Buffer, from: number): number {
  let i = buf.indexOf(10, from);
  while (i !== -1) {
    if (buf[i + 1] === 10) return i + 2;
    if (buf[i + 1] === 13 && buf[i + 2] === 10) return i + 3;
    i = buf.indexOf(10, i + 1);
  }
  return -1;
}

/** True when a blank line ends in `chunk`, which follows an event's bytes without one, the last two of them `a` and `b`: it may start there. */
function endsIn(a: number | undefined, b: number | undefined, chunk: Buffer): boolean {
  if (eventEnd(chunk, 0) !== -1) return true;
  if (b === 10) return chunk[0] === 10 || (chunk[0] === 13 && chunk[1] === 10); // '\n' + '\n' or '\r\n'
  return a === 10 && b === 13 && chunk[0] === 10; // '\n\r' + '\n'
}

/**
 * `needle`'s bytes at `at`, ending by `end`. Compared in JavaScript: the needles are a few
 * bytes, and this runs for every event of every stream, where Buffer.compare's call into C++
 * (with its range checks) cost more than the comparison.
 */
function startsAt(buf: Buffer, at: number, end: number, needle: Buffer): boolean {
  if (at + needle.length > end) return false;
  for (let i = 0; i < needle.length; i++) if (buf[at + i] !== needle[i]) return false;
  return true;
}

/** "event: message_stop" or "event:message_stop" (Anthropic's terminal event), checked in place. */
function isMessageStop(buf: Buffer, start: number, end: number): boolean {
  return startsAt(buf, start, end, EVENT) && startsAt(buf, buf[start + 6] === 32 ? start + 7 : start + 6, end, MESSAGE_STOP);
}

/**
 * A Responses stream's terminal event, with or without usage in it (a server may send
 * `"usage": null`): named by its `event:` line, or, without one, by a data object whose first
 * member is its `"type"`. Checked in place: it runs for every event with no usage object.
 */
function isTypedTerminal(buf: Buffer, start: number, end: number): boolean {
  if (startsAt(buf, start, end, EVENT)) {
    const at = buf[start + 6] === 32 ? start + 7 : start + 6;
    return TYPED_TERMINALS.some((name) => startsAt(buf, at, end, name) && (buf[at + name.length] === 10 || buf[at + name.length] === 13));
  }
  if (!startsAt(buf, start, end, DATA)) return false;
  let at = skipBlanks(buf, start + 5, end);
  if (buf[at] !== 123) return false; // '{'
  at = skipBlanks(buf, at + 1, end);
  if (!startsAt(buf, at, end, TYPE_KEY)) return false;
  at = skipBlanks(buf, at + TYPE_KEY.length, end, true);
  return QUOTED_TERMINALS.some((name) => startsAt(buf, at, end, name));
}

/** "data: [DONE]" or "data:[DONE]", checked in place. */
function isDone(buf: Buffer, start: number, end: number): boolean {
  return startsAt(buf, buf[start + 5] === 32 ? start + 6 : start + 5, end, DONE);
}

/**
 * `buf.indexOf(USAGE_KEY, from)`, found another way: a native single-byte search (memchr)
 * for its `g`, then a look at the bytes around it. Every chat chunk carries `"usage":null`,
 * so a stream searches once per event; Buffer.indexOf with a Buffer needle sets up a
 * string search on each call and scans ~0.7 ns a byte, 4.4 µs for the bench's 13-event
 * stream against 0.5 µs this way (`g` is rare in the rest of an event: a model name, `logprobs`).
 */
function indexOfUsage(buf: Buffer, from: number): number {
  for (let g = buf.indexOf(103, from + 4); g !== -1; g = buf.indexOf(103, g + 1)) {
    // '"usage"': the 'g' at 4, so '"usa' before it and 'e"' after
    if (buf[g + 1] === 101 && buf[g + 2] === 34 && buf[g - 1] === 97 && buf[g - 2] === 115 && buf[g - 3] === 117 && buf[g - 4] === 34) return g - 4;
  }
  return -1;
}

/** True when the `"usage"` key at `at` is followed by an object (not `null`) before `end`. */
function objectFollows(buf: Buffer, at: number, end: number): boolean {
  at = skipBlanks(buf, at + USAGE_KEY.length, end, true);
  return at < end && buf[at] === 123; // '{'
}

/** True when the event's `"choices"` is an empty array (the usage chunk), however the JSON is spaced (`"choices": []`, as Python writes it). */
function emptyChoices(event: Buffer): boolean {
  // (the key is the `"choices"` a ':' follows: a string value spelling it, an id or a model, is not)
  for (let found = event.indexOf(CHOICES_KEY); found !== -1; found = event.indexOf(CHOICES_KEY, found + 1)) {
    let at = skipBlanks(event, found + CHOICES_KEY.length, event.length);
    if (event[at] !== 58) continue; // ':'
    at = skipBlanks(event, at + 1, event.length);
    if (event[at] !== 91) return false; // '['
    return event[skipBlanks(event, at + 1, event.length)] === 93; // ']'
  }
  return false;
}

export class SseUsageTap {
  usage: Usage | null = null;
  /** A Responses stream's response id (from response.completed), for previous_response_id. */
  responseId: string | null = null;
  sawDone = false;
  /**
   * The stream's terminal event (`[DONE]`, or a Responses stream's response.completed), held
   * back (with `holdTerminal`): a client that has it considers the answer complete, so it goes
   * out only once the request's row is committed (and, when no usage came, after the answer
   * was counted, so the closing figures carry the count). What follows it is dropped.
   */
  held: Buffer | null = null;
  /**
   * The answer's bytes that came in the same chunk as its terminal event, before it: held with
   * it (with `holdTerminal`), so that an answer which arrives in one read leaves in one write
   * with its end (after the row's commit, tens of µs later), not in two sends. Whoever takes
   * `held` writes this first (takeLead).
   */
  private lead: Buffer | null = null;
  /**
   * The usage chunk the caller asked for (`stream_options.include_usage`), held with the
   * terminal event: it goes out last, with the gateway's figures spliced in as a `gateway`
   * member (where SDKs keep what a chunk says; the SSE comment is dropped by all of them).
   */
  usageEvent: Buffer | null = null;
  /** An event grew past MAX_EVENT_BYTES without ending: the stream is unreadable, and nothing more is taken. */
  oversized = false;
  /**
   * The bytes of an event not ended yet, as they came (joined once it ends: an event that
   * arrives in many chunks is copied once, not once per chunk), and how many there are.
   */
  private tail: Buffer[] = [];
  private tailBytes = 0;
  /** An Anthropic stream: message_start's usage, which message_delta's completes. */
  private anthropicStart: Record<string, unknown> | null = null;

  constructor(
    private readonly forwardUsageEvent: boolean,
    private readonly write: (chunk: Buffer) => boolean,
    private readonly beforeDone: () => Buffer,
    private readonly holdTerminal = false,
  ) {}

  /** The stream's terminal event came: what follows it is not the answer's (and is dropped). */
  get terminal(): boolean {
    return this.sawDone || this.held !== null;
  }

  /** `[DONE]`, or an Anthropic stream's message_stop (a Responses stream's terminal events are typed: isTypedTerminal). */
  private isTerminal(buf: Buffer, start: number, end: number): boolean {
    return isDone(buf, start, end) || (this.anthropicStart !== null && isMessageStop(buf, start, end));
  }

  /** Feeds upstream bytes; returns false when the client side is applying backpressure. */
  push(chunk: Buffer): boolean {
    if (this.terminal || this.oversized) return true;
    let buf = chunk;
    if (this.tailBytes) {
      const last = this.tail[this.tail.length - 1]!;
      const beforeLast = last.length > 1 ? last[last.length - 2] : this.tail[this.tail.length - 2]?.at(-1);
      const ended = endsIn(beforeLast, last[last.length - 1], chunk);
      this.tail.push(chunk);
      this.tailBytes += chunk.length;
      if (!ended) {
        if (this.tailBytes > MAX_EVENT_BYTES) { this.oversized = true; this.tail = []; this.tailBytes = 0; }
        return true;
      }
      buf = Buffer.concat(this.tail, this.tailBytes);
      this.tail = [];
      this.tailBytes = 0;
    }
    let ok = true;
    let flushFrom = 0;
    let pos = 0;
    // The next `"usage"` at or after the event being read (-1: none left in the buffer): one
    // search per event that has the key (every chat chunk has `"usage":null`), none for the rest.
    let usageAt = -2;
    for (let end = eventEnd(buf, pos); end !== -1; pos = end, end = eventEnd(buf, pos)) {
      if (this.isTerminal(buf, pos, end)) {
        this.sawDone = true;
        if (this.holdTerminal) {
          this.hold(buf, flushFrom, pos, end);
          return ok;
        }
        if (pos > flushFrom) ok = this.write(buf.subarray(flushFrom, pos)) && ok;
        ok = this.write(this.beforeDone()) && ok;
        // (what follows the terminal event, here or in a later chunk, is not the answer's: dropped)
        return this.write(buf.subarray(pos, end)) && ok;
      }
      if (usageAt !== -1 && usageAt < pos) usageAt = indexOfUsage(buf, pos);
      // (the first `"usage"` of the event decides, as it always has)
      if (usageAt === -1 || usageAt >= end || !objectFollows(buf, usageAt, end)) {
        if (this.holdTerminal && isTypedTerminal(buf, pos, end)) {
          this.takeUsage(buf.subarray(pos, end)); // (its response id, for previous_response_id)
          this.hold(buf, flushFrom, pos, end);
          return ok;
        }
        continue;
      }
      const event = buf.subarray(pos, end);
      if (this.takeUsage(event) && this.holdTerminal) {
        this.hold(buf, flushFrom, pos, end);
        return ok;
      }
      if (emptyChoices(event) && (!this.forwardUsageEvent || this.holdTerminal)) {
        if (pos > flushFrom) {
          if (this.holdTerminal) this.outs.push(buf.subarray(flushFrom, pos)); // (a terminal event may follow in this chunk)
          else ok = this.write(buf.subarray(flushFrom, pos)) && ok;
        }
        if (this.forwardUsageEvent) this.usageEvent = Buffer.from(event);
        flushFrom = end;
      }
    }
    if (this.outs.length) {
      for (const part of this.outs) ok = this.write(part) && ok;
      this.outs.length = 0;
    }
    if (pos > flushFrom) ok = this.write(buf.subarray(flushFrom, pos)) && ok;
    if (pos < buf.length) {
      if (buf.length - pos > MAX_EVENT_BYTES) { this.oversized = true; return ok; }
      this.tail = [Buffer.from(buf.subarray(pos))];
      this.tailBytes = buf.length - pos;
    }
    return ok;
  }

  /** (holdTerminal) Parts of the chunk being read that go out, before an event that does not: written at its end, or held as the lead. */
  private readonly outs: Buffer[] = [];

  /**
   * Holds the terminal event (`at` to `end`) and what goes out of the chunk before it (the
   * lead: `outs`, and from `from`). What follows the terminal event is not the answer's: it
   * is dropped, as every later chunk is.
   */
  private hold(buf: Buffer, from: number, at: number, end: number): void {
    if (at > from) this.outs.push(buf.subarray(from, at));
    if (this.outs.length) this.lead = this.outs.length === 1 ? Buffer.from(this.outs[0]!) : Buffer.concat(this.outs);
    this.outs.length = 0;
    this.held = Buffer.from(buf.subarray(at, end));
  }

  /** The answer's bytes held with its terminal event, to be written before it (once: null after). */
  takeLead(): Buffer | null {
    const lead = this.lead;
    this.lead = null;
    return lead;
  }

  /**
   * The upstream ended: a last terminal event it did not close with a blank line (`data:
   * [DONE]\n` and the end) is read as if it had, so it still ends the answer.
   */
  end(): void {
    if (!this.tailBytes || this.terminal) return;
    // Only a terminal event: any other cut short stays unsent (a half event would reach the client as malformed JSON).
    const t = this.tail.length === 1 ? this.tail[0]! : Buffer.concat(this.tail, this.tailBytes);
    if (!this.isTerminal(t, 0, t.length) && !isTypedTerminal(t, 0, t.length)) return;
    this.push(Buffer.from(t[t.length - 1] === 10 ? '\n' : '\n\n'));
  }

  /** Bytes not forwarded yet: a held `[DONE]` (after takeLead's), or an unterminated last event if the upstream ended mid-event. */
  flushTail(): Buffer | null {
    const t = this.held ?? (this.tailBytes ? Buffer.concat(this.tail, this.tailBytes) : null);
    this.tail = [];
    this.tailBytes = 0;
    this.held = null;
    return t;
  }

  /** Reads the usage an event carries; true when it is a Responses stream's terminal event. */
  private takeUsage(event: Buffer): boolean {
    const text = event.toString('utf8');
    const data = dataOf(text);
    if (data === null) return false;
    try {
      // chat chunks carry usage at the top; the Responses API's response.completed inside `response`
      const parsed = JSON.parse(data) as { type?: unknown; usage?: unknown; response?: { usage?: unknown; id?: unknown }; message?: { usage?: unknown } };
      if (parsed.type === 'message_start' || parsed.type === 'message_delta') {
        // Anthropic: message_start has the input counts, message_delta the output's (and, from newer APIs, every count).
        const counts = parsed.type === 'message_start' ? parsed.message?.usage : parsed.usage;
        if (typeof counts === 'object' && counts !== null) {
          this.anthropicStart = { ...(this.anthropicStart ?? {}), ...counts };
          // (billed from message_delta's final counts: a stream cut before it is counted instead, not billed at message_start's 1 output token)
          if (parsed.type === 'message_delta') this.usage = readUsage(this.anthropicStart) ?? this.usage;
        }
        return false;
      }
      this.usage = readUsage(parsed.usage ?? parsed.response?.usage) ?? this.usage;
      if (typeof parsed.response?.id === 'string') this.responseId = parsed.response.id;
      // (a streamed transcript ends with transcript.text.done, its usage in it)
      return parsed.type === 'response.completed' || parsed.type === 'response.incomplete' || parsed.type === 'response.failed' || parsed.type === 'transcript.text.done';
    } catch {
      return false; // a malformed frame is the upstream's problem; it is forwarded, just not billed from
    }
  }
}

/**
 * The usage chunk OpenAI sends last when asked (`stream_options.include_usage`), for a stream
 * whose upstream reported no usage (the gateway counted it): with the stream's own id, created,
 * model, object and fingerprint, read from its first event (`first`: the stream's first chunk),
 * or, where that cannot be read, `fallback`'s id and object (a chat stream's or a legacy
 * completion's), now and `model`.
 */
export function countedUsageEvent(first: Buffer | null, usage: Usage, fallback: { id: string; object: StreamObject }, model: string): Buffer {
  let head: { id?: unknown; object?: unknown; created?: unknown; model?: unknown; system_fingerprint?: unknown } = {};
  if (first) {
    const end = eventEnd(first, 0);
    const data = dataOf(first.toString('utf8', 0, end === -1 ? Math.min(first.length, 65_536) : end));
    try {
      const parsed: unknown = data === null ? null : JSON.parse(data);
      if (typeof parsed === 'object' && parsed !== null) head = parsed;
    } catch { /* (not JSON: the fallback's) */ }
  }
  const details = usage.cached_tokens ? { prompt_tokens_details: { cached_tokens: usage.cached_tokens } } : {};
  return Buffer.from(usageChunk({
    id: typeof head.id === 'string' ? head.id : fallback.id,
    object: head.object === 'text_completion' || head.object === 'chat.completion.chunk' ? head.object : fallback.object,
    created: typeof head.created === 'number' ? head.created : Math.floor(Date.now() / 1000),
    model: typeof head.model === 'string' ? head.model : model,
    system_fingerprint: typeof head.system_fingerprint === 'string' ? head.system_fingerprint : undefined,
  }, { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens, total_tokens: usage.prompt_tokens + usage.completion_tokens, ...details }));
}

/** What a stream's chunks say they are: a chat stream's, or a legacy completion's (`/v1/completions`). */
export type StreamObject = 'chat.completion.chunk' | 'text_completion';

/** A stream's usage chunk (choices empty): `head`'s id, created, model and fingerprint (when it has one), and `usage` as given; a chat chunk unless `head` says otherwise. */
export function usageChunk(head: { id?: unknown; object?: StreamObject; created?: unknown; model?: unknown; system_fingerprint?: unknown }, usage: unknown): string {
  return `data: ${JSON.stringify({ id: head.id, object: head.object ?? 'chat.completion.chunk', created: head.created, model: head.model,
    ...(head.system_fingerprint !== undefined ? { system_fingerprint: head.system_fingerprint } : {}), choices: [], usage })}\n\n`;
}

/** An SSE data event whose payload is a JSON object, with `"gateway":<json>` spliced in before its closing brace; the event as it is if it has none. */
export function spliceGatewayEvent(event: Buffer, gatewayJson: string): Buffer {
  const close = event.lastIndexOf(125); // '}'
  if (close === -1) return event;
  return Buffer.concat([event.subarray(0, close), Buffer.from(`,"gateway":${gatewayJson}`), event.subarray(close)]);
}

