// The model catalog: slugs (`provider/model`) with the routes that can serve them.
// A catalog model is served by its own provider when that provider is enabled, and by
// the sim provider when sim is on. Lookups are Map hits: resolved once per request.
import type { ModelEntry, Prices } from '../config/schema.js';
import { Errors, GatewayError } from '../errors.js';
import { servesType, type Provider } from '../providers/provider.js';

export interface Route {
  readonly slug: string;
  readonly provider: Provider;
  readonly upstreamModel: string;
  /** `provider/upstream-model`, the value of x-gateway-decision. */
  readonly decision: string;
  /** `decision` as a JSON string literal, encoded once. */
  readonly decisionJson: string;
  readonly model: ModelEntry;
  /** This route's prices (a variant may be priced differently from the model's list price). */
  readonly prices: Prices;
  readonly region: string | null;
  /** Zero data retention at this provider. */
  readonly zdr: boolean;
}

export type RoutePolicy = 'cost' | 'latency' | 'balanced';

export interface ModelRoutes {
  readonly model: ModelEntry;
  readonly routes: readonly Route[];
  /** Set for aliases: how their routes are ordered per request (plain models are cheapest first). */
  readonly policy?: RoutePolicy;
}

export class Catalog {
  private readonly bySlug = new Map<string, ModelRoutes>();
  private readonly byBareId = new Map<string, ModelRoutes>();

  private readonly aliases = new Map<string, ModelRoutes>();

  constructor(models: readonly ModelEntry[], private readonly providers: ReadonlyMap<string, Provider>, aliases: Record<string, { models: string[]; policy: RoutePolicy }> = {}) {
    const sim = [...providers.values()].find((p) => p.kind === 'sim');
    for (const model of models) {
      const providerName = model.slug.slice(0, model.slug.indexOf('/'));
      const routes: Route[] = [];
      const own = providers.get(providerName);
      if (own && own.kind !== 'sim' && servesType(own, model.type)) routes.push(route(model, own, model.upstream_id, model.prices, model.region ?? own.region ?? null, model.zdr));
      for (const variant of model.routes) {
        const p = providers.get(variant.provider);
        if (p && p.kind !== 'sim' && servesType(p, model.type)) routes.push(route(model, p, variant.upstream_id, variant.prices ?? model.prices, variant.region ?? p.region ?? model.region ?? null, variant.zdr ?? model.zdr));
      }
      // Cheapest first (the default policy); the simulator, when on, is the last resort.
      routes.sort((a, b) => a.prices.input + a.prices.output - (b.prices.input + b.prices.output));
      // the simulator keeps nothing and runs here: it meets any region or ZDR constraint
      if (sim) routes.push(route(model, sim, model.slug.slice(providerName.length + 1), model.prices, 'local', true));
      const entry = { model, routes };
      this.bySlug.set(model.slug, entry);
      const bare = model.slug.slice(providerName.length + 1);
      if (!this.byBareId.has(bare)) this.byBareId.set(bare, entry);
      if (!this.byBareId.has(model.upstream_id)) this.byBareId.set(model.upstream_id, entry);
    }
    for (const [name, alias] of Object.entries(aliases)) {
      const members = alias.models.map((slug) => {
        const m = this.bySlug.get(slug);
        if (!m) throw new GatewayError(Errors.modelNotFound, `aliases.${name}: '${slug}' is not in the catalog`, 'aliases');
        if (m.model.type !== this.bySlug.get(alias.models[0]!)?.model.type) throw new GatewayError(Errors.invalidRequest, `aliases.${name}: '${slug}' is ${m.model.type === 'chat' ? 'a chat' : `an ${m.model.type}`} model and '${alias.models[0]}' is not: an alias's models must all be of one type`, 'aliases');
        return m;
      });
      const routes = members.flatMap((m) => m.routes).sort((a, b) => a.prices.input + a.prices.output - (b.prices.input + b.prices.output));
      this.aliases.set(name, { model: members[0]!.model, routes, policy: alias.policy });
    }
  }

  /** An alias, `openai/gpt-4.1-mini`, or the bare `gpt-4.1-mini` (what OpenAI SDK users already send). */
  find(requested: string): ModelRoutes | undefined {
    return this.aliases.get(requested) ?? this.bySlug.get(requested) ?? this.byBareId.get(requested);
  }

  aliasNames(): string[] {
    return [...this.aliases.keys()];
  }

  resolve(requested: string): ModelRoutes {
    const found = this.find(requested);
    if (!found) {
      throw new GatewayError(Errors.modelNotFound, `The model '${requested}' does not exist in this gateway's catalog. GET /v1/models lists the models.`, 'model');
    }
    return found;
  }

  /** A provider entry by name (enabled ones only). */
  provider(name: string): Provider | undefined {
    return this.providers.get(name);
  }

  pricesOf(requested: string): Prices | undefined {
    return this.find(requested)?.model.prices;
  }

  models(): ModelRoutes[] {
    return [...this.bySlug.values()];
  }

  /** Every route of every model, once each (a deployment is a route). */
  routes(): Route[] {
    return this.models().flatMap((m) => m.routes);
  }
}

function route(model: ModelEntry, provider: Provider, upstreamModel: string, prices: Prices, region: string | null, zdr: boolean): Route {
  const decision = `${provider.name}/${upstreamModel}`;
  return { slug: model.slug, provider, upstreamModel, decision, decisionJson: JSON.stringify(decision), model, prices, region, zdr };
}

/** Catalog data file plus config entries (config wins by slug). */
export function mergeModels(builtin: readonly ModelEntry[], fromConfig: readonly ModelEntry[]): ModelEntry[] {
  const bySlug = new Map<string, ModelEntry>();
  for (const m of builtin) bySlug.set(m.slug, m);
  for (const m of fromConfig) bySlug.set(m.slug, m);
  return [...bySlug.values()];
}
