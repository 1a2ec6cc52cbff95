// The exact cache's key: a hash of what determines the answer. Key order and whitespace do
// not matter; fields that only change delivery (stream, stream_options, user, metadata, …)
// are left out, so a streamed and a non-streamed ask of the same question share an entry.
import { sha256Text as sha256 } from '../digest.js';
import type { ChatRequest } from '../wire/chat.js';
import { text as asText } from '../json.js';

/** Fields that do not change what the model answers. */
const DELIVERY = new Set(['stream', 'stream_options', 'user', 'metadata', 'store', 'prompt_cache_key', 'safety_identifier', 'service_tier']);

/** JSON with object keys sorted at every level; the input is already valid JSON data. */
export function canonicalJson(value: unknown, skip?: ReadonlySet<string>): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i ? ',' : '') + canonicalJson(value[i]);
    return `${out}]`;
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined || (skip && skip.has(k))) continue;
    out += `${first ? '' : ','}${JSON.stringify(k)}:${canonicalJson(v)}`;
    first = false;
  }
  return `${out}}`;
}


/**
 * null when the value is nested too deeply to walk (JSON.parse accepts nesting that would
 * overflow the stack here): such a request is simply not cached or prompt-cache keyed.
 */
function orNull<T>(walk: () => T): T | null {
  try {
    return walk();
  } catch (err) {
    if (err instanceof RangeError) return null;
    throw err;
  }
}

/** The request's cache key (the workspace scopes it separately); null: not cacheable (see orNull). */
export function requestHash(request: ChatRequest, api = 'chat'): string | null {
  return orNull(() => sha256(api === 'chat' ? canonicalJson(request, DELIVERY) : `${api}\n${canonicalJson(request, DELIVERY)}`));
}

/** A sampled request gives a different answer each time; only these are cached unless opted in. */
export function isDeterministic(request: ChatRequest): boolean {
  return request.temperature === 0;
}

/** The final user turn's text and a hash of everything else (the semantic cache's context). */
export function splitLastTurn(request: ChatRequest): { text: string; context: string } | null {
  const messages = request.messages;
  const last = messages[messages.length - 1];
  if (!last || last.role !== 'user') return null;
  const text = typeof last.content === 'string' ? last.content
    : Array.isArray(last.content) && last.content.every((p) => typeof p === 'object' && p !== null && (p as { type?: unknown }).type === 'text')
      ? last.content.map((p) => asText((p as { text?: unknown }).text)).join('\n') : null;
  if (text === null) return null; // images and files are not compared by meaning
  const rest = { ...request, messages: messages.slice(0, -1) };
  const context = orNull(() => sha256(canonicalJson(rest, DELIVERY)));
  return context === null ? null : { text, context };
}

/** The stable head of a prompt (system and developer messages, tools): what a provider's prompt cache keys on; null as requestHash. */
export function prefixHash(workspace: string, request: ChatRequest): string | null {
  const head: unknown[] = [workspace, request.model, request.tools ?? null];
  for (const m of request.messages) {
    if (m.role !== 'system' && m.role !== 'developer') break;
    head.push(m.content);
  }
  return orNull(() => sha256(canonicalJson(head)).slice(0, 32));
}
