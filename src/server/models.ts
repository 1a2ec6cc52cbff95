// GET /v1/models and GET /v1/models/{provider}/{model}: OpenAI's list shape, grouped by
// slug, each with its route variants, context window, capabilities and prices.
import type { Catalog, ModelRoutes } from '../router/catalog.js';

export function modelView(entry: ModelRoutes) {
  const { model } = entry;
  return {
    id: model.slug,
    object: 'model' as const,
    created: 0,
    owned_by: model.slug.slice(0, model.slug.indexOf('/')),
    context_window: model.context_window,
    max_output_tokens: model.max_output_tokens ?? null,
    type: model.type,
    ...(model.dimensions ? { dimensions: model.dimensions } : {}),
    ...(model.image_units ? { image_units: model.image_units } : {}),
    ...(model.audio_units_per_second ? { audio_units_per_second: model.audio_units_per_second } : {}),
    capabilities: model.capabilities,
    pricing: { unit: 'usd_per_1m_tokens', ...model.prices },
    routes: entry.routes.map((r) => ({ provider: r.provider.name, upstream_model: r.upstreamModel, decision: r.decision, region: r.region, zdr: r.zdr, pricing: { unit: 'usd_per_1m_tokens', ...r.prices } })),
  };
}

/** The list is static for a process's life: encoded once. Aliases and `auto` are listed after the models. */
export function modelListBody(catalog: Catalog, router: { simple: string; medium: string; complex: string }): Buffer {
  const aliases = catalog.aliasNames().map((name) => {
    const entry = catalog.find(name)!;
    return { id: name, object: 'model' as const, created: 0, owned_by: 'sluice', alias: true, policy: entry.policy ?? 'cost',
      routes: entry.routes.map((r) => ({ provider: r.provider.name, upstream_model: r.upstreamModel, decision: r.decision })) };
  });
  const auto = { id: 'auto', object: 'model' as const, created: 0, owned_by: 'sluice', router: { simple: router.simple, medium: router.medium, complex: router.complex } };
  return Buffer.from(JSON.stringify({ object: 'list', data: [...catalog.models().map(modelView), ...aliases, auto] }));
}
