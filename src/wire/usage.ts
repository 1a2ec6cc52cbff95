// Token usage: the gateway's own shape (what billing and the ledger count), and the
// upstream shapes it is read from (chat completions, the Responses API), validated
// because the upstream is a boundary.
import { z } from 'zod';

export interface Usage {
  /** All prompt tokens billed, those read from and written to a provider cache included. */
  prompt_tokens: number;
  completion_tokens: number;
  /** Prompt tokens read from the provider's cache (billed at `cached_input`). */
  cached_tokens: number;
  /** Prompt tokens written to the provider's cache (Anthropic: billed at `cache_write`). */
  cache_write_tokens?: number;
}

/**
 * Tokens one answer may claim. An upstream's usage is a boundary like any other: a count beyond
 * this (or not a whole number) is unreadable usage, which the gateway estimates instead. The
 * bound keeps every charge an exactly representable number of nano-dollars (1e8 tokens at the
 * dearest list price is a few thousand dollars), so a lying or broken upstream cannot write a
 * ledger row or a balance the next start would refuse.
 */
export const MAX_USAGE_TOKENS = 100_000_000;

const Count = z.number().int().nonnegative().max(MAX_USAGE_TOKENS);

/** The gateway's Usage as stored (cache records). */
export const UsageSchema = z.object({ prompt_tokens: Count, completion_tokens: Count, cached_tokens: Count, cache_write_tokens: Count.optional() });

/** OpenAI chat completions' usage object. */
const ChatUsageSchema = z.object({
  prompt_tokens: Count,
  completion_tokens: Count,
  prompt_tokens_details: z.object({ cached_tokens: Count.optional(), cache_write_tokens: Count.optional() }).nullish(),
});

/** The Responses API's usage object. */
const ResponsesUsageSchema = z.object({
  input_tokens: Count,
  output_tokens: Count,
  input_tokens_details: z.object({ cached_tokens: Count.optional() }).nullish(),
});

/**
 * Anthropic's usage object (a Messages API answer passed through): input_tokens excludes what
 * the cache read and wrote, which come as their own counts.
 */
const AnthropicUsageSchema = z.object({
  input_tokens: Count,
  output_tokens: Count,
  cache_read_input_tokens: Count.nullish(),
  cache_creation_input_tokens: Count.nullish(),
});

/** A transcription's usage when it is billed by the audio's length (whisper-1): seconds, as prompt units. */
const DurationUsageSchema = z.object({ type: z.literal('duration'), seconds: z.number().nonnegative().max(MAX_USAGE_TOKENS) });

/** The embeddings (and moderations) usage object: prompt tokens only. */
const InputUsageSchema = z.object({ prompt_tokens: Count, total_tokens: Count });

/** Upstream usage (chat, Responses or embeddings shape); null when absent or malformed. */
export function readUsage(value: unknown): Usage | null {
  if (typeof value === 'object' && value !== null && (value as { type?: unknown }).type === 'duration') {
    const d = DurationUsageSchema.safeParse(value);
    return d.success ? { prompt_tokens: Math.ceil(d.data.seconds), completion_tokens: 0, cached_tokens: 0 } : null;
  }
  if (typeof value === 'object' && value !== null && ('cache_read_input_tokens' in value || 'cache_creation_input_tokens' in value)) {
    const a = AnthropicUsageSchema.safeParse(value);
    if (!a.success) return null;
    const read = a.data.cache_read_input_tokens ?? 0;
    const written = a.data.cache_creation_input_tokens ?? 0;
    const prompt = a.data.input_tokens + read + written;
    if (prompt > MAX_USAGE_TOKENS) return null;
    return { prompt_tokens: prompt, completion_tokens: a.data.output_tokens, cached_tokens: read, ...(written ? { cache_write_tokens: written } : {}) };
  }
  // The shape the object's own fields name is tried first, where no schema before it in the
  // order below could pass (so the answer is the same): a zod parse that fails builds its
  // error, which cost 3 µs of the ~5.5 µs this took per Responses answer under load (and two
  // such, per embeddings answer).
  if (typeof value === 'object' && value !== null && !('completion_tokens' in value)) {
    const prompt = 'prompt_tokens' in value;
    const input = 'input_tokens' in value;
    if (input && !prompt) return responsesUsage(value);
    if (prompt && !input) return inputUsage(value);
  }
  return chatUsage(value) ?? responsesUsage(value) ?? inputUsage(value);
}

function chatUsage(value: unknown): Usage | null {
  const parsed = ChatUsageSchema.safeParse(value);
  if (!parsed.success) return null;
  const u = parsed.data;
  const written = u.prompt_tokens_details?.cache_write_tokens ?? 0;
  return { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, cached_tokens: u.prompt_tokens_details?.cached_tokens ?? 0, ...(written ? { cache_write_tokens: written } : {}) };
}

function responsesUsage(value: unknown): Usage | null {
  const r = ResponsesUsageSchema.safeParse(value);
  return r.success ? { prompt_tokens: r.data.input_tokens, completion_tokens: r.data.output_tokens, cached_tokens: r.data.input_tokens_details?.cached_tokens ?? 0 } : null;
}

function inputUsage(value: unknown): Usage | null {
  const e = InputUsageSchema.safeParse(value);
  return e.success ? { prompt_tokens: e.data.prompt_tokens, completion_tokens: 0, cached_tokens: 0 } : null;
}

/** Usage in the chat-completions wire shape (what the gateway object and OpenAI-format answers carry). */
export function usageJson(u: Usage | null): string {
  return u ? `{"prompt_tokens":${u.prompt_tokens},"completion_tokens":${u.completion_tokens},"cached_tokens":${u.cached_tokens}}` : 'null';
}
