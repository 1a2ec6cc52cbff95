// The chat-completions request on the wire: its zod schema (known fields checked, errors
// naming the field; unknown fields carried through untouched, as OpenAI adds parameters
// all the time), its type after validation, and what every layer reads from it.
import { z } from 'zod';
import { plainText } from './text.js';

/** The chat-completions body after validation: known fields typed, the rest carried along. */
export interface ChatRequest {
  model: string;
  messages: Array<Record<string, unknown>>;
  stream?: boolean | undefined;
  stream_options?: { include_usage?: boolean | undefined } & Record<string, unknown> | undefined;
  max_tokens?: number | undefined;
  max_completion_tokens?: number | undefined;
  [field: string]: unknown;
}

const ContentPart = z.looseObject({ type: z.string() });
const Message = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(ContentPart), z.null()]).optional(),
  name: z.string().optional(),
});

/**
 * A model name: what catalogs, aliases and upstream ids look like, bounded (it reaches the
 * ledger, the rollups' keys and log lines) and without control characters.
 */
export const ModelName = plainText(z.string().min(1, 'model is required').max(256, 'at most 256 characters'));

export const ChatRequestSchema = z.looseObject({
  model: ModelName,
  messages: z.array(Message).min(1, 'messages must contain at least one message'),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  max_tokens: z.number().int().positive().nullish(),
  max_completion_tokens: z.number().int().positive().nullish(),
  n: z.number().int().min(1).max(128).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  tools: z.array(z.looseObject({ type: z.string() })).nullish(),
  /** Sluice's own: pin a provider (also the x-gateway-provider header); never sent upstream. */
  provider: z.string().min(1).max(64).optional(),
});

/**
 * The output cap a chat request sets, or null: the larger of max_tokens and
 * max_completion_tokens when both are sent (a compatible server may obey either).
 */
export function chatCap(req: { max_tokens?: unknown; max_completion_tokens?: unknown }): number | null {
  const a = typeof req.max_tokens === 'number' ? req.max_tokens : null;
  const b = typeof req.max_completion_tokens === 'number' ? req.max_completion_tokens : null;
  return a === null ? b : b === null ? a : Math.max(a, b);
}

/**
 * The one output cap to send an upstream that reads a single field (Anthropic's max_tokens,
 * the sim): max_completion_tokens, OpenAI's current name, before the legacy max_tokens.
 */
export function sentCap(req: { max_tokens?: unknown; max_completion_tokens?: unknown }): number | null {
  return typeof req.max_completion_tokens === 'number' ? req.max_completion_tokens : typeof req.max_tokens === 'number' ? req.max_tokens : null;
}

/** The text of a message's content (a string, or the `text` of its parts joined by `sep`). */
export function contentText(content: unknown, sep = ''): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let out = '';
  let first = true;
  for (const p of content) {
    const t = typeof p === 'object' && p !== null ? (p as { text?: unknown }).text : undefined;
    out += (first ? '' : sep) + (typeof t === 'string' ? t : '');
    first = false;
  }
  return out;
}
