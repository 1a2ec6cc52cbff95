// POST /v1/messages: Anthropic's Messages API in front of every route. The request becomes a
// chat request (same routing, limits, credits, ledger, failover and savings as chat; an
// Anthropic route's adapter turns it back into Anthropic's wire format), and the chat answer
// becomes an Anthropic message, or its stream events, on the way out. Errors go out in
// Anthropic's envelope (the route's Exchange writes them so). What no chat route can carry
// (documents, server tools) is a 400.
import { Errors, GatewayError } from '../errors.js';
import { isRecord, text, type Json } from '../json.js';
import type { Client, HeaderList } from '../wire/http.js';
import { anthropicError, type MessagesRequest } from '../wire/messages.js';
import { SseTranslator } from '../wire/sse-translator.js';

/** A content block as chat content parts (text and images), or null for blocks that become their own turns. */
function partOf(block: Json, at: string): Json | null {
  if (block.type === 'text') return { type: 'text', text: text(block.text) };
  if (block.type === 'image') {
    const source = isRecord(block.source) ? block.source : {};
    if (source.type === 'base64') return { type: 'image_url', image_url: { url: `data:${text(source.media_type)};base64,${text(source.data)}` } };
    if (source.type === 'url') return { type: 'image_url', image_url: { url: text(source.url) } };
    throw new GatewayError(Errors.invalidRequest, `${at}.source: images are taken as base64 or url sources.`, at);
  }
  if (block.type === 'thinking' || block.type === 'redacted_thinking') return null; // a previous answer's reasoning: not sent back on chat routes
  throw new GatewayError(Errors.invalidRequest, `${at}: content blocks of type '${text(block.type).slice(0, 64)}' are not supported by this gateway (text, image, tool_use and tool_result are).`, at);
}

/** Text of a tool result's content (a string, or text blocks). */
function resultText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.filter(isRecord).map((b) => (b.type === 'text' ? text(b.text) : '')).join('\n');
}

/** The Messages request as a chat-completions body (usage always asked for on streams). */
export function messagesToChat(req: MessagesRequest): Buffer {
  const messages: Json[] = [];
  if (req.system !== undefined && req.system !== null) {
    const system = typeof req.system === 'string' ? req.system : req.system.filter(isRecord).map((b) => text(b.text)).join('\n');
    if (system) messages.push({ role: 'system', content: system });
  }
  req.messages.forEach((m, i) => {
    if (typeof m.content === 'string') { messages.push({ role: m.role, content: m.content }); return; }
    const parts: Json[] = [];
    const calls: Json[] = [];
    m.content.forEach((b, j) => {
      const at = `messages[${i}].content[${j}]`;
      if (b.type === 'tool_use') {
        calls.push({ id: text(b.id), type: 'function', function: { name: text(b.name), arguments: JSON.stringify(isRecord(b.input) ? b.input : {}) } });
      } else if (b.type === 'tool_result') {
        // A tool result is a turn of its own in chat, answering the call by its id.
        messages.push({ role: 'tool', tool_call_id: text(b.tool_use_id), content: b.is_error === true ? `Error: ${resultText(b.content)}` : resultText(b.content) });
      } else {
        const part = partOf(b, at);
        if (part) parts.push(part);
      }
    });
    if (m.role === 'assistant') {
      const content = parts.map((p) => text(p.text)).join('');
      if (content || calls.length) messages.push({ role: 'assistant', content: content || null, ...(calls.length ? { tool_calls: calls } : {}) });
    } else if (parts.length) {
      messages.push({ role: 'user', content: parts.every((p) => p.type === 'text') ? parts.map((p) => text(p.text)).join('\n') : parts });
    }
  });
  const chat: Json = { model: req.model, messages, max_tokens: req.max_tokens };
  if (typeof req.temperature === 'number') chat.temperature = req.temperature;
  if (typeof req.top_p === 'number') chat.top_p = req.top_p;
  if (req.stop_sequences?.length) chat.stop = req.stop_sequences;
  if (typeof req.metadata?.user_id === 'string') chat.user = req.metadata.user_id;
  if (req.tools?.length) {
    chat.tools = req.tools.map((t, i) => {
      if (t.type !== undefined && t.type !== 'custom' && t.input_schema === undefined) {
        throw new GatewayError(Errors.invalidRequest, `tools[${i}]: server tools ('${text(t.type).slice(0, 64)}') are not supported by this gateway; define a client tool with an input_schema.`, `tools[${i}]`);
      }
      return { type: 'function', function: { name: t.name, ...(typeof t.description === 'string' ? { description: t.description } : {}), parameters: isRecord(t.input_schema) ? t.input_schema : { type: 'object' } } };
    });
  }
  const choice = req.tool_choice;
  if (choice) {
    chat.tool_choice = choice.type === 'any' ? 'required' : choice.type === 'tool' ? { type: 'function', function: { name: choice.name ?? '' } } : choice.type;
    if (choice.disable_parallel_tool_use === true) chat.parallel_tool_calls = false;
  }
  if (req.provider !== undefined) chat.provider = req.provider;
  if (req.stream) { chat.stream = true; chat.stream_options = { include_usage: true }; }
  return Buffer.from(JSON.stringify(chat));
}

const STOP_REASONS: Record<string, string> = { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use', function_call: 'tool_use', content_filter: 'refusal' };

/** Chat usage as Anthropic's: input excludes what the cache served (cache_read_input_tokens). */
function usageOf(u: unknown): Json {
  const usage = isRecord(u) ? u : {};
  const prompt = Number(usage.prompt_tokens ?? 0);
  const details = isRecord(usage.prompt_tokens_details) ? usage.prompt_tokens_details : {};
  const cached = Number(details.cached_tokens ?? 0);
  const written = Number(details.cache_write_tokens ?? 0);
  return { input_tokens: Math.max(0, prompt - cached - written), output_tokens: Number(usage.completion_tokens ?? 0), cache_creation_input_tokens: written, cache_read_input_tokens: cached };
}

/** Tool arguments as the object Anthropic's tool_use carries (arguments that are not an object become one holding them). */
function inputOf(args: unknown): Json {
  try {
    const v: unknown = JSON.parse(typeof args === 'string' && args ? args : '{}');
    return isRecord(v) ? v : { value: v };
  } catch {
    return { arguments: args };
  }
}

/**
 * A translator around the client: chat.completion in, Anthropic message out; chat chunks in,
 * Anthropic stream events out (message_start, a content block per text run and per tool
 * call with its deltas, message_delta with the stop reason and usage, message_stop). The
 * gateway's figures stay in the headers, the `gateway` member and the SSE comment.
 */
export class MessagesBridge extends SseTranslator {
  private readonly id: string;
  private started = false;
  /** The open content block: its index and kind, and each chat tool call's block index. */
  private block = -1;
  private blockKind: 'text' | 'tool' | null = null;
  private readonly toolBlocks = new Map<number, number>();
  private stopReason: string | null = null;

  constructor(inner: Client, private readonly model: string) {
    super(inner);
    this.id = `msg_${inner.requestId.slice(4)}`;
  }

  send(status: number, contentType: string, body: Uint8Array | string, headers: HeaderList | null): void {
    const chat = this.chatAnswer(body, headers);
    if (!chat) return;
    if (status !== 200) {
      const e = isRecord(chat.error) ? chat.error : {};
      this.inner.send(status, 'application/json', JSON.stringify(anthropicError(status, text(e.message) || 'error', text(e.code), e)), headers);
      return;
    }
    const choice = Array.isArray(chat.choices) && isRecord(chat.choices[0]) ? chat.choices[0] : {};
    const message = isRecord(choice.message) ? choice.message : {};
    const content: Json[] = [];
    if (typeof message.content === 'string' && message.content) content.push({ type: 'text', text: message.content });
    for (const call of Array.isArray(message.tool_calls) ? message.tool_calls.filter(isRecord) : []) {
      const fn = isRecord(call.function) ? call.function : {};
      content.push({ type: 'tool_use', id: text(call.id), name: text(fn.name), input: inputOf(fn.arguments) });
    }
    const out = { id: this.id, type: 'message', role: 'assistant', model: this.model, content, stop_reason: STOP_REASONS[text(choice.finish_reason)] ?? 'end_turn',
      stop_sequence: null, usage: usageOf(chat.usage), gateway: chat.gateway };
    this.inner.send(200, 'application/json', JSON.stringify(out), headers);
  }

  private event(type: string, data: Json): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  }

  private closeBlock(): string {
    if (this.block < 0 || this.blockKind === null) return '';
    this.blockKind = null;
    return this.event('content_block_stop', { index: this.block });
  }

  protected translate(data: string): string {
    let out = '';
    if (!this.started) {
      this.started = true;
      out += this.event('message_start', { message: { id: this.id, type: 'message', role: 'assistant', model: this.model, content: [], stop_reason: null, stop_sequence: null,
        usage: { input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 } } });
    }
    if (data === '[DONE]') return `${out}${this.closeBlock()}${this.event('message_stop', {})}`;
    let chunk: unknown;
    try { chunk = JSON.parse(data); } catch { return out; }
    if (!isRecord(chunk)) return out;
    if (isRecord(chunk.error)) {
      const e = chunk.error;
      return `${out}${this.event('error', { error: anthropicError(500, text(e.message) || 'upstream error', text(e.code)).error })}`;
    }
    const choice = Array.isArray(chunk.choices) && isRecord(chunk.choices[0]) ? chunk.choices[0] : null;
    const delta = choice && isRecord(choice.delta) ? choice.delta : null;
    if (delta && typeof delta.content === 'string' && delta.content) {
      if (this.blockKind !== 'text') {
        out += this.closeBlock();
        this.block++;
        this.blockKind = 'text';
        out += this.event('content_block_start', { index: this.block, content_block: { type: 'text', text: '' } });
      }
      out += this.event('content_block_delta', { index: this.block, delta: { type: 'text_delta', text: delta.content } });
    }
    for (const tc of delta && Array.isArray(delta.tool_calls) ? delta.tool_calls.filter(isRecord) : []) {
      const at = typeof tc.index === 'number' ? tc.index : this.toolBlocks.size;
      const fn = isRecord(tc.function) ? tc.function : {};
      if (!this.toolBlocks.has(at)) {
        out += this.closeBlock();
        this.block++;
        this.blockKind = 'tool';
        this.toolBlocks.set(at, this.block);
        out += this.event('content_block_start', { index: this.block, content_block: { type: 'tool_use', id: text(tc.id) || `toolu_${at}`, name: text(fn.name), input: {} } });
      }
      if (typeof fn.arguments === 'string' && fn.arguments) out += this.event('content_block_delta', { index: this.toolBlocks.get(at)!, delta: { type: 'input_json_delta', partial_json: fn.arguments } });
    }
    if (choice && typeof choice.finish_reason === 'string') this.stopReason = STOP_REASONS[choice.finish_reason] ?? 'end_turn';
    if (chunk.usage) {
      // The usage chunk is the chat stream's last: the stop reason and the whole message's usage (and the figures) go with it.
      out += this.closeBlock();
      out += this.event('message_delta', { delta: { stop_reason: this.stopReason ?? 'end_turn', stop_sequence: null }, usage: usageOf(chunk.usage), ...(chunk.gateway !== undefined ? { gateway: chunk.gateway } : {}) });
    }
    return out;
  }
}
