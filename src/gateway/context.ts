// One request on its way through the pipeline: everything the stages read and write, in one
// object of fixed shape (every field is set in the constructor: V8 keeps one hidden class),
// and the small runner that moves it from one stage to the next (pipeline.ts lists them).
import type { KeyRecord } from '../accounts/keys.js';
import type { Workspace } from '../accounts/workspaces.js';
import type { Prices } from '../config/schema.js';
import { Errors, GatewayError, asGatewayError, diskFull } from '../errors.js';
import type { Route } from '../router/catalog.js';
import { chainAllows } from '../router/select.js';
import type { RouterPick } from '../router/smart.js';
import type { CachedAnswer } from '../savings/cache.js';
import { CACHES, type RequestSwitches } from '../savings/mechanisms.js';
import type { Flight, SavingsContext, SavingsStage, SemanticKey } from '../savings/stage.js';
import type { ChatRequest } from '../wire/chat.js';
import type { Client } from '../wire/http.js';
import type { SavedTokens } from '../wire/savings.js';
import type { ChatDeps } from './deps.js';
import type { Endpoint } from './endpoints.js';
import { refuse } from './settle.js';
import type { Verifier } from './verifier.js';
import { Ticket, type TicketServices } from './ticket.js';

/** A stage of the pipeline: it moves the request on with `ctx.next()`, or answers it (and stops). */
export type Stage = (ctx: RequestContext) => void;

/** What runs requests: the services, the stage list, and the savings stages (ChatGateway). */
export interface Host extends TicketServices {
  readonly deps: ChatDeps;
  readonly stages: readonly Stage[];
  readonly savings: readonly SavingsStage[];
  /** The semantic cache's verifier (null: none configured). */
  readonly verifier: Verifier | null;
  /** Answers from the savings engine: a stored answer, or a follower of a call in flight. */
  replay(ctx: RequestContext, kind: 'exact' | 'semantic', hit: CachedAnswer, similarity: number | null): void;
  follow(ctx: RequestContext, leader: Flight): void;
  /** A request's own upstream call answered it (200): the answer's bytes as they came, a body or its SSE. */
  answered(ctx: RequestContext, answer: readonly Buffer[], stream: boolean): void;
}

/** Prompt tokens the body's bytes do not show (prompt-bound.ts). */
export interface PromptExtra {
  /** Added to the byte bound: images at their bound, a previous response's conversation. */
  bytes: number;
  /** Added to an exact count (which already gives each image its usual count). */
  counted: number;
  /** The previous response's conversation, which the upstream adds to the prompt. */
  previous: number;
  /** Content stored upstream (a file id): only the context window bounds the prompt. */
  unsized: boolean;
}

export const NO_EXTRA: PromptExtra = Object.freeze({ bytes: 0, counted: 0, previous: 0, unsized: false });

const NO_TOKENS: SavedTokens = Object.freeze({}); // shared by rows: frozen, never written
const NO_ROUTES: readonly Route[] = [];
const NO_KEYS: readonly KeyRecord[] = [];
const NOT_YET = null as unknown as ChatRequest;

/**
 * What a request must pass before anything is spent on it ahead of its admission (the
 * pool's work, an upload spooled to disk): its keys' limits as they stand now, and some
 * credit in a metered workspace. Throws the refusal (429 or 402).
 */
export function precheck(deps: Pick<ChatDeps, 'limits' | 'workspaces' | 'recording'>, key: KeyRecord, chain: readonly KeyRecord[]): void {
  mustRecord(deps);
  deps.limits.precheck(chain);
  const ws = deps.workspaces.get(key.workspace);
  if (ws?.metered && deps.workspaces.availableNano(ws) <= 0) {
    throw new GatewayError(Errors.insufficientCredits, 'Insufficient credits: the workspace has none available. Top up.');
  }
}

/**
 * Throws the 503 a request gets while the ledger cannot record one (the disk has no room for
 * the store): refused at once, before its provider is called, since its row could not be
 * stored and the caller would get a 500 for an answer the provider was paid for.
 */
export function mustRecord(deps: Pick<ChatDeps, 'recording'>): void {
  if (!deps.recording()) throw diskFull('cannot record requests and takes none: nothing was sent upstream or charged.');
}

export class RequestContext implements SavingsContext {
  readonly ticket: Ticket;
  /** The requested model ('' until the body is read). */
  model = '';
  /** The request as the caller sent it, plus any output cap (the caches key on this). */
  request: ChatRequest = NOT_YET;
  /** What is sent, parsed: the request itself, or after the rewrites their body, parsed on first use (see `sent`). */
  private sentParsed: ChatRequest | null = null;
  private rewrote = false;
  /** Savings mechanisms on for this request (bits of mechanisms.ts). */
  bits = 0;
  /** The smart router's choice (model `auto`). */
  router: RouterPick | null = null;
  /** Every route this request may go to, best first (failover included); allowed by every key above it. */
  routes: readonly Route[] = NO_ROUTES;
  /** The key and the keys above it: their limits all apply. */
  chain: readonly KeyRecord[] = NO_KEYS;
  ws: Workspace = null as unknown as Workspace;
  /** The prices of the naive direct call (BASELINE_MODEL, else the requested model's list price): never the served route's. */
  benchmark: Prices = null as unknown as Prices;
  extra: PromptExtra = NO_EXTRA;
  /** The output cap the gateway set (0: none; the request's own, or the model's, bounds it). */
  outputCap = 0;
  /** When the holds were taken (performance.now(); 0: not admitted). */
  tAdmitted = 0;
  /** Prompt tokens the rewrites removed, by mechanism. */
  saved: SavedTokens = NO_TOKENS;
  /** The prompt's exact token count, when the worker pool already counted it. */
  knownTokens: number | null = null;
  /** The exact cache's key (null: not cacheable); set before the savings stages. */
  hash: string | null = null;
  semantic: SemanticKey | null = null;
  /** The next stage to run. */
  private at = 0;

  constructor(
    readonly host: Host,
    readonly client: Client,
    readonly key: KeyRecord,
    readonly t0: number,
    readonly endpoint: Endpoint,
    /** The x-gateway-provider header ('' when absent); the body's `provider` field wins. */
    readonly pin: string,
    readonly switches: RequestSwitches,
    /** The body as received; then as it is sent (the output cap spliced in, the rewrites applied). */
    public body: Buffer,
  ) {
    this.ticket = new Ticket(host, key);
  }

  /**
   * What is sent, parsed: the request, or the rewritten request (compression, chunk dedupe).
   * The rewrites change only `messages`, so its other members are the request's; the
   * rewritten messages are parsed here only when something reads them (an adapter that
   * translates the request), not for every large body.
   */
  get sent(): ChatRequest {
    if (!this.rewrote) return this.request;
    return this.sentParsed ??= JSON.parse(this.body.toString('utf8')) as ChatRequest;
  }

  /** The rewrites' result: what is sent from now on (`body`, parsed when read). */
  rewritten(body: Buffer): void {
    this.body = body;
    this.sentParsed = null;
    this.rewrote = true;
  }

  /**
   * Runs the next stage. A throw anywhere in it (or in what it runs in the same turn)
   * refuses the request through its own ticket, releasing whatever it holds by then.
   * Bound once per request; stages call it directly or from a pool step's callback.
   */
  readonly next = (): void => {
    const stage = this.host.stages[this.at++]!;
    try {
      stage(this);
    } catch (err) {
      this.refuse(err);
    }
  };

  /**
   * A worker-pool step: its result goes on to `then` unless the client left meanwhile; a
   * failure of the task, or a throw in `then`, refuses the request.
   */
  after<T>(task: Promise<T>, then: (value: T) => void): void {
    task.then((value) => {
      if (this.client.aborted) { this.refuse(new GatewayError(Errors.clientClosed, 'The client closed the request.')); return; }
      try {
        then(value);
      } catch (err) {
        this.refuse(err);
      }
    }, (err: unknown) => this.refuse(err));
  }

  /**
   * Worker-pool work before admission (the classifier, the rewrites, an exact count): only
   * for a request the key's limits and the workspace's credits would still let in now, and
   * within the workspace's share of the pool, so no one makes the pool work for free or
   * queues every other tenant behind its bodies.
   */
  beforeAdmission<T>(task: () => Promise<T>, then: (value: T) => void): void {
    const { deps } = this.host;
    precheck(deps, this.key, this.chain.length ? this.chain : deps.keys.chain(this.key)); // (the route stage sets the chain; the smart router runs before it)
    const release = deps.pool.shareFor(this.key.workspace, this.body.length);
    this.after(task().finally(release), then);
  }

  /** The caches and dedupe apply: on for this request, and deterministic (or opted in with `x-gateway-cache: on`). */
  get cacheable(): boolean {
    return (this.bits & CACHES) !== 0 && (this.switches.forceCache || this.host.deps.savings.config.exact_cache.nondeterministic || this.endpoint.deterministic(this.request));
  }

  /** Refused before anything went upstream (or abandoned before it could): see settle.ts. */
  refuse(err: unknown): void {
    refuse(this.host.deps.ledger, this, asGatewayError(err));
  }

  replay(kind: 'exact' | 'semantic', hit: CachedAnswer, similarity?: number): void {
    this.host.replay(this, kind, hit, similarity ?? null);
  }

  mayVerify(): boolean {
    const v = this.host.verifier;
    return v !== null && !v.owns(this.key) && v.routes.every((r) => chainAllows(this.chain, r));
  }

  follow(leader: Flight): void {
    this.host.follow(this, leader);
  }
}
