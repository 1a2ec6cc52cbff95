// Anthropic's Messages API behind the OpenAI chat-completions surface. The request is
// translated (system prompt, messages, images, tools and tool results, stop sequences,
// max_tokens); the answer is translated back: a JSON message into a chat.completion, or
// Messages SSE events into OpenAI chunks as they arrive, ending with a usage chunk (the
// gateway strips it if the caller did not ask) and [DONE]. Errors keep their status and
// reach the gateway as Anthropic sent them (it normalises every provider's), 529 as a 503, so failover treats 429/5xx/529 like any upstream's.
import type { Pool } from 'undici';
import { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import { isRecord, text as asText, type Json } from '../json.js';
import { Relay, openPool, type HttpUpstreamOptions } from './http-relay.js';
import type { ChatCall, ChatRequest, Provider, ResponseSink, UpstreamHandle } from './provider.js';
import { SseTranslatingSink, completionBody, type TokenUsage } from './translator.js';
import { chatTurns, jsonOutputTool, stopList, toolChoiceOf, toolsOf, type Block } from './turns.js';
import { sentCap } from '../wire/chat.js';
import { dataOf } from '../wire/sse.js';
import { editMembers } from '../wire/splice.js';

const API_VERSION = '2023-06-01';
/** Where a passed-through Messages request carries the caller's `anthropic-beta` header (a non-enumerable member). */
export const ANTHROPIC_BETA = Symbol('anthropic-beta');

function blockOf(b: Block): Json {
  switch (b.type) {
    case 'text': return { type: 'text', text: b.text };
    case 'image': return b.data !== null ? { type: 'image', source: { type: 'base64', media_type: b.mime, data: b.data } } : { type: 'image', source: { type: 'url', url: b.url } };
    case 'tool_call': return { type: 'tool_use', id: b.id, name: b.name, input: b.input };
    case 'tool_result': return { type: 'tool_result', tool_use_id: b.id, content: b.text };
  }
}

/**
 * The chat-completions request as a Messages API request. `cacheBreakpoints`: mark the stable head for Anthropic's prompt cache: the system prompt,
 * the tool definitions, and the conversation up to the turn before the latest (up to 3 of
 * the 4 breakpoints Anthropic allows; a prefix too short to cache is simply not cached).
 */
export function toMessagesRequest(request: ChatRequest, model: string, maxTokens: number, stream: boolean, cacheBreakpoints = false): Json {
  return toMessages(request, model, maxTokens, stream, cacheBreakpoints).body;
}

/** The Messages request, and the tool that carries JSON output when the request asked for it (its input is the answer). */
export function toMessages(request: ChatRequest, model: string, maxTokens: number, stream: boolean, cacheBreakpoints = false): { body: Json; jsonTool: string | null } {
  if (typeof request.n === 'number' && request.n > 1) {
    throw new GatewayError(Errors.invalidRequest, 'Anthropic answers one choice per request: n must be 1 on this route.', 'n');
  }
  const { system, turns } = chatTurns(request);
  const messages = turns.map((t) => ({ role: t.role, content: t.blocks.map(blockOf) }));
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
  const stop = stopList(request);
  if (stop) out.stop_sequences = stop;
  const tools = toolsOf(request);
  const json = jsonOutputTool(request, tools);
  if (json) tools.push(json.tool);
  if (tools.length) {
    const specs: Json[] = tools.map((t) => ({ name: t.name, ...(t.description ? { description: t.description } : {}), input_schema: t.parameters }));
    if (cacheBreakpoints) specs[specs.length - 1] = { ...specs[specs.length - 1], cache_control: ephemeral };
    out.tools = specs;
  }
  const choice = json?.forced ? { mode: 'tool' as const, name: json.tool.name } : toolChoiceOf(request);
  if (choice) out.tool_choice = choice.mode === 'tool' ? { type: 'tool', name: choice.name } : { type: choice.mode === 'required' ? 'any' : choice.mode };
  if (isRecord(request.metadata) && typeof request.user === 'string') out.metadata = { user_id: request.user };
  return { body: out, jsonTool: json ? json.tool.name : null };
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

/** Anthropic's counts: its input tokens exclude cache reads and writes. */
function tokens(u: AnthropicUsage): TokenUsage {
  return { input: u.input_tokens, output: u.output_tokens, cacheRead: u.cache_read_input_tokens ?? 0, cacheWrite: u.cache_creation_input_tokens ?? 0 };
}

/** Receives the Messages API's bytes and hands the gateway OpenAI's format. */
export class Translator extends SseTranslatingSink {
  private usage: AnthropicUsage = { input_tokens: 0, output_tokens: 0 };
  /** Anthropic content-block index → OpenAI tool_calls index; -1 for the JSON-output tool. */
  private readonly toolIndex = new Map<number, number>();
  /** Tool calls the caller sees. */
  private calls = 0;

  /** `jsonTool`: the tool that carries JSON output (its input is the content, never a tool call). */
  constructor(sink: ResponseSink, model: string, private readonly jsonTool: string | null = null) {
    super(sink, model, 'event-stream', 'Anthropic');
  }

  /** 529 'overloaded' is a 503 to the gateway (a retryable outage). */
  protected override errorStatus(status: number): number {
    return status === 529 ? 503 : status;
  }

  protected complete(raw: Buffer): Json {
    const message = MessageSchema.parse(JSON.parse(raw.toString('utf8')));
    const json = message.content.filter((b) => b.type === 'tool_use' && b.name === this.jsonTool).map((b) => JSON.stringify(b.input ?? {}));
    const text = message.content.filter((b) => b.type === 'text').map((b) => b.text ?? '').join('') + json.join('');
    const toolCalls = message.content.filter((b) => b.type === 'tool_use' && b.name !== this.jsonTool).map((b) => ({ id: b.id ?? '', name: b.name ?? '', arguments: JSON.stringify(b.input ?? {}) }));
    const finish = json.length && !toolCalls.length && message.stop_reason === 'tool_use' ? 'stop' : FINISH[message.stop_reason ?? ''] ?? 'stop';
    return completionBody({ id: `chatcmpl-${message.id}`, created: this.created, model: message.model, choices: [{ text, toolCalls, finish }], usage: tokens(message.usage) });
  }

  /** One SSE event of the Messages stream → zero or more OpenAI chunk frames. */
  protected event(raw: string): string {
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
        if (block.name === this.jsonTool) { this.toolIndex.set(Number(e.index), -1); return ''; }
        const index = this.calls++;
        this.toolIndex.set(Number(e.index), index);
        return this.chunk({ tool_calls: [{ index, id: block.id, type: 'function', function: { name: block.name, arguments: '' } }] });
      }
      case 'content_block_delta': {
        const d = isRecord(e.delta) ? e.delta : {};
        if (d.type === 'text_delta' && typeof d.text === 'string') return this.chunk({ content: d.text });
        if (d.type === 'input_json_delta' && typeof d.partial_json === 'string') {
          const index = this.toolIndex.get(Number(e.index)) ?? 0;
          if (index === -1) return d.partial_json ? this.chunk({ content: d.partial_json }) : '';
          return this.chunk({ tool_calls: [{ index, function: { arguments: d.partial_json } }] });
        }
        return '';
      }
      case 'message_delta': {
        const d = isRecord(e.delta) ? e.delta : {};
        if (isRecord(e.usage) && typeof e.usage.output_tokens === 'number') this.usage = { ...this.usage, output_tokens: e.usage.output_tokens };
        const reason = asText(d.stop_reason);
        return this.chunk({}, reason === 'tool_use' && this.calls === 0 && this.toolIndex.size > 0 ? 'stop' : FINISH[reason] ?? 'stop');
      }
      case 'message_stop':
        return this.usageAndDone(tokens(this.usage));
      case 'error': {
        const err = isRecord(e.error) ? e.error : {};
        const type = asText(err.type) || 'api_error';
        const status = type === 'overloaded_error' ? 503 : type === 'rate_limit_error' ? 429 : type === 'invalid_request_error' ? 400 : 502;
        return this.streamError(status, asText(err.message) || 'Anthropic stream error', type);
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
    if (call.api === 'messages') return this.passThrough(call, sink);
    const { request } = call;
    const maxTokens = sentCap(request) ?? this.opts.defaultMaxTokens;
    let body: string;
    let translator: Translator;
    try {
      const translated = toMessages(request, call.upstreamModel, maxTokens, call.stream, Boolean(call.promptCacheKey));
      body = JSON.stringify(translated.body);
      translator = new Translator(sink, call.upstreamModel, translated.jsonTool);
    } catch (err) {
      const relay = new Relay(sink);
      queueMicrotask(() => sink.onError(err instanceof GatewayError ? err : new GatewayError(Errors.invalidRequest, 'The request could not be translated for Anthropic.')));
      return relay;
    }
    const relay = new Relay(translator);
    translator.upstreamCall = relay;
    this.pool.dispatch({ path: this.path, method: 'POST', headers: this.headers, body,
      headersTimeout: this.opts.headersTimeoutMs, bodyTimeout: this.opts.bodyTimeoutMs, blocking: true }, relay);
    return relay;
  }

  /**
   * A Messages API request passed through: the caller's bytes with the route's model id (and
   * without the gateway's provider pin), the answer relayed as Anthropic writes it.
   */
  private passThrough(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    const relay = new Relay(sink);
    const body = editMembers(call.body, { set: [['model', JSON.stringify(call.upstreamModel)]], drop: ['provider'] }) ?? call.body;
    const betas = (call.params as unknown as { [ANTHROPIC_BETA]?: string })[ANTHROPIC_BETA];
    this.pool.dispatch({ path: this.path, method: 'POST', headers: betas ? { ...this.headers, 'anthropic-beta': betas } : this.headers, body,
      headersTimeout: this.opts.headersTimeoutMs, bodyTimeout: this.opts.bodyTimeoutMs, blocking: true }, relay);
    return relay;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
