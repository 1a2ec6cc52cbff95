// Prompt token counting the way OpenAI's cookbook does it: per-message overhead plus the
// tokens of every text the model sees (content parts, names, tool calls, tool schemas).
import type { Tokenizer } from '../../native/tokenizer.js';
import { isRecord } from '../json.js';
import type { Api } from '../wire/api.js';
import { speechCharacters } from '../wire/speech.js';

const TOKENS_PER_MESSAGE = 3;
const REPLY_PRIMING = 3;
const IMAGE_TOKENS = 85; // low-detail image tile: a fixed cost, not pixel-accurate

function contentTokens(tok: Tokenizer, content: unknown): number {
  if (typeof content === 'string') return tok.count(content);
  if (!Array.isArray(content)) return 0;
  let n = 0;
  for (const part of content) {
    if (!isRecord(part)) continue;
    if (typeof part.text === 'string') n += tok.count(part.text);
    else if (part.type === 'image_url' || part.type === 'input_image') n += IMAGE_TOKENS;
  }
  return n;
}

/** A Responses API body: `instructions`, and `input` as a string or a list of items. */
function responsesPromptTokens(tok: Tokenizer, request: Record<string, unknown>): number {
  let n = REPLY_PRIMING;
  if (typeof request.instructions === 'string') n += TOKENS_PER_MESSAGE + tok.count(request.instructions);
  const input = request.input;
  if (typeof input === 'string') return n + TOKENS_PER_MESSAGE + tok.count(input);
  if (!Array.isArray(input)) return n;
  for (const item of input) {
    if (!isRecord(item)) continue;
    n += TOKENS_PER_MESSAGE + contentTokens(tok, item.content);
    for (const field of ['output', 'arguments', 'name'] as const) if (typeof item[field] === 'string') n += tok.count(item[field]);
  }
  return n;
}

/** An embeddings or moderations body's `input`: each text's tokens, token ids as they are, parts as in a message. */
function inputTokens(tok: Tokenizer, input: unknown): number {
  if (typeof input === 'string') return tok.count(input);
  if (!Array.isArray(input)) return 0;
  let n = 0;
  for (const item of input) {
    if (typeof item === 'string') n += tok.count(item);
    else if (typeof item === 'number') n++;
    else if (Array.isArray(item)) n += item.length;
    else if (isRecord(item)) n += contentTokens(tok, [item]); // a moderation's text or image part
  }
  return n;
}

/** An Anthropic Messages body: the system prompt, each message's blocks (text, images, tool calls and results), the tools. */
function anthropicPromptTokens(tok: Tokenizer, request: Record<string, unknown>): number {
  let n = REPLY_PRIMING;
  const blocks = (content: unknown): number => {
    if (typeof content === 'string') return tok.count(content);
    if (!Array.isArray(content)) return 0;
    let k = 0;
    for (const b of content) {
      if (!isRecord(b)) continue;
      if (typeof b.text === 'string') k += tok.count(b.text);
      else if (b.type === 'image') k += IMAGE_TOKENS;
      else if (b.type === 'tool_use') k += tok.count(`${typeof b.name === 'string' ? b.name : ''}${JSON.stringify(b.input ?? {})}`);
      else if (b.type === 'tool_result') k += blocks(b.content);
      else if (typeof b.thinking === 'string') k += tok.count(b.thinking);
    }
    return k;
  };
  n += blocks(request.system);
  if (Array.isArray(request.messages)) for (const m of request.messages) if (isRecord(m)) n += TOKENS_PER_MESSAGE + blocks(m.content);
  if (Array.isArray(request.tools) && request.tools.length > 0) n += tok.count(JSON.stringify(request.tools));
  return n;
}

export function countPromptTokens(tok: Tokenizer, request: unknown, api: Api = 'chat'): number {
  if (!isRecord(request)) return 0;
  if (api === 'embeddings' || api === 'moderations') return inputTokens(tok, request.input);
  if (api === 'completions' || api === 'images') return inputTokens(tok, request.prompt);
  if (api === 'speech') return speechCharacters(request.input); // priced per character, not per token
  if (api === 'messages') return anthropicPromptTokens(tok, request);
  if (!Array.isArray(request.messages)) return request.input !== undefined ? responsesPromptTokens(tok, request) : 0;
  let n = REPLY_PRIMING;
  for (const m of request.messages) {
    if (!isRecord(m)) continue;
    n += TOKENS_PER_MESSAGE;
    if (typeof m.role === 'string') n += 1;
    if (typeof m.name === 'string') n += tok.count(m.name);
    n += contentTokens(tok, m.content);
    if (Array.isArray(m.tool_calls)) {
      for (const call of m.tool_calls) {
        if (isRecord(call) && isRecord(call.function)) {
          const f = call.function;
          n += tok.count(`${typeof f.name === 'string' ? f.name : ''}${typeof f.arguments === 'string' ? f.arguments : ''}`);
        }
      }
    }
  }
  if (Array.isArray(request.tools) && request.tools.length > 0) n += tok.count(JSON.stringify(request.tools));
  return n;
}
