// The sim's embeddings, made in the worker pool (workers/task.ts): hashing every word of 2,048
// inputs and writing 2,048 vectors of 1,536 numbers takes a second of CPU or more, which on
// the event loop would hold every other request that long.
import { sha256 } from '../digest.js';
import { embeddingInputs, embeddingsBody, normalise, type EmbeddingInput } from '../wire/embeddings.js';

/**
 * A deterministic embedding with some meaning: each word (or token id) adds ±1 at a few
 * places drawn from its hash with the model's name, so texts that share words are close
 * (a RAG demo on `npm start` finds what it should) and each model has its own space.
 */
export function simVector(model: string, input: EmbeddingInput, dims: number): number[] {
  const v = new Float64Array(dims);
  const features = typeof input === 'string' ? input.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [input] : input.map(String);
  for (const f of features) {
    const h = sha256(Buffer.from(`${model}\u0000${f}`));
    for (let i = 0; i < 4; i++) v[h.readUInt32BE(i * 4) % dims]! += h[16 + i]! & 1 ? 1 : -1;
  }
  return normalise(v);
}

/** The sim's answer to an embeddings request (`input` as the caller sent it): OpenAI's body, with the prompt's tokens as counted. */
export function simEmbeddingsBody(model: string, input: unknown, dims: number, promptTokens: number, base64: boolean): Buffer {
  return embeddingsBody(model, embeddingInputs(input).map((one) => simVector(model, one, dims)), promptTokens, base64);
}
