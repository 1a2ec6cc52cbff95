// POST /v1/responses. OpenAI-kind routes get the caller's bytes as they are (the bridge
// passes writes through). For other routes the Responses request becomes a chat request
// (same routing, limits, credits, ledger, failover), and the chat answer becomes a Response
// object, or Responses stream events, on the way out: the bridge is an Exchange whose
// writes translate; the gateway's figures stay in the headers, the `gateway` object and
// the final SSE comment.
import { Errors, GatewayError } from '../errors.js';
import { isRecord, text, type Json } from '../json.js';
import type { Client, HeaderList } from '../wire/http.js';
import { SseTranslator } from '../wire/sse-translator.js';
import { parseBody, parseJson } from '../wire/body.js';
import { ResponsesRequestSchema, type ResponsesRequest } from '../wire/responses.js';


function contentOf(content: unknown): unknown {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.filter(isRecord).map((p) => {
    if (p.type === 'input_text' || p.type === 'output_text' || p.type === 'text') return { type: 'text', text: text(p.text) };
    if (p.type === 'input_image') return { type: 'image_url', image_url: { url: text(p.image_url) } };
    return { type: 'text', text: '' };
  });
}

export function readResponsesRequest(raw: Buffer): ResponsesRequest {
  return parseBody(ResponsesRequestSchema, parseJson(raw));
}


/**
 * The Responses request as a chat body: the previous response's conversation (its turns and
 * answer, stored by the bridge), then the instructions (which, as on OpenAI, are not carried
 * over from the previous response), then the input. `turns`: the input as chat turns, which
 * a stored response keeps.
 */
export function toChatBody(req: ResponsesRequest, previous: readonly Json[] = []): { body: Buffer; turns: Json[] } {
  const turns: Json[] = [];
  if (typeof req.input === 'string') turns.push({ role: 'user', content: req.input });
  else {
    for (const item of req.input) {
      if (item.type === 'function_call_output') turns.push({ role: 'tool', tool_call_id: text(item.call_id), content: text(item.output) });
      else if (item.type === 'function_call') {
        turns.push({ role: 'assistant', content: null, tool_calls: [{ id: text(item.call_id), type: 'function', function: { name: text(item.name), arguments: item.arguments === undefined ? '{}' : text(item.arguments) } }] });
      } else if (item.role) turns.push({ role: item.role, content: contentOf(item.content) });
      else throw new GatewayError(Errors.invalidRequest, `Input items of type '${text(item.type).slice(0, 64)}' are not supported by this gateway.`, 'input');
    }
  }
  const messages: Json[] = req.instructions ? [{ role: 'system', content: req.instructions }, ...previous, ...turns] : [...previous, ...turns];
  const chat: Json = { model: req.model, messages };
  if (req.max_output_tokens) chat.max_tokens = req.max_output_tokens;
  if (typeof req.temperature === 'number') chat.temperature = req.temperature;
  if (typeof req.top_p === 'number') chat.top_p = req.top_p;
  if (req.tools?.length) {
    chat.tools = req.tools.filter((t) => t.type === 'function').map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.parameters } }));
  }
  // tool_choice: the same words, or a function by name (`{type: 'function', name}` in the Responses API)
  const choice = req.tool_choice;
  if (choice === 'auto' || choice === 'required' || choice === 'none') chat.tool_choice = choice;
  else if (isRecord(choice) && choice.type === 'function' && typeof choice.name === 'string') chat.tool_choice = { type: 'function', function: { name: choice.name } };
  // Structured output: `text.format` is chat's response_format, flattened
  const format = isRecord(req.text) && isRecord(req.text.format) ? req.text.format : null;
  if (format?.type === 'json_object') chat.response_format = { type: 'json_object' };
  else if (format?.type === 'json_schema') {
    chat.response_format = { type: 'json_schema', json_schema: { name: typeof format.name === 'string' ? format.name : 'response', schema: isRecord(format.schema) ? format.schema : { type: 'object' },
      ...(typeof format.strict === 'boolean' ? { strict: format.strict } : {}) } };
  }
  if (req.stream) { chat.stream = true; chat.stream_options = { include_usage: true }; }
  return { body: Buffer.from(JSON.stringify(chat)), turns };
}

function usageOf(u: unknown) {
  const usage = isRecord(u) ? u : {};
  const input = Number(usage.prompt_tokens ?? 0);
  const output = Number(usage.completion_tokens ?? 0);
  const details = isRecord(usage.prompt_tokens_details) ? usage.prompt_tokens_details : {};
  return { input_tokens: input, input_tokens_details: { cached_tokens: Number(details.cached_tokens ?? 0) },
    output_tokens: output, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: input + output };
}

/**
 * A translator around the client: the chat path answers into it as into any client, and
 * it turns a chat.completion into a Response object and chat chunks into Responses
 * stream events on their way out. Passthrough (a route that speaks the Responses API
 * itself) hands the bytes on untouched.
 */
/** The chat fields a bridged request's errors may name, as the caller's Responses request calls them. */
const RESPONSES_FIELD: Record<string, string> = { messages: 'input', max_tokens: 'max_output_tokens', max_completion_tokens: 'max_output_tokens', response_format: 'text.format' };

export class ResponsesBridge extends SseTranslator {
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly id: string;
  private readonly msgId: string;
  private started = false;
  private text = '';
  /** Function calls streamed so far, by their chat tool_calls index: each its own output item after the message. */
  private readonly calls: Array<{ id: string; call_id: string; name: string; arguments: string }> = [];
  private usage: unknown = null;
  /** The gateway's figures, from the final chat chunk: the completed event's response carries them. */
  private gateway: unknown = undefined;
  private seq = 0;
  /**
   * A completed answer: its Response object (without the gateway's figures) and the assistant's
   * chat turn (to store it). A JSON answer, or a stream's response.completed, goes once what
   * this returns resolves (the record is committed, or lost to a failed commit).
   */
  onComplete: ((response: Json, assistant: Json) => Promise<unknown> | void) | null = null;

  /** `meta`: members every Response object of this request carries (previous_response_id, store, instructions). */
  constructor(inner: Client, private readonly model: string, private readonly meta: Json = {}) {
    super(inner);
    this.id = `resp_${inner.requestId.slice(4)}`;
    this.msgId = `msg_${inner.requestId.slice(4)}`;
  }

  private responseObject(status: string, output: Json[], usage: unknown, extra: Json = {}): Json {
    return { id: this.id, object: 'response', created_at: this.created, status, model: this.model, output,
      parallel_tool_calls: true, tool_choice: 'auto', tools: [], usage: usage === null ? null : usageOf(usage), ...this.meta, ...extra };
  }

  /** A bridged request's error names the field of the caller's request, not of the chat body it was bridged to. */
  override sendError(error: unknown, headers?: HeaderList | null): void {
    const field = !this.passthrough && error instanceof GatewayError && error.param !== null ? RESPONSES_FIELD[error.param] : undefined;
    if (field && error instanceof GatewayError) {
      const renamed = new GatewayError({ status: error.status, type: error.type, code: error.code }, error.message, field);
      renamed.headers = error.headers;
      renamed.extra = error.extra;
      error = renamed;
    }
    super.sendError(error, headers);
  }

  send(status: number, contentType: string, body: Uint8Array | string, headers: HeaderList | null): void {
    if (status !== 200 || this.passthrough) { this.inner.send(status, contentType, body, headers); return; }
    const chat = this.chatAnswer(body, headers);
    if (!chat) return;
    const choice = Array.isArray(chat.choices) && isRecord(chat.choices[0]) ? chat.choices[0] : {};
    const message = isRecord(choice.message) ? choice.message : {};
    const output: Json[] = [];
    if (typeof message.content === 'string' && message.content) {
      output.push({ type: 'message', id: this.msgId, status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: message.content, annotations: [] }] });
    }
    for (const call of Array.isArray(message.tool_calls) ? message.tool_calls : []) {
      if (!isRecord(call) || !isRecord(call.function)) continue;
      output.push({ type: 'function_call', id: `fc_${text(call.id)}`, call_id: call.id, name: call.function.name, arguments: call.function.arguments, status: 'completed' });
    }
    const response = this.responseObject('completed', output, chat.usage);
    const kept = this.onComplete?.(response, assistantTurn(typeof message.content === 'string' ? message.content : '', Array.isArray(message.tool_calls) ? message.tool_calls.filter(isRecord) : []));
    const answer = JSON.stringify({ ...response, gateway: chat.gateway });
    if (kept) void kept.then(() => this.inner.send(200, 'application/json', answer, headers));
    else this.inner.send(200, 'application/json', answer, headers);
  }

  private event(type: string, data: Json): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: this.seq++, ...data })}\n\n`;
  }

  /** Chat SSE payloads in, Responses events out. */
  protected translate(data: string): string {
    let out = '';
    if (!this.started) {
      this.started = true;
      out += this.event('response.created', { response: this.responseObject('in_progress', [], null) });
      out += this.event('response.output_item.added', { output_index: 0, item: { type: 'message', id: this.msgId, status: 'in_progress', role: 'assistant', content: [] } });
      out += this.event('response.content_part.added', { item_id: this.msgId, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
    }
    if (data === '[DONE]') {
      const part = { type: 'output_text', text: this.text, annotations: [] };
      const item = { type: 'message', id: this.msgId, status: 'completed', role: 'assistant', content: [part] };
      out += this.event('response.output_text.done', { item_id: this.msgId, output_index: 0, content_index: 0, text: this.text });
      out += this.event('response.content_part.done', { item_id: this.msgId, output_index: 0, content_index: 0, part });
      out += this.event('response.output_item.done', { output_index: 0, item });
      const output: Json[] = [item];
      for (const [i, call] of this.calls.entries()) {
        if (!call) continue;
        const done = { type: 'function_call', ...call, status: 'completed' };
        out += this.event('response.function_call_arguments.done', { item_id: call.id, output_index: i + 1, arguments: call.arguments });
        out += this.event('response.output_item.done', { output_index: i + 1, item: done });
        output.push(done);
      }
      const response = this.responseObject('completed', output, this.usage);
      // (response.completed, and the stream's end, go once the record is committed: SseTranslator.hold)
      const kept = this.onComplete?.(response, assistantTurn(this.text, this.calls.filter(Boolean).map((c) => ({ id: c.call_id, type: 'function', function: { name: c.name, arguments: c.arguments } }))));
      if (kept) this.hold = kept;
      out += this.event('response.completed', { response: this.gateway === undefined ? response : { ...response, gateway: this.gateway } });
      return out;
    }
    let parsed: unknown;
    try { parsed = JSON.parse(data); } catch { return out; }
    if (!isRecord(parsed)) return out;
    if (isRecord(parsed.error)) return out + this.event('error', { message: text(parsed.error.message) || 'upstream error', code: parsed.error.code ?? null });
    if (parsed.usage) this.usage = parsed.usage;
    if (parsed.gateway !== undefined) this.gateway = parsed.gateway;
    const choice = Array.isArray(parsed.choices) && isRecord(parsed.choices[0]) ? parsed.choices[0] : null;
    const delta = choice && isRecord(choice.delta) ? choice.delta : null;
    if (delta && typeof delta.content === 'string' && delta.content) {
      this.text += delta.content;
      out += this.event('response.output_text.delta', { item_id: this.msgId, output_index: 0, content_index: 0, delta: delta.content });
    }
    for (const tc of delta && Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
      if (!isRecord(tc)) continue;
      const at = typeof tc.index === 'number' && tc.index >= 0 && tc.index < 128 ? tc.index : this.calls.length;
      const fn = isRecord(tc.function) ? tc.function : {};
      let call = this.calls[at];
      if (!call) {
        // A call's first delta carries its id and name: a new output item (after the message, which is item 0).
        const callId = text(tc.id) || `call_${at}`;
        call = { id: `fc_${callId}`, call_id: callId, name: text(fn.name), arguments: '' };
        this.calls[at] = call;
        out += this.event('response.output_item.added', { output_index: at + 1, item: { type: 'function_call', ...call, status: 'in_progress' } });
      }
      if (typeof fn.arguments === 'string' && fn.arguments) {
        call.arguments += fn.arguments;
        out += this.event('response.function_call_arguments.delta', { item_id: call.id, output_index: at + 1, delta: fn.arguments });
      }
    }
    return out;
  }
}

/** The answer as the chat turn a continuation sends back: its text, and its tool calls. */
function assistantTurn(content: string, calls: Json[]): Json {
  return calls.length ? { role: 'assistant', content: content || null, tool_calls: calls } : { role: 'assistant', content };
}

