// Anthropic's Messages API request on the wire (POST /v1/messages, /v1/messages/count_tokens):
// its zod schema (known fields checked and named the way Anthropic names them; the rest
// carried through) and the error envelope Anthropic clients read.
import { z } from 'zod';
import { ModelName } from './chat.js';

const Block = z.looseObject({ type: z.string().min(1).max(64) });
const Content = z.union([z.string(), z.array(Block)]);

export const MessagesRequestSchema = z.looseObject({
  model: ModelName,
  max_tokens: z.number().int().min(1),
  messages: z.array(z.looseObject({ role: z.enum(['user', 'assistant']), content: z.union([z.string(), z.array(Block).min(1, 'a message needs at least one content block')]) })).min(1, 'at least one message is required'),
  system: Content.nullish(),
  stream: z.boolean().nullish(),
  temperature: z.number().min(0).max(1).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  stop_sequences: z.array(z.string()).max(16).nullish(),
  tools: z.array(z.looseObject({ name: z.string().min(1).max(128) })).nullish(),
  tool_choice: z.looseObject({ type: z.enum(['auto', 'any', 'tool', 'none']), name: z.string().optional() }).nullish(),
  metadata: z.looseObject({ user_id: z.string().max(256).nullish() }).nullish(),
  /** Sluice's own: pin a provider (also the x-gateway-provider header); never sent upstream. */
  provider: z.string().min(1).max(64).optional(),
});
export type MessagesRequest = z.infer<typeof MessagesRequestSchema>;

/** count_tokens takes the same body without max_tokens. */
export const CountTokensRequestSchema = MessagesRequestSchema.extend({ max_tokens: z.number().int().min(1).optional() });

/** Anthropic's error types, by HTTP status (what its SDKs read). */
function anthropicErrorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 402 || status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 413) return 'request_too_large';
  if (status === 429) return 'rate_limit_error';
  if (status === 503 || status === 529) return 'overloaded_error';
  if (status >= 500) return 'api_error';
  return 'invalid_request_error';
}

/**
 * An error in Anthropic's envelope. The gateway's own code goes along (`code`) as an extra
 * member, and so do the other members of its OpenAI error object but `type` and `param`
 * (a limit's `kind` and `retry_after_seconds`, an upstream's `innererror`).
 */
export function anthropicError(status: number, message: string, code: string, openai: Readonly<Record<string, unknown>> = {}): { type: 'error'; error: { type: string; message: string; code: string } } {
  const { type: _type, param: _param, ...rest } = openai;
  return { type: 'error', error: { ...rest, type: anthropicErrorType(status), message, code } };
}
