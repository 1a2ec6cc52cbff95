// Google's Gemini API (AI Studio, an API key) and Vertex AI (an OAuth access token from a
// service account) behind the OpenAI chat-completions surface: both take the same
// generateContent request and answer alike, so one adapter serves both and differs only in
// its paths and its credentials. Streams are streamGenerateContent as SSE, each event a
// partial GenerateContentResponse, translated into OpenAI chunks as it arrives.
import { randomUUID } from 'node:crypto';
import { createHash } from 'node:crypto';
import type { Dispatcher, Pool } from 'undici';
import { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import { isRecord, type Json } from '../json.js';
import { sentCap } from '../wire/chat.js';
import { dataOf } from '../wire/sse.js';
import { embeddingInputs, embeddingsBody } from '../wire/embeddings.js';
import { Relay, dispatchWhen, openPool, type HttpUpstreamOptions } from './http-relay.js';
import type { ChatCall, ChatRequest, Provider, ResponseSink, UpstreamHandle } from './provider.js';
import { SseTranslatingSink, completionBody, type Choice, type TokenUsage, type ToolCallOut } from './translator.js';
import { ContextCaches, createCache, splitHead } from './gemini-cache.js';
import { callId, chatTurns, jsonFormat, stopList, toolChoiceOf, toolsOf, type Block } from './turns.js';

/** How a Gemini-format upstream is reached: its model paths and its credentials. */
export interface GeminiAccess {
  /** The path of a model's method (`generateContent`, `streamGenerateContent?alt=sse`). */
  path(model: string, method: string): string;
  /** Where context caches are created, and a model's full resource name there. */
  readonly cachePath: string;
  cacheModel(model: string): string;
  /** The auth header, now when it can be had without waiting (API key, fresh token), else a promise. */
  auth(): Record<string, string> | Promise<Record<string, string>>;
}

export interface GeminiOptions extends HttpUpstreamOptions {
  kind: 'gemini' | 'vertex';
  access: GeminiAccess;
  /** Vertex's location (none for AI Studio, or Vertex's `global`). */
  region?: string | null;
  /** Explicit context caching (gemini-cache.ts) for stable heads of at least this many bytes; null: off. */
  contextCacheMinBytes: number | null;
}

const MIME_BY_EXT: Record<string, string> = { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp', heic: 'image/heic', pdf: 'application/pdf' };

function partOf(b: Block): Json {
  switch (b.type) {
    case 'text': return { text: b.text };
    case 'image': {
      if (b.data !== null) return { inlineData: { mimeType: b.mime, data: b.data } };
      const ext = /\.([a-z0-9]+)(?:[?#]|$)/i.exec(b.url ?? '')?.[1]?.toLowerCase() ?? '';
      return { fileData: { mimeType: MIME_BY_EXT[ext] ?? 'image/jpeg', fileUri: b.url } };
    }
    case 'tool_call': {
      // The thought signature the call came with goes back with it: Gemini 3 refuses a history whose calls lost theirs.
      const part: Json = { functionCall: { name: b.name, args: isRecord(b.input) ? b.input : {} } };
      if (b.signature) part.thoughtSignature = b.signature;
      return part;
    }
    case 'tool_result': {
      // functionResponse.response is an object: a JSON object result goes as is, anything else under `content`.
      let response: Json = { content: b.text };
      try { const v = JSON.parse(b.text) as unknown; if (isRecord(v)) response = v; } catch { /* plain text */ }
      return { functionResponse: { name: b.name, response } };
    }
  }
}

/** The chat-completions request as a generateContent request (the model is in the path). */
export function toGenerateContentRequest(request: ChatRequest, maxTokens: number | null): Json {
  const { system, turns } = chatTurns(request);
  const body: Json = { contents: turns.map((t) => ({ role: t.role === 'assistant' ? 'model' : 'user', parts: t.blocks.map(partOf) })) };
  if (system.length) body.systemInstruction = { parts: [{ text: system.join('\n\n') }] };
  const tools = toolsOf(request);
  if (tools.length) {
    // parametersJsonSchema takes JSON Schema as OpenAI tools carry it (`parameters` takes only an OpenAPI subset).
    body.tools = [{ functionDeclarations: tools.map((t) => ({ name: t.name, ...(t.description ? { description: t.description } : {}), parametersJsonSchema: t.parameters })) }];
    const choice = toolChoiceOf(request);
    if (choice) {
      body.toolConfig = { functionCallingConfig: choice.mode === 'tool' ? { mode: 'ANY', allowedFunctionNames: [choice.name] }
        : { mode: choice.mode === 'required' ? 'ANY' : choice.mode === 'none' ? 'NONE' : 'AUTO' } };
    }
  }
  const config: Json = {};
  if (maxTokens !== null) config.maxOutputTokens = maxTokens;
  if (typeof request.temperature === 'number') config.temperature = request.temperature;
  if (typeof request.top_p === 'number') config.topP = request.top_p;
  if (typeof request.n === 'number' && request.n > 1) config.candidateCount = request.n;
  if (typeof request.seed === 'number') config.seed = request.seed;
  if (typeof request.presence_penalty === 'number') config.presencePenalty = request.presence_penalty;
  if (typeof request.frequency_penalty === 'number') config.frequencyPenalty = request.frequency_penalty;
  const stop = stopList(request);
  if (stop?.length) config.stopSequences = stop;
  const format = jsonFormat(request);
  if (format) {
    config.responseMimeType = 'application/json';
    if (format.schema) config.responseJsonSchema = format.schema;
  }
  if (Object.keys(config).length) body.generationConfig = config;
  return body;
}

const BLOCKED = new Set(['SAFETY', 'RECITATION', 'BLOCKLIST', 'PROHIBITED_CONTENT', 'SPII', 'IMAGE_SAFETY', 'LANGUAGE']);

function finishOf(reason: string | undefined, calledTools: boolean): string {
  if (!reason) return calledTools ? 'tool_calls' : 'stop';
  if (reason === 'MAX_TOKENS') return 'length';
  if (BLOCKED.has(reason)) return 'content_filter';
  return calledTools ? 'tool_calls' : 'stop';
}

const UsageSchema = z.looseObject({
  promptTokenCount: z.number().int().nonnegative().optional(),
  candidatesTokenCount: z.number().int().nonnegative().optional(),
  cachedContentTokenCount: z.number().int().nonnegative().optional(),
  thoughtsTokenCount: z.number().int().nonnegative().optional(),
});
type GeminiUsage = z.infer<typeof UsageSchema>;

// Read leniently: a part or a field that does not fit is skipped (`catch`), never the whole event.
const PartSchema = z.looseObject({
  text: z.string().optional().catch(undefined),
  thought: z.boolean().optional().catch(undefined),
  thoughtSignature: z.string().optional().catch(undefined),
  functionCall: z.looseObject({ name: z.string(), args: z.unknown().optional(), id: z.string().optional() }).optional().catch(undefined),
});

const CandidateSchema = z.looseObject({
  index: z.number().int().nonnegative().optional().catch(undefined),
  content: z.looseObject({ parts: z.array(PartSchema).optional().catch(undefined) }).optional().catch(undefined),
  finishReason: z.string().optional().catch(undefined),
});

const ResponseSchema = z.looseObject({
  candidates: z.array(CandidateSchema).optional(),
  promptFeedback: z.looseObject({ blockReason: z.string().optional() }).optional().catch(undefined),
  // usage that cannot be read is no usage: the gateway estimates instead of billing nothing
  usageMetadata: UsageSchema.optional().catch(undefined),
  responseId: z.string().optional().catch(undefined),
  modelVersion: z.string().optional().catch(undefined),
});
type GeminiResponse = z.infer<typeof ResponseSchema>;

/**
 * Gemini's prompt count includes its cached tokens; its candidates count excludes the thinking,
 * which is billed as output. `wroteCache`: this request created the cache it read.
 */
function tokens(u: GeminiUsage | undefined, wroteCache = false): TokenUsage | null {
  // a cached count over the whole prompt is usage no answer can have
  if (!u || u.promptTokenCount === undefined || (u.cachedContentTokenCount ?? 0) > u.promptTokenCount) return null;
  const cached = u?.cachedContentTokenCount ?? 0;
  const thoughts = u?.thoughtsTokenCount ?? 0;
  return { input: Math.max(0, (u?.promptTokenCount ?? 0) - cached), output: (u?.candidatesTokenCount ?? 0) + thoughts,
    cacheRead: wroteCache ? 0 : cached, cacheWrite: wroteCache ? cached : 0,
    ...(thoughts ? { reasoning: thoughts } : {}) };
}

/** The status of Google's error (`code`, else its `status` name) as an answer would have had it. */
function googleStatus(error: Json): number {
  if (typeof error.code === 'number' && error.code >= 400 && error.code < 600) return error.code;
  const byName: Record<string, number> = { RESOURCE_EXHAUSTED: 429, UNAVAILABLE: 503, DEADLINE_EXCEEDED: 504, INVALID_ARGUMENT: 400, FAILED_PRECONDITION: 400, PERMISSION_DENIED: 401, UNAUTHENTICATED: 401, NOT_FOUND: 404 };
  return byName[String(error.status)] ?? 502;
}

function blockedPrompt(reason: string): GatewayError {
  return new GatewayError({ status: 400, type: 'invalid_request_error', code: 'content_filter' },
    `The provider's safety filter blocked the prompt (${reason}).`, 'messages');
}

/** Receives generateContent's JSON or its SSE stream and hands the gateway OpenAI's format. */
export class GeminiTranslator extends SseTranslatingSink {
  private usage: GeminiUsage | undefined;
  /** Candidates whose role chunk went out, and those whose finish did. */
  private readonly opened = new Set<number>();
  private readonly finished = new Set<number>();
  /** Per candidate: its tool calls so far (their OpenAI indexes). */
  private readonly calls = new Map<number, number>();
  /** This request created the context cache it read: its cached tokens are a write (billed at `cache_write`). */
  wroteCache = false;
  /** Set when the request names a context cache: called if Gemini says the cache is gone. */
  onCacheGone: (() => void) | null = null;

  /** `choices`: how many the request asked for (a candidate index outside them is read by its position). */
  constructor(sink: ResponseSink, model: string, upstream: string, private readonly choices = 1) {
    super(sink, model, 'text/event-stream', upstream);
    this.id = `chatcmpl-${randomUUID()}`; // until the answer's responseId arrives
  }

  /**
   * Google refuses a bad API key with a 400 (API_KEY_INVALID) and a service account without
   * the role with a 403: both are the operator's credentials, not the caller's request.
   */
  protected override errorStatus(status: number, body: Buffer): number {
    const text = body.length < 65_536 ? body.toString('utf8') : '';
    if (this.onCacheGone && /CachedContent/i.test(text)) { this.onCacheGone(); return 503; }
    if (status === 403 || (status === 400 && /API_KEY_INVALID|API key not valid/.test(text))) return 401;
    return status;
  }

  protected override finish(): string {
    const out = this.lastEvent();
    if (this.terminal) return out;
    // Every candidate that began must have finished: a stream cut short is an error, never a silent [DONE].
    if (!this.opened.size || [...this.opened].some((i) => !this.finished.has(i))) {
      return out + this.streamError(502, `The ${this.opened.size ? 'stream ended before the model finished' : 'stream ended before the model answered'}.`, 'upstream_error');
    }
    return out + this.usageAndDone(tokens(this.usage, this.wroteCache));
  }

  protected complete(raw: Buffer): Json {
    const answer = ResponseSchema.parse(JSON.parse(raw.toString('utf8')));
    const candidates = answer.candidates ?? [];
    const block = answer.promptFeedback?.blockReason;
    if (!candidates.length && block) throw blockedPrompt(block);
    if (!candidates.length) throw new GatewayError(Errors.upstreamBadAnswer, `${this.model}: the answer has no candidates.`);
    if (answer.modelVersion) this.model = answer.modelVersion;
    if (answer.responseId) this.id = `chatcmpl-${answer.responseId}`;
    // each candidate in its choice's place (an index outside those asked for, or taken: by its position)
    const choices: Choice[] = [];
    for (const [i, c] of candidates.entries()) {
      const { text, calls } = this.read(c);
      const at = this.indexOf(c.index, i);
      choices[choices[at] === undefined ? at : choices.length] = { text, toolCalls: calls, finish: finishOf(c.finishReason, calls.length > 0) };
    }
    return completionBody({ id: this.id, created: this.created, model: this.model, choices: [...choices].map((c) => c ?? { text: '', toolCalls: [], finish: 'stop' }), usage: tokens(answer.usageMetadata, this.wroteCache) });
  }

  /** A candidate's text (thoughts left out) and tool calls. */
  private read(c: z.infer<typeof CandidateSchema>): { text: string; calls: ToolCallOut[] } {
    let text = '';
    const calls: ToolCallOut[] = [];
    for (const part of c.content?.parts ?? []) {
      if (part.thought) continue;
      if (part.text !== undefined) text += part.text;
      if (part.functionCall) {
        calls.push({ id: callId(part.functionCall.id ?? `call_${randomUUID().replaceAll('-', '').slice(0, 24)}`, part.thoughtSignature), name: part.functionCall.name, arguments: JSON.stringify(part.functionCall.args ?? {}) });
      }
    }
    return { text, calls };
  }

  /** A candidate's choice index: Gemini's, when it is one the request asked for, else its position. */
  private indexOf(index: number | undefined, position: number): number {
    return index !== undefined && index < this.choices ? index : position;
  }

  /** One SSE event (a partial GenerateContentResponse) → OpenAI chunk frames. */
  protected event(raw: string): string {
    if (this.terminal) return '';
    const data = dataOf(raw);
    if (data === null) return '';
    let parsed: GeminiResponse;
    try {
      const value = JSON.parse(data) as unknown;
      if (isRecord(value) && isRecord(value.error)) { // an error in the stream
        const e = value.error;
        const status = googleStatus(e);
        return this.streamError(status, typeof e.message === 'string' ? e.message : 'Gemini stream error', status === 429 ? 'rate_limit_error' : 'upstream_error',
          typeof e.status === 'string' ? e.status : null);
      }
      parsed = ResponseSchema.parse(value);
    } catch {
      return '';
    }
    if (parsed.usageMetadata) this.usage = parsed.usageMetadata;
    if (parsed.responseId && !this.opened.size) this.id = `chatcmpl-${parsed.responseId}`;
    if (parsed.modelVersion && !this.opened.size) this.model = parsed.modelVersion;
    const block = parsed.promptFeedback?.blockReason;
    if (block && !parsed.candidates?.length) {
      const err = blockedPrompt(block);
      return this.streamError(err.status, err.message, err.type, err.code);
    }
    let out = '';
    for (const [i, c] of (parsed.candidates ?? []).entries()) {
      const index = this.indexOf(c.index, i);
      if (this.finished.has(index)) continue; // nothing after a candidate's finish is its answer
      if (!this.opened.has(index)) { this.opened.add(index); out += this.chunk({ role: 'assistant', content: '' }, null, index); }
      const { text, calls } = this.read(c);
      if (text) out += this.chunk({ content: text }, null, index);
      for (const call of calls) {
        const n = this.calls.get(index) ?? 0;
        this.calls.set(index, n + 1);
        out += this.chunk({ tool_calls: [{ index: n, id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } }] }, null, index);
      }
      if (c.finishReason && !this.finished.has(index)) {
        this.finished.add(index);
        out += this.chunk({}, finishOf(c.finishReason, (this.calls.get(index) ?? 0) > 0), index);
      }
    }
    // Every candidate finished and the usage came with it: the answer is complete, whether or not the upstream closes now.
    if (parsed.usageMetadata && this.opened.size >= this.choices && [...this.opened].every((i) => this.finished.has(i))) {
      out += this.usageAndDone(tokens(this.usage, this.wroteCache));
    }
    return out;
  }
}

export class GeminiProvider implements Provider {
  readonly kind: 'gemini' | 'vertex';
  readonly name: string;
  readonly region: string | null;
  private readonly pool: Pool;
  private readonly label: string;
  private readonly caches: ContextCaches | null;

  constructor(private readonly opts: GeminiOptions) {
    this.name = opts.name;
    this.kind = opts.kind;
    this.region = opts.region ?? null;
    this.label = opts.kind === 'vertex' ? 'Vertex AI' : 'Gemini';
    this.pool = openPool(opts).pool;
    this.caches = opts.contextCacheMinBytes === null ? null : new ContextCaches(opts.contextCacheMinBytes);
  }

  keepsStateFor(bodyBytes: number): boolean {
    return this.opts.contextCacheMinBytes !== null && bodyBytes >= this.opts.contextCacheMinBytes;
  }

  chat(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    if (call.api === 'embeddings') return this.embed(call, sink);
    let request: Json;
    try {
      request = toGenerateContentRequest(call.request, sentCap(call.request));
    } catch (err) {
      const relay = new Relay(sink);
      queueMicrotask(() => sink.onError(err instanceof GatewayError ? err : new GatewayError(Errors.invalidRequest, `The request could not be translated for ${this.label}.`)));
      return relay;
    }
    const translator = new GeminiTranslator(sink, call.upstreamModel, this.label, typeof call.request.n === 'number' ? call.request.n : 1);
    const relay = new Relay(translator);
    translator.upstreamCall = relay;
    const path = this.opts.access.path(call.upstreamModel, call.stream ? 'streamGenerateContent?alt=sse' : 'generateContent');
    const options = (auth: Record<string, string>, body: Json): Dispatcher.DispatchOptions => ({ path, method: 'POST', body: JSON.stringify(body),
      headers: { ...this.headersWith(auth) }, headersTimeout: this.opts.headersTimeoutMs, bodyTimeout: this.opts.bodyTimeoutMs, blocking: true });
    let auth: Record<string, string> | Promise<Record<string, string>>;
    try { auth = this.opts.access.auth(); } catch (err) { auth = Promise.reject(err); }

    // The stable head goes by a context cache when one is live, or when this request creates one.
    // The key is the model, the workspace (in the prompt-cache key) and the whole head as it
    // would be sent: two requests share a cache only when their heads are the same to the byte.
    const split = this.caches && call.promptCacheKey ? splitHead(request) : null;
    const headJson = split ? JSON.stringify(split.head) : '';
    const key = split && headJson.length >= this.caches!.minHeadBytes
      ? `${call.upstreamModel}\n${call.promptCacheKey}\n${createHash('sha256').update(headJson).digest('base64')}` : null;
    const plan = key ? this.caches!.plan(key, headJson.length) : null;
    if (plan && plan !== 'create') {
      request = { ...split!.rest, cachedContent: plan.use };
      // Gone upstream before its time (deleted, expired early): forgotten, and this answer's error is one a retry gets past.
      translator.onCacheGone = () => this.caches!.forget(key!);
    }
    if (plan === 'create') {
      const created = Promise.resolve(auth).then((headers) => createCache(this.pool, this.opts.access.cachePath, this.headersWith(headers), this.opts.access.cacheModel(call.upstreamModel), split!.head)
        .then((made) => {
          this.caches!.created(key!, made.name, made.expiresAt);
          translator.wroteCache = true;
          return options(headers, { ...split!.rest, cachedContent: made.name });
        }, () => {
          this.caches!.failed(key!);
          return options(headers, request);
        }));
      dispatchWhen(this.pool, created, relay, sink, (err) => this.authFailed(err));
    } else if (auth instanceof Promise) {
      dispatchWhen(this.pool, auth.then((headers) => options(headers, request)), relay, sink, (err) => this.authFailed(err));
    } else {
      this.pool.dispatch(options(auth, request), relay);
    }
    return relay;
  }

  /**
   * Embeddings: AI Studio's batchEmbedContents (one request per input; it counts no tokens, so
   * the gateway counts the input) or Vertex's predict (an instance per input, each with its
   * token count); the vectors go back as OpenAI's embeddings object. Text inputs only.
   */
  private embed(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    const req = call.params;
    const inputs = embeddingInputs(req.input);
    const relay = new Relay(new EmbeddingAnswer(sink, call.upstreamModel, req.encoding_format === 'base64', this.label));
    if (inputs.some((i) => typeof i !== 'string')) {
      queueMicrotask(() => sink.onError(new GatewayError(Errors.invalidRequest, `${this.label} embeds text: token-id inputs are not supported on this route.`, 'input')));
      return relay;
    }
    const dims = typeof req.dimensions === 'number' ? req.dimensions : null;
    const vertex = this.kind === 'vertex';
    const body = vertex
      ? { instances: inputs.map((content) => ({ content })), ...(dims ? { parameters: { outputDimensionality: dims } } : {}) }
      : { requests: inputs.map((text) => ({ model: `models/${call.upstreamModel}`, content: { parts: [{ text }] }, ...(dims ? { outputDimensionality: dims } : {}) })) };
    const options = (auth: Record<string, string>): Dispatcher.DispatchOptions => ({ path: this.opts.access.path(call.upstreamModel, vertex ? 'predict' : 'batchEmbedContents'),
      method: 'POST', body: JSON.stringify(body), headers: this.headersWith(auth), headersTimeout: this.opts.headersTimeoutMs, bodyTimeout: this.opts.bodyTimeoutMs, blocking: true });
    let auth: Record<string, string> | Promise<Record<string, string>>;
    try { auth = this.opts.access.auth(); } catch (err) { auth = Promise.reject(err); }
    if (auth instanceof Promise) dispatchWhen(this.pool, auth.then(options), relay, sink, (err) => this.authFailed(err));
    else this.pool.dispatch(options(auth), relay);
    return relay;
  }

  private headersWith(auth: Record<string, string>): Record<string, string> {
    return { 'content-type': 'application/json', ...this.opts.headers, ...auth };
  }

  private authFailed(err: unknown): GatewayError {
    return new GatewayError(Errors.upstreamAuth, `${this.label} (${this.name}): no access token could be had (${err instanceof Error ? err.message : String(err)}). The operator must fix its credentials.`);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** AI Studio: `{base}/models/{model}:{method}`, the key in `x-goog-api-key`. */
export function geminiAccess(baseUrl: string, apiKey: string | undefined): GeminiAccess {
  const base = new URL(baseUrl).pathname.replace(/\/+$/, '');
  const header: Record<string, string> = apiKey ? { 'x-goog-api-key': apiKey } : {};
  return { path: (model, method) => `${base}/models/${encodeURIComponent(model)}:${method}`, auth: () => header,
    cachePath: `${base}/cachedContents`, cacheModel: (model) => `models/${model}` };
}

const GeminiEmbeddingsSchema = z.object({ embeddings: z.array(z.object({ values: z.array(z.number()) })) });
const VertexPredictionsSchema = z.object({ predictions: z.array(z.object({ embeddings: z.object({ values: z.array(z.number()), statistics: z.object({ token_count: z.number().int().nonnegative() }).partial().optional() }) })) });

/** Google's embeddings answer (either API's) in, OpenAI's out; an error answer passes as it came (the gateway reads Google's envelope). */
class EmbeddingAnswer implements ResponseSink {
  private status = 0;
  private readonly parts: Buffer[] = [];

  constructor(private readonly sink: ResponseSink, private readonly model: string, private readonly base64: boolean, private readonly label: string) {}

  onStart(status: number, contentType: string, retryAfterMs?: number | null): void {
    this.status = status;
    if (status !== 200) this.sink.onStart(status, contentType, retryAfterMs);
  }

  onData(chunk: Buffer): boolean {
    if (this.status !== 200) return this.sink.onData(chunk);
    this.parts.push(chunk);
    return true;
  }

  onEnd(): void {
    if (this.status !== 200) { this.sink.onEnd(); return; }
    let raw: unknown;
    try { raw = JSON.parse(Buffer.concat(this.parts).toString('utf8')); } catch { raw = null; }
    const studio = GeminiEmbeddingsSchema.safeParse(raw);
    const vertex = studio.success ? null : VertexPredictionsSchema.safeParse(raw);
    if (!studio.success && !vertex?.success) {
      this.sink.onError(new GatewayError(Errors.upstreamBadAnswer, `${this.label} answered embeddings that could not be read.`));
      return;
    }
    const vectors = studio.success ? studio.data.embeddings.map((e) => e.values) : vertex!.data!.predictions.map((p) => p.embeddings.values);
    // Vertex counts each instance's tokens; AI Studio counts none (then the gateway counts the input).
    const counted = vertex?.success ? vertex.data.predictions.reduce((n, p) => n + (p.embeddings.statistics?.token_count ?? 0), 0) : null;
    this.sink.onStart(200, 'application/json');
    this.sink.onData(embeddingsBody(this.model, vectors, counted ? counted : null, this.base64));
    this.sink.onEnd();
  }

  onError(err: GatewayError): void {
    this.sink.onError(err);
  }
}

