// The narrow, typed message between the main thread and the worker pool.
//
// What crosses the boundary, decided by measurement (node 20, this 2-core box,
// `node dist/bench/tokenize-boundary.js`):
//   tiktoken o200k on the main thread: 40 µs for a 20-token prompt, 1.3 ms for 760 tokens
//   (≈1.7 µs/token) — far too slow for the event loop, so counting always runs in a worker.
//   JSON.parse of a typical 200-byte chat body: 1.2 µs, so the worker can parse it itself.
// So the main thread sends the request body bytes it already holds (a copy into the
// message, no JSON.stringify, no walking of messages on the main thread) and gets back
// one number. See bench/tokenize-boundary.ts for the hop itself.
import type { Classified } from './classify.js';
import type { EncodingName } from '../../native/tokenizer.js';
import type { Api } from '../wire/api.js';

/** The tasks one worker takes at a time (WorkerPool's piscina option; the semantic cache's largest batch of prompts). */
export const TASKS_PER_WORKER = 16;

export interface CountPromptTask {
  op: 'countPrompt';
  encoding: EncodingName;
  /** The request body as received (UTF-8 JSON). */
  body: Uint8Array;
  /** The API the body speaks (chat when absent): an embeddings body's `input` is counted as texts or token ids. */
  api?: Api;
}

export interface CountTextTask {
  op: 'countText';
  encoding: EncodingName;
  text: string;
}

/** The smart router's difficulty score (0–1) and task type of a chat body; see classify.ts. */
export interface ClassifyTask {
  op: 'classify';
  encoding: EncodingName;
  body: Uint8Array;
}

/** Chunk dedupe and compression of a chat body (savings/rewrite.ts). */
export interface RewriteTask {
  op: 'rewrite';
  encoding: EncodingName;
  body: Uint8Array;
  chunkMinChars: number;
  compression: { budgetTokens: number; keepLast: number; staleMaxChars: number } | null;
  /** Also compute the exact cache's key (the request is cacheable). */
  hash: boolean;
}

export interface RewriteReply {
  /** The rewritten body (UTF-8 JSON), or null when nothing changed. */
  body: string | null;
  promptTokens: number;
  savedChunk: number;
  savedCompression: number;
  /** The exact cache's key of the request as received (before the rewrites), when asked: hashed here, off the main thread. */
  hash: string | null;
}

/** A streamed answer's SSE bytes assembled into a chat.completion JSON (null if they are not one). */
export interface AssembleTask {
  op: 'assemble';
  sse: Uint8Array;
}

/** The semantic cache's sentence embedding (512 floats, Universal Sentence Encoder lite). */
export interface EmbedTask {
  op: 'embed';
  text: string;
}

/**
 * Billing without upstream usage: the prompt as sent and the text the upstream generated
 * (a body or SSE bytes as far as they arrived), each counted with the route's tokenizer.
 */
export interface CountAnswerTask {
  op: 'countAnswer';
  encoding: EncodingName;
  /** The request body as sent upstream. */
  body: Uint8Array;
  /** The upstream's answer bytes so far (empty when none arrived). */
  answer: Uint8Array;
  stream: boolean;
  api?: Api;
  /** The most output tokens the upstream could have generated (the request's cap): the count stops there (null: no bound). */
  maxCompletion?: number | null;
}

/** The judge's inputs: the request's last user turn and the answer's text, each bounded. */
export interface JudgeTextsTask {
  op: 'judgeTexts';
  body: Uint8Array;
  answer: Uint8Array;
  stream: boolean;
  maxChars: number;
}

export interface JudgeTexts {
  question: string;
  answer: string;
}

export interface AnswerCount {
  prompt: number;
  completion: number;
  /** False when an answer that is not a stream did not parse as a JSON object (cut short): the gateway refuses it. */
  whole?: false;
}

/** The sim provider's answer to an embeddings request (providers/sim-vectors.ts): the body's bytes, moved back. */
export interface SimEmbeddingsTask {
  op: 'simEmbeddings';
  encoding: EncodingName;
  /** The request body as sent to the sim. */
  body: Uint8Array;
  model: string;
  dims: number;
  base64: boolean;
}

export type WorkerTask = CountPromptTask | CountTextTask | ClassifyTask | RewriteTask | AssembleTask | EmbedTask | CountAnswerTask | JudgeTextsTask | SimEmbeddingsTask;
export type WorkerResult = number | RewriteReply | string | null | Float32Array | Uint8Array | AnswerCount | Classified | JudgeTexts;
