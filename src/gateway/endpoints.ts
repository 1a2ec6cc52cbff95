// What differs between the inference endpoints, in one place, so that the stages (route,
// shape, admit, savings, dispatch, settle) carry no branch per endpoint: how the body is
// read, where its output cap lives, which routes can take it, what savings apply.
import type { ModelEntry, ModelType } from '../config/schema.js';
import type { Usage } from '../wire/usage.js';
import { ImagesRequestSchema, imageCount, unitsPerImage } from '../wire/images.js';
import { SpeechRequestSchema, speechCharacters } from '../wire/speech.js';
import type { AudioRequest } from '../wire/transcriptions.js';
import type { Api } from '../wire/api.js';
import { isDeterministic } from '../savings/canonical.js';
import { ALL, M } from '../savings/mechanisms.js';
import { parseBody, parseJson } from '../wire/body.js';
import { ChatRequestSchema, chatCap, type ChatRequest } from '../wire/chat.js';
import { CompletionsRequestSchema, LEGACY_DEFAULT_MAX_TOKENS, promptCount, type CompletionsRequest } from '../wire/completions.js';
import { EmbeddingsRequestSchema, MAX_EMBEDDING_INPUTS } from '../wire/embeddings.js';
import { Errors, GatewayError } from '../errors.js';
import { isRecord } from '../json.js';
import { MessagesRequestSchema } from '../wire/messages.js';
import { ModerationsRequestSchema } from '../wire/moderations.js';
import { ResponsesRequestSchema } from '../wire/responses.js';

export interface Endpoint {
  /** What providers are told (ChatCall.api). */
  readonly api: Api;
  /** The models it takes (a chat model on /v1/embeddings is a 400, as OpenAI answers). */
  readonly modelType: ModelType;
  /** The body, validated, as the pipeline carries it. */
  parse(body: Buffer): ChatRequest;
  /** The request member that holds the prompt (named in a context-window error). */
  readonly promptField: 'messages' | 'input' | 'prompt';
  /** How many answers the request asks for, each of which may use the output cap. */
  choices(req: ChatRequest): number;
  /** The same request gets the same answer, so the caches may serve it without an opt-in. */
  deterministic(req: ChatRequest): boolean;
  /**
   * Upstream answers carry no usage (moderations): the gateway's own count is what is billed,
   * so an answer is cached with it (otherwise only answers with the upstream's usage are).
   */
  readonly countedUsage: boolean;
  /** Only routes whose provider speaks this API itself (OpenAI's Responses, Anthropic's Messages), or null for any route (adapters translate). */
  readonly native: 'openai' | 'anthropic' | null;
  /** The output cap the request itself sets (on this model), or null. */
  askedCap(req: ChatRequest, model: ModelEntry): number | null;
  /** The name of the cap field the request set (for messages that name it). */
  capName(req: ChatRequest): string;
  /**
   * The field an output cap is spliced in as, for a route: by its upstream id, or by the
   * model's own (an Azure deployment's name says nothing of the model behind it).
   */
  capField(route: { upstreamModel: string; model: { upstream_id: string } }): string;
  /** The gateway may splice an output cap into a request that sets none (chat-like APIs; not images). */
  readonly cappable: boolean;
  /** A 200 answer is binary (speech's audio): streamed to the client as it comes, billed by `impliedUsage`. */
  readonly binary?: boolean;
  /** A 200 answer may be plain text (a transcript as text, SRT, VTT): passed on as it is, billed by `impliedUsage`. */
  readonly plainAnswers?: boolean;
  /** The prompt's bound in the model's billing units, when the body's size is not one (audio: its seconds). */
  promptBound?(req: ChatRequest, model: ModelEntry): number;
  /**
   * What an answer without the upstream's usage counts, when the request alone says it (an
   * image priced per image: its units); null: the gateway counts the prompt and the answer.
   */
  impliedUsage(req: ChatRequest, model: ModelEntry): Usage | null;
  /**
   * The request has all arrived (an upload streams upstream while it still arrives): a client
   * that leaves before then is not billed, as the upstream never had the whole request.
   */
  arrived(req: ChatRequest): boolean;
  /** The savings mechanisms that can apply (bits). */
  readonly savings: number;
  /** The request may continue a stored conversation (`previous_response_id`). */
  readonly conversation: boolean;
  /** Model `auto` goes through the smart router. */
  readonly smartRouter: boolean;
}

/** Upstream ids that take `max_completion_tokens` (OpenAI's reasoning families reject `max_tokens`). */
const COMPLETION_TOKENS_MODELS = /^(o\d|gpt-5)/;

/**
 * What the endpoints share unless they say otherwise: any route, no savings, no stored
 * conversation, no smart router, one answer, an output cap the gateway may set as
 * `max_tokens`, sampled answers cached only when deterministic, and usage from the upstream.
 */
const BASE = {
  native: null,
  capName: () => 'max_tokens',
  capField: () => 'max_tokens',
  cappable: true,
  binary: false,
  plainAnswers: false,
  impliedUsage: () => null,
  arrived: () => true,
  savings: 0,
  conversation: false,
  smartRouter: false,
  deterministic: isDeterministic,
  countedUsage: false,
  choices: () => 1,
} satisfies Partial<Endpoint>;

export const CHAT: Endpoint = {
  ...BASE,
  api: 'chat',
  parse: (body) => parseBody(ChatRequestSchema, parseJson(body)) as ChatRequest,
  askedCap: chatCap,
  capName: (req) => (typeof req.max_completion_tokens === 'number' && !(typeof req.max_tokens === 'number' && req.max_tokens > req.max_completion_tokens) ? 'max_completion_tokens' : 'max_tokens'),
  capField: (route) => (COMPLETION_TOKENS_MODELS.test(route.upstreamModel) || COMPLETION_TOKENS_MODELS.test(route.model.upstream_id) ? 'max_completion_tokens' : 'max_tokens'),
  savings: ALL,
  smartRouter: true,
  modelType: 'chat',
  promptField: 'messages',
  choices: (req) => (typeof req.n === 'number' ? req.n : 1),
};

/** What a request without `messages` inherits: an empty list there (frozen: every such request shares it), not enumerable. */
const NO_MESSAGES_LIST: readonly never[] = Object.freeze([]);
const NO_MESSAGES: object = Object.create(Object.prototype, { messages: { value: NO_MESSAGES_LIST, enumerable: false } });

/**
 * A request whose body has no `messages` (Responses, embeddings): the pipeline's stages read
 * `messages` of every request, so it gets an empty list there, not enumerable and not its own:
 * it is never counted as a member, hashed, or encoded into what goes upstream. A copy of the
 * request's members onto a prototype that has it (0.06 µs; Object.defineProperty on the request
 * itself took 1.25 µs, and was 1.4% of the Responses path's CPU under load).
 */
export function withoutMessages<T extends object>(request: T): ChatRequest {
  if (Object.getPrototypeOf(request) === Object.prototype && !Object.hasOwn(request, 'messages')) return Object.assign(Object.create(NO_MESSAGES) as object, request) as unknown as ChatRequest;
  // A class's instance (an audio upload's request, whose state changes as it is read), or a body
  // that sent a `messages` of its own (ignored, as any member these endpoints do not read; a
  // copy onto the prototype would throw on its read-only one), is given the member itself.
  Object.defineProperty(request, 'messages', { value: NO_MESSAGES_LIST, enumerable: false });
  return request as unknown as ChatRequest;
}

/**
 * The Responses API passed through to an upstream that speaks it (a bridged Responses
 * request is translated to a chat body first and takes CHAT).
 */
export const RESPONSES: Endpoint = {
  ...BASE,
  api: 'responses',
  parse: (body) => withoutMessages(parseBody(ResponsesRequestSchema, parseJson(body))),
  native: 'openai',
  askedCap: (req) => (typeof req.max_output_tokens === 'number' ? req.max_output_tokens : null),
  capName: () => 'max_output_tokens',
  capField: () => 'max_output_tokens',
  conversation: true,
  modelType: 'chat',
  promptField: 'input',
};

/**
 * Embeddings: any route of an embedding model (OpenAI-kind ones take the bytes, others
 * translate). No output tokens, so nothing to cap; the same input always has the same
 * vectors, so the exact cache and dedupe serve repeats without an opt-in.
 */
export const EMBEDDINGS: Endpoint = {
  ...BASE,
  api: 'embeddings',
  parse: (body) => {
    const raw = parseJson(body);
    // (the schema's union would name every shape input may take; the limit is what was missed)
    if (isRecord(raw) && Array.isArray(raw.input) && raw.input.length > MAX_EMBEDDING_INPUTS) {
      throw new GatewayError(Errors.invalidRequest, `Invalid 'input': at most ${MAX_EMBEDDING_INPUTS} inputs per request (${raw.input.length} sent).`, 'input');
    }
    return withoutMessages(parseBody(EmbeddingsRequestSchema, raw));
  },
  askedCap: () => 0,
  savings: M.exact_cache | M.dedupe,
  modelType: 'embedding',
  promptField: 'input',
  deterministic: () => true,
};

/**
 * Moderations: OpenAI's (free) moderation models, and the sim's. The same input always gets
 * the same verdict, so repeats are served by the exact cache. A body without a model gets
 * OpenAI's default, as OpenAI's API gives it.
 */
export const MODERATIONS: Endpoint = {
  ...EMBEDDINGS,
  api: 'moderations',
  parse: (body) => withoutMessages(parseBody(ModerationsRequestSchema, parseJson(body))),
  modelType: 'moderation',
  countedUsage: true,
};

/**
 * Legacy completions on a completion model (gpt-3.5-turbo-instruct), passed through to an
 * OpenAI-kind route or served by the sim; on a chat model the request is bridged onto the chat
 * path instead (gateway/completions.ts). Without max_tokens the upstream writes at most 16
 * tokens (OpenAI's default on this endpoint), which is what is reserved. Every prompt gets n
 * (or best_of) answers. Streams and bodies are OpenAI's own, so only dedupe applies: the
 * caches keep chat answers.
 */
export const COMPLETIONS: Endpoint = {
  ...BASE,
  api: 'completions',
  parse: (body) => withoutMessages(parseBody(CompletionsRequestSchema, parseJson(body))),
  askedCap: (req) => (typeof req.max_tokens === 'number' ? req.max_tokens : LEGACY_DEFAULT_MAX_TOKENS),
  savings: M.dedupe,
  modelType: 'completion',
  promptField: 'prompt',
  choices: (req) => Math.max(typeof req.n === 'number' ? req.n : 1, typeof req.best_of === 'number' ? req.best_of : 1) * promptCount((req as unknown as CompletionsRequest).prompt),
};

/**
 * Anthropic's Messages API passed through to an Anthropic route (a request for a model with
 * none is bridged onto the chat path instead: gateway/messages.ts): the caller's bytes go on
 * (thinking, cache_control, documents, betas' fields and all), the answer comes back as
 * Anthropic wrote it. max_tokens is required there, so it is the reservation's cap. The caches
 * keep chat answers, so none apply.
 */
export const MESSAGES: Endpoint = {
  ...BASE,
  api: 'messages',
  parse: (body) => parseBody(MessagesRequestSchema, parseJson(body)) as unknown as ChatRequest,
  native: 'anthropic',
  askedCap: (req) => (typeof req.max_tokens === 'number' ? req.max_tokens : null),
  modelType: 'chat',
  promptField: 'messages',
};

/**
 * Image generation: OpenAI-kind routes take the caller's bytes, the sim draws. The reservation
 * is the images' units (catalog `image_units` by size and quality); an upstream that reports
 * no usage (DALL·E) is billed those units, one that does (gpt-image-1: tokens) what it reports.
 * Every draw differs, so nothing is cached.
 */
export const IMAGES: Endpoint = {
  ...BASE,
  api: 'images',
  parse: (body) => withoutMessages(parseBody(ImagesRequestSchema, parseJson(body))),
  askedCap: (req, model) => {
    const units = unitsPerImage(model.image_units, req);
    return units === null ? null : units * imageCount(req);
  },
  capName: () => 'n',
  capField: () => '',
  cappable: false,
  impliedUsage: (req, model) => {
    const units = unitsPerImage(model.image_units, req);
    return units === null ? null : { prompt_tokens: 0, completion_tokens: units * imageCount(req), cached_tokens: 0 };
  },
  modelType: 'image',
  promptField: 'prompt',
  deterministic: () => false,
};

/**
 * Text to speech: OpenAI-kind routes take the caller's bytes, the sim speaks (a WAV tone). The
 * audio is streamed back as it comes; the charge is the input's characters (the model's
 * `prices.input` per million characters), known before the call, so reserved exactly.
 */
export const SPEECH: Endpoint = {
  ...BASE,
  api: 'speech',
  parse: (body) => withoutMessages(parseBody(SpeechRequestSchema, parseJson(body))),
  askedCap: () => 0,
  capName: () => 'input',
  capField: () => '',
  cappable: false,
  binary: true,
  impliedUsage: (req) => ({ prompt_tokens: speechCharacters(req.input), completion_tokens: 0, cached_tokens: 0 }),
  modelType: 'speech',
  promptField: 'input',
  deterministic: () => false,
};

/**
 * Speech to text: the form read as it arrives (server/audio-upload.ts), sent to OpenAI-kind
 * routes as a form again with the route's model, its audio streaming, or heard by the sim. Reserved for the audio's
 * longest likely length; billed what the upstream reports (whisper-1: seconds; gpt-4o-transcribe:
 * tokens), else (text, SRT and VTT answers carry no usage) the audio's estimated length.
 */
function audioEndpoint(api: 'transcriptions' | 'translations'): Endpoint {
  const units = (model: ModelEntry) => model.audio_units_per_second ?? 1;
  const audio = (req: ChatRequest) => req as unknown as AudioRequest;
  return {
    ...BASE,
    api,
    parse: () => { throw new Error('an audio request is read by its route'); },
    // The transcript's tokens, where the model prices them (gpt-4o-transcribe): a few a second of audio at most.
    askedCap: (req, model) => (model.prices.output > 0 ? Math.ceil(audio(req).secondsBound * 4) : 0),
    capName: () => 'file',
    capField: () => '',
    cappable: false,
    plainAnswers: true,
    promptBound: (req, model) => Math.ceil(audio(req).secondsBound * units(model)),
    impliedUsage: (req, model) => ({ prompt_tokens: Math.ceil(audio(req).secondsEstimate * units(model)), completion_tokens: 0, cached_tokens: 0 }),
    arrived: (req) => audio(req).upload.complete,
    modelType: 'transcription',
    promptField: 'input',
    deterministic: () => false,
  };
}
export const TRANSCRIPTIONS = audioEndpoint('transcriptions');
export const TRANSLATIONS = audioEndpoint('translations');

