// What the main thread and each event-loop thread (thread.ts) build alike from the config:
// the providers and the catalog of models and routes through them.
import { loadBuiltinModels } from './config/catalog-data.js';
import { ConfigError } from './config/load.js';
import type { Config, ModelEntry } from './config/schema.js';
import { openProvider } from './providers/open.js';
import type { Provider } from './providers/provider.js';
import { SimProvider } from './providers/sim.js';
import { skillOf } from './providers/sim-tasks.js';
import { Catalog, mergeModels } from './router/catalog.js';
import type { WorkerPool } from './workers/pool.js';

export function buildProviders(config: Config, pool: WorkerPool, models: readonly ModelEntry[]): Map<string, Provider> {
  const providers = new Map<string, Provider>();
  const http = {
    connectTimeoutMs: config.upstream.connect_timeout_ms, headersTimeoutMs: config.upstream.headers_timeout_ms,
    bodyTimeoutMs: config.upstream.body_timeout_ms, connections: config.upstream.connections,
    keepAliveTimeoutMs: config.upstream.keep_alive_timeout_ms,
  };
  for (const [name, p] of Object.entries(config.providers)) {
    if (p.enabled === false) continue;
    let provider: Provider | null;
    try { provider = openProvider(name, p, http, config.billing.default_output_cap); } catch (err) {
      throw new ConfigError(err instanceof Error ? err.message : String(err));
    }
    if (provider) providers.set(name, provider);
  }
  // Sim serves every catalog model when no real provider is configured (or when asked to).
  const simSetting = config.providers.sim?.enabled;
  if (simSetting === true || (simSetting === undefined && providers.size === 0)) {
    providers.set('sim', new SimProvider(pool, {
      ttftMs: config.sim.ttft_ms, tokensPerSecond: config.sim.tokens_per_second, defaultMaxTokens: config.sim.default_max_tokens,
      // the sim serves a model under its slug's model part; its skill follows its list price
      skills: new Map(models.map((m) => [m.slug.slice(m.slug.indexOf('/') + 1), skillOf(m.prices.output)])),
    }));
  }
  return providers;
}

/** Each provider entry's `deployments` as routes of the models they name (a slug the catalog lacks is a config error). */
export function withDeployments(models: ModelEntry[], config: Config): ModelEntry[] {
  const bySlug = new Map(models.map((m, i) => [m.slug, i]));
  for (const [name, p] of Object.entries(config.providers)) {
    for (const [slug, upstreamId] of Object.entries(p.deployments)) {
      const i = bySlug.get(slug);
      if (i === undefined) throw new ConfigError(`providers.${name}.deployments: '${slug}' is not a model slug in the catalog (GET /v1/models lists them)`);
      const m = models[i]!;
      models[i] = { ...m, routes: [...m.routes.filter((r) => r.provider !== name), { provider: name, upstream_id: upstreamId }] };
    }
  }
  return models;
}

/**
 * Aliases every gateway has (SPEC: `frontier`, `fast`), over the built-in catalog's models:
 * `frontier` the most capable models, cheapest first; `fast` small models, the fastest
 * measured first. An alias of the same name in config replaces one; a member the catalog
 * lacks (config may replace the built-in models) is left out.
 */
const BUILTIN_ALIASES: Record<string, { models: string[]; policy: 'cost' | 'latency' }> = {
  frontier: { models: ['openai/gpt-5', 'gemini/gemini-2.5-pro', 'anthropic/claude-sonnet-4-5'], policy: 'cost' },
  fast: { models: ['openai/gpt-4.1-nano', 'gemini/gemini-2.5-flash-lite', 'openai/gpt-4o-mini', 'anthropic/claude-haiku-4-5', 'bedrock/nova-micro'], policy: 'latency' },
};

function builtinAliases(models: readonly ModelEntry[]): Record<string, { models: string[]; policy: 'cost' | 'latency' }> {
  const known = new Set(models.filter((m) => m.type === 'chat').map((m) => m.slug));
  const out: Record<string, { models: string[]; policy: 'cost' | 'latency' }> = {};
  for (const [name, alias] of Object.entries(BUILTIN_ALIASES)) {
    const members = alias.models.filter((slug) => known.has(slug));
    if (members.length) out[name] = { ...alias, models: members };
  }
  return out;
}

/** The providers config enables and the catalog over them (a catalog the providers cannot serve is a config error). */
export async function buildCatalog(config: Config, pool: WorkerPool): Promise<{ providers: Map<string, Provider>; catalog: Catalog }> {
  const models = withDeployments(mergeModels(await loadBuiltinModels(), config.models), config);
  const providers = buildProviders(config, pool, models);
  try {
    return { providers, catalog: new Catalog(models, providers, { ...builtinAliases(models), ...config.aliases }) };
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : String(err));
  }
}
