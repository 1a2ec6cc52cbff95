// The legacy completions request (OpenAI's /v1/completions): a prompt, not messages. Known
// fields are checked; the rest is carried through, as for chat.
import { z } from 'zod';
import { ModelName } from './chat.js';

/** OpenAI's default output cap on the legacy endpoint, when a request sets none. */
export const LEGACY_DEFAULT_MAX_TOKENS = 16;

const TokenId = z.number().int().nonnegative().max(1_000_000);

export const CompletionsRequestSchema = z.looseObject({
  model: ModelName,
  prompt: z.union([
    z.string(),
    z.array(z.string()).min(1, 'prompt must not be an empty list').max(2048, 'at most 2048 prompts'),
    z.array(TokenId).min(1, 'prompt must not be an empty list'),
    z.array(z.array(TokenId).min(1)).min(1, 'prompt must not be an empty list').max(2048, 'at most 2048 prompts'),
  ], { error: 'expected a string, an array of strings, an array of token ids or an array of token arrays' }),
  max_tokens: z.number().int().nonnegative().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  n: z.number().int().min(1).max(128).nullish(),
  best_of: z.number().int().min(1).max(20).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  echo: z.boolean().nullish(),
  logprobs: z.number().int().min(0).max(5).nullish(),
  suffix: z.string().nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
  /** Sluice's own: pin a provider (also the x-gateway-provider header); never sent upstream. */
  provider: z.string().min(1).max(64).optional(),
});
export type CompletionsRequest = z.infer<typeof CompletionsRequestSchema>;

/** The prompts a request sends (a string or one token array is one prompt). */
export function promptCount(prompt: CompletionsRequest['prompt']): number {
  return typeof prompt === 'string' || typeof prompt[0] === 'number' ? 1 : prompt.length;
}
