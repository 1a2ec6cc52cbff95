// The embeddings request and answer on the wire (OpenAI's /v1/embeddings): the request's
// schema, its inputs as texts or token arrays, and the answer body that translating
// adapters and the sim build (`encoding_format: base64` is the little-endian float32 bytes
// of each vector, which is what the openai SDK asks for by default and decodes).
import { z } from 'zod';
import { ModelName } from './chat.js';

/** OpenAI's own bounds: 2,048 inputs per request, token ids within the largest vocabulary. */
export const MAX_EMBEDDING_INPUTS = 2048;
const TokenId = z.number().int().nonnegative().max(1_000_000);
const Text = z.string().min(1, 'an input must not be empty');

export const EmbeddingsRequestSchema = z.looseObject({
  model: ModelName,
  input: z.union([
    Text,
    z.array(Text).min(1, 'input must not be an empty list').max(MAX_EMBEDDING_INPUTS, `at most ${MAX_EMBEDDING_INPUTS} inputs`),
    z.array(TokenId).min(1, 'input must not be an empty list'),
    z.array(z.array(TokenId).min(1, 'a token array must not be empty')).min(1, 'input must not be an empty list').max(MAX_EMBEDDING_INPUTS, `at most ${MAX_EMBEDDING_INPUTS} inputs`),
  ], { error: 'expected a string, an array of strings, an array of token ids or an array of token arrays' }),
  encoding_format: z.enum(['float', 'base64']).nullish(),
  dimensions: z.number().int().min(1).max(65536).nullish(),
  user: z.string().max(256).nullish(),
  /** Sluice's own: pin a provider; never sent upstream. */
  provider: z.string().min(1).max(64).optional(),
});
export type EmbeddingsRequest = z.infer<typeof EmbeddingsRequestSchema>;

/** One input as the upstream reads it: a text, or token ids. */
export type EmbeddingInput = string | readonly number[];

/** The request's inputs as a list (a single string or token array is one input). */
export function embeddingInputs(input: unknown): EmbeddingInput[] {
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input) || input.length === 0) return [];
  if (typeof input[0] === 'number') return [input as number[]];
  return input as EmbeddingInput[];
}

/**
 * OpenAI's embeddings answer for vectors an adapter got some other way (another provider's
 * shape, the sim). `base64`: each vector as little-endian float32 bytes, base64-encoded.
 * `promptTokens` null: the upstream counted none (the gateway counts the input then).
 */
export function embeddingsBody(model: string, vectors: readonly ArrayLike<number>[], promptTokens: number | null, base64: boolean): Buffer {
  let out = '{"object":"list","data":[';
  for (let i = 0; i < vectors.length; i++) {
    const v = vectors[i]!;
    out += `${i ? ',' : ''}{"object":"embedding","index":${i},"embedding":${base64 ? `"${float32Base64(v)}"` : floatList(v)}}`;
  }
  out += `],"model":${JSON.stringify(model)}${promptTokens === null ? '' : `,"usage":{"prompt_tokens":${promptTokens},"total_tokens":${promptTokens}}`}}`;
  return Buffer.from(out);
}

/**
 * A vector as a JSON array, a non-finite number written as 0. JSON.stringify writes a finite
 * number as String() does, and is far faster than joining them one by one: for 2,048 vectors
 * of 1,536 (the most a request may ask; Bedrock's and Gemini's embeddings are gathered here
 * too) 84 ms against 1.24 s, which held the event loop that long.
 */
function floatList(v: ArrayLike<number>): string {
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i])) return JSON.stringify(Array.from(v, (x) => (Number.isFinite(x) ? x : 0)));
  }
  return JSON.stringify(Array.isArray(v) ? v : Array.from(v));
}

function float32Base64(v: ArrayLike<number>): string {
  const f = Float32Array.from(v);
  // Float32Array is in the platform's byte order; every platform node runs on is little-endian, as the format wants.
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString('base64');
}

/** Scales a vector to unit length (OpenAI's embeddings are normalised; a shortened one is re-normalised). */
export function normalise(v: Float64Array | number[]): number[] {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i]! * v[i]!;
  const norm = Math.sqrt(sum) || 1;
  const out = new Array<number>(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i]! / norm;
  return out;
}
