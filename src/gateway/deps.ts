// What the request pipeline is built from (main.ts composes it).
import type { KeyRing } from '../accounts/keys.js';
import type { RequestIds, RowSink } from '../accounts/ledger.js';
import type { AdmissionStore, Limits } from '../accounts/limits.js';
import type { Workspaces } from '../accounts/workspaces.js';
import type { Config, Prices } from '../config/schema.js';
import type { Catalog } from '../router/catalog.js';
import type { RouteHealth } from '../router/health.js';
import type { AdaptiveRouter } from '../router/adaptive.js';
import type { SmartRouterConfig } from '../router/smart.js';
import type { ResponseCache } from '../savings/cache.js';
import type { SharedFlights } from '../savings/shared-flights.js';
import type { WorkerPool } from '../workers/pool.js';
import type { JudgeOptions } from './judge.js';
import type { VerifierOptions } from './verifier.js';
import type { ResponseIds } from './response-ids.js';
import type { Stage } from './context.js';

export interface ChatDeps {
  catalog: Catalog;
  keys: KeyRing;
  /** Passthrough Responses ids per workspace (previous_response_id is only a workspace's own). */
  responseIds: ResponseIds;
  /** The ledger (an event-loop thread: the main thread's, through server/threads.ts). */
  ledger: RowSink;
  /**
   * The ledger can record a request now: its disk has room for the store (store/headroom.ts).
   * While it has none, requests are refused before anything is spent on them (the provider's
   * tokens, the pool's work, a spooled upload): none of them could be recorded.
   */
  recording: () => boolean;
  workspaces: Workspaces;
  limits: Limits;
  /** Limits and credits kept elsewhere: cluster mode, in the shared Redis; an event-loop thread, by the main thread (null: here). */
  shared: AdmissionStore | null;
  health: RouteHealth;
  /** model `auto`: score thresholds and the model or alias of each bucket. */
  router: SmartRouterConfig;
  /** The learned policy that chooses `auto`'s model per task type (null: the buckets decide). */
  adaptive: AdaptiveRouter | null;
  /** Unknown model names go to the router (config `router.adaptive.catch_all`). */
  catchAll: boolean;
  /** The judge (config `router.adaptive.judge`): scores a sample of the policy's answers; null: none. */
  judge: JudgeOptions | null;
  /** The semantic cache's verifier (config `savings.semantic_cache.verify`); null: none. */
  verify: VerifierOptions | null;
  /** Attempts after the first, each on the next eligible route, before any byte reaches the client. */
  maxRetries: number;
  /** A same-route retry waits at most this long (its Retry-After); longer, the caller gets the error. */
  maxRetryWaitMs: number;
  /** Output tokens assumed for the credit check when neither the request nor the model caps them. */
  defaultOutputCap: number;
  ids: RequestIds;
  pool: WorkerPool;
  markup: number;
  /** BASELINE_MODEL's prices; null = benchmark against the requested model's list price. */
  baseline: Prices | null;
  savings: SavingsDeps;
  /**
   * An event-loop thread (server/threads.ts): runs after parse and hands the requests this
   * thread does not serve (the caches', the router's, …) to the main thread, answering them
   * itself; absent on the main thread.
   */
  handoff?: Stage | null;
}

/** The savings engine's part of the gateway's dependencies. */
export interface SavingsDeps {
  config: Config['savings'];
  cache: ResponseCache;
  /** Mechanisms on in config (bits of mechanisms.ts). */
  enabled: number;
  /** Cluster mode: requests in flight through other replicas, whose answers a request may wait for (null on one node). */
  flights?: SharedFlights | null;
}
