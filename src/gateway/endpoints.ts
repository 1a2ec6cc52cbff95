// What differs between the inference endpoints, in one place, so that the stages (route,
// shape, admit, savings, dispatch, settle) carry no branch per endpoint: how the body is
// read, where its output cap lives, which routes can take it, what savings apply.
import { ALL } from '../savings/mechanisms.js';
import { parseBody, parseJson } from '../wire/body.js';
import { ChatRequestSchema, chatCap, type ChatRequest } from '../wire/chat.js';
import { ResponsesRequestSchema } from '../wire/responses.js';

export interface Endpoint {
  /** What providers are told (ChatCall.api). */
  readonly api: 'chat' | 'responses';
  /** The body, validated, as the pipeline carries it. */
  parse(body: Buffer): ChatRequest;
  /** Only routes whose provider speaks this API itself, or null for any route (adapters translate). */
  readonly native: 'openai' | null;
  /** The output cap the request itself sets, or null. */
  askedCap(req: ChatRequest): number | null;
  /** The name of the cap field the request set (for messages that name it). */
  capName(req: ChatRequest): string;
  /**
   * The field an output cap is spliced in as, for a route: by its upstream id, or by the
   * model's own (an Azure deployment's name says nothing of the model behind it).
   */
  capField(route: { upstreamModel: string; model: { upstream_id: string } }): string;
  /** The savings mechanisms that can apply (bits). */
  readonly savings: number;
  /** The request may continue a stored conversation (`previous_response_id`). */
  readonly conversation: boolean;
  /** Model `auto` goes through the smart router. */
  readonly smartRouter: boolean;
}

/** Upstream ids that take `max_completion_tokens` (OpenAI's reasoning families reject `max_tokens`). */
const COMPLETION_TOKENS_MODELS = /^(o\d|gpt-5)/;

export const CHAT: Endpoint = {
  api: 'chat',
  parse: (body) => parseBody(ChatRequestSchema, parseJson(body)) as ChatRequest,
  native: null,
  askedCap: chatCap,
  capName: (req) => (typeof req.max_completion_tokens === 'number' && !(typeof req.max_tokens === 'number' && req.max_tokens > req.max_completion_tokens) ? 'max_completion_tokens' : 'max_tokens'),
  capField: (route) => (COMPLETION_TOKENS_MODELS.test(route.upstreamModel) || COMPLETION_TOKENS_MODELS.test(route.model.upstream_id) ? 'max_completion_tokens' : 'max_tokens'),
  savings: ALL,
  conversation: false,
  smartRouter: true,
};

/**
 * The Responses API passed through to an upstream that speaks it (a bridged Responses
 * request is translated to a chat body first and takes CHAT). Its body has no `messages`:
 * the pipeline carries an empty list in their place, which never goes upstream.
 */
export const RESPONSES: Endpoint = {
  api: 'responses',
  parse: (body) => ({ ...parseBody(ResponsesRequestSchema, parseJson(body)), messages: [] }) as ChatRequest,
  native: 'openai',
  askedCap: (req) => (typeof req.max_output_tokens === 'number' ? req.max_output_tokens : null),
  capName: () => 'max_output_tokens',
  capField: () => 'max_output_tokens',
  savings: 0,
  conversation: true,
  smartRouter: false,
};
