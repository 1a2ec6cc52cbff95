// Start-up: config → store → keys → worker pool → providers → catalog → server; and the
// graceful shutdown on SIGTERM/SIGINT: stop accepting, finish in-flight, flush the
// ledger, close LMDB.
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AccessLog } from './ops/access-log.js';
import { Metrics } from './ops/metrics.js';
import { loadWebAssets } from './ops/web.js';
import { KeyRing } from './accounts/keys.js';
import { asToldUncommitted, Ledger, RequestIds, type LedgerRow } from './accounts/ledger.js';
import { Limits } from './accounts/limits.js';
import { UsageRollups } from './accounts/usage.js';
import { Workspaces } from './accounts/workspaces.js';
import { ConfigError, loadConfig } from './config/load.js';
import { mainHttp, type Config } from './config/schema.js';
import { ChatGateway } from './gateway/chat.js';
import { ResponseIds } from './gateway/response-ids.js';
import { AdaptiveRouter, type Candidate } from './router/adaptive.js';
import type { Catalog } from './router/catalog.js';
import { RouteHealth, deploymentViews } from './router/health.js';
import { startServer } from './server/app.js';
import { ThreadHost } from './server/threads.js';
import { buildCatalog } from './compose.js';
import { openStore, surviveFailedCommits, type Store } from './store/lmdb.js';
import { PeriodicSweep } from './store/periodic-sweep.js';
import { ResponseCache } from './savings/cache.js';
import { enabledSavings, M } from './savings/mechanisms.js';
import { WorkerPool } from './workers/pool.js';

/** The adaptive router's candidates (config, else the three buckets' models), each priced at its cheapest route. */
function candidatesOf(config: Config, catalog: Catalog): Candidate[] {
  const names = config.router.adaptive.candidates.length ? config.router.adaptive.candidates : [config.router.simple, config.router.medium, config.router.complex];
  const out: Candidate[] = [];
  const seen = new Map<object, string>();
  for (const name of new Set(names)) {
    const entry = name === 'auto' ? undefined : catalog.find(name);
    if (!entry) throw new ConfigError(`router.adaptive.candidates: '${name}' is not a model or alias in the catalog`);
    const same = seen.get(entry);
    if (same) throw new ConfigError(`router.adaptive.candidates: '${name}' and '${same}' name the same model`);
    seen.set(entry, name);
    out.push({ name, prices: entry.routes[0]?.prices ?? entry.model.prices });
  }
  return out;
}

/**
 * Where uploads spill, emptied: a spool file is unlinked as soon as it is opened, so only a
 * crash between the two leaves one, and nothing in it is needed again.
 */
async function emptySpoolDir(dataDir: string): Promise<string> {
  const dir = join(dataDir, 'spool');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/**
 * The private socket the event-loop threads hand requests over on: in the data dir (mode
 * 0700: only this user can open it; one from a killed run is removed first), or, where that
 * path is too long for a unix socket, in a directory of its own under the temp dir.
 */
async function handoverSocket(dataDir: string): Promise<{ path: string; remove(): Promise<void> }> {
  const inData = join(dataDir, 'threads.sock');
  if (Buffer.byteLength(inData) < 100) {
    await rm(inData, { force: true });
    return { path: inData, remove: () => rm(inData, { force: true }) };
  }
  const dir = await mkdtemp(join(tmpdir(), 'sluice-'));
  return { path: join(dir, 'threads.sock'), remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Cluster mode (both URLs set): limits and credits move to the shared Redis, keys and
 * workspaces follow Postgres, and ledger rows are shipped there from the local outbox.
 * Its modules (and the Redis and Postgres clients) load only then.
 */
async function startCluster(config: Config, store: Store, ring: KeyRing, workspaces: Workspaces, ledger: Ledger) {
  const c = config.cluster;
  if (!c.redis_url || !c.postgres_url) return null;
  const [{ openCluster, ClusterStartError, redact }, { Shipper }, { SharedLimits }, { Replication }, { SharedExactCache }, { SharedSemanticCache }, { SharedResponses }, { SharedFlights }] = await Promise.all([
    import('./store/cluster.js'), import('./accounts/shipper.js'), import('./accounts/shared-limits.js'), import('./accounts/replication.js'), import('./savings/shared-cache.js'),
    import('./savings/shared-semantic.js'), import('./gateway/shared-responses.js'), import('./savings/shared-flights.js')]);
  let semantic: InstanceType<typeof SharedSemanticCache> | null = null;
  let sharedRouter: { stop(): void } | null = null;
  let cluster: Awaited<ReturnType<typeof openCluster>>;
  try {
    cluster = await openCluster({ redisUrl: c.redis_url, postgresUrl: c.postgres_url, prefix: c.redis_prefix, redisTimeoutMs: c.redis_timeout_ms, postgresPoolSize: c.postgres_pool });
  } catch (err) {
    if (err instanceof ClusterStartError) throw new ConfigError(`cluster mode: ${err.message}`);
    throw err;
  }
  const shipper = new Shipper(cluster, store, workspaces, c.ship_ms);
  const shared = new SharedLimits(cluster, shipper, c.lease_ms, c.unmetered_without_redis === 'local_limits', (id) => [id, ...ring.descendants(id).map((k) => k.id)]);
  shipper.limits = shared;
  ledger.onRow((row) => shipper.wrote(row));
  shared.ledger = ledger;
  workspaces.shared = true;
  workspaces.live = (ids) => shared.live(ids);
  ledger.cluster = { credited: (row, ws) => shared.credit(row.id, ws, row.delta_nano) };
  ledger.lookup = (id) => shipper.rowSoon(id);
  ledger.creditsEverywhere = (ws, limit) => shipper.credits(ws, limit, ledger.credits(ws, limit));
  const replication = new Replication(cluster, ring, workspaces, c.sync_ms);
  const exactCache = new SharedExactCache(cluster);
  await replication.start();
  shipper.start();
  return {
    shared, replica: cluster.replica, exactCache, flights: new SharedFlights(cluster, exactCache), responses: new SharedResponses(cluster), redis: redact(c.redis_url), postgres: redact(c.postgres_url),
    /** For /health: 'ready' when Redis is connected (ioredis's state otherwise), and the rows waiting to be shipped. */
    health: () => ({ redis: cluster.redis.status, outbox: shipper.waiting }),
    onNotice: (kind: string, hear: (payload: string) => void) => replication.on(kind, hear),
    /** After this replica's listener was down (and notices were missed), each time it listens again. */
    onRelisten: (then: () => void) => { replication.onRelisten = then; },
    /** Other replicas' rows are read into this one's ledger from now on (once its listeners are wired). */
    followRows() { shipper.importer = ledger; },
    /** The semantic cache's entries shared through Postgres (read before the gateway serves). */
    async shareSemantic(cache: ResponseCache) {
      semantic = new SharedSemanticCache(cluster, cache, c.sync_ms);
      await semantic.start();
    },
    /** The adaptive router learns from every replica's signals, prices and resets (applied before the gateway serves). */
    async shareRouter(adaptive: AdaptiveRouter) {
      const { SharedRouter } = await import('./router/shared-router.js');
      const r = new SharedRouter(cluster, adaptive, c.sync_ms);
      sharedRouter = r;
      await r.start((kind, hear) => replication.on(kind, hear));
    },
    /** A graceful stop: the outbox shipped (what cannot be waits for the next start), then the connections closed. */
    async stop() {
      replication.stop();
      semantic?.stop();
      sharedRouter?.stop();
      shipper.stop();
      await shipper.drain().catch((err: unknown) => console.error(`cluster: ${shipper.waiting} ledger row(s) stay in the outbox for the next start: ${String(err)}`));
      shared.close();
      await cluster.close();
    },
  };
}

async function main(): Promise<void> {
  const config = loadConfig();
  const dataDir = resolve(config.data_dir);
  surviveFailedCommits();
  const store = await openStore(dataDir, { fsync: config.ledger.fsync });
  const { ring, masterKeyFile } = await KeyRing.open(store, { dataDir, masterKey: config.master_key, operatorKeys: config.api_keys });
  const adaptiveConfig = config.router.adaptive;
  const pool = await WorkerPool.start(config.workers, Math.max(config.worker_bytes_per_workspace, config.max_body_bytes),
    { types: adaptiveConfig.task_types, fallback: adaptiveConfig.default_task });
  if (config.savings.semantic_cache.enabled) pool.warmEmbeddings();
  const { providers, catalog } = await buildCatalog(config, pool);
  // A provider no catalog model routes through serves nothing: say so at start, not at the first 503.
  const routed = new Set(catalog.routes().map((r) => r.provider));
  for (const [name, p] of providers) {
    if (p.kind === 'sim' || routed.has(p)) continue;
    console.warn(`warning: provider '${name}' serves no model: no catalog slug starts with '${name}/', and no route names it. Add providers.${name}.deployments (slug: upstream id${p.kind === 'azure' ? '; or AZURE_OPENAI_DEPLOYMENTS=slug=deployment,…' : ''}) or models with routes through it.`);
  }
  const baseline = config.baseline_model ? catalog.pricesOf(config.baseline_model) : undefined;
  if (config.baseline_model && !baseline) throw new ConfigError(`baseline_model / BASELINE_MODEL: '${config.baseline_model}' is not in the catalog`);
  const workspaces = new Workspaces(store);
  const ledger = new Ledger(store, workspaces, config.ledger.flush_ms, !config.ledger.fsync);
  const limits = new Limits(store);
  ledger.addPersister((force) => limits.persistDirty(force ? 0 : 500));
  ledger.onRollback(() => limits.rewrite());
  const cluster = await startCluster(config, store, ring, workspaces, ledger);
  const usage = new UsageRollups(store);
  ledger.onRow((row) => usage.add(row));
  ledger.onImport((row) => usage.add(row)); // (cluster mode: every replica's requests in this one's usage)
  ledger.addPersister((force) => usage.persistDirty(force ? 0 : 250));
  ledger.onRollback(() => usage.reload());
  const ids = new RequestIds();
  const health = new RouteHealth({ failures: config.upstream.breaker_failures, cooldownMs: config.upstream.breaker_cooldown_ms });
  for (const bucket of ['simple', 'medium', 'complex'] as const) {
    if (!catalog.find(config.router[bucket])) throw new ConfigError(`router.${bucket}: '${config.router[bucket]}' is not a model or alias in the catalog`);
  }
  const router = { mediumFrom: config.router.medium_from, complexFrom: config.router.complex_from,
    simple: config.router.simple, medium: config.router.medium, complex: config.router.complex };
  const adaptive = adaptiveConfig.enabled ? new AdaptiveRouter(store, {
    candidates: candidatesOf(config, catalog), margin: adaptiveConfig.margin, seed: adaptiveConfig.seed, tenantCap: adaptiveConfig.tenant_feedback_cap,
    judged: adaptiveConfig.judge.model !== null,
  }) : null;
  if (adaptive) {
    // Each routed request its own call answered is a pull of its arm: its cost and tokens
    // (cluster mode: every replica's, so the replicas learn as one).
    const pulled = (row: LedgerRow) => {
      // (a row from before the last reset, read back from another replica after it, teaches nothing)
      if (row.router_model && row.router_task && row.cache === 'miss' && row.status === 200 && row.ts >= adaptive.lastReset) {
        adaptive.observe(row.router_task, row.router_model, row.cost_usd, row.prompt_tokens, row.completion_tokens);
      }
    };
    ledger.onRow(pulled);
    ledger.onImport(pulled);
  }
  if (cluster && adaptive) await cluster.shareRouter(adaptive);
  cluster?.followRows();
  const judgeModel = adaptiveConfig.judge.model;
  if (adaptive && judgeModel && (judgeModel === 'auto' || !catalog.find(judgeModel))) {
    throw new ConfigError(`router.adaptive.judge.model: '${judgeModel}' is not a model or alias in the catalog`);
  }
  const judge = adaptive && judgeModel
    ? { model: judgeModel, sampleRate: adaptiveConfig.judge.sample_rate, maxInFlight: adaptiveConfig.judge.max_in_flight, seed: adaptiveConfig.seed }
    : null;
  const verifyModel = config.savings.semantic_cache.verify.model;
  if (verifyModel && (verifyModel === 'auto' || !catalog.find(verifyModel))) {
    throw new ConfigError(`savings.semantic_cache.verify.model: '${verifyModel}' is not a model or alias in the catalog`);
  }
  const verify = config.savings.semantic_cache.enabled && verifyModel ? { model: verifyModel, maxInFlight: config.savings.semantic_cache.verify.max_in_flight } : null;
  const cache = new ResponseCache(store, { cache: config.savings.exact_cache.max_entries, semantic: config.savings.semantic_cache.max_entries });
  if (cluster) {
    cache.shared = cluster.exactCache;
    // Evictions and purges through any replica reach the copies held here; copies held from
    // before this start, or from before a listener failed, may be of entries evicted meanwhile: dropped.
    cluster.onNotice('cache', (payload) => cache.heard(payload));
    cluster.onRelisten(() => void cache.forgetCopies());
    await cache.forgetCopies();
    if (config.savings.semantic_cache.enabled) await cluster.shareSemantic(cache);
  }
  const responseIds = new ResponseIds(store);
  if (cluster) {
    responseIds.shared = cluster.responses;
    // (payload `<workspace>:<id>`: workspace ids have no colon)
    cluster.onNotice('response', (payload) => { const at = payload.indexOf(':'); if (at > 0) responseIds.dropped(payload.slice(0, at), payload.slice(at + 1)); });
  }
  // The expiry sweep (store/periodic-sweep.ts): every 10 s, or every second while records
  // expire faster than that takes away (cache.behind), in slices of 500 records a timer apart.
  const sweeper = new PeriodicSweep((budget) => { cache.sweep(budget); responseIds.sweep(budget); return cache.behind; });
  sweeper.start();
  const chat = new ChatGateway({ catalog, keys: ring, responseIds, ledger, recording: () => store.headroom.room, workspaces, limits, shared: cluster?.shared ?? null, health, router, adaptive, catchAll: adaptiveConfig.catch_all, judge, verify, maxRetries: config.upstream.max_retries, maxRetryWaitMs: config.upstream.max_retry_wait_ms, defaultOutputCap: config.billing.default_output_cap, ids, pool,
    markup: config.billing.markup, baseline: baseline ?? null, savings: { config: config.savings, cache, enabled: enabledSavings(config.savings), flights: cluster?.flights ?? null } });
  // SLUICE_THREADS: the other event-loop threads (started once the port is bound, below).
  let threads: ThreadHost | null = null;
  /** Requests being answered now, by this thread and (as each last said) the others. */
  const inFlight = () => chat.inFlight + (threads?.inFlight() ?? 0);
  const metrics = new Metrics({
    inFlight,
    routes: () => deploymentViews(catalog.routes(), health).map((d) => ({ decision: d.decision, state: d.state })),
    pool: () => pool.stats(),
    semantic: () => chat.savings.find((s) => s.bits === M.semantic_cache)?.stats ?? {},
    lmdbBytes: () => store.usedBytes(),
  });
  if (config.metrics.enabled) ledger.onSettled((row, committed) => (committed ? metrics.observe(row) : metrics.notRecorded(row)));
  // (with threads, each logs the requests it served, to the same destination)
  const accessLog = config.logs.access === 'off' ? null : new AccessLog(config.logs.access, config.threads > 1);
  if (accessLog) ledger.onAnswered((row, relayed, committed) => { if (!relayed) accessLog.add(committed ? row : asToldUncommitted(row)); });
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  const otel = config.otel;
  // (OpenTelemetry's modules are loaded only when traces are exported)
  const tracing = otel.endpoint ? new (await import('./ops/tracing.js')).Tracing({ ...otel, endpoint: otel.endpoint }, pkg.version ?? '0.0.0') : null;
  if (tracing) ledger.observer = tracing.observe;
  const socket = config.threads > 1 ? await handoverSocket(dataDir) : null;
  const server = await startServer({ inFlight, limits, shared: cluster?.shared ?? null, cluster: cluster?.health ?? null, metrics: config.metrics.enabled ? metrics : null, web: await loadWebAssets(), version: pkg.version ?? '0.0.0', keys: ring, ids, catalog, chat, workspaces, ledger, usage, pool, health,
    billing: { markup: config.billing.markup, baselineModel: config.baseline_model ?? null, baseline: baseline ?? null, defaultOutputCap: config.billing.default_output_cap },
    router: { complex: config.router.complex }, adaptive, judge: chat.judge, margin: adaptiveConfig.margin, cache, feedback: store.feedback, savings: config.savings,
    registration: { enabled: config.registration.enabled, starterCredits: config.billing.starter_credits, perAddressPerHour: config.registration.per_address_per_hour },
    maxKeysPerWorkspace: config.keys.max_per_workspace,
    exposure: { metricsToken: config.metrics.token ?? null, metricsPublic: config.metrics.public, metricsHost: config.metrics.host, metricsPort: config.metrics.port ?? null, publicStats: config.stats.public },
    maxBodyBytes: config.max_body_bytes, trustProxyHops: config.trust_proxy_hops, providers: [...providers.keys()],
    edge: { corsOrigins: config.http.cors_origins, compressMinBytes: config.http.compress_min_bytes, maxAudioBytes: config.http.max_audio_bytes }, spoolDir: await emptySpoolDir(dataDir), traced: tracing !== null },
    config.host, config.port, socket ? { socketPath: socket.path } : null);
  // The threads, on the port just bound (server/threads.ts).
  threads = socket ? new ThreadHost({ health, keys: ring, workspaces, limits, ledger, pool, shared: cluster?.shared ?? null }, config.threads, { host: config.host, port: server.port, socketPath: socket.path }) : null;
  try {
    await threads?.start();
    if (threads && !mainHttp(config)) server.leavePort();
  } catch (err) {
    throw new ConfigError(`SLUICE_THREADS=${config.threads}: an event-loop thread could not start: ${err instanceof Error ? err.message : String(err)}`);
  }

  const url = `http://${config.host}:${server.port}`;
  if (server.metricsPort !== null) console.log(`metrics: http://${config.metrics.host}:${server.metricsPort}/metrics`);
  console.log(`sluice listening on ${url}  (OpenAI base URL: ${url}/v1)`);
  console.log(`providers: ${[...providers.keys()].join(', ')}; data: ${dataDir}; workers: ${config.workers}; event-loop threads: ${config.threads}${config.threads > 1 && !mainHttp(config) ? ' (the main thread taking no connections)' : ''}`);
  console.log(adaptive
    ? `router: model auto learns among ${adaptive.candidates.map((c) => c.name).join(', ')} (margin ${adaptiveConfig.margin}); judge: ${judge ? `${judge.model}, at least ${judge.sampleRate} of answers` : 'off'}`
    : `router: model auto goes by the difficulty buckets (router.adaptive.enabled: false)`);
  const sem = config.savings.semantic_cache;
  console.log(sem.enabled
    ? `semantic cache: on (threshold ${sem.threshold}; temperature-0 requests; verifier: ${verify ? verify.model : 'off'}; savings.semantic_cache.enabled: false turns it off)`
    : 'semantic cache: off (savings.semantic_cache.enabled)');
  if (tracing) console.log(`tracing: OTLP/HTTP to ${otel.endpoint}, ${Number((otel.sample_ratio * 100).toFixed(3))}% of requests (or as a caller's traceparent says)`);
  if (cluster) console.log(`cluster mode: limits and credits in Redis at ${cluster.redis}, the record in Postgres at ${cluster.postgres} (replica ${cluster.replica})`);
  console.log(masterKeyFile ? `master key: in ${masterKeyFile} (mode 0600)` : 'master key: from SLUICE_MASTER_KEY / config');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: draining ${chat.inFlight} in-flight request(s)`);
    server.draining = true;
    server.stopListening();
    const deadline = Date.now() + config.shutdown_grace_ms;
    await threads?.drain(deadline);
    while (chat.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    server.closeHandover();
    await socket?.remove();
    sweeper.stop();
    await ledger.flush();
    await cluster?.stop();
    await adaptive?.flush();
    await tracing?.shutdown().catch((err: unknown) => console.error(`tracing: the last spans could not be exported: ${String(err)}`));
    accessLog?.close();
    await Promise.allSettled([...providers.values()].map((p) => p.close()));
    await pool.close();
    await store.close();
    await threads?.close();
    console.log('sluice stopped');
    process.exit(0);
  };
  // (a step that throws must not leave the process half stopped: it says so and exits)
  const stop = (signal: string) => shutdown(signal).catch((err: unknown) => {
    console.error(`sluice: shutdown failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    process.exit(1);
  });
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) console.error(`sluice: ${err.message}`);
  else console.error('sluice: failed to start:', err);
  process.exit(1);
});
