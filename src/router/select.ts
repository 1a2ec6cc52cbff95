// Which routes may serve a request, best first: the model's (or alias's) routes in its
// policy's order, narrowed by a pinned provider, by what the endpoint needs, and by the
// route constraints of the key and every key above it. Every route a request may fail over
// to is in the list, so failover can never take it where its key may not go.
import { Errors, GatewayError } from '../errors.js';
import { isRecord } from '../json.js';
import type { ModelEntry } from '../config/schema.js';
import type { ChatRequest } from '../wire/chat.js';
import type { Catalog, ModelRoutes, Route, RoutePolicy } from './catalog.js';
import type { RouteHealth } from './health.js';
import { speaksResponses, type Provider } from '../providers/provider.js';

/** A key's route constraints (accounts' KeyLimits has these fields). */
export interface RouteConstraints {
  models?: readonly string[] | undefined;
  providers?: readonly string[] | undefined;
  regions?: readonly string[] | undefined;
  zdr_only?: boolean | undefined;
}

/** A key whose constraints apply: its id (for the 403 that names it) and its constraints, or none. */
export interface ConstrainedKey {
  readonly id: string;
  readonly kind: string;
  readonly limits: RouteConstraints | null | undefined;
}

/** May a request under these constraints go to this route? (models, providers, regions, zero data retention) */
export function routeAllowed(limits: RouteConstraints, route: { slug: string; provider: { name: string }; region: string | null; zdr: boolean }): boolean {
  if (limits.providers && !limits.providers.includes(route.provider.name)) return false;
  if (limits.zdr_only && !route.zdr) return false;
  if (limits.regions && !(route.region !== null && (route.region === 'local' || limits.regions.includes(route.region)))) return false;
  return modelAllowed(limits, route.slug);
}

/** Does a key's `models` list (exact slugs, `provider/*`, `*`; none: any) let it use this model? */
export function modelAllowed(limits: RouteConstraints, slug: string): boolean {
  if (!limits.models) return true;
  return limits.models.some((m) => m === slug || m === '*' || (m.endsWith('/*') && slug.startsWith(m.slice(0, -1))));
}

/** The constraints a key holds its requests to, or null for none (master and operator keys, keys without route limits). */
export function constraintsOf(k: ConstrainedKey): RouteConstraints | null {
  const l = k.limits;
  if (!l || k.kind === 'master' || k.kind === 'operator' || !(l.models || l.providers || l.regions || l.zdr_only)) return null;
  return l;
}

/** May every key of the chain send a request to this route? */
export function chainAllows(chain: readonly ConstrainedKey[], route: Route): boolean {
  for (const k of chain) {
    const l = constraintsOf(k);
    if (l && !routeAllowed(l, route)) return false;
  }
  return true;
}

export interface Selection {
  entry: ModelRoutes;
  /** Best first; never empty. */
  routes: readonly Route[];
}

export interface SelectInput {
  /** What the caller asked for (named in errors). */
  requested: string;
  /** The model or alias to resolve (the smart router's pick for `auto`). */
  model: string;
  /** A pinned provider ('' for none). */
  pin: string;
  /** Only routes whose provider speaks this API natively (the Responses API passes through to OpenAI-kind upstreams). */
  nativeKind: 'openai' | 'anthropic' | null;
  /** The key and the keys above it. */
  chain: readonly ConstrainedKey[];
  /** The key that made the request (the error says "This key" for it). */
  caller: ConstrainedKey;
}

export class RouteSelector {
  constructor(private readonly catalog: Catalog, private readonly health: RouteHealth) {}

  select(q: SelectInput): Selection {
    const entry = this.catalog.resolve(q.model);
    let routes = entry.policy ? this.ordered(entry.routes, entry.policy) : entry.routes;
    if (q.pin) {
      const all = routes;
      routes = all.filter((r) => r.provider.name === q.pin);
      if (!routes.length) {
        // An unknown route: a 404, as an unknown model is (SPEC), naming the field that asked for it.
        throw new GatewayError(Errors.notFound, `No route of '${q.requested}' goes through provider '${q.pin.slice(0, 64)}' (its routes: ${all.map((r) => r.provider.name).join(', ') || 'none'}).`, 'provider');
      }
    }
    if (q.nativeKind) {
      routes = routes.filter((r) => (q.nativeKind === 'openai' ? speaksResponses(r.provider) : r.provider.kind === q.nativeKind));
      if (!routes.length) throw new GatewayError(Errors.invalidRequest, `No route of '${q.requested}' speaks the ${q.nativeKind === 'openai' ? 'Responses' : 'Messages'} API.`, 'model');
    }
    for (const k of q.chain) {
      const limits = constraintsOf(k);
      if (!limits) continue;
      const all = routes;
      routes = all.filter((r) => routeAllowed(limits, r));
      if (!routes.length && all.length) {
        throw new GatewayError(Errors.modelNotAllowed, `${k === q.caller ? 'This key' : `The key that minted this one (${k.id})`} may not use '${q.requested}' on any of its routes (${describeConstraints(limits)}).`, 'model');
      }
    }
    if (!routes.length) throw new GatewayError(Errors.noRoute, `No enabled provider serves '${q.requested}'. Set its provider key or enable sim.`, 'model');
    return { entry, routes };
  }

  /** An alias's routes in its policy's order: cheapest, fastest (latency EWMA; unmeasured first), or price × latency. */
  private ordered(routes: readonly Route[], policy: RoutePolicy): readonly Route[] {
    if (policy === 'cost') return routes;
    const latency = (r: Route) => this.health.view(r.decision).latency_ewma_ms ?? 0;
    const price = (r: Route) => r.prices.input + r.prices.output;
    const score = policy === 'latency' ? latency : (r: Route) => price(r) * (1 + latency(r));
    return [...routes].sort((a, b) => score(a) - score(b));
  }
}

/** A key's route constraints, for the 403 that names them. */
function describeConstraints(l: RouteConstraints): string {
  const parts: string[] = [];
  if (l.models) parts.push(`models ${l.models.join(', ')}`);
  if (l.providers) parts.push(`providers ${l.providers.join(', ')}`);
  if (l.regions) parts.push(`regions ${l.regions.join(', ')}`);
  if (l.zdr_only) parts.push('zero-data-retention routes only');
  return `it allows ${parts.join('; ')}`;
}

/**
 * Passthrough or bridge: a request in an API some upstreams speak themselves (OpenAI's
 * Responses, Anthropic's Messages) goes to such a route when one serves the model, matches the
 * pin, and every key of the chain may use it; otherwise it is bridged onto the chat path,
 * where all the model's routes apply.
 */
export function passesThrough(routes: readonly Route[], chain: readonly ConstrainedKey[], pin: string, speaks: (p: Provider) => boolean): boolean {
  return routes.some((r) => speaks(r.provider) && (!pin || r.provider.name === pin) && chainAllows(chain, r));
}

/**
 * The routes whose model can do what the request asks (tools, JSON output, images), in their
 * order: an alias's cheapest capable model serves, not a refusal because its cheapest model
 * cannot. None: the first route's model's refusal, naming what it lacks. (A model that lists
 * no capabilities is not held to any.)
 */
export function capableRoutes(request: ChatRequest, routes: readonly Route[]): readonly Route[] {
  const needs: Array<readonly [ModelEntry['capabilities'][number], string, string]> = [];
  if (Array.isArray(request.tools) && request.tools.length) needs.push(['tools', 'tools', 'tools']);
  // (a Responses request passed through is read in its own shape: `text.format`, images in `input`)
  const responses = request as unknown as { text?: { format?: { type?: unknown } }; input?: unknown };
  const format = (request.response_format ?? responses.text?.format) as { type?: unknown } | null | undefined;
  if (format && (format.type === 'json_object' || format.type === 'json_schema')) needs.push(['json', request.response_format ? 'response_format' : 'text.format', 'JSON output']);
  const isImage = (p: unknown) => typeof p === 'object' && p !== null && ((p as { type?: unknown }).type === 'image_url' || (p as { type?: unknown }).type === 'input_image');
  if (request.messages.some((m) => Array.isArray(m.content) && m.content.some(isImage))) needs.push(['vision', 'messages', 'image inputs']);
  else if (Array.isArray(responses.input) && responses.input.some((item) => isImage(item) || (isRecord(item) && Array.isArray(item.content) && item.content.some(isImage)))) {
    needs.push(['vision', 'input', 'image inputs']);
  }
  if (needs.length === 0) return routes;
  const lacking = (model: ModelEntry) => (model.capabilities.length ? needs.find(([cap]) => !model.capabilities.includes(cap)) : undefined);
  const capable = routes.filter((r) => !lacking(r.model));
  if (capable.length) return capable.length === routes.length ? routes : capable;
  const model = routes[0]!.model;
  const [, param, what] = lacking(model)!;
  throw new GatewayError(Errors.invalidRequest, `'${model.slug}' does not support ${what}${routes.some((r) => r.model !== model) ? ', nor does any other model this request may be served by' : ''}.`, param);
}
