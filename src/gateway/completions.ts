// POST /v1/completions on a chat model: the legacy request becomes a chat request with the
// prompt as one user turn (same routing, limits, credits, ledger, failover and savings), and
// the chat answer becomes a `text_completion` object, or its stream chunks, on the way out.
// A completion model (gpt-3.5-turbo-instruct) takes the request as it is (endpoints.ts's
// COMPLETIONS). What a chat model cannot do (echo, logprobs, suffix, best_of, several
// prompts, token ids) is a 400 naming the parameter, never silently dropped.
import { Errors, GatewayError } from '../errors.js';
import { isRecord, type Json } from '../json.js';
import { LEGACY_DEFAULT_MAX_TOKENS, type CompletionsRequest } from '../wire/completions.js';
import { SseTranslator } from '../wire/sse-translator.js';
import type { Client, HeaderList } from '../wire/http.js';

/** Sampling and delivery fields that mean the same in a chat request. */
const CARRIED = ['temperature', 'top_p', 'n', 'stop', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'seed', 'user', 'stream', 'stream_options', 'service_tier', 'metadata'] as const;

/** The legacy request as a chat body, or a 400 for what a chat model cannot do. */
export function completionsToChat(req: CompletionsRequest): Buffer {
  const unsupported = (param: string, why: string) => new GatewayError(Errors.invalidRequest, `'${req.model}' is a chat model, served on /v1/completions through the chat API, which ${why}. Use a completion model (gpt-3.5-turbo-instruct) or /v1/chat/completions.`, param);
  const prompt = req.prompt;
  const text = typeof prompt === 'string' ? prompt : prompt.length === 1 && typeof prompt[0] === 'string' ? prompt[0] : null;
  if (text === null) throw typeof prompt[0] === 'string' ? unsupported('prompt', 'takes one prompt per request') : unsupported('prompt', 'takes text, not token ids');
  if (req.echo) throw unsupported('echo', 'cannot echo the prompt');
  if (req.logprobs !== undefined && req.logprobs !== null) throw unsupported('logprobs', 'gives no legacy logprobs');
  if (typeof req.suffix === 'string' && req.suffix) throw unsupported('suffix', 'cannot insert text');
  if (typeof req.best_of === 'number' && req.best_of > 1) throw unsupported('best_of', 'has no best_of');
  const chat: Json = { model: req.model, messages: [{ role: 'user', content: text }], max_tokens: req.max_tokens ?? LEGACY_DEFAULT_MAX_TOKENS };
  for (const field of CARRIED) if (req[field] !== undefined && req[field] !== null) chat[field] = req[field];
  if (req.provider !== undefined) chat.provider = req.provider;
  return Buffer.from(JSON.stringify(chat));
}

/** A chat choice as a legacy one. */
function legacyChoice(c: unknown, stream: boolean): Json {
  const choice = isRecord(c) ? c : {};
  const message = isRecord(stream ? choice.delta : choice.message) ? (stream ? choice.delta : choice.message) as Json : {};
  return { text: typeof message.content === 'string' ? message.content : '', index: typeof choice.index === 'number' ? choice.index : 0, logprobs: null, finish_reason: choice.finish_reason ?? null };
}

/** Chat's id (`chatcmpl-…`) as a completion's (`cmpl-…`). */
const legacyId = (id: unknown) => (typeof id === 'string' ? id.replace(/^chatcmpl-/, 'cmpl-') : 'cmpl-gateway');

/**
 * A translator around the client: chat.completion in, text_completion out; chat chunks in,
 * text_completion chunks out (the role-only first chunk has no text and is dropped). The
 * gateway's figures pass as they are: its headers, the `gateway` object and the SSE comment.
 */
export class CompletionsBridge extends SseTranslator implements Client {
  constructor(inner: Client) {
    super(inner);
  }

  send(status: number, contentType: string, body: Uint8Array | string, headers: HeaderList | null): void {
    if (status !== 200) { this.inner.send(status, contentType, body, headers); return; }
    const chat = this.chatAnswer(body, headers);
    if (!chat) return;
    const out = { id: legacyId(chat.id), object: 'text_completion', created: chat.created, model: chat.model,
      choices: Array.isArray(chat.choices) ? chat.choices.map((c) => legacyChoice(c, false)) : [], usage: chat.usage ?? null, gateway: chat.gateway };
    this.inner.send(200, 'application/json', JSON.stringify(out), headers);
  }

  protected translate(data: string): string {
    if (data === '[DONE]') return 'data: [DONE]\n\n';
    let chunk: unknown;
    try { chunk = JSON.parse(data); } catch { return ''; }
    if (!isRecord(chunk)) return '';
    if (isRecord(chunk.error)) return `data: ${data}\n\n`; // the gateway's error event, as it is
    const choices = Array.isArray(chunk.choices) ? chunk.choices.map((c) => legacyChoice(c, true)) : [];
    // The role-only opening chunk (no text, no finish) says nothing in the legacy format.
    if (choices.length && choices.every((c) => c.text === '' && c.finish_reason === null) && !chunk.usage) return '';
    return `data: ${JSON.stringify({ id: legacyId(chunk.id), object: 'text_completion', created: chunk.created, model: chunk.model, choices, ...(chunk.usage ? { usage: chunk.usage } : {}), ...(chunk.gateway ? { gateway: chunk.gateway } : {}) })}\n\n`;
  }
}
