// Anthropic's Messages API behind the OpenAI chat-completions surface. The request is
// translated (system prompt, messages, images, tools and tool results, stop sequences,
// max_tokens); the answer is translated back: a JSON message into a chat.completion, or
// Messages SSE events into OpenAI chunks as they arrive, ending with a usage chunk (the
// gateway strips it if the caller did not ask) and [DONE]. Errors keep their status and
// reach the gateway as Anthropic sent them (it normalises every provider's), 529 as a 503, so failover treats 429/5xx/529 like any upstream's.
import { StringDecoder } from 'node:string_decoder';
import type { Pool } from 'undici';
import { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import { MAX_JSON_DEPTH, isRecord, nestsDeeper, text as asText, type Json } from '../json.js';
import { Relay, openPool, type HttpUpstreamOptions } from './http-relay.js';
import type { ChatCall, ChatRequest, Provider, ResponseSink, UpstreamHandle } from './provider.js';
import { contentText, sentCap } from '../wire/chat.js';
import { dataOf } from '../wire/sse.js';

const API_VERSION = '2023-06-01';


function imageBlock(part: Json): Json | null {
  const url = isRecord(part.image_url) ? part.image_url.url : part.image_url;
  if (typeof url !== 'string') return null;
  const data = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  return data ? { type: 'image', source: { type: 'base64', media_type: data[1], data: data[2] } } : { type: 'image', source: { type: 'url', url } };
}

function userContent(content: unknown): string | Json[] {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  const blocks: Json[] = [];
  for (const part of content) {
    if (!isRecord(part)) continue;
    if (part.type === 'text' && typeof part.text === 'string') blocks.push({ type: 'text', text: part.text });
    else if (part.type === 'image_url') { const b = imageBlock(part); if (b) blocks.push(b); }
  }
  return blocks;
}

function parseArguments(args: unknown): unknown {
  if (typeof args !== 'string') return {};
  let value: unknown;
  try { value = JSON.parse(args); } catch { throw new GatewayError(Errors.invalidRequest, 'A tool call\'s arguments are not valid JSON.', 'messages'); }
  if (nestsDeeper(value)) throw new GatewayError(Errors.jsonTooDeep, `A tool call's arguments nest more than ${MAX_JSON_DEPTH} levels deep.`, 'messages');
  return value;
}

/**
 * The chat-completions request as a Messages API request. `cacheBreakpoints`: mark the stable head for Anthropic's prompt cache: the system prompt,
 * the tool definitions, and the conversation up to the turn before the latest (up to 3 of
 * the 4 breakpoints Anthropic allows; a prefix too short to cache is simply not cached).
 */
export function toMessagesRequest(request: ChatRequest, model: string, maxTokens: number, stream: boolean, cacheBreakpoints = false): Json {
  const system: string[] = [];
  const messages: Array<{ role: 'user' | 'assistant'; content: Json[] }> = [];
  const push = (role: 'user' | 'assistant', blocks: Json[]) => {
    if (!blocks.length) return;
    const last = messages.at(-1);
    if (last && last.role === role) last.content.push(...blocks); // Anthropic wants turns to alternate
    else messages.push({ role, content: blocks });
  };
  for (const m of request.messages) {
    const role = m.role;
    if (role === 'system' || role === 'developer') { system.push(contentText(m.content)); continue; }
    if (role === 'tool') {
      push('user', [{ type: 'tool_result', tool_use_id: asText(m.tool_call_id), content: contentText(m.content) }]);
      continue;
    }
    if (role === 'assistant') {
      const blocks: Json[] = [];
      const text = contentText(m.content);
      if (text) blocks.push({ type: 'text', text });
      for (const call of Array.isArray(m.tool_calls) ? m.tool_calls : []) {
        if (!isRecord(call) || !isRecord(call.function)) continue;
        blocks.push({ type: 'tool_use', id: asText(call.id), name: asText(call.function.name), input: parseArguments(call.function.arguments) });
      }
      push('assistant', blocks);
      continue;
    }
    const content = userContent(m.content);
    push('user', typeof content === 'string' ? [{ type: 'text', text: content }] : content);
  }
  const out: Json = { model, max_tokens: maxTokens, messages };
  const ephemeral = { type: 'ephemeral' };
  if (system.length) out.system = cacheBreakpoints ? [{ type: 'text', text: system.join('\n\n'), cache_control: ephemeral }] : system.join('\n\n');
  if (cacheBreakpoints && messages.length >= 2) {
    const blocks = messages[messages.length - 2]!.content;
    const lastBlock = blocks[blocks.length - 1];
    if (isRecord(lastBlock)) blocks[blocks.length - 1] = { ...lastBlock, cache_control: ephemeral };
  }
  if (stream) out.stream = true;
  if (typeof request.temperature === 'number') out.temperature = Math.min(1, request.temperature);
  if (typeof request.top_p === 'number') out.top_p = request.top_p;
  const stop = request.stop;
  if (typeof stop === 'string') out.stop_sequences = [stop];
  else if (Array.isArray(stop)) out.stop_sequences = stop;
  if (Array.isArray(request.tools) && request.tools.length) {
    out.tools = request.tools.filter(isRecord).map((t) => {
      const f = isRecord(t.function) ? t.function : {};
      return { name: f.name, ...(f.description ? { description: f.description } : {}), input_schema: f.parameters ?? { type: 'object', properties: {} } };
    });
    if (cacheBreakpoints) {
      const tools = out.tools as Json[];
      tools[tools.length - 1] = { ...(tools[tools.length - 1] as Record<string, Json>), cache_control: ephemeral };
    }
  }
  const choice = request.tool_choice;
  if (choice === 'auto') out.tool_choice = { type: 'auto' };
  else if (choice === 'required') out.tool_choice = { type: 'any' };
  else if (choice === 'none') out.tool_choice = { type: 'none' };
  else if (isRecord(choice) && isRecord(choice.function)) out.tool_choice = { type: 'tool', name: choice.function.name };
  if (isRecord(request.metadata) && typeof request.user === 'string') out.metadata = { user_id: request.user };
  return out;
}

const FINISH: Record<string, string> = { end_turn: 'stop', stop_sequence: 'stop', max_tokens: 'length', tool_use: 'tool_calls', pause_turn: 'stop', refusal: 'content_filter' };

const UsageSchema = z.looseObject({
  input_tokens: z.number().int().nonnegative(),
  output_tokens: z.number().int().nonnegative(),
  cache_read_input_tokens: z.number().int().nonnegative().nullish(),
  cache_creation_input_tokens: z.number().int().nonnegative().nullish(),
});
type AnthropicUsage = z.infer<typeof UsageSchema>;

const MessageSchema = z.looseObject({
  id: z.string(),
  model: z.string(),
  content: z.array(z.looseObject({ type: z.string(), text: z.string().optional(), id: z.string().optional(), name: z.string().optional(), input: z.unknown().optional() })),
  stop_reason: z.string().nullable(),
  usage: UsageSchema,
});

/** OpenAI usage from Anthropic's: prompt tokens include cache reads and writes; cached = reads. */
function openAIUsage(u: AnthropicUsage) {
  const read = u.cache_read_input_tokens ?? 0;
  const write = u.cache_creation_input_tokens ?? 0;
  const prompt = u.input_tokens + read + write;
  return { prompt_tokens: prompt, completion_tokens: u.output_tokens, total_tokens: prompt + u.output_tokens,
    prompt_tokens_details: { cached_tokens: read, cache_write_tokens: write } };
}

/** Receives the Messages API's bytes and hands the gateway OpenAI's format. */
export class Translator implements ResponseSink {
  private status = 0;
  private streaming = false;
  private buffered: Buffer[] = [];
  private tail = '';
  private id = 'chatcmpl-anthropic';
  private readonly created = Math.floor(Date.now() / 1000);
  private model: string;
  private usage: AnthropicUsage = { input_tokens: 0, output_tokens: 0 };
  /** Anthropic content-block index → OpenAI tool_calls index. */
  private readonly toolIndex = new Map<number, number>();
  private finish: string | null = null;

  private readonly decoder = new StringDecoder('utf8');

  constructor(private readonly sink: ResponseSink, model: string) {
    this.model = model;
  }

  private retryAfter: number | null = null;

  onStart(status: number, contentType: string, retryAfterMs?: number | null): void {
    this.status = status;
    this.retryAfter = retryAfterMs ?? null;
    this.streaming = status === 200 && contentType.includes('event-stream');
    if (this.streaming) this.sink.onStart(200, 'text/event-stream');
  }

  onData(chunk: Buffer): boolean {
    if (!this.streaming) { this.buffered.push(chunk); return true; }
    // A character may be split between two chunks: the decoder keeps its first bytes for the next one.
    const text = this.tail + this.decoder.write(chunk);
    const events = text.split('\n\n');
    this.tail = events.pop() ?? '';
    let ok = true;
    for (const event of events) {
      const out = this.event(event);
      if (out) ok = this.sink.onData(Buffer.from(out)) && ok;
    }
    return ok;
  }

  onEnd(): void {
    if (this.streaming) {
      if (this.tail.trim()) { const out = this.event(this.tail); if (out) this.sink.onData(Buffer.from(out)); }
      this.sink.onEnd();
      return;
    }
    const raw = Buffer.concat(this.buffered);
    if (this.status !== 200) {
      // Anthropic's error envelope goes to the gateway as it is (it reads every provider's dialect); 529 'overloaded' is a 503.
      this.sink.onStart(this.status === 529 ? 503 : this.status, 'application/json', this.retryAfter);
      this.sink.onData(raw);
      this.sink.onEnd();
      return;
    }
    let message: z.infer<typeof MessageSchema>;
    try {
      message = MessageSchema.parse(JSON.parse(raw.toString('utf8')));
    } catch {
      this.sink.onError(new GatewayError(Errors.upstreamError, 'Anthropic sent a message this gateway could not read.'));
      return;
    }
    const text = message.content.filter((b) => b.type === 'text').map((b) => b.text ?? '').join('');
    const toolCalls = message.content.filter((b) => b.type === 'tool_use').map((b) => ({
      id: b.id ?? '', type: 'function', function: { name: b.name ?? '', arguments: JSON.stringify(b.input ?? {}) },
    }));
    const body = {
      id: `chatcmpl-${message.id}`, object: 'chat.completion', created: this.created, model: message.model,
      choices: [{ index: 0, message: { role: 'assistant', content: text || null, refusal: null, ...(toolCalls.length ? { tool_calls: toolCalls } : {}) },
        logprobs: null, finish_reason: FINISH[message.stop_reason ?? ''] ?? 'stop' }],
      usage: openAIUsage(message.usage),
    };
    this.sink.onStart(200, 'application/json');
    this.sink.onData(Buffer.from(JSON.stringify(body)));
    this.sink.onEnd();
  }

  onError(err: GatewayError): void {
    this.sink.onError(err);
  }

  private chunk(delta: Json, finish: string | null = null): string {
    return `data: ${JSON.stringify({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
  }

  /** One SSE event of the Messages stream → zero or more OpenAI chunk frames. */
  private event(raw: string): string {
    const data = dataOf(raw);
    if (data === null) return '';
    let e: Json;
    try {
      const parsed = JSON.parse(data) as unknown;
      if (!isRecord(parsed)) return '';
      e = parsed;
    } catch {
      return '';
    }
    switch (e.type) {
      case 'message_start': {
        const m = isRecord(e.message) ? e.message : {};
        if (typeof m.id === 'string') this.id = `chatcmpl-${m.id}`;
        if (typeof m.model === 'string') this.model = m.model;
        const u = UsageSchema.safeParse(m.usage);
        if (u.success) this.usage = u.data;
        return this.chunk({ role: 'assistant', content: '' });
      }
      case 'content_block_start': {
        const block = isRecord(e.content_block) ? e.content_block : {};
        if (block.type !== 'tool_use') return '';
        const index = this.toolIndex.size;
        this.toolIndex.set(Number(e.index), index);
        return this.chunk({ tool_calls: [{ index, id: block.id, type: 'function', function: { name: block.name, arguments: '' } }] });
      }
      case 'content_block_delta': {
        const d = isRecord(e.delta) ? e.delta : {};
        if (d.type === 'text_delta' && typeof d.text === 'string') return this.chunk({ content: d.text });
        if (d.type === 'input_json_delta' && typeof d.partial_json === 'string') {
          return this.chunk({ tool_calls: [{ index: this.toolIndex.get(Number(e.index)) ?? 0, function: { arguments: d.partial_json } }] });
        }
        return '';
      }
      case 'message_delta': {
        const d = isRecord(e.delta) ? e.delta : {};
        if (isRecord(e.usage) && typeof e.usage.output_tokens === 'number') this.usage = { ...this.usage, output_tokens: e.usage.output_tokens };
        this.finish = FINISH[asText(d.stop_reason)] ?? 'stop';
        return this.chunk({}, this.finish);
      }
      case 'message_stop':
        return `data: ${JSON.stringify({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model,
          choices: [], usage: openAIUsage(this.usage) })}\n\ndata: [DONE]\n\n`;
      case 'error': {
        const err = isRecord(e.error) ? e.error : {};
        return `data: ${JSON.stringify({ error: { message: asText(err.message) || 'Anthropic stream error', type: asText(err.type) || 'upstream_error', code: null, param: null } })}\n\n`;
      }
      default:
        return ''; // ping, content_block_stop
    }
  }
}

export class AnthropicProvider implements Provider {
  readonly kind = 'anthropic' as const;
  readonly name: string;
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;

  constructor(private readonly opts: HttpUpstreamOptions & { defaultMaxTokens: number }) {
    this.name = opts.name;
    const { pool, basePath } = openPool(opts);
    this.pool = pool;
    this.path = `${basePath}/messages`;
    this.headers = { 'content-type': 'application/json', 'anthropic-version': API_VERSION, ...opts.headers };
    if (opts.apiKey) this.headers['x-api-key'] = opts.apiKey;
  }

  chat(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    const { request } = call;
    const maxTokens = sentCap(request) ?? this.opts.defaultMaxTokens;
    const translator = new Translator(sink, call.upstreamModel);
    const relay = new Relay(translator);
    let body: string;
    try {
      body = JSON.stringify(toMessagesRequest(request, call.upstreamModel, maxTokens, call.stream, Boolean(call.promptCacheKey)));
    } catch (err) {
      queueMicrotask(() => sink.onError(err instanceof GatewayError ? err : new GatewayError(Errors.invalidRequest, 'The request could not be translated for Anthropic.')));
      return relay;
    }
    this.pool.dispatch({ path: this.path, method: 'POST', headers: this.headers, body,
      headersTimeout: this.opts.headersTimeoutMs, bodyTimeout: this.opts.bodyTimeoutMs, blocking: true }, relay);
    return relay;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
