// The sim provider: an in-process, deterministic model so that `npm start` with no keys
// serves every endpoint. Same prompt → same answer. Realistic shape: time to first token,
// a steady token rate, OpenAI's exact chunk format, and usage with prompt tokens counted
// by the real tokenizer in the worker pool.
import { sha256 } from '../digest.js';
import { crc32, createDeflate } from 'node:zlib';
import { Errors, GatewayError } from '../errors.js';
import type { EncodingName } from '../../native/tokenizer.js';

import type { Api, ChatCall, Provider, ResponseSink, UpstreamHandle } from './provider.js';
import { sentCap } from '../wire/chat.js';
import { LEGACY_DEFAULT_MAX_TOKENS } from '../wire/completions.js';
import { MODERATION_CATEGORIES, type ModerationCategory } from '../wire/moderations.js';
import type { AudioRequest } from '../wire/transcriptions.js';
import { exampleOf, jsonFormat, toolToCall } from './sim-shapes.js';

/** What the sim has the gateway's worker pool do (injected: providers do not reach up into workers). */
export interface PromptCounter {
  /** A prompt's tokens. */
  countPrompt(encoding: EncodingName, body: Buffer, api?: Api): Promise<number>;
  /** An embeddings request's answer body, its prompt counted with `encoding` (sim-vectors.ts). */
  simEmbeddings(encoding: EncodingName, body: Buffer, model: string, dims: number, base64: boolean): Promise<Uint8Array>;
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
export function simAnswer(call: ChatCall, maxTokens: number, skill = 0.5, variant = 0, prompt?: string): { tokens: string[]; finish: 'stop' | 'length' } {
  const seed = variant ? sha256(Buffer.concat([call.body, Buffer.from(`\n${variant}`)])) : sha256(call.body);
  const text = prompt ?? lastUserText(call.request.messages);
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

/** One choice of a sim answer: text pieces, or tool calls (each call's arguments in pieces). */
export interface SimChoice {
  tokens: string[];
  calls: Array<{ id: string; name: string; pieces: string[] }>;
  finish: 'stop' | 'length' | 'tool_calls';
}

/**
 * Every choice the request asks for (`n`), each its own draw. With tools offered (and
 * tool_choice not `none`), and no tool result yet after the last user turn, the answer
 * calls one: the one tool_choice names, else the first, with arguments that fit its schema.
 * With response_format JSON, the text is a JSON value that fits the schema (sim-shapes.ts).
 */
export function simChoices(call: ChatCall, maxTokens: number, skill = 0.5): SimChoice[] {
  const req = call.params;
  const n = typeof req.n === 'number' ? req.n : 1;
  const out: SimChoice[] = [];
  if (call.api === 'completions') {
    // Legacy completions: n answers for each prompt, in prompt order (index = prompt × n + choice), as OpenAI gives them.
    const prompts = typeof req.prompt === 'string' ? [req.prompt] : Array.isArray(req.prompt) && typeof req.prompt[0] === 'number' ? [req.prompt] : Array.isArray(req.prompt) ? req.prompt as unknown[] : [''];
    prompts.forEach((p, i) => {
      for (let j = 0; j < n; j++) {
        const a = simAnswer(call, maxTokens, skill, i * n + j, typeof p === 'string' ? p : '');
        out.push({ tokens: a.tokens, calls: [], finish: a.finish });
      }
    });
    return out;
  }
  for (let i = 0; i < n; i++) {
    const tool = toolToCall(req, call.request.messages);
    if (tool) {
      const args = JSON.stringify(exampleOf(tool.parameters, lastUserText(call.request.messages)));
      out.push({ tokens: [], calls: [{ id: `call_sim${sha256(Buffer.from(`${i}\n${args}`)).toString('hex').slice(0, 16)}`, name: tool.name, pieces: pieces(args) }], finish: 'tool_calls' });
      continue;
    }
    const format = jsonFormat(req.response_format);
    if (format) {
      const json = JSON.stringify(exampleOf(format, lastUserText(call.request.messages)));
      const all = pieces(json);
      // A cut JSON text is what a real model gives at its cap, too (finish_reason says so).
      out.push({ tokens: all.slice(0, maxTokens), calls: [], finish: all.length > maxTokens ? 'length' : 'stop' });
      continue;
    }
    const a = simAnswer(call, maxTokens, skill, i);
    out.push({ tokens: a.tokens, calls: [], finish: a.finish });
  }
  return out;
}

/** A JSON text in stream pieces of a few characters. */
function pieces(text: string): string[] {
  return text.match(/[\s\S]{1,8}/g) ?? [];
}

/** A sim answer paced by a timer: it stops on abort, and under backpressure waits to be resumed. */
abstract class Paced implements UpstreamHandle {
  protected timer: NodeJS.Timeout | null = null;
  protected aborted = false;
  protected paused = false;
  protected abstract readonly tick: () => void;

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

class SimCall extends Paced {
  /** The choice being streamed, and the piece within it. */
  private choice = 0;
  private next = 0;
  private opened = false;
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
    private readonly choices: SimChoice[],
    private readonly opts: SimOptions,
  ) {
    super();
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
    let completion = 0;
    for (const c of this.choices) completion += c.tokens.length + c.calls.reduce((k, t) => k + t.pieces.length + 1, 0);
    return { prompt_tokens: this.promptTokens, completion_tokens: completion, total_tokens: this.promptTokens + completion,
      prompt_tokens_details: { cached_tokens: this.cachedTokens } };
  }

  private first(): void {
    this.timer = null;
    if (this.aborted) return;
    if (!this.call.stream) {
      this.sink.onStart(200, 'application/json');
      const base = { id: this.id, object: this.legacy ? 'text_completion' : 'chat.completion', created: this.created, model: this.call.upstreamModel };
      const choices = this.choices.map((c, index) => (this.legacy
        ? { text: c.tokens.join(''), index, logprobs: null, finish_reason: c.finish }
        : { index, message: { role: 'assistant', content: c.calls.length ? null : c.tokens.join(''), refusal: null,
          ...(c.calls.length ? { tool_calls: c.calls.map((t) => ({ id: t.id, type: 'function', function: { name: t.name, arguments: t.pieces.join('') } })) } : {}) },
        logprobs: null, finish_reason: c.finish }));
      this.sink.onData(Buffer.from(JSON.stringify({ ...base, choices, usage: this.usage(), ...(this.legacy ? {} : { system_fingerprint: null }) })));
      this.sink.onEnd();
      return;
    }
    this.sink.onStart(200, 'text/event-stream');
    this.tick();
  }

  private emit(index: number, delta: Record<string, unknown>, finish: string | null): boolean {
    const choice = this.legacy ? { text: typeof delta.content === 'string' ? delta.content : '', index, logprobs: null, finish_reason: finish } : { index, delta, logprobs: null, finish_reason: finish };
    return this.sink.onData(Buffer.from(`data: ${JSON.stringify({ id: this.id, object: this.legacy ? 'text_completion' : 'chat.completion.chunk', created: this.created,
      model: this.call.upstreamModel, ...(this.legacy ? {} : { system_fingerprint: null }), choices: [choice] })}\n\n`));
  }

  /** One piece per tick: each choice in turn opens (role, or its tool call), streams its pieces, and finishes. */
  protected readonly tick = (): void => {
    this.timer = null;
    if (this.aborted || this.paused) return;
    const c = this.choices[this.choice];
    if (c) {
      let ok = true;
      if (!this.opened) {
        this.opened = true;
        if (!this.legacy) ok = this.emit(this.choice, c.calls.length ? { role: 'assistant', content: null, tool_calls: c.calls.map((t, k) => ({ index: k, id: t.id, type: 'function', function: { name: t.name, arguments: '' } })) } : { role: 'assistant', content: '' }, null);
      } else if (c.calls.length && this.next < c.calls[0]!.pieces.length) {
        ok = this.emit(this.choice, { tool_calls: [{ index: 0, function: { arguments: c.calls[0]!.pieces[this.next++] } }] }, null);
      } else if (!c.calls.length && this.next < c.tokens.length) {
        ok = this.emit(this.choice, { content: c.tokens[this.next++] }, null);
      } else {
        ok = this.emit(this.choice, {}, c.finish);
        this.choice++;
        this.next = 0;
        this.opened = false;
      }
      if (!ok) { this.paused = true; return; }
      this.timer = setTimeout(this.tick, 1000 / this.opts.tokensPerSecond);
      return;
    }
    // The usage chunk, always: the gateway asks every upstream stream for it (as the OpenAI adapter does).
    this.sink.onData(Buffer.from(`data: ${JSON.stringify({
      id: this.id, object: this.legacy ? 'text_completion' : 'chat.completion.chunk', created: this.created, model: this.call.upstreamModel,
      system_fingerprint: null, choices: [], usage: this.usage(),
    })}\n\n`));
    this.sink.onData(Buffer.from('data: [DONE]\n\n'));
    this.sink.onEnd();
  };

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
    if (call.api === 'images') return this.draw(call, sink);
    if (call.api === 'speech') return new SimSpeech(call, sink, this.opts.ttftMs);
    if (call.api === 'transcriptions' || call.api === 'translations') return this.transcribe(call, sink, call.api);
    const max = sentCap(call.params) ?? (call.api === 'completions' ? LEGACY_DEFAULT_MAX_TOKENS : this.opts.defaultMaxTokens);
    const sim = new SimCall(call, sink, simChoices(call, max, this.opts.skills?.get(call.upstreamModel) ?? 0.5), this.opts);
    const key = call.promptCacheKey;
    sim.start(this.pool.countPrompt(call.encoding, call.body, call.api), (tokens) => {
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
  private later(call: ChatCall, sink: ResponseSink, body: (promptTokens: number) => SimAnswer | Promise<SimAnswer>, count = true): UpstreamHandle {
    let timer: NodeJS.Timeout | null = null;
    let aborted = false;
    (count ? this.pool.countPrompt(call.encoding, call.body, call.api).catch(() => 0) : Promise.resolve(0)).then((tokens) => {
      if (aborted) return;
      timer = setTimeout(() => {
        timer = null;
        if (aborted) return;
        Promise.resolve(body(tokens)).then((answer) => {
          if (aborted) return;
          sink.onStart(answer.status, answer.type ?? 'application/json');
          sink.onData(answer.body);
          sink.onEnd();
        }, (err: unknown) => { if (!aborted) sink.onError(err instanceof GatewayError ? err : new GatewayError(Errors.upstreamError, `The sim failed: ${err instanceof Error ? err.message : String(err)}`)); });
      }, this.opts.ttftMs);
    }, () => undefined);
    return { abort: () => { aborted = true; if (timer) clearTimeout(timer); }, resume: () => undefined };
  }

  /** Vectors, with the prompt counted as OpenAI counts it. */
  private embed(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    const req = call.params;
    const size = call.dimensions ?? 1536;
    const asked = typeof req.dimensions === 'number' ? req.dimensions : size;
    return this.later(call, sink, () => {
      if (asked > size) return invalid(`'${call.upstreamModel}' has ${size} dimensions: 'dimensions' may not be more.`, 'dimensions');
      // (counted and made in the pool: sim-vectors.ts)
      return this.pool.simEmbeddings(call.encoding, call.body, call.upstreamModel, asked, req.encoding_format === 'base64')
        .then((bytes) => ({ status: 200, body: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) }));
    }, false);
  }

  /**
   * Images: PNGs of the requested size (a band of colour drawn from the prompt's hash), as
   * base64 or as data: URLs (the sim hosts nothing). No usage, as DALL·E reports none: the
   * gateway bills the catalog's units per image.
   */
  private draw(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    const req = call.params;
    const [w, h] = (typeof req.size === 'string' && req.size !== 'auto' ? req.size : '1024x1024').split('x').map(Number) as [number, number];
    const n = typeof req.n === 'number' ? req.n : 1;
    const prompt = typeof req.prompt === 'string' ? req.prompt : '';
    if (w > 1792 || h > 1792 || w < 16 || h < 16) return this.later(call, sink, () => invalid(`The sim draws from 16x16 to 1792x1792; '${String(req.size)}' is outside that.`, 'size'));
    // Encoded (in libuv's pool) while the time to first token runs.
    const images = Promise.all(Array.from({ length: n }, (_, i) => simPng(w, h, sha256(Buffer.from(`${i}\n${call.upstreamModel}\n${prompt}`)))));
    images.catch(() => undefined);
    return this.later(call, sink, () => images.then((pngs) => ({ status: 200, body: Buffer.from(JSON.stringify({ created: Math.floor(Date.now() / 1000), data: pngs.map((png) => (req.response_format === 'b64_json'
      ? { b64_json: png.toString('base64'), revised_prompt: prompt } : { url: `data:image/png;base64,${png.toString('base64')}`, revised_prompt: prompt })) })) })));
  }

  /**
   * Speech to text: a transcript drawn from the audio's bytes, in the format asked for, with
   * whisper's usage (its length in seconds) where the format has room for it (json, verbose_json).
   */
  private transcribe(call: ChatCall, sink: ResponseSink, api: 'transcriptions' | 'translations'): UpstreamHandle {
    const audio = call.params as unknown as AudioRequest;
    // Heard to its end, as an upstream reads the form before it answers (the audio may still be arriving).
    const heard = (async () => { for await (const _ of audio.upload.read()); })();
    heard.catch(() => undefined);
    return this.later(call, sink, () => heard.then(() => {
      const seconds = audio.secondsEstimate;
      const seed = sha256(Buffer.concat([audio.upload.head(4096), Buffer.from(`${audio.upload.size}`)]));
      const words: string[] = [];
      for (let i = 0; i < 8 + (seed[0]! % 8); i++) words.push(WORDS[seed[(i + 1) % seed.length]! % WORDS.length]!);
      const text = `Simulated ${api === 'translations' ? 'translation' : 'transcript'} of ${audio.file.name || 'audio'}: ${words.join(' ')}.`;
      const stamp = (s: number, sep: string) => `${String(Math.floor(s / 3600)).padStart(2, '0')}:${String(Math.floor(s / 60) % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}${sep}000`;
      const usage = { type: 'duration', seconds };
      // gpt-4o-transcribe streams when asked (whisper-1 ignores `stream`, as OpenAI's does): deltas, then the text with its tokens.
      if (audio.stream && !call.upstreamModel.startsWith('whisper')) {
        const pieces = text.split(/(?<= )/);
        const tokens = { type: 'tokens', input_tokens: seconds * 10, input_token_details: { text_tokens: 0, audio_tokens: seconds * 10 }, output_tokens: pieces.length, total_tokens: seconds * 10 + pieces.length };
        const events = [...pieces.map((delta) => ({ type: 'transcript.text.delta', delta })), { type: 'transcript.text.done', text, usage: tokens }];
        return { status: 200, type: 'text/event-stream', body: Buffer.from(events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('')) };
      }
      switch (audio.fields.response_format ?? 'json') {
        case 'text': return { status: 200, type: 'text/plain; charset=utf-8', body: Buffer.from(`${text}\n`) };
        case 'srt': return { status: 200, type: 'text/plain; charset=utf-8', body: Buffer.from(`1\n${stamp(0, ',')} --> ${stamp(seconds, ',')}\n${text}\n\n`) };
        case 'vtt': return { status: 200, type: 'text/plain; charset=utf-8', body: Buffer.from(`WEBVTT\n\n${stamp(0, '.')} --> ${stamp(seconds, '.')}\n${text}\n\n`) };
        case 'verbose_json': return { status: 200, body: Buffer.from(JSON.stringify({ task: api === 'translations' ? 'translate' : 'transcribe', language: 'english', duration: seconds, text,
          segments: [{ id: 0, seek: 0, start: 0, end: seconds, text, tokens: [], temperature: 0, avg_logprob: -0.2, compression_ratio: 1, no_speech_prob: 0 }], usage })) };
        default: return { status: 200, body: Buffer.from(JSON.stringify({ text, usage })) };
      }
    }), false); // (an audio form is no prompt to count)
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

interface SimAnswer { status: number; body: Buffer; type?: string }

/**
 * Speech: a WAV (or, for `pcm`, the raw 24 kHz 16-bit samples) of a tone whose pitch comes from
 * the input, a second per 15 characters (at most a minute), streamed in 100 ms pieces faster
 * than real time, with backpressure. Every format but pcm is answered as WAV (the sim encodes
 * nothing else), and says so in its content type.
 */
class SimSpeech extends Paced {
  private static readonly RATE = 24_000;
  private at = 0;
  private readonly samples: number;
  private readonly pitch: number;
  private readonly wav: boolean;

  constructor(call: ChatCall, private readonly sink: ResponseSink, ttftMs: number) {
    super();
    const input = typeof call.params.input === 'string' ? call.params.input : '';
    this.samples = Math.round(Math.min(60, Math.max(1, input.length / 15)) * SimSpeech.RATE);
    this.pitch = 220 + (sha256(Buffer.from(input))[0]! % 220);
    this.wav = call.params.response_format !== 'pcm';
    this.timer = setTimeout(() => this.open(), ttftMs);
  }

  private open(): void {
    this.timer = null;
    if (this.aborted) return;
    this.sink.onStart(200, this.wav ? 'audio/wav' : 'audio/pcm');
    if (this.wav) {
      const head = Buffer.alloc(44);
      const bytes = this.samples * 2;
      head.write('RIFF', 0, 'ascii'); head.writeUInt32LE(36 + bytes, 4); head.write('WAVEfmt ', 8, 'ascii');
      head.writeUInt32LE(16, 16); head.writeUInt16LE(1, 20); head.writeUInt16LE(1, 22); // PCM, mono
      head.writeUInt32LE(SimSpeech.RATE, 24); head.writeUInt32LE(SimSpeech.RATE * 2, 28); head.writeUInt16LE(2, 32); head.writeUInt16LE(16, 34);
      head.write('data', 36, 'ascii'); head.writeUInt32LE(bytes, 40);
      if (!this.sink.onData(head)) { this.paused = true; return; }
    }
    this.tick();
  }

  protected readonly tick = (): void => {
    this.timer = null;
    if (this.aborted || this.paused) return;
    if (this.at >= this.samples) { this.sink.onEnd(); return; }
    const n = Math.min(SimSpeech.RATE / 10, this.samples - this.at);
    const piece = Buffer.alloc(n * 2);
    for (let i = 0; i < n; i++) piece.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * this.pitch * (this.at + i)) / SimSpeech.RATE)), i * 2);
    this.at += n;
    if (!this.sink.onData(piece)) { this.paused = true; return; }
    this.timer = setTimeout(this.tick, 20);
  };

}

/**
 * A PNG of `w`×`h`: a band of colour from the seed. Every row is the same, so one row is made
 * and written `h` times into a deflate stream (libuv's pool compresses): no image-sized buffer
 * is built on the event loop.
 */
function simPng(w: number, h: number, seed: Buffer): Promise<Buffer> {
  const row = Buffer.alloc(1 + w * 3);
  for (let x = 0; x < w; x++) {
    const t = x / w;
    row[1 + x * 3] = Math.round(seed[0]! * (1 - t) + seed[3]! * t);
    row[2 + x * 3] = Math.round(seed[1]! * (1 - t) + seed[4]! * t);
    row[3 + x * 3] = Math.round(seed[2]! * (1 - t) + seed[5]! * t);
  }
  const zipped = new Promise<Buffer>((resolve, reject) => {
    const z = createDeflate({ level: 1 });
    const out: Buffer[] = [];
    z.on('data', (c: Buffer) => out.push(c));
    z.on('end', () => resolve(Buffer.concat(out)));
    z.on('error', reject);
    for (let y = 0; y < h; y++) z.write(row);
    z.end();
  });
  return zipped.then((data) => {
    const chunk = (type: string, body: Buffer) => {
      const head = Buffer.alloc(8);
      head.writeUInt32BE(body.length, 0);
      head.write(type, 4, 'ascii');
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])) >>> 0, 0);
      return Buffer.concat([head, body, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(w, 0);
    ihdr.writeUInt32BE(h, 4);
    ihdr[8] = 8; // bit depth
    ihdr[9] = 2; // truecolour RGB
    return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', data), chunk('IEND', Buffer.alloc(0))]);
  });
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
