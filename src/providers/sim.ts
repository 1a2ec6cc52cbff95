// The sim provider: an in-process, deterministic model so that `npm start` with no keys
// serves every endpoint. Same prompt → same answer. Realistic shape: time to first token,
// a steady token rate, OpenAI's exact chunk format, and usage with prompt tokens counted
// by the real tokenizer in the worker pool.
import { sha256 } from '../digest.js';
import type { EncodingName } from '../../native/tokenizer.js';

import type { Api, ChatCall, Provider, ResponseSink, UpstreamHandle } from './provider.js';
import { sentCap } from '../wire/chat.js';
import { LEGACY_DEFAULT_MAX_TOKENS } from '../wire/completions.js';
import { embeddingInputs, embeddingsBody, normalise, type EmbeddingInput } from '../wire/embeddings.js';
import { MODERATION_CATEGORIES, type ModerationCategory } from '../wire/moderations.js';

/** Counts a prompt's tokens (the gateway's worker pool, injected: providers do not reach up into workers). */
export interface PromptCounter {
  countPrompt(encoding: EncodingName, body: Buffer, api?: Api): Promise<number>;
}
import { judgeReply, pRight, reply, solve } from './sim-tasks.js';

export interface SimOptions {
  ttftMs: number;
  tokensPerSecond: number;
  defaultMaxTokens: number;
  /** Each served model's skill, 0–1 (sim-tasks.ts: from its list price); a model not named gets 0.5. */
  skills?: ReadonlyMap<string, number>;
}

const WORDS = ('the a gateway request model token cache route provider answer cost saving stream latency ' +
  'prompt budget ledger key limit user system context window reply fast cheap simple result value data ' +
  'will can should is are was be each every one two three more less first last next then so and or but').split(' ');

function lastUserText(messages: ReadonlyArray<Record<string, unknown>>): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m?.role === 'user' && typeof m.content === 'string') return m.content;
  }
  return '';
}

/**
 * Deterministic answer (the same prompt and model give the same one). A judge's request
 * (gateway/judge.ts's rubric) is graded; a task the sim can solve (sim-tasks.ts) is answered
 * right or wrong by a draw against the model's chance on it; anything else is a short echo
 * of the question, then words drawn from a hash of the prompt — or, for a wrong draw, the
 * words without the echo (off the question).
 */
export function simAnswer(call: ChatCall, maxTokens: number, skill = 0.5): { tokens: string[]; finish: 'stop' | 'length' } {
  const seed = sha256(call.body);
  const prompt = call.params.prompt;
  const text = call.api === 'completions' ? (typeof prompt === 'string' ? prompt : Array.isArray(prompt) && typeof prompt[0] === 'string' ? prompt[0] : '') : lastUserText(call.request.messages);
  const judged = judgeReply(text);
  if (judged !== null) return cut(words(judged), maxTokens);
  const h = sha256(Buffer.concat([Buffer.from(`${call.upstreamModel}\n`), seed]));
  const u = h.readUInt32BE(0) / 4294967296;
  const solved = solve(text);
  if (solved) return cut(words(reply(solved, u < pRight(skill, solved), h.readUInt32BE(4) / 4294967296)), maxTokens);
  const wanted = 12 + (seed[0]! % 40);
  const question = text.split(/\s+/).filter(Boolean).slice(0, 6);
  const tokens = ['Simulated', ' reply'];
  if (question.length && u < pRight(skill, { family: 'chat', difficulty: Math.min(1, text.length / 600) })) tokens.push(' to', ...question.map((w) => ` ${w}`));
  tokens.push(':');
  for (let i = 0; tokens.length < wanted; i++) tokens.push(` ${WORDS[seed[(i + 1) % seed.length]! % WORDS.length]}`);
  tokens.push('.');
  return cut(tokens, maxTokens);
}

/** A text as stream tokens: words with their leading space. */
function words(text: string): string[] {
  return text.match(/\s*\S+/g) ?? [];
}

function cut(tokens: string[], maxTokens: number): { tokens: string[]; finish: 'stop' | 'length' } {
  return tokens.length > maxTokens ? { tokens: tokens.slice(0, maxTokens), finish: 'length' } : { tokens, finish: 'stop' };
}

class SimCall implements UpstreamHandle {
  private timer: NodeJS.Timeout | null = null;
  private aborted = false;
  private paused = false;
  private next = 0;
  private readonly id: string;
  /** Legacy completions: `text_completion` objects with `text` choices. */
  private readonly legacy: boolean;
  private readonly created = Math.floor(Date.now() / 1000);
  private promptTokens = 0;
  /** Prompt tokens the emulated provider cache served (see SimProvider). */
  cachedTokens = 0;

  constructor(
    private readonly call: ChatCall,
    private readonly sink: ResponseSink,
    private readonly answer: { tokens: string[]; finish: 'stop' | 'length' },
    private readonly opts: SimOptions,
  ) {
    this.legacy = call.api === 'completions';
    this.id = `${this.legacy ? 'cmpl' : 'chatcmpl'}-sim${Math.random().toString(36).slice(2, 12)}`;
  }

  start(promptTokens: Promise<number>, cached: (n: number) => number): void {
    promptTokens.then((n) => {
      this.promptTokens = n;
      this.cachedTokens = cached(n);
      if (!this.aborted) this.timer = setTimeout(() => this.first(), this.opts.ttftMs);
    }, (err: unknown) => {
      void err;
      if (!this.aborted) this.timer = setTimeout(() => this.first(), this.opts.ttftMs);
    });
  }

  private usage() {
    const completion = this.answer.tokens.length;
    return { prompt_tokens: this.promptTokens, completion_tokens: completion, total_tokens: this.promptTokens + completion,
      prompt_tokens_details: { cached_tokens: this.cachedTokens } };
  }

  private first(): void {
    this.timer = null;
    if (this.aborted) return;
    if (!this.call.stream && this.legacy) {
      this.sink.onStart(200, 'application/json');
      this.sink.onData(Buffer.from(JSON.stringify({
        id: this.id, object: 'text_completion', created: this.created, model: this.call.upstreamModel,
        choices: [{ text: this.answer.tokens.join(''), index: 0, logprobs: null, finish_reason: this.answer.finish }], usage: this.usage(),
      })));
      this.sink.onEnd();
      return;
    }
    if (!this.call.stream) {
      this.sink.onStart(200, 'application/json');
      this.sink.onData(Buffer.from(JSON.stringify({
        id: this.id, object: 'chat.completion', created: this.created, model: this.call.upstreamModel,
        choices: [{ index: 0, message: { role: 'assistant', content: this.answer.tokens.join(''), refusal: null },
          logprobs: null, finish_reason: this.answer.finish }],
        usage: this.usage(), system_fingerprint: null,
      })));
      this.sink.onEnd();
      return;
    }
    this.sink.onStart(200, 'text/event-stream');
    if (!this.legacy) this.emit({ role: 'assistant', content: '' }, null);
    this.tick();
  }

  private emit(delta: Record<string, unknown>, finish: string | null): boolean {
    if (this.legacy) {
      return this.sink.onData(Buffer.from(`data: ${JSON.stringify({ id: this.id, object: 'text_completion', created: this.created, model: this.call.upstreamModel,
        choices: [{ text: typeof delta.content === 'string' ? delta.content : '', index: 0, logprobs: null, finish_reason: finish }] })}\n\n`));
    }
    return this.sink.onData(Buffer.from(`data: ${JSON.stringify({
      id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.call.upstreamModel,
      system_fingerprint: null, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    })}\n\n`));
  }

  private tick = (): void => {
    this.timer = null;
    if (this.aborted || this.paused) return;
    if (this.next < this.answer.tokens.length) {
      const ok = this.emit({ content: this.answer.tokens[this.next++] }, null);
      if (!ok) { this.paused = true; return; }
      this.timer = setTimeout(this.tick, 1000 / this.opts.tokensPerSecond);
      return;
    }
    this.emit({}, this.answer.finish);
    // The usage chunk, always: the gateway asks every upstream stream for it (as the OpenAI adapter does).
    this.sink.onData(Buffer.from(`data: ${JSON.stringify({
      id: this.id, object: this.legacy ? 'text_completion' : 'chat.completion.chunk', created: this.created, model: this.call.upstreamModel,
      system_fingerprint: null, choices: [], usage: this.usage(),
    })}\n\n`));
    this.sink.onData(Buffer.from('data: [DONE]\n\n'));
    this.sink.onEnd();
  };

  abort(): void {
    this.aborted = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  resume(): void {
    if (!this.paused || this.aborted) return;
    this.paused = false;
    this.tick();
  }
}

export class SimProvider implements Provider {
  readonly kind = 'sim' as const;
  readonly name = 'sim';

  /**
   * Emulated provider prompt cache, as OpenAI's behaves: a prompt of 1,024+ tokens sent with a
   * `prompt_cache_key` seen before is served from cache up to the previous prompt's length
   * (conversations grow by appending), in 128-token steps. Bounded; oldest keys go first.
   */
  private readonly prefixes = new Map<string, number>();

  constructor(private readonly pool: PromptCounter, private readonly opts: SimOptions) {}

  chat(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    if (call.api === 'embeddings') return this.embed(call, sink);
    if (call.api === 'moderations') return this.moderate(call, sink);
    const max = sentCap(call.params) ?? (call.api === 'completions' ? LEGACY_DEFAULT_MAX_TOKENS : this.opts.defaultMaxTokens);
    const sim = new SimCall(call, sink, simAnswer(call, max, this.opts.skills?.get(call.upstreamModel) ?? 0.5), this.opts);
    const key = call.promptCacheKey;
    sim.start(this.pool.countPrompt(call.encoding, call.body), (tokens) => {
      if (!key) return 0;
      const prev = this.prefixes.get(key) ?? 0;
      this.prefixes.delete(key);
      this.prefixes.set(key, tokens);
      if (this.prefixes.size > 10_000) this.prefixes.delete(this.prefixes.keys().next().value!);
      const cached = Math.min(prev, tokens);
      return cached >= 1024 ? cached - (cached % 128) : 0;
    });
    return sim;
  }

  /** A JSON answer after the time to first token, once the prompt is counted; `body` builds it then (or an error). */
  private later(call: ChatCall, sink: ResponseSink, body: (promptTokens: number) => { status: number; body: Buffer }): UpstreamHandle {
    let timer: NodeJS.Timeout | null = null;
    let aborted = false;
    this.pool.countPrompt(call.encoding, call.body, call.api).catch(() => 0).then((tokens) => {
      if (aborted) return;
      timer = setTimeout(() => {
        timer = null;
        if (aborted) return;
        const answer = body(tokens);
        sink.onStart(answer.status, 'application/json');
        sink.onData(answer.body);
        sink.onEnd();
      }, this.opts.ttftMs);
    }, () => undefined);
    return { abort: () => { aborted = true; if (timer) clearTimeout(timer); }, resume: () => undefined };
  }

  /** Vectors, with the prompt counted as OpenAI counts it. */
  private embed(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    const req = call.params;
    const size = call.dimensions ?? 1536;
    const asked = typeof req.dimensions === 'number' ? req.dimensions : size;
    return this.later(call, sink, (tokens) => {
      if (asked > size) return invalid(`'${call.upstreamModel}' has ${size} dimensions: 'dimensions' may not be more.`, 'dimensions');
      const vectors = embeddingInputs(req.input).map((input) => simVector(call.upstreamModel, input, asked));
      return { status: 200, body: embeddingsBody(call.upstreamModel, vectors, tokens, req.encoding_format === 'base64') };
    });
  }

  /** Verdicts in omni-moderation's shape (no usage: OpenAI's moderations report none). */
  private moderate(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    const input = call.params.input;
    // A list of strings is one result each; a string, or a list of text and image parts, is one.
    const items: Array<{ text: string; image: boolean }> = typeof input === 'string' ? [{ text: input, image: false }]
      : Array.isArray(input) && input.every((x) => typeof x === 'string') ? input.map((text) => ({ text, image: false }))
      : [{ text: (input as Array<{ text?: string }>).map((p) => p.text ?? '').join('\n'), image: (input as Array<{ type: string }>).some((p) => p.type === 'image_url') }];
    const id = `modr-sim${sha256(call.body).toString('hex').slice(0, 24)}`;
    return this.later(call, sink, () => ({ status: 200, body: Buffer.from(JSON.stringify({ id, model: call.upstreamModel, results: items.map(simModeration) })) }));
  }

  async close(): Promise<void> {}
}

function invalid(message: string, param: string): { status: number; body: Buffer } {
  return { status: 400, body: Buffer.from(JSON.stringify({ error: { message, type: 'invalid_request_error', param, code: null } })) };
}

/** Words that make the sim's moderation flag a category (a demo of the shape, not a classifier). */
const FLAGGED: ReadonlyArray<[ModerationCategory, RegExp]> = [
  ['violence', /\b(kill|murder|stab|shoot|attack|bomb)\w*/i],
  ['harassment', /\b(idiot|stupid|loser|worthless)\b/i],
  ['hate', /\b(hate (all|every))\b/i],
  ['self-harm', /\b(suicide|self-harm|hurt myself|kill myself)\b/i],
  ['self-harm/intent', /\b(hurt myself|kill myself)\b/i],
  ['sexual', /\b(explicit sex|porn\w*|nude)\b/i],
  ['illicit', /\b(cook meth|buy cocaine|launder money|pick a lock)\b/i],
];

/** One input's verdict: a matched category scores high, every other one low (from the text's hash). */
function simModeration(item: { text: string; image: boolean }) {
  const h = sha256(Buffer.from(item.text));
  const categories: Record<string, boolean> = {};
  const scores: Record<string, number> = {};
  const applied: Record<string, string[]> = {};
  let i = 0;
  for (const [name, types] of Object.entries(MODERATION_CATEGORIES)) {
    const hit = FLAGGED.some(([c, re]) => c === name && re.test(item.text));
    scores[name] = hit ? 0.9 + (h[i % h.length]! % 90) / 1000 : (h[i % h.length]! % 100) / 100000;
    categories[name] = hit;
    applied[name] = types.filter((t) => t === 'text' || item.image);
    i++;
  }
  return { flagged: Object.values(categories).some(Boolean), categories, category_scores: scores, category_applied_input_types: applied };
}

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
