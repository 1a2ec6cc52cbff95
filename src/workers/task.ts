// Piscina worker entry: kept tiny. Tokenizers are built once per worker from the WASM
// module the main thread compiled (passed in workerData).
import { workerData } from 'node:worker_threads';
import { loadTokenizers, type EncodingName, type Tokenizer } from '../../native/tokenizer.js';
import { classifyRequest, compileTaskRules, lastUserTurn } from './classify.js';
import { answerText, countBounded, readAnswer } from './answer-text.js';
import { countPromptTokens } from './prompt-text.js';
import type { AnswerCount, WorkerResult, WorkerTask } from './protocol.js';
import { generatesNoText } from '../wire/api.js';
import { isRecord } from '../json.js';
import { assembleStream } from '../savings/replay.js';
import { rewrite } from '../savings/rewrite.js';
import { requestHash } from '../savings/canonical.js';
import type { ChatRequest } from '../wire/chat.js';
import { embed } from '../savings/embed.js';
import { simEmbeddingsBody } from '../providers/sim-vectors.js';
import { move } from 'piscina';

const { wasm, tasks } = workerData as { wasm: WebAssembly.Module; tasks: { types: Record<string, { patterns: string[] }>; fallback: string } };
const taskRules = compileTaskRules(tasks.types, tasks.fallback);
const ready: Promise<Map<EncodingName, Tokenizer>> = loadTokenizers(wasm, ['o200k_base', 'cl100k_base']);
const decoder = new TextDecoder();


export default async function run(task: WorkerTask): Promise<WorkerResult> {
  if (task.op === 'assemble') return assembleStream(decoder.decode(task.sse));
  if (task.op === 'embed') return embed(task.text);
  if (task.op === 'judgeTexts') {
    let request: unknown = null;
    try { request = JSON.parse(decoder.decode(task.body)); } catch { /* no question */ }
    return { question: lastUserTurn(request).slice(0, task.maxChars), answer: answerText(decoder.decode(task.answer), task.stream).slice(0, task.maxChars) };
  }
  const tokenizers = await ready;
  const tok = tokenizers.get(task.encoding) ?? tokenizers.get('o200k_base');
  if (!tok) return 0;
  if (task.op === 'countText') return tok.count(task.text);
  if (task.op === 'countAnswer') {
    let prompt = 0;
    try { prompt = countPromptTokens(tok, JSON.parse(decoder.decode(task.body)), task.api); } catch { /* an unreadable body counts 0 */ }
    // (an embeddings or moderations answer is vectors or verdicts: nothing generated to count)
    if (generatesNoText(task.api)) return { prompt, completion: 0 };
    const read = readAnswer(decoder.decode(task.answer), task.stream);
    const count: AnswerCount = { prompt, completion: countBounded(tok, read.text, task.maxCompletion ?? null) };
    if (!read.whole) count.whole = false;
    return count;
  }
  let request: unknown;
  try {
    request = JSON.parse(decoder.decode(task.body));
  } catch {
    return task.op === 'classify' ? { score: 0, task: taskRules.fallback } : 0;
  }
  if (task.op === 'simEmbeddings') {
    const body = simEmbeddingsBody(task.model, isRecord(request) ? request.input : null, task.dims, countPromptTokens(tok, request, 'embeddings'), task.base64);
    // Moved, not copied, to the main thread: a buffer of its own (a small one may share Node's pool, which must stay here).
    return move(body.byteOffset === 0 && body.byteLength === body.buffer.byteLength ? body : new Uint8Array(body)) as Uint8Array;
  }
  if (task.op === 'rewrite') {
    if (!isRecord(request)) return { body: null, promptTokens: 0, savedChunk: 0, savedCompression: 0, hash: null };
    const r = rewrite(request, task, (req) => countPromptTokens(tok, req));
    return { body: r.request ? JSON.stringify(r.request) : null, promptTokens: r.promptTokens, savedChunk: r.savedChunk, savedCompression: r.savedCompression,
      hash: task.hash ? requestHash(request as ChatRequest) : null };
  }
  return task.op === 'classify' ? classifyRequest(tok, taskRules, request) : countPromptTokens(tok, request, task.api);
}
