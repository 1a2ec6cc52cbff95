// A savings mechanism as a stage of the request pipeline (gateway/pipeline.ts lists them):
// it may answer instead of the upstream before the call (a cache hit, a flight to join),
// take part in the call as it leaves (a prompt-cache key, leading a flight), and keep a
// completed answer (the caches). Each mechanism is one file with its own state; the
// pipeline runs a stage's hooks only when its bits are on for the request.
import type { ChatRequest } from '../wire/chat.js';
import type { CachedAnswer } from './cache.js';

/** An upstream call in flight that identical requests may join (in-flight dedupe). */
export interface Flight {
  /** Still open to followers (no answer yet). */
  joinable(): boolean;
  /** Every route the call may end on (a follower must be allowed each of them). */
  readonly routes: readonly { readonly decision: string }[];
  /** Called once when the call stops taking followers. */
  onLand: (() => void) | null;
}

/** The call as it leaves, as the savings stages see it. */
export interface OutgoingCall extends Flight {
  /** Provider prompt caching: a key for the prompt's stable head, or null to leave the request as it is. */
  promptCacheKey: string | null;
}

/** The semantic cache's verifier (gateway/verifier.ts): true when one answer serves both prompts, false when not, null when it could not tell. */
export interface SemanticVerifier {
  ask(cached: string, asked: string): Promise<boolean | null>;
}

/** Where a miss's answer is stored for the semantic cache once it completes. */
export interface SemanticKey {
  vec: Float32Array;
  text: string;
  context: string;
}

/** What a savings stage reads of the request and how it answers (the gateway's RequestContext). */
export interface SavingsContext {
  readonly ws: { readonly id: string };
  readonly client: { readonly requestId: string };
  /** The request as the caller sent it, with any output cap (the caches key on this). */
  readonly request: ChatRequest;
  /** What is sent upstream (the rewrites applied). */
  readonly body: Buffer;
  /** Every route the request may go to. */
  readonly routes: readonly { readonly decision: string }[];
  /** The exact cache's key; null when the request may not be cached or joined (sampled, or caches off). */
  readonly hash: string | null;
  /** Set by the semantic stage on a miss: where the answer is stored. */
  semantic: SemanticKey | null;
  /** Worker-pool work: `then` runs unless the client left meanwhile; a failure refuses the request. */
  after<T>(task: Promise<T>, then: (value: T) => void): void;
  /** May the semantic cache's verifier be asked about this request (a request of the gateway's own is not, nor one whose keys do not allow every route of the verifier's model)? */
  mayVerify(): boolean;
  /** Answers from a stored answer. */
  replay(kind: 'exact' | 'semantic', hit: CachedAnswer, similarity?: number): void;
  /** Answers as a follower of an identical call in flight. */
  follow(leader: Flight): void;
}

export interface SavingsStage {
  /** The mechanisms (bits of mechanisms.ts) this stage serves: its hooks run only when one is on. */
  readonly bits: number;
  /** After admission, before the call: answer through `ctx` (and stop), or call `next`. */
  before?(ctx: SavingsContext, next: () => void): void;
  /** As the call leaves: true when the stage answered instead (the call does not go). */
  dispatch?(ctx: SavingsContext, call: OutgoingCall): boolean;
  /** A miss completed with a whole answer (status 200, usage from the upstream). */
  after?(ctx: SavingsContext, answer: CachedAnswer): void;
  /** Counters since start, by outcome (for /metrics). */
  readonly stats?: Readonly<Record<string, number>>;
}

/** A cached answer is served only if a route this request may use produced it (key constraints hold for hits too). */
export function allows(routes: readonly { readonly decision: string }[], decision: string): boolean {
  for (const r of routes) if (r.decision === decision) return true;
  return false;
}
