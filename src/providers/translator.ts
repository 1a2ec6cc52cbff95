// What every translating adapter (Anthropic, Bedrock, Gemini/Vertex) does with its
// upstream's answer, once: an error answer goes to the gateway as the upstream sent it
// (upstream-error.ts reads every dialect), a buffered answer becomes one chat.completion,
// and a stream becomes OpenAI chunks as its events arrive, ending with the usage chunk (the
// gateway strips it if the caller did not ask) and [DONE]. Each adapter supplies only how
// its events and its message read.
import { StringDecoder } from 'node:string_decoder';
import { Errors, GatewayError } from '../errors.js';
import type { Json } from '../json.js';
import type { ResponseSink } from './provider.js';

/** Tokens as an upstream counts them: prompt tokens not read from or written to its cache, and the cache's. */
export interface TokenUsage {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
  /** Part of `output` spent thinking. */
  reasoning?: number;
}

/**
 * Usage as reported, when it could be true: a prompt of at least one token, and some output for
 * an answer that said something. Anything else is no usage, which the gateway estimates.
 */
export function plausible(u: TokenUsage | null, answered: boolean): TokenUsage | null {
  if (!u || u.input + u.cacheRead + u.cacheWrite < 1 || (answered && u.output < 1)) return null;
  return u;
}

export function openAIUsage(u: TokenUsage) {
  const prompt = u.input + u.cacheRead + u.cacheWrite;
  return { prompt_tokens: prompt, completion_tokens: u.output, total_tokens: prompt + u.output,
    prompt_tokens_details: { cached_tokens: u.cacheRead, cache_write_tokens: u.cacheWrite },
    ...(u.reasoning ? { completion_tokens_details: { reasoning_tokens: u.reasoning } } : {}) };
}

export interface ToolCallOut {
  id: string;
  name: string;
  arguments: string;
}

/** One answer of a translated completion: its text, its tool calls, and why it ended. */
export interface Choice {
  text: string;
  toolCalls: ToolCallOut[];
  finish: string;
}

/**
 * One chat.completion from a translated answer: its choices (one, unless the request asked for
 * more), and `usage` (null: the upstream gave none, or none an answer can have, and the gateway estimates).
 */
export function completionBody(a: { id: string; created: number; model: string; choices: Choice[]; usage: TokenUsage | null }): Json {
  const answered = a.choices.some((c) => c.text || c.toolCalls.length);
  const usage = plausible(a.usage, answered);
  return {
    id: a.id, object: 'chat.completion', created: a.created, model: a.model,
    choices: a.choices.map((c, index) => ({ index, message: { role: 'assistant', content: c.text || null, refusal: null,
      ...(c.toolCalls.length ? { tool_calls: c.toolCalls.map((t) => ({ id: t.id, type: 'function', function: { name: t.name, arguments: t.arguments } })) } : {}) },
    logprobs: null, finish_reason: c.finish })),
    ...(usage ? { usage: openAIUsage(usage) } : {}),
  };
}

/**
 * Server-sent events split as they arrive: a character or an event may straddle two chunks;
 * `\r\n` line ends (Gemini's) read like `\n`. Pieces of an unfinished event are kept apart
 * and joined once its blank line arrives, so a huge event costs linear time, not a rescan of
 * everything so far on every chunk.
 */
export class SseEvents {
  private pieces: string[] = [];
  private last = '';
  /** A chunk ended on `\r`: its `\n` may open the next one. */
  private cr = false;
  /** Characters of the event not yet closed. */
  private pending = 0;
  private readonly decoder = new StringDecoder('utf8');

  push(chunk: Buffer): string[] {
    let text = this.decoder.write(chunk);
    if (this.cr) { text = `\r${text}`; this.cr = false; }
    if (text.endsWith('\r')) { text = text.slice(0, -1); this.cr = true; }
    if (text.includes('\r')) text = text.replace(/\r\n?/g, '\n');
    if (!text) return [];
    const boundary = text.includes('\n\n') || (this.last === '\n' && text.startsWith('\n'));
    this.last = text[text.length - 1]!;
    this.pending += text.length;
    if (!boundary) {
      if (this.pending > MAX_EVENT_CHARS) throw new GatewayError(Errors.upstreamBadAnswer, `The upstream sent an event of more than ${MAX_EVENT_CHARS >> 20} Mi characters.`);
      this.pieces.push(text);
      return [];
    }
    this.pieces.push(text);
    const events = this.pieces.join('').split('\n\n');
    const tail = events.pop() ?? '';
    this.pieces = tail ? [tail] : [];
    this.pending = tail.length;
    return events;
  }

  /** What is left at the end of the stream (an event with no closing blank line). */
  rest(): string {
    const rest = (this.pieces.join('') + (this.cr ? '\n' : '') + this.decoder.end()).replace(/\r\n?/g, '\n');
    this.pieces = [];
    this.cr = false;
    return rest.trim() ? rest : '';
  }
}

/** An SSE event longer than this is refused (an upstream that never closes one would hold the gateway's memory). */
const MAX_EVENT_CHARS = 16 * 1024 * 1024;

/** How long an upstream may keep its connection open after its stream's terminal event. */
export const LINGER_MS = 1000;

/** A buffered answer larger than this is refused (an upstream that never stops would hold the gateway's memory). */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

/**
 * The sink an adapter hands the relay. `streamType`: the content type that marks the
 * upstream's stream (`text/event-stream`, Bedrock's `application/vnd.amazon.eventstream`).
 *
 * A stream's start reaches the gateway with its first frame that says something (content, a
 * tool call, a finish), not with the upstream's 200: an error the upstream reports before that
 * (Bedrock's throttlingException as the first frame, Gemini's RESOURCE_EXHAUSTED event)
 * becomes an error answer, which the gateway's failover may take to another route. A terminal
 * event (the usage, an error) ends the answer at once, whether or not the upstream closes.
 */
export abstract class TranslatingSink implements ResponseSink {
  private status = 0;
  private streaming = false;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private retryAfter: number | null = null;
  /** The client's stream began (its first frame that says something went out). */
  private begun = false;
  /** Frames before that (the role chunk), held until then. */
  private held = '';
  /** Something beyond the role chunk was said. */
  private said = false;
  /** The answer is over for the gateway: later upstream callbacks are ignored. */
  private over = false;
  /** An error the stream reported before it began: the gateway gets it as an error answer. */
  private early: { status: number; body: string } | null = null;
  /** The adapter's subclass met the stream's terminal event. */
  protected terminal = false;
  /** An error the stream reported after it began: the gateway ends the stream with it. */
  private broken: GatewayError | null = null;
  /** Set once the answer ended on a terminal event: cuts the upstream loose if it does not close by itself. */
  private linger: NodeJS.Timeout | null = null;
  /** The upstream call, set by the adapter: cancelled when an early error or an oversized answer ends it. */
  upstreamCall: { abort(): void } | null = null;
  protected id: string;
  protected model: string;
  protected readonly created = Math.floor(Date.now() / 1000);

  constructor(protected readonly sink: ResponseSink, model: string, private readonly streamType: string, private readonly upstream: string) {
    this.model = model;
    this.id = `chatcmpl-${upstream.toLowerCase()}`;
  }

  /** Frames for the stream's bytes so far (events completed by this chunk). */
  protected abstract frames(chunk: Buffer): string;
  /** Frames for the end of the stream. */
  protected abstract finish(): string;
  /** The chat.completion for a buffered answer (throws when it cannot be read). */
  protected abstract complete(raw: Buffer): Json;
  /**
   * The status the gateway should see for an upstream's error answer (its failover reads it;
   * 401 tells it the upstream refused the gateway's own credentials, the operator's problem).
   */
  protected errorStatus(status: number, _body: Buffer): number {
    return status;
  }

  onStart(status: number, contentType: string, retryAfterMs?: number | null): void {
    this.status = status;
    this.retryAfter = retryAfterMs ?? null;
    this.streaming = status === 200 && contentType.includes(this.streamType);
  }

  onData(chunk: Buffer): boolean {
    if (this.over) return true;
    if (this.streaming) return this.emit(this.frames(chunk));
    this.bufferedBytes += chunk.length;
    if (this.bufferedBytes > MAX_ANSWER_BYTES) {
      this.over = true;
      this.buffered = [];
      this.upstreamCall?.abort();
      this.sink.onError(new GatewayError(Errors.upstreamError, `${this.upstream} sent an answer larger than ${MAX_ANSWER_BYTES >> 20} MiB.`));
      return true;
    }
    this.buffered.push(chunk);
    return true;
  }

  onEnd(): void {
    if (this.linger) clearTimeout(this.linger);
    if (this.over) return;
    if (this.streaming) {
      this.emit(this.finish());
      if (this.over) return;
      if (!this.begun && this.held) { this.begun = true; this.sink.onStart(200, 'text/event-stream'); this.sink.onData(Buffer.from(this.held)); }
      this.over = true;
      if (this.begun) this.sink.onEnd();
      else this.sink.onError(new GatewayError(Errors.upstreamError, `${this.upstream} ended its stream without an answer.`));
      return;
    }
    this.over = true;
    const raw = Buffer.concat(this.buffered);
    this.buffered = [];
    if (this.status !== 200) {
      this.sink.onStart(this.errorStatus(this.status, raw), 'application/json', this.retryAfter);
      this.sink.onData(raw);
      this.sink.onEnd();
      return;
    }
    let body: Json;
    try {
      body = this.complete(raw);
    } catch (err) {
      this.sink.onError(err instanceof GatewayError ? err : new GatewayError(Errors.upstreamBadAnswer, `${this.upstream} sent an answer this gateway could not read.`));
      return;
    }
    this.sink.onStart(200, 'application/json');
    this.sink.onData(Buffer.from(JSON.stringify(body)));
    this.sink.onEnd();
  }

  onError(err: GatewayError): void {
    if (this.linger) clearTimeout(this.linger);
    if (this.over) return;
    this.over = true;
    this.sink.onError(err);
  }

  /** Frames to the gateway: held until the stream says something, or turned into an error answer when it failed first. */
  private emit(out: string): boolean {
    if (this.over) return true;
    if (!this.begun) {
      if (this.early) {
        this.over = true;
        this.upstreamCall?.abort();
        const body = Buffer.from(this.early.body);
        this.sink.onStart(this.errorStatus(this.early.status, body), 'application/json', null);
        this.sink.onData(body);
        this.sink.onEnd();
        return true;
      }
      if (!this.said && !this.terminal) { this.held += out; return true; }
      this.begun = true;
      this.sink.onStart(200, 'text/event-stream');
      out = this.held + out;
      this.held = '';
    }
    const more = out ? this.sink.onData(Buffer.from(out)) : true;
    if (this.broken) {
      // The gateway ends the stream with the error event, and counts the route's failure.
      this.over = true;
      this.sink.onError(this.broken);
      return more;
    }
    if (this.terminal) {
      this.over = true;
      this.sink.onEnd();
      // The upstream normally closes right after its terminal event (and keeps the connection
      // alive for the next call); one that lingers is cut loose so it holds no slot.
      this.linger = setTimeout(() => this.upstreamCall?.abort(), LINGER_MS);
      this.linger.unref();
    }
    return more;
  }

  /**
   * An error the upstream's stream reported (`status`: what it would have been as an answer):
   * before the stream said anything, the answer's error (the gateway may fail over); after,
   * an error event that ends the stream.
   */
  protected streamError(status: number, message: string, type: string, code: string | null = null): string {
    this.terminal = true;
    if (!this.said) {
      this.early = { status, body: JSON.stringify({ error: { message, type, code, param: null } }) };
      return '';
    }
    this.broken = status === 429 ? new GatewayError(Errors.upstreamRateLimited, message)
      : new GatewayError({ status: status >= 500 ? status : 502, type, code: code ?? 'upstream_error' }, message);
    return '';
  }

  /** One choice's chunk (`index` 0 unless the answer has several). Anything beyond the role chunk starts the client's stream. */
  protected chunk(delta: Json, finish: string | null = null, index = 0): string {
    if (finish !== null || delta.content || delta.tool_calls) this.said = true;
    return `data: ${JSON.stringify({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model,
      choices: [{ index, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
  }

  /** The usage chunk (none when the upstream gave no usage, or usage no answer can have: the gateway then estimates) and [DONE]: the stream's last frames. */
  protected usageAndDone(reported: TokenUsage | null): string {
    this.terminal = true;
    const usage = plausible(reported, this.said);
    if (!usage) return 'data: [DONE]\n\n';
    return `data: ${JSON.stringify({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model,
      choices: [], usage: openAIUsage(usage) })}\n\ndata: [DONE]\n\n`;
  }

}

/** A translating sink whose upstream streams server-sent events (Anthropic's, Gemini's): each event becomes frames. */
export abstract class SseTranslatingSink extends TranslatingSink {
  private readonly events = new SseEvents();

  /** One event of the upstream's stream → zero or more OpenAI chunk frames. */
  protected abstract event(raw: string): string;

  protected frames(chunk: Buffer): string {
    let out = '';
    for (const event of this.events.push(chunk)) out += this.event(event);
    return out;
  }

  /** The frames of an event the stream ended without closing. */
  protected lastEvent(): string {
    const rest = this.events.rest();
    return rest ? this.event(rest) : '';
  }

  protected finish(): string {
    return this.lastEvent();
  }
}
