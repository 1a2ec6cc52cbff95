// The inference gateway: it runs each request through the pipeline (pipeline.ts lists the
// stages, in order) and answers the ones the savings engine serves. One for every
// inference endpoint; what differs per endpoint is in endpoints.ts.
import type { KeyRecord } from '../accounts/keys.js';
import type { Limits } from '../accounts/limits.js';
import type { Workspaces } from '../accounts/workspaces.js';
import { asGatewayError } from '../errors.js';
import type { CachedAnswer } from '../savings/cache.js';
import { NO_SWITCHES, type RequestSwitches } from '../savings/mechanisms.js';
import type { Flight, SavingsStage } from '../savings/stage.js';
import type { ChatRequest } from '../wire/chat.js';
import type { Client } from '../wire/http.js';
import { RequestContext, type Host, type Stage } from './context.js';
import type { ChatDeps } from './deps.js';
import { CHAT, type Endpoint } from './endpoints.js';
import type { Route } from '../router/catalog.js';
import { chainAllows } from '../router/select.js';
import { Judge } from './judge.js';
import { Verifier } from './verifier.js';
import { buildPipeline } from './pipeline.js';
import { Served } from './served.js';
import { refuse } from './settle.js';
import { Ticket } from './ticket.js';
import type { UpstreamCall } from './upstream-call.js';

export type { ChatDeps, SavingsDeps } from './deps.js';

export class ChatGateway implements Host {
  /** Admitted requests not yet settled (tickets holding): what /health shows and a graceful stop waits for. */
  inFlight = 0;
  readonly workspaces: Workspaces;
  readonly limits: Limits;
  readonly stages: readonly Stage[];
  readonly savings: readonly SavingsStage[];
  /** Scores a sample of the adaptive router's answers (null: no judge configured). */
  readonly judge: Judge | null;
  /** Every route the judge's requests may take (failover included). */
  private readonly judgeRoutes: readonly Route[];
  /** Asks a cheap model about reworded semantic-cache candidates (null: none configured). */
  readonly verifier: Verifier | null;

  constructor(readonly deps: ChatDeps) {
    this.workspaces = deps.workspaces;
    this.limits = deps.limits;
    this.judge = deps.judge && deps.adaptive ? new Judge(this, deps.adaptive, deps.pool, deps.ids, deps.judge) : null;
    this.judgeRoutes = deps.judge ? deps.catalog.find(deps.judge.model)?.routes ?? [] : [];
    this.verifier = deps.verify ? new Verifier(this, deps.ids, deps.verify, deps.catalog.find(deps.verify.model)?.routes ?? []) : null;
    const pipeline = buildPipeline(deps, this.verifier);
    this.stages = pipeline.stages;
    this.savings = pipeline.savings;
  }

  /**
   * A request, from its body on. `pin`: the x-gateway-provider header ('' when absent);
   * `parsed`: the body as the route already read it (the Responses route reads it to choose
   * between passthrough and the bridge), so the pipeline does not parse it again.
   */
  handle(client: Client, key: KeyRecord, body: Buffer, t0: number, pin = '', endpoint: Endpoint = CHAT, sw: RequestSwitches = NO_SWITCHES, parsed?: ChatRequest): void {
    const ctx = new RequestContext(this, client, key, t0, endpoint, pin, sw, body);
    if (parsed) ctx.request = parsed;
    ctx.next();
  }

  /**
   * A routed request's own upstream call answered (status 200): the judge may sample it, off
   * the response path — only when every route the judge's request could take is one the
   * request's keys allow (its prompt and answer go there), and only for a free choice.
   */
  answered(ctx: RequestContext, answer: readonly Buffer[], stream: boolean): void {
    const pick = ctx.router;
    if (!this.judge || !pick?.learned?.teaches || this.judge.owns(ctx.key) || this.verifier?.owns(ctx.key)) return;
    if (!this.judgeRoutes.every((r) => chainAllows(ctx.chain, r))) { this.judge.stats.not_allowed++; return; }
    this.judge.consider({ requestId: ctx.client.requestId, workspace: ctx.ws.id, pick, body: ctx.body, answer, stream, servedAt: Date.now() });
  }

  replay(ctx: RequestContext, kind: 'exact' | 'semantic', hit: CachedAnswer, similarity: number | null): void {
    new Served(ctx, kind, similarity).replay(hit);
  }

  follow(ctx: RequestContext, leader: Flight): void {
    (leader as UpstreamCall).join(new Served(ctx, 'dedupe'));
  }

  /** A refusal from outside the pipeline (the route's body could not be read, or bridged): the same row and ordering. */
  reject(client: Client, key: KeyRecord, t0: number, err: unknown): void {
    refuse(this.deps.ledger, { client, key, ticket: new Ticket(this, key), t0, tAdmitted: 0, model: '', ws: null, request: null }, asGatewayError(err));
  }
}
