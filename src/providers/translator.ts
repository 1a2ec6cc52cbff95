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

/** One chat.completion from a translated answer. */
export function completionBody(a: { id: string; created: number; model: string; text: string; toolCalls: ToolCallOut[]; finish: string; usage: TokenUsage }): Json {
  return {
    id: a.id, object: 'chat.completion', created: a.created, model: a.model,
    choices: [{ index: 0, message: { role: 'assistant', content: a.text || null, refusal: null,
      ...(a.toolCalls.length ? { tool_calls: a.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })) } : {}) },
    logprobs: null, finish_reason: a.finish }],
    usage: openAIUsage(a.usage),
  };
}

/** Server-sent events split as they arrive: a character or an event may straddle two chunks; `\r\n` line ends (Gemini's) read like `\n`. */
export class SseEvents {
  private tail = '';
  private readonly decoder = new StringDecoder('utf8');

  push(chunk: Buffer): string[] {
    let text = this.tail + this.decoder.write(chunk);
    if (text.includes('\r')) text = text.replace(/\r\n?/g, '\n');
    const events = text.split('\n\n');
    this.tail = events.pop() ?? '';
    return events;
  }

  /** What is left at the end of the stream (an event with no closing blank line). */
  rest(): string {
    const rest = (this.tail + this.decoder.end()).replace(/\r\n?/g, '\n');
    this.tail = '';
    return rest.trim() ? rest : '';
  }
}

/**
 * The sink an adapter hands the relay. `streamType`: the content type that marks the
 * upstream's stream (`text/event-stream`, Bedrock's `application/vnd.amazon.eventstream`).
 */
export abstract class TranslatingSink implements ResponseSink {
  private status = 0;
  private streaming = false;
  private buffered: Buffer[] = [];
  private retryAfter: number | null = null;
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
    if (this.streaming) this.sink.onStart(200, 'text/event-stream');
  }

  onData(chunk: Buffer): boolean {
    if (!this.streaming) { this.buffered.push(chunk); return true; }
    const out = this.frames(chunk);
    return out ? this.sink.onData(Buffer.from(out)) : true;
  }

  onEnd(): void {
    if (this.streaming) {
      const out = this.finish();
      if (out) this.sink.onData(Buffer.from(out));
      this.sink.onEnd();
      return;
    }
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
      this.sink.onError(err instanceof GatewayError ? err : new GatewayError(Errors.upstreamError, `${this.upstream} sent an answer this gateway could not read.`));
      return;
    }
    this.sink.onStart(200, 'application/json');
    this.sink.onData(Buffer.from(JSON.stringify(body)));
    this.sink.onEnd();
  }

  onError(err: GatewayError): void {
    this.sink.onError(err);
  }

  protected chunk(delta: Json, finish: string | null = null): string {
    return `data: ${JSON.stringify({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
  }

  /** The usage chunk and [DONE]: the stream's last frames. */
  protected usageAndDone(usage: TokenUsage): string {
    return `data: ${JSON.stringify({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model,
      choices: [], usage: openAIUsage(usage) })}\n\ndata: [DONE]\n\n`;
  }

  /** An error met mid-stream, as OpenAI streams carry one. */
  protected errorFrame(message: string, type: string, code: string | null = null): string {
    return `data: ${JSON.stringify({ error: { message, type, code, param: null } })}\n\n`;
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
