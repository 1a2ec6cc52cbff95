// The one interface every provider adapter implements. The gateway hands an adapter a
// validated request and a sink; the adapter answers in OpenAI's wire format (JSON body,
// or SSE chunks) through the sink's callbacks, undici-handler style, with backpressure.
import type { EncodingName } from '../../native/tokenizer.js';
import type { GatewayError } from '../errors.js';
import type { ModelType } from '../config/schema.js';
import type { Api } from '../wire/api.js';
import type { ChatRequest } from '../wire/chat.js';

export type { Api, ChatRequest };

export interface ChatCall {
  upstreamModel: string;
  encoding: EncodingName;
  /** The request as sent, parsed: its messages as the savings rewrites left them (reading it may parse the body). */
  readonly request: ChatRequest;
  /**
   * The request's parameters (its members other than `messages`) as sent, without a parse:
   * model, stream, stream_options, caps, the pin. Its `messages` are the caller's, before
   * any rewrite: an adapter that reads messages reads `request`.
   */
  readonly params: ChatRequest;
  /** The body exactly as the client sent it, for adapters that can forward it unchanged. */
  body: Buffer;
  stream: boolean;
  /**
   * What is asked: `chat`, `responses` (the caller's Responses API body, passed through:
   * OpenAI-kind adapters only), `embeddings` (OpenAI's embeddings body; the answer is OpenAI's
   * embeddings object).
   */
  api?: Api;
  /** Embeddings: the vector size the catalog gives the model, for a request that names none. */
  dimensions?: number | null;
  /**
   * Provider prompt caching: a key for the prompt's stable head (workspace + system + tools),
   * or null to leave the request alone. OpenAI-kind adapters send it as `prompt_cache_key`;
   * the Anthropic adapter places `cache_control` breakpoints.
   */
  promptCacheKey?: string | null;
}

export interface ResponseSink {
  /**
   * `retryAfterMs`: the upstream's Retry-After (seconds or a date), when it sent one. `length`:
   * its Content-Length, when it declared one (a large answer is gathered into one buffer as it comes).
   */
  onStart(status: number, contentType: string, retryAfterMs?: number | null, length?: number | null): void;
  /** Return false to ask the adapter to pause until `resume()`. */
  onData(chunk: Buffer): boolean;
  onEnd(): void;
  onError(err: GatewayError): void;
}

export interface UpstreamHandle {
  abort(): void;
  resume(): void;
  /** False while the request waits (for a signature, a token) before it goes upstream: nothing was sent, so nothing is owed. */
  readonly sent?: boolean;
}

/** The wire format (and auth) an adapter speaks: `azure` is OpenAI's format on Azure's paths and key header. */
export type ProviderKind = 'openai' | 'azure' | 'anthropic' | 'bedrock' | 'gemini' | 'vertex' | 'sim';

export interface Provider {
  readonly name: string;
  readonly kind: ProviderKind;
  /** Where this provider entry serves (a Bedrock region, a Vertex location): its routes' region unless the catalog names one. */
  readonly region?: string | null;
  /** The upstream serves OpenAI's Responses API itself (OpenAI-kind adapters whose entry says so). */
  readonly responsesApi?: boolean;
  /**
   * Does this adapter keep state of its own for a request of this many bytes (Gemini's
   * context caches)? An event-loop thread hands such requests to the main thread, so one
   * adapter keeps it for all.
   */
  keepsStateFor?(bodyBytes: number): boolean;
  chat(call: ChatCall, sink: ResponseSink): UpstreamHandle;
  close(): Promise<void>;
}

/**
 * The model types an adapter can serve: OpenAI-kind upstreams and the sim serve every
 * endpoint; Gemini and Vertex chat and embeddings; the others chat (a catalog route of another
 * type to them is not made).
 */
export function servesType(p: Provider, type: ModelType): boolean {
  return type === 'chat' || p.kind === 'openai' || p.kind === 'azure' || p.kind === 'sim' || (type === 'embedding' && (p.kind === 'gemini' || p.kind === 'vertex' || p.kind === 'bedrock'));
}

/** Adapters that take OpenAI's own request bodies as bytes. */
export function speaksOpenAI(p: Provider): boolean {
  return p.kind === 'openai' || p.kind === 'azure';
}

/** Adapters whose upstream serves the Responses API itself: a Responses request passes through to them. */
export function speaksResponses(p: Provider): boolean {
  return speaksOpenAI(p) && p.responsesApi !== false;
}
