// GET /openapi.json: OpenAPI 3.1 generated from the routes the server registered (recorded
// as they are registered, so a route cannot be missing) and the zod schemas that validate
// their bodies and queries (so the docs cannot drift from what is enforced).
import { FeedbackSchema, SimulatePriceSchema } from './router.js';
import type { TemplatedApp } from 'uWebSockets.js';
import { z } from 'zod';
import {
  CreateWorkspaceSchema, DeploymentToggleSchema, MintKeySchema, PatchKeySchema, RefundSchema, RegisterSchema, SelfMintKeySchema, TopupSchema,
} from './schemas.js';
import { ChatRequestSchema } from '../wire/chat.js';
import { ResponsesRequestSchema } from '../wire/responses.js';
import { EmbeddingsRequestSchema } from '../wire/embeddings.js';
import { CompletionsRequestSchema } from '../wire/completions.js';
import { CountTokensRequestSchema, MessagesRequestSchema } from '../wire/messages.js';
import { ModerationsRequestSchema } from '../wire/moderations.js';
import { ImagesRequestSchema } from '../wire/images.js';
import { SpeechRequestSchema } from '../wire/speech.js';
import { RangeQuery, RequestsQuery, SpendQuery, TimeseriesQuery } from './usage.js';

export interface RecordedRoute { method: 'get' | 'post' | 'patch' | 'delete' | 'put'; path: string }

/** Wraps the app's route methods so that every registration is recorded. */
export function recordRoutes(app: TemplatedApp, into: RecordedRoute[]): TemplatedApp {
  const methods = { get: 'get', post: 'post', patch: 'patch', del: 'delete', put: 'put' } as const;
  const table = app as unknown as Record<string, (path: string, handler: unknown) => TemplatedApp>;
  for (const [name, method] of Object.entries(methods)) {
    const original = table[name]!.bind(app);
    table[name] = (path: string, handler: unknown) => {
      into.push({ method, path });
      return original(path, handler);
    };
  }
  return app;
}

type KeyScope = 'inference' | 'usage:read' | 'keys:write' | 'admin' | 'feedback';
/** A scope, any one of several, `operator` (the master key or a config `api_keys` key), or null (public). */
type Scope = KeyScope | readonly KeyScope[] | 'operator' | null;
interface RouteDoc {
  summary: string;
  tag: string;
  /** null: public. */
  scope: Scope;
  body?: z.ZodType;
  query?: z.ZodObject;
  /** Content type of a successful answer (JSON unless said). */
  produces?: string;
}

const json = 'application/json';
/** Every route's documentation, keyed `METHOD path` as registered. */
export const ROUTE_DOCS: Record<string, RouteDoc> = {
  'GET /': { summary: 'Landing page: what Sluice is, the base-URL change, live totals.', tag: 'Ops', scope: null, produces: 'text/html' },
  'GET /app': { summary: 'The dashboard (sign in with a key).', tag: 'Ops', scope: null, produces: 'text/html' },
  'GET /app/*': { summary: 'Dashboard assets.', tag: 'Ops', scope: null, produces: 'application/octet-stream' },
  'GET /docs': { summary: 'This API, rendered from /openapi.json.', tag: 'Ops', scope: null, produces: 'text/html' },
  'GET /openapi.json': { summary: 'The OpenAPI 3.1 description of every route.', tag: 'Ops', scope: null },
  'GET /metrics': { summary: 'Prometheus metrics (text format 0.0.4). Bearer metrics.token or the master key, unless metrics.public; or on metrics.port.', tag: 'Ops', scope: null, produces: 'text/plain' },
  'GET /health': { summary: 'Liveness, providers and requests in flight.', tag: 'Ops', scope: null },
  'GET /v1/stats': { summary: 'Totals across the gateway (requests, saved dollars) for the landing page; 404 unless the operator sets stats.public.', tag: 'Ops', scope: null },
  'GET /v1/models': { summary: 'Models, aliases and `auto`, with routes and prices (OpenAI list shape).', tag: 'Models', scope: null },
  'GET /v1/models/:provider/:model': { summary: 'One model with its routes and prices.', tag: 'Models', scope: null },
  'GET /v1/models/:model': { summary: 'One model by its percent-encoded slug (what the SDKs send), bare id, alias or `auto`.', tag: 'Models', scope: null },
  'GET /v1/providers': { summary: 'Providers and their deployments, with route health (any key).', tag: 'Models', scope: ['inference', 'usage:read', 'keys:write', 'admin', 'feedback'] },
  'POST /v1/chat/completions': { summary: 'OpenAI chat completions (JSON or SSE), routed, metered, with the savings engine.', tag: 'Inference', scope: 'inference', body: ChatRequestSchema },
  'POST /v1/responses': { summary: 'OpenAI Responses API (passthrough or bridged onto the chat path).', tag: 'Inference', scope: 'inference', body: ResponsesRequestSchema },
  'GET /v1/responses/:id': { summary: 'A stored response of your workspace: the gateway\'s own (bridged routes), or relayed from the upstream that holds it.', tag: 'Inference', scope: 'inference' },
  'DELETE /v1/responses/:id': { summary: 'Delete a stored response of your workspace (here, and at the upstream that holds it).', tag: 'Inference', scope: 'inference' },
  'POST /v1/messages': { summary: "Anthropic's Messages API (JSON or SSE; the key in x-api-key or Authorization), on any route; errors in Anthropic's envelope.", tag: 'Inference', scope: 'inference', body: MessagesRequestSchema },
  'POST /v1/messages/count_tokens': { summary: "Anthropic's token count for a Messages request, with the model's tokenizer (nothing is sent upstream).", tag: 'Inference', scope: 'inference', body: CountTokensRequestSchema },
  'POST /v1/completions': { summary: 'OpenAI legacy completions (JSON or SSE): passed through for completion models, bridged onto the chat path for chat models.', tag: 'Inference', scope: 'inference', body: CompletionsRequestSchema },
  'POST /v1/embeddings': { summary: 'OpenAI embeddings (floats or base64), routed, metered, with the exact cache for repeated inputs.', tag: 'Inference', scope: 'inference', body: EmbeddingsRequestSchema },
  'POST /v1/images/generations': { summary: 'OpenAI image generation, billed per image by size and quality (DALL·E) or per token (gpt-image-1), from the catalog.', tag: 'Inference', scope: 'inference', body: ImagesRequestSchema },
  'POST /v1/audio/speech': { summary: 'OpenAI text to speech: the audio streamed back as it comes, billed per input character from the catalog.', tag: 'Inference', scope: 'inference', body: SpeechRequestSchema, produces: 'application/octet-stream' },
  'POST /v1/audio/transcriptions': { summary: 'OpenAI speech to text (a multipart form with the audio file, up to http.max_audio_bytes; name the model before the file and the audio streams upstream as it arrives), billed per second of audio or per token as the model is priced.', tag: 'Inference', scope: 'inference' },
  'POST /v1/audio/translations': { summary: 'OpenAI speech to English text, as transcriptions.', tag: 'Inference', scope: 'inference' },
  'POST /v1/moderations': { summary: 'OpenAI moderations (free on OpenAI; the input is counted for tpm), with the exact cache.', tag: 'Inference', scope: 'inference', body: ModerationsRequestSchema },
  'GET /v1/account': { summary: "The caller's workspace: balance, reserved, and credit history.", tag: 'Account', scope: 'usage:read' },
  'GET /v1/account/pricing': { summary: 'List and marked-up prices per model and route, and the billing policy.', tag: 'Account', scope: 'inference' },
  'POST /v1/account/quote': { summary: 'What a chat request would cost, per route (nothing is sent upstream).', tag: 'Account', scope: 'inference', body: ChatRequestSchema },
  'POST /v1/api-keys': { summary: 'Mint a key in your own workspace (at most your own scopes).', tag: 'Keys', scope: 'keys:write', body: SelfMintKeySchema },
  'GET /v1/api-keys': { summary: "Your workspace's keys (never their secrets).", tag: 'Keys', scope: 'keys:write' },
  'DELETE /v1/api-keys/:id': { summary: 'Revoke a key of your workspace.', tag: 'Keys', scope: 'keys:write' },
  'POST /v1/register': { summary: 'Self-registration: a workspace with starter credits and a key.', tag: 'Account', scope: null, body: RegisterSchema },
  'GET /v1/usage/summary': { summary: 'Totals for a range: requests, tokens, dollars, savings by mechanism and cache status, by model.', tag: 'Usage', scope: 'usage:read', query: RangeQuery },
  'GET /v1/usage/timeseries': { summary: 'The same figures per minute, hour or day.', tag: 'Usage', scope: 'usage:read', query: TimeseriesQuery },
  'GET /v1/requests': { summary: 'Ledger rows of your workspace, newest first, with filters and a cursor.', tag: 'Usage', scope: 'usage:read', query: RequestsQuery },
  'GET /v1/requests/:id': { summary: 'One request: route, retries, cache, tokens, costs, latency split.', tag: 'Usage', scope: 'usage:read' },
  'POST /v1/feedback': { summary: 'A quality signal (0–1) for one of your answered requests, once per request: it moves the adaptive router, and a score below savings.evict_below evicts the cached answer it scores.', tag: 'Router', scope: ['inference', 'feedback'], body: FeedbackSchema },
  'DELETE /v1/cache/requests/:id': { summary: 'Evict what one request stored in or was served from the caches; a semantic hit also tightens its neighbourhood (operator keys).', tag: 'Router', scope: 'operator' },
  'DELETE /v1/cache/workspaces/:id': { summary: "Purge a workspace's exact and semantic cache entries (operator keys).", tag: 'Router', scope: 'operator' },
  'GET /v1/router': { summary: "The adaptive router's learned state: per task type the current choice and each candidate's quality with an interval; for operator keys also pulls, signals, costs, simulated prices and the judge.", tag: 'Router', scope: ['inference', 'usage:read', 'feedback'] },
  'POST /v1/reset': { summary: "Forget the adaptive router's learned state (operator keys); the body is empty or {}.", tag: 'Router', scope: 'operator' },
  'POST /v1/simulate-price': { summary: "Price a candidate differently for routing decisions only (operator keys); prices null restores it.", tag: 'Router', scope: 'operator', body: SimulatePriceSchema },
  'POST /admin/workspaces': { summary: 'Create a workspace (optionally with credits).', tag: 'Admin', scope: 'admin', body: CreateWorkspaceSchema },
  'GET /admin/workspaces': { summary: 'Every workspace with its balance.', tag: 'Admin', scope: 'admin' },
  'GET /admin/workspaces/:id': { summary: 'One workspace.', tag: 'Admin', scope: 'admin' },
  'POST /admin/workspaces/:id/topups': { summary: 'Add credits (a ledger row).', tag: 'Admin', scope: 'admin', body: TopupSchema },
  'POST /admin/workspaces/:id/refunds': { summary: "Refund (part of) one request's charge, once.", tag: 'Admin', scope: 'admin', body: RefundSchema },
  'GET /admin/deployments': { summary: 'Every deployment (route) with its breaker, error rate and latency.', tag: 'Admin', scope: 'admin' },
  'POST /admin/deployments/disable': { summary: 'Take a deployment out of routing.', tag: 'Admin', scope: 'admin', body: DeploymentToggleSchema },
  'POST /admin/deployments/enable': { summary: 'Put a deployment back into routing.', tag: 'Admin', scope: 'admin', body: DeploymentToggleSchema },
  'POST /admin/keys': { summary: 'Mint a key in any workspace.', tag: 'Admin', scope: 'admin', body: MintKeySchema },
  'GET /admin/keys': { summary: 'Every key (never their secrets).', tag: 'Admin', scope: 'admin' },
  'GET /admin/keys/:id': { summary: 'One key.', tag: 'Admin', scope: 'admin' },
  'PATCH /admin/keys/:id': { summary: "Change a key's name, scopes or limits.", tag: 'Admin', scope: 'admin', body: PatchKeySchema },
  'DELETE /admin/keys/:id': { summary: 'Revoke a key.', tag: 'Admin', scope: 'admin' },
  'GET /admin/spend': { summary: 'Spend across workspaces by key, workspace, model or provider.', tag: 'Admin', scope: 'admin', query: SpendQuery },
};

function schemaOf(s: z.ZodType): Record<string, unknown> {
  const out = z.toJSONSchema(s, { target: 'draft-2020-12', io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete out.$schema;
  return out;
}

const ERROR = {
  type: 'object', required: ['error'],
  properties: { error: { type: 'object', properties: { type: { type: 'string' }, code: { type: ['string', 'null'] }, message: { type: 'string' }, param: { type: ['string', 'null'] } } } },
};

function describeScope(scope: Exclude<Scope, null>): string {
  if (scope === 'operator') return 'An operator key: the master key or one of config `api_keys`.';
  if (typeof scope === 'string') return `Key scope: \`${scope}\`.`;
  return `Key scope: any of ${scope.map((s) => `\`${s}\``).join(', ')}.`;
}

/** The OpenAPI 3.1 document for the recorded routes; throws for a route without docs (a test checks). */
export function openApiDocument(routes: readonly RecordedRoute[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const id = `${r.method.toUpperCase()} ${r.path}`;
    const doc = ROUTE_DOCS[id];
    if (!doc) throw new Error(`route ${id} has no entry in ROUTE_DOCS (src/server/openapi.ts)`);
    const path = r.path.replace(/:([a-z_]+)/g, '{$1}').replace(/\/\*$/, '/{asset}');
    const parameters: unknown[] = [];
    for (const m of path.matchAll(/\{([a-z_]+)\}/g)) parameters.push({ name: m[1], in: 'path', required: true, schema: { type: 'string' } });
    if (doc.query) {
      const q = schemaOf(doc.query) as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, schema] of Object.entries(q.properties ?? {})) parameters.push({ name, in: 'query', required: (q.required ?? []).includes(name), schema });
    }
    const produces = doc.produces ?? json;
    const op: Record<string, unknown> = {
      summary: doc.summary, tags: [doc.tag], operationId: `${r.method}${path.replace(/[^a-zA-Z0-9]+/g, '_')}`,
      ...(doc.scope ? { security: [{ bearer: [] }], description: describeScope(doc.scope) } : { security: [] }),
      ...(parameters.length ? { parameters } : {}),
      ...(doc.body ? { requestBody: { required: true, content: { [json]: { schema: schemaOf(doc.body) } } } } : {}),
      responses: {
        [r.method === 'post' && /keys$|workspaces$|register$/.test(r.path) ? '201' : '200']: {
          description: 'Success', content: { [produces]: { schema: produces === json ? { type: 'object' } : { type: 'string' } } },
        },
        default: { description: "An error in OpenAI's envelope", content: { [json]: { schema: { $ref: '#/components/schemas/Error' } } } },
      },
    };
    (paths[path] ??= {})[r.method] = op;
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Sluice', version, description: 'A self-hosted, OpenAI-compatible LLM gateway: routing with failover, keys and limits, credits and a ledger, and a savings engine.' },
    servers: [{ url: '/' }],
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A Sluice key (sk-sluice-…) or the master key.' } }, schemas: { Error: ERROR } },
    paths,
  };
}
