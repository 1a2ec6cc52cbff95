// An event-loop thread (SLUICE_THREADS > 1), started by the main thread (server/threads.ts):
// the composition root of a thread that serves chat completions on the shared port. It
// builds what the request path needs from the same config: the catalog and providers (its
// own upstream connections), and copies of the keys and workspaces, which the main thread
// keeps current. What must be exact across threads it asks the main thread for
// (server/thread-link.ts): admission and release, ledger rows and their commit, worker-pool
// tasks. Requests that need what only the main thread keeps (the caches and dedupe, the
// router's learned policy, traces) it hands over whole (server/handover.ts).
import { resolve } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type { HttpResponse } from 'uWebSockets.js';
import { KeyRing } from './accounts/keys.js';
import { RequestIds } from './accounts/ledger.js';
import { Limits } from './accounts/limits.js';
import { Workspaces } from './accounts/workspaces.js';
import { buildCatalog } from './compose.js';
import { loadConfig } from './config/load.js';
import { ChatGateway } from './gateway/chat.js';
import type { Stage } from './gateway/context.js';
import { ResponseIds } from './gateway/response-ids.js';
import { RouteHealth } from './router/health.js';
import { ResponseCache } from './savings/cache.js';
import { enabledSavings } from './savings/mechanisms.js';
import { AccessLog } from './ops/access-log.js';
import { Exchange } from './server/exchange.js';
import { Handover, type Head } from './server/handover.js';
import { startThreadApp, type ThreadServer } from './server/thread-app.js';
import { MainLink, type Down } from './server/thread-link.js';
import type { ThreadData } from './server/threads.js';
import { openStore, surviveFailedCommits } from './store/lmdb.js';
import { WorkerPool } from './workers/pool.js';

const data = workerData as ThreadData;
const port = parentPort!;

/** What the main thread told before the copies existed, applied once they do. */
let early: Down[] | null = [];
let ring: KeyRing | null = null;
let workspaces: Workspaces | null = null;
let server: ThreadServer | null = null;
let chat: ChatGateway | null = null;
let handover: Handover | null = null;
let health: RouteHealth | null = null;
let accessLog: AccessLog | null = null;

const link = new MainLink(port, (m) => {
  if (early) { early.push(m); return; }
  told(m);
});

function told(m: Down): void {
  if (m.t === 'key') ring!.follow(m.record);
  else if (m.t === 'workspace') workspaces!.applyRemote(m.record, m.record.balance_nano);
  else if (m.t === 'route') health!.adopt(m.decision, m.s);
  else if (m.t === 'sync') link.send({ t: 'done', id: m.id }); // (after what came before it: applied)
  else if (m.t === 'drain') void drain(m.deadline).then(() => { link.send({ t: 'done', id: m.id }); link.flush(); });
  else if (m.t === 'close') { server?.close(); accessLog?.close(); link.send({ t: 'done', id: m.id }); link.flush(); }
}

async function start(): Promise<void> {
  const config = loadConfig();
  const dataDir = resolve(config.data_dir);
  // (the main thread's environment, opened again in this thread: read here, written there)
  surviveFailedCommits();
  const store = await openStore(dataDir, { fsync: config.ledger.fsync });
  ring = (await KeyRing.open(store, { dataDir, masterKey: config.master_key, operatorKeys: config.api_keys })).ring;
  health = new RouteHealth({ failures: config.upstream.breaker_failures, cooldownMs: config.upstream.breaker_cooldown_ms });
  health.reporter = (e) => link.send({ t: 'health', e });
  health.counted = (decision, ms) => link.succeeded(decision, ms);
  workspaces = new Workspaces(store);
  workspaces.shared = true; // (balances are the main thread's: it checks credits at admission)
  for (const m of early!) told(m);
  early = null;
  const pool = WorkerPool.remote((task) => link.run(task), Math.max(config.worker_bytes_per_workspace, config.max_body_bytes));
  const { catalog } = await buildCatalog(config, pool);
  const baseline = config.baseline_model ? catalog.pricesOf(config.baseline_model) ?? null : null;
  const heads = new WeakMap<HttpResponse, Head>();
  const ids = new RequestIds();
  const over = new Handover(data.socketPath, Math.max(config.max_body_bytes, config.http.max_audio_bytes));
  handover = over;
  const traced = config.otel.endpoint !== undefined;
  const catchAll = config.router.adaptive.catch_all;
  /** After parse: what this thread does not serve goes to the main thread, whole. */
  const handoff: Stage = (ctx) => {
    const model = ctx.request.model;
    const entry = model === 'auto' ? undefined : catalog.find(model);
    const elsewhere = traced || ctx.cacheable || model === 'auto' || (catchAll && entry === undefined)
      || (entry?.routes.some((r) => r.provider.keepsStateFor?.(ctx.body.length) === true) ?? false);
    if (!elsewhere) { ctx.next(); return; }
    const head = ctx.client instanceof Exchange ? heads.get(ctx.client.res) : undefined;
    if (!head) { ctx.next(); return; } // (always there for the chat route)
    over.forward(ctx.client as Exchange, head, ctx.body, true);
  };
  chat = new ChatGateway({
    catalog, keys: ring, responseIds: new ResponseIds(store), ledger: link, recording: () => store.headroom.room, workspaces, limits: new Limits(store, false), shared: link,
    health,
    router: { mediumFrom: config.router.medium_from, complexFrom: config.router.complex_from, simple: config.router.simple, medium: config.router.medium, complex: config.router.complex },
    adaptive: null, catchAll, judge: null, verify: null, maxRetries: config.upstream.max_retries, maxRetryWaitMs: config.upstream.max_retry_wait_ms,
    defaultOutputCap: config.billing.default_output_cap, ids, pool, markup: config.billing.markup, baseline,
    savings: { config: config.savings, cache: new ResponseCache(store, { cache: config.savings.exact_cache.max_entries, semantic: config.savings.semantic_cache.max_entries }), enabled: enabledSavings(config.savings), flights: null },
    handoff,
  });
  link.inFlight = () => chat?.inFlight ?? 0;
  // This thread logs the requests it served (the main thread's log leaves them out), once
  // their rows are committed: formatting and writing them is off the main thread.
  if (config.logs.access !== 'off') {
    const log = accessLog = new AccessLog(config.logs.access, true);
    link.onCommitted = (rows) => { for (const row of rows) log.add(row); };
  }
  setInterval(() => link.report(), 250).unref();
  server = await startThreadApp({ keys: ring, ids, chat, maxBodyBytes: config.max_body_bytes, trustProxyHops: config.trust_proxy_hops, traced,
    edge: { corsOrigins: config.http.cors_origins, compressMinBytes: config.http.compress_min_bytes, maxAudioBytes: config.http.max_audio_bytes }, handover: over, heads }, data.host, data.port);
}

/** A graceful stop: no new connections; what is in flight finishes (by `deadline`), its rows go (the connections close at 'close'). */
async function drain(deadline: number): Promise<void> {
  if (server) { server.draining = true; server.stopListening(); }
  while (((chat?.inFlight ?? 0) > 0 || (handover?.inFlight ?? 0) > 0 || link.pending > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

// A fault this thread did not catch ends it alone: its connections close, the main thread
// releases what it held and starts another. (With uWS's sockets still open, a thread's
// exit would abort the whole process.)
process.on('uncaughtException', (err) => {
  console.error(`thread ${data.index}: ${err.stack ?? err.message}`);
  try { server?.close(); } catch { /* closing anyway */ }
  process.exit(1);
});

start().then(() => { link.send({ t: 'ready' }); link.flush(); }, (err: unknown) => {
  link.send({ t: 'failed', message: err instanceof Error ? err.message : String(err) });
  link.flush();
  server?.close();
});
