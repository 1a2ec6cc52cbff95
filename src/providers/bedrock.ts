// AWS Bedrock's Converse and ConverseStream APIs (one request shape across Bedrock's model
// families: Anthropic, Llama, Nova, Mistral, …) behind the OpenAI chat-completions surface.
// Requests are signed with SigV4 (@smithy/signature-v4, the AWS SDK's own signer); a
// stream's binary event-stream frames are cut by their length prefix as bytes arrive and
// decoded (CRCs checked) by @smithy/core's codec, one message at a time, into OpenAI chunks:
// nothing waits for the whole stream. JSON mode is a forced tool, as Converse has no JSON
// switch: the tool's input comes back as the message's content.
import { randomUUID } from 'node:crypto';
import { EventStreamCodec } from '@smithy/core/event-streams';
import { Hash, fromUtf8, toUtf8 } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';
import type { SourceData } from '@smithy/types';
import type { Dispatcher, Pool } from 'undici';
import { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import { isRecord, text as asText, type Json } from '../json.js';
import { sentCap } from '../wire/chat.js';
import { Relay, dispatchWhen, openPool, type HttpUpstreamOptions } from './http-relay.js';
import { embeddingInputs, embeddingsBody } from '../wire/embeddings.js';
import type { ChatCall, ChatRequest, Provider, ResponseSink, UpstreamHandle } from './provider.js';
import { TranslatingSink, completionBody, type TokenUsage, type ToolCallOut } from './translator.js';
import { chatTurns, jsonOutputTool, stopList, toolChoiceOf, toolsOf, type Block, type ToolSpec } from './turns.js';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

export interface BedrockOptions extends HttpUpstreamOptions {
  region: string;
  credentials: AwsCredentials;
  defaultMaxTokens: number;
}

const IMAGE_FORMATS: Record<string, string> = { 'image/png': 'png', 'image/jpeg': 'jpeg', 'image/jpg': 'jpeg', 'image/gif': 'gif', 'image/webp': 'webp' };

function blockOf(b: Block): Json {
  switch (b.type) {
    case 'text': return { text: b.text };
    case 'image': {
      const format = b.mime ? IMAGE_FORMATS[b.mime.toLowerCase()] : undefined;
      if (b.data === null || !format) {
        throw new GatewayError(Errors.invalidRequest, b.data === null
          ? 'Bedrock takes images as data: URLs (base64 PNG, JPEG, GIF or WebP), not links.'
          : `Bedrock does not take ${b.mime} images (PNG, JPEG, GIF or WebP only).`, 'messages');
      }
      return { image: { format, source: { bytes: b.data } } };
    }
    case 'tool_call': return { toolUse: { toolUseId: b.id, name: b.name, input: isRecord(b.input) ? b.input : {} } };
    case 'tool_result': return { toolResult: { toolUseId: b.id, content: [{ text: b.text }] } };
  }
}

/** Families whose Converse takes `cachePoint` blocks (prompt caching); others refuse them. */
function cachesPrompts(modelId: string): boolean {
  return /(^|[.:/])(anthropic|amazon\.nova)/.test(modelId);
}

/**
 * The chat-completions request as a Converse request (the model is in the path).
 * `jsonTool`: the forced tool that carries JSON output, when the request asked for it.
 */
export function toConverseRequest(request: ChatRequest, modelId: string, maxTokens: number, cacheBreakpoints: boolean): { body: Json; jsonTool: string | null } {
  if (typeof request.n === 'number' && request.n > 1) {
    throw new GatewayError(Errors.invalidRequest, 'Bedrock answers one choice per request: n must be 1 on this route.', 'n');
  }
  const { system, turns } = chatTurns(request);
  const cache = cacheBreakpoints && cachesPrompts(modelId);
  const cachePoint = { cachePoint: { type: 'default' } };
  const messages: Array<{ role: string; content: Json[] }> = turns.map((t) => ({ role: t.role, content: t.blocks.map(blockOf) }));
  if (cache && messages.length >= 2) messages[messages.length - 2]!.content.push(cachePoint);
  const body: Json = { messages };
  if (system.length) body.system = cache ? [{ text: system.join('\n\n') }, cachePoint] : [{ text: system.join('\n\n') }];
  const inference: Json = { maxTokens };
  if (typeof request.temperature === 'number') inference.temperature = Math.min(1, request.temperature);
  if (typeof request.top_p === 'number') inference.topP = request.top_p;
  const stop = stopList(request);
  if (stop?.length) inference.stopSequences = stop;
  body.inferenceConfig = inference;

  const specs = toolsOf(request);
  const json = jsonOutputTool(request, specs);
  const toolSpec = (t: ToolSpec): Json => ({ toolSpec: { name: t.name, ...(t.description ? { description: t.description } : {}), inputSchema: { json: t.parameters } } });
  const tools: Json[] = specs.map(toolSpec);
  const jsonTool = json ? json.tool.name : null;
  let choice = toolChoiceOf(request);
  if (json) {
    tools.push(toolSpec(json.tool));
    if (json.forced) choice = { mode: 'tool', name: json.tool.name };
  }
  // 'none' with no tool use in the history: no tools declared, so none can be called (Converse has no 'none').
  if (choice?.mode === 'none' && !jsonTool && !turns.some((t) => t.blocks.some((b) => b.type === 'tool_call' || b.type === 'tool_result'))) tools.length = 0;
  if (tools.length) {
    if (cache) tools.push(cachePoint);
    const config: Json = { tools };
    // Converse has no 'none': with tool use in the history the tools must stay declared, and the model chooses.
    if (choice?.mode === 'required') config.toolChoice = { any: {} };
    else if (choice?.mode === 'tool') config.toolChoice = { tool: { name: choice.name } };
    else if (choice?.mode === 'auto') config.toolChoice = { auto: {} };
    body.toolConfig = config;
  }
  return { body, jsonTool };
}

const FINISH: Record<string, string> = { end_turn: 'stop', stop_sequence: 'stop', max_tokens: 'length', model_context_window_exceeded: 'length',
  tool_use: 'tool_calls', guardrail_intervened: 'content_filter', content_filtered: 'content_filter' };

const UsageSchema = z.looseObject({
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
  cacheReadInputTokens: z.number().int().nonnegative().nullish(),
  cacheWriteInputTokens: z.number().int().nonnegative().nullish(),
});
type BedrockUsage = z.infer<typeof UsageSchema>;

const ContentSchema = z.looseObject({
  text: z.string().optional(),
  toolUse: z.looseObject({ toolUseId: z.string(), name: z.string(), input: z.unknown() }).optional(),
});

const ConverseSchema = z.looseObject({
  output: z.looseObject({ message: z.looseObject({ content: z.array(ContentSchema) }) }),
  stopReason: z.string(),
  // usage that cannot be read is no usage: the gateway estimates instead of billing nothing
  usage: UsageSchema.optional().catch(undefined),
});

/** Converse's `inputTokens` excludes cache reads and writes, as Anthropic's does. None read: the gateway estimates. */
function tokens(u: BedrockUsage | null): TokenUsage | null {
  return u ? { input: u.inputTokens, output: u.outputTokens, cacheRead: u.cacheReadInputTokens ?? 0, cacheWrite: u.cacheWriteInputTokens ?? 0 } : null;
}

const codec = new EventStreamCodec(toUtf8, fromUtf8);
const MAX_FRAME = 16 * 1024 * 1024; // event-stream messages are at most 16 MiB

/** What an exception in the stream would have been as an answer (Bedrock's own statuses for them). */
function exceptionStatus(type: string): number {
  const t = type.toLowerCase();
  if (/throttl|quota|notready/.test(t)) return 429;
  if (t.includes('validation')) return 400;
  if (t.includes('unavailable')) return 503;
  if (t.includes('timeout')) return 504;
  return 502; // internalServer, modelStreamError, anything new
}

/** Receives Converse's JSON or ConverseStream's event stream and hands the gateway OpenAI's format. */
export class BedrockTranslator extends TranslatingSink {
  private usage: BedrockUsage | null = null;
  /** Bytes of the frame being received, kept as they came and joined once it is whole (linear, whatever the frame's size). */
  private parts: Buffer[] = [];
  private size = 0;
  /** The length of the frame being received, once its prelude is in (0: not yet). */
  private need = 0;
  /** Content-block index → OpenAI tool_calls index; -1 for the JSON-mode tool (its input is the content). */
  private readonly toolIndex = new Map<number, number>();
  private tools = 0;
  private stopped = false;

  constructor(sink: ResponseSink, model: string, private readonly jsonTool: string | null) {
    super(sink, model, 'application/vnd.amazon.eventstream', 'Bedrock');
    this.id = `chatcmpl-${randomUUID()}`; // Converse's answer carries no id of its own
  }

  /**
   * ModelTimeout (408) is a timeout and ModelError (424) a failed upstream: both retryable,
   * like any 504/502. A 403 (AccessDenied, InvalidSignature, UnrecognizedClient) refuses the
   * gateway's AWS identity, not the caller's request.
   */
  protected override errorStatus(status: number): number {
    return status === 408 ? 504 : status === 424 ? 502 : status === 403 ? 401 : status;
  }

  protected frames(chunk: Buffer): string {
    this.parts.push(chunk);
    this.size += chunk.length;
    let out = '';
    while (!this.terminal && this.size >= 4) {
      if (!this.need) {
        const head = this.parts[0]!.length >= 4 ? this.parts[0]! : (this.parts = [Buffer.concat(this.parts)])[0]!;
        this.need = head.readUInt32BE(0);
        if (this.need < 16 || this.need > MAX_FRAME) throw new GatewayError(Errors.upstreamBadAnswer, 'Bedrock sent a malformed event-stream frame.');
      }
      if (this.size < this.need) break;
      const all = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size);
      out += this.message(all.subarray(0, this.need));
      const rest = all.subarray(this.need);
      this.parts = rest.length ? [rest] : [];
      this.size = rest.length;
      this.need = 0;
    }
    // Kept across callbacks as copies: undici may reuse the memory of the chunk it handed over.
    if (this.parts.length && this.parts[this.parts.length - 1]!.buffer === chunk.buffer) this.parts[this.parts.length - 1] = Buffer.from(this.parts[this.parts.length - 1]!);
    return out;
  }

  protected finish(): string {
    if (this.terminal) return '';
    // A stop without its metadata still ends the stream properly (the gateway estimates the usage); no stop is a cut.
    return this.stopped ? this.usageAndDone(null) : this.streamError(502, 'The Bedrock stream ended before the model finished.', 'upstream_error');
  }

  protected complete(raw: Buffer): Json {
    const answer = ConverseSchema.parse(JSON.parse(raw.toString('utf8')));
    let text = '';
    const calls: ToolCallOut[] = [];
    let json = false;
    for (const block of answer.output.message.content) {
      if (block.text !== undefined) text += block.text;
      else if (block.toolUse && block.toolUse.name === this.jsonTool) { text += JSON.stringify(block.toolUse.input ?? {}); json = true; }
      else if (block.toolUse) calls.push({ id: block.toolUse.toolUseId, name: block.toolUse.name, arguments: JSON.stringify(block.toolUse.input ?? {}) });
    }
    const finish = json && !calls.length && answer.stopReason === 'tool_use' ? 'stop' : FINISH[answer.stopReason] ?? 'stop';
    return completionBody({ id: this.id, created: this.created, model: this.model, choices: [{ text, toolCalls: calls, finish }], usage: tokens(answer.usage ?? null) });
  }

  /** One event-stream message → zero or more OpenAI chunk frames. */
  private message(frame: Buffer): string {
    let decoded;
    try { decoded = codec.decode(frame); } catch { throw new GatewayError(Errors.upstreamBadAnswer, 'Bedrock sent an event-stream frame that failed its checksum.'); }
    const header = (name: string) => { const h = decoded.headers[name]; return h && h.type === 'string' ? h.value : ''; };
    const kind = header(':message-type');
    let payload: Json = {};
    try { const p = JSON.parse(Buffer.from(decoded.body.buffer, decoded.body.byteOffset, decoded.body.byteLength).toString('utf8')) as unknown; if (isRecord(p)) payload = p; } catch { /* no JSON body */ }
    if (kind === 'exception' || kind === 'error') {
      const type = header(':exception-type') || header(':error-code') || 'upstream_error';
      const status = exceptionStatus(type);
      return this.streamError(status, asText(payload.message) || asText(payload.Message) || header(':error-message') || `Bedrock stream error (${type})`,
        status === 429 ? 'rate_limit_error' : status === 400 ? 'invalid_request_error' : 'upstream_error', type);
    }
    switch (header(':event-type')) {
      case 'messageStart':
        return this.chunk({ role: 'assistant', content: '' });
      case 'contentBlockStart': {
        const use = isRecord(payload.start) && isRecord(payload.start.toolUse) ? payload.start.toolUse : null;
        if (!use) return '';
        const block = Number(payload.contentBlockIndex);
        if (use.name === this.jsonTool) { this.toolIndex.set(block, -1); return ''; }
        const index = this.tools++;
        this.toolIndex.set(block, index);
        return this.chunk({ tool_calls: [{ index, id: asText(use.toolUseId), type: 'function', function: { name: asText(use.name), arguments: '' } }] });
      }
      case 'contentBlockDelta': {
        const d = isRecord(payload.delta) ? payload.delta : {};
        if (typeof d.text === 'string') return d.text ? this.chunk({ content: d.text }) : '';
        if (isRecord(d.toolUse) && typeof d.toolUse.input === 'string') {
          const index = this.toolIndex.get(Number(payload.contentBlockIndex)) ?? 0;
          return index === -1 ? this.chunk({ content: d.toolUse.input }) : this.chunk({ tool_calls: [{ index, function: { arguments: d.toolUse.input } }] });
        }
        return ''; // reasoning content is not part of the answer
      }
      case 'messageStop': {
        this.stopped = true;
        const reason = asText(payload.stopReason);
        const jsonOnly = reason === 'tool_use' && this.tools === 0 && this.toolIndex.size > 0;
        return this.chunk({}, jsonOnly ? 'stop' : FINISH[reason] ?? 'stop');
      }
      case 'metadata': {
        const u = UsageSchema.safeParse(payload.usage);
        if (u.success) this.usage = u.data;
        return this.usageAndDone(this.usage ? tokens(this.usage) : null);
      }
      default:
        return ''; // contentBlockStop
    }
  }
}

/** SHA-256 by node's crypto (the AWS SDK's node hash), for the signer. */
class Sha256 extends Hash {
  constructor(secret?: SourceData) {
    super('sha256', secret);
  }
}

/** Cross-region inference profiles are named for a geography (`us.…`, `eu.…`, `apac.…`) and callable only from its regions. */
const GEOGRAPHIES: Array<[RegExp, string]> = [[/^us-/, 'us'], [/^eu-/, 'eu'], [/^ap-/, 'apac']];
const PROFILE = /^(us|eu|apac)\./;

export class BedrockProvider implements Provider {
  readonly kind = 'bedrock' as const;
  readonly name: string;
  readonly region: string;
  /** This region's geography, and the model ids already moved to it. */
  private readonly geography: string | null;
  private readonly profiles = new Map<string, string>();
  private readonly pool: Pool;
  private readonly basePath: string;
  private readonly host: string;
  private readonly signer: SignatureV4;

  constructor(private readonly opts: BedrockOptions) {
    this.name = opts.name;
    this.region = opts.region;
    this.geography = GEOGRAPHIES.find(([re]) => re.test(opts.region))?.[1] ?? null;
    const { pool, basePath } = openPool(opts);
    this.pool = pool;
    this.basePath = basePath;
    this.host = new URL(opts.baseUrl).host;
    this.signer = new SignatureV4({ service: 'bedrock', region: opts.region, credentials: opts.credentials, sha256: Sha256 });
  }

  chat(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    if (call.api === 'embeddings') return this.embed(call, sink);
    let translated: { body: Json; jsonTool: string | null };
    try {
      translated = toConverseRequest(call.request, call.upstreamModel, sentCap(call.request) ?? this.opts.defaultMaxTokens, Boolean(call.promptCacheKey));
    } catch (err) {
      const relay = new Relay(sink);
      queueMicrotask(() => sink.onError(err instanceof GatewayError ? err : new GatewayError(Errors.invalidRequest, 'The request could not be translated for Bedrock.')));
      return relay;
    }
    const translator = new BedrockTranslator(sink, call.upstreamModel, translated.jsonTool);
    const relay = new Relay(translator);
    translator.upstreamCall = relay;
    const path = `${this.basePath}/model/${encodeURIComponent(this.profileFor(call.upstreamModel))}/${call.stream ? 'converse-stream' : 'converse'}`;
    const body = JSON.stringify(translated.body);
    const ready = this.signer.sign({ method: 'POST', protocol: 'https:', hostname: this.host, path, query: {}, body,
      headers: { host: this.host, 'content-type': 'application/json', accept: call.stream ? 'application/vnd.amazon.eventstream' : 'application/json', ...this.opts.headers } })
      .then((signed): Dispatcher.DispatchOptions => ({ path, method: 'POST', headers: signed.headers, body,
        headersTimeout: this.opts.headersTimeoutMs, bodyTimeout: this.opts.bodyTimeoutMs, blocking: true }));
    dispatchWhen(this.pool, ready, relay, sink, (err) => new GatewayError(Errors.upstreamAuth, `The request to ${this.name} could not be signed (${err instanceof Error ? err.message : String(err)}).`));
    return relay;
  }

  /** A signed InvokeModel call of `body` to `modelId`, its answer into `sink`. */
  private invoke(modelId: string, body: string, sink: ResponseSink): Relay {
    const relay = new Relay(sink);
    const path = `${this.basePath}/model/${encodeURIComponent(modelId)}/invoke`;
    const ready = this.signer.sign({ method: 'POST', protocol: 'https:', hostname: this.host, path, query: {}, body,
      headers: { host: this.host, 'content-type': 'application/json', accept: 'application/json', ...this.opts.headers } })
      .then((signed): Dispatcher.DispatchOptions => ({ path, method: 'POST', headers: signed.headers, body, headersTimeout: this.opts.headersTimeoutMs, bodyTimeout: this.opts.bodyTimeoutMs }));
    dispatchWhen(this.pool, ready, relay, sink, (err) => new GatewayError(Errors.upstreamAuth, `The request to ${this.name} could not be signed (${err instanceof Error ? err.message : String(err)}).`));
    return relay;
  }

  /**
   * Embeddings on Titan Text Embeddings (InvokeModel): one input per call, so a list is that
   * many calls, at most 8 at a time; the first answer that is not a 200 is the request's
   * (the others are cancelled), else the vectors go back as OpenAI's object with Titan's counts.
   */
  private embed(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    const req = call.params;
    const inputs = embeddingInputs(req.input);
    const dims = typeof req.dimensions === 'number' ? req.dimensions : null;
    if (inputs.some((i) => typeof i !== 'string')) {
      const relay = new Relay(sink);
      queueMicrotask(() => sink.onError(new GatewayError(Errors.invalidRequest, 'Bedrock embeds text: token-id inputs are not supported on this route.', 'input')));
      return relay;
    }
    return new TitanEmbeddings(inputs as string[], (text, into) => this.invoke(call.upstreamModel, JSON.stringify({ inputText: text, ...(dims ? { dimensions: dims } : {}), normalize: true }), into),
      sink, call.upstreamModel, req.encoding_format === 'base64');
  }

  /**
   * The catalog names US inference profiles (`us.anthropic.…`); an entry in an EU or Asia-Pacific
   * region calls the same profile of its own geography (`eu.…`, `apac.…`), the only ones it can.
   */
  private profileFor(modelId: string): string {
    if (!this.geography || !PROFILE.test(modelId)) return modelId;
    let id = this.profiles.get(modelId);
    if (id === undefined) {
      id = modelId.replace(PROFILE, `${this.geography}.`);
      this.profiles.set(modelId, id);
    }
    return id;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

const TitanAnswerSchema = z.object({ embedding: z.array(z.number()), inputTextTokenCount: z.number().int().nonnegative().optional() });

/** Titan's calls for one embeddings request, at most MAX_CALLS at a time, gathered into one answer. */
class TitanEmbeddings implements UpstreamHandle {
  private static readonly MAX_CALLS = 8;
  private readonly vectors: number[][] = [];
  private tokens = 0;
  private next = 0;
  private done = 0;
  private over = false;
  private readonly relays = new Set<Relay>();

  constructor(private readonly inputs: string[], private readonly send: (text: string, into: ResponseSink) => Relay, private readonly sink: ResponseSink,
    private readonly model: string, private readonly base64: boolean) {
    for (let i = 0; i < Math.min(TitanEmbeddings.MAX_CALLS, inputs.length); i++) this.start();
  }

  private start(): void {
    const at = this.next++;
    let status = 0;
    let type = '';
    let retry: number | null = null;
    const parts: Buffer[] = [];
    const relay: Relay = this.send(this.inputs[at]!, {
      onStart: (s, t, r) => { status = s; type = t; retry = r ?? null; },
      onData: (chunk) => { parts.push(chunk); return true; },
      onEnd: () => {
        this.relays.delete(relay);
        if (this.over) return;
        const body = Buffer.concat(parts);
        if (status !== 200) { this.finish(() => { this.sink.onStart(status, type, retry); this.sink.onData(body); this.sink.onEnd(); }); return; }
        let parsed: z.infer<typeof TitanAnswerSchema> | null = null;
        try { const r = TitanAnswerSchema.safeParse(JSON.parse(body.toString('utf8'))); parsed = r.success ? r.data : null; } catch { parsed = null; }
        if (!parsed) { this.finish(() => this.sink.onError(new GatewayError(Errors.upstreamBadAnswer, 'Bedrock answered an embedding that could not be read.'))); return; }
        this.vectors[at] = parsed.embedding;
        this.tokens += parsed.inputTextTokenCount ?? 0;
        if (++this.done === this.inputs.length) {
          this.finish(() => { this.sink.onStart(200, 'application/json'); this.sink.onData(embeddingsBody(this.model, this.vectors, this.tokens || null, this.base64)); this.sink.onEnd(); });
        } else if (this.next < this.inputs.length) this.start();
      },
      onError: (err) => { this.relays.delete(relay); if (!this.over) this.finish(() => this.sink.onError(err)); },
    });
    this.relays.add(relay);
  }

  /** The request's outcome, once: the calls still out are cancelled. */
  private finish(outcome: () => void): void {
    this.over = true;
    for (const r of this.relays) r.abort();
    this.relays.clear();
    outcome();
  }

  get sent(): boolean {
    return [...this.relays].some((r) => r.sent) || this.done > 0;
  }

  abort(): void {
    this.over = true;
    for (const r of this.relays) r.abort();
    this.relays.clear();
  }

  resume(): void {}
}

