// The adaptive router: per task type, a bandit over the candidate models that learns the
// cheapest one whose quality stays within a margin of the best.
//
// Each (task type, model) pair is an arm with a Beta posterior over its quality (0–1):
// a quality signal s (the judge's score, an app's /v1/feedback) adds s to α and 1 − s to β.
// A choice is Thompson sampling under a cost objective: one quality is drawn from each
// candidate's posterior, and the cheapest candidate whose draw is within `margin` of the
// best draw wins. An arm few signals back draws widely, so it is tried now and then (that is
// the exploration); one known to be good and cheap wins nearly always. The draws come from
// a seeded generator: the same seed and the same signals in the same order give the same
// choices. Old evidence fades (α + β is kept at most MEMORY), so a model that gets worse —
// or a cheaper one that gets better — is noticed.
//
// One tenant must not steer everyone's routing with its own feedback. The judge's scores and
// operator keys' feedback are trusted evidence; a tenant workspace's feedback is kept apart
// per workspace, at most `tenantCap` signals' worth per arm, and counts with that workspace's
// credibility: how well its scores agreed with the judge's on the requests both scored
// (0.5 before any). A workspace that reports the opposite of what the judge finds loses its
// say, retroactively, over everything it reported. All tenants together count as at most
// three tenants' worth on an arm (many workspaces one party controls are still one voice);
// with a judge, as one tenant's worth and at most a quarter of the arm's trusted signals.
// A request whose key allows only some candidates teaches nothing (Choice.teaches).
//
// The state is one shared policy for every key and app on the gateway, kept in LMDB
// (`router` database: ['arm', task, model], ['tokens', task], ['price', model], ['rng', 'state']), written in batches of its own (at most BATCH_MS after a change) and
// with each quality signal before that signal is acknowledged: a kill -9 loses at most the
// pulls and costs of the last batch.
//
// Cluster mode (shared-router.ts): quality signals, simulated prices and resets are written
// to Postgres first, then applied here; every other replica applies them as it reads them
// (within `sync_ms`), so the replicas learn as one policy. Pulls, costs and token means come
// from every replica's ledger rows (main.ts). Each replica draws from its own generator.
import { z } from 'zod';
import type { Database } from 'lmdb';
import type { Prices } from '../config/schema.js';
import { PricesSchema } from '../config/schema.js';
import { readableRange, type Store } from '../store/lmdb.js';

/** α + β beyond this are scaled down: the posterior remembers about this many recent signals. */
export const MEMORY = 200;
/** Tenant workspaces whose feedback one arm keeps apart; feedback from more is stored but does not move that arm. */
const MAX_TENANTS_PER_ARM = 1000;
/** Pulls and costs are written at most this long after they change. */
const BATCH_MS = 200;
/** Cluster mode: a reset stamped further ahead of Postgres's clock than this is not trusted (a forged record). */
export const FUTURE_MS = 60_000;
/** Tokens a request of a task type is assumed to take before any has been seen. */
const PRIOR_TOKENS = { prompt: 400, completion: 300 };

const Pair = z.tuple([z.number().min(0).finite(), z.number().min(0).finite()]);

const ArmSchema = z.object({
  /** Trusted evidence (the prior, the judge's scores, operator keys' feedback): α and β. */
  a: z.number().min(0).finite(),
  b: z.number().min(0).finite(),
  pulls: z.number().int().min(0),
  signals: z.number().int().min(0),
  /** Sum of the upstream cost (USD) of the pulls. */
  cost: z.number().min(0).finite(),
  /** Tenant workspaces' feedback, each its own [α, β] (weighed by the workspace's credibility). */
  tenants: z.record(z.string(), Pair).default({}),
}).strict();
type Arm = z.infer<typeof ArmSchema>;

/** How far a workspace's scores agreed with the judge's on the requests both scored. */
const TrustSchema = z.object({ agree: z.number().min(0).finite(), disagree: z.number().min(0).finite() }).strict();
type Trust = z.infer<typeof TrustSchema>;

const TokensSchema = z.object({ prompt: z.number().min(0).finite(), completion: z.number().min(0).finite(), n: z.number().int().min(0) }).strict();
type Tokens = z.infer<typeof TokensSchema>;

/** One quality signal as stored (feedback database): what it scored and where it applied. */
export const SignalSchema = z.object({
  workspace: z.string(),
  score: z.number().min(0).max(1),
  comment: z.string().nullable(),
  task: z.string().nullable(),
  model: z.string().nullable(),
  ts: z.number(),
  /** The judge's own request (its row in the ledger), for judge signals. */
  judge_request: z.string().nullable().default(null),
  /** Trusted evidence (the judge, an operator key's feedback), or a tenant's (weighed by its credibility). */
  trusted: z.boolean().default(true),
  /** When the scored request was answered (ms): a request from before the last reset scores nothing. */
  served_at: z.number().default(0),
}).strict();
export type Signal = z.infer<typeof SignalSchema>;
export type SignalSource = 'app' | 'judge';

/** Cluster mode: where signals, simulated prices and resets are published before they apply here (shared-router.ts). */
export interface RouterPublisher {
  /** Publishes the request's one signal from this source, and resolves once it is applied here: what it did ('duplicate': it has one). */
  signal(requestId: string, source: SignalSource, signal: Signal): Promise<'applied' | 'stored' | 'duplicate'>;
  /** Publishes a simulated price (null: list prices again); resolves once it is applied here. */
  price(model: string, prices: Prices | null): Promise<void>;
  /** Publishes a reset; resolves once it is applied here. */
  reset(): Promise<void>;
}

/** Where the generator's state is kept. */
const RNG_KEY = ['rng', 'state'];
const RNG_DIRTY = JSON.stringify(RNG_KEY); // touched on every choice: encoded once

/** A model the router may choose: its name (a catalog slug or alias) and list prices. */
export interface Candidate {
  readonly name: string;
  readonly prices: Prices;
}

/** Pseudo-signals in a fresh arm's prior: as much as two answers' worth. */
export const PRIOR_WEIGHT = 2;

/**
 * A fresh arm's prior quality: what a model's price says before any answer is scored (a
 * pricier model is usually the better one): from 0.6 for the cheapest candidate to 0.9 for
 * the priciest, by log price. Worth PRIOR_WEIGHT signals, so a few scores outweigh it; it
 * keeps the first requests of a new task type off the cheapest model until it shows it can.
 */
export function priorOf(c: Candidate, all: readonly Candidate[]): number {
  const cost = (x: Candidate) => Math.log(Math.max(1e-9, x.prices.input + x.prices.output));
  const lo = Math.min(...all.map(cost));
  const hi = Math.max(...all.map(cost));
  return hi - lo < 1e-9 ? 0.75 : 0.6 + 0.3 * ((cost(c) - lo) / (hi - lo));
}

export interface AdaptiveOptions {
  candidates: readonly Candidate[];
  margin: number;
  seed: number;
  /** One tenant workspace's feedback on one arm counts as at most this many signals (its most recent count most); default 10. */
  tenantCap?: number;
  /** A judge scores answers: tenants' feedback then counts no more than the trusted signals an arm has. */
  judged?: boolean;
}

/** The policy's choice for one request. */
export interface Choice {
  model: string;
  /** The chosen model's estimated quality for the task type (posterior mean). */
  quality: number;
  /** `cheapest_within_margin`: the current choice; `exploring`: a draw put another model within the margin; `only_candidate`: the key allows one. */
  reason: 'cheapest_within_margin' | 'exploring' | 'only_candidate';
  /**
   * The policy chose among every candidate, so the answer may teach it (a pull, the judge,
   * feedback). A key that allows only some candidates is routed among them, but its answers
   * teach nothing: who picks the model for a prompt must not be able to pick its evidence.
   */
  teaches: boolean;
}

/**
 * sfc32: a small, fast, seedable generator (the draws must repeat given a seed; Math.random
 * cannot be seeded). Its four words are the state kept in LMDB.
 */
class Rng {
  private s: Uint32Array;
  constructor(seed: number, state?: readonly number[]) {
    this.s = state && state.length === 4 ? Uint32Array.from(state) : Uint32Array.from([0x9e3779b9, 0x243f6a88, 0xb7e15162, seed >>> 0]);
    if (!state) for (let i = 0; i < 12; i++) this.next();
  }
  next(): number {
    const s = this.s;
    const t = (((s[0]! + s[1]!) >>> 0) + s[3]!) >>> 0;
    s[3] = (s[3]! + 1) >>> 0;
    s[0] = s[1]! ^ (s[1]! >>> 9);
    s[1] = (s[2]! + (s[2]! << 3)) >>> 0;
    s[2] = ((s[2]! << 21) | (s[2]! >>> 11)) >>> 0;
    s[2] = (s[2]! + t) >>> 0;
    return t / 4294967296;
  }
  get state(): number[] { return [...this.s]; }
  /** A standard normal draw (Box–Muller). */
  normal(): number {
    const u = this.next() || 1e-12;
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  /** Gamma(shape, 1) (Marsaglia–Tsang; shape < 1 boosted). */
  gamma(shape: number): number {
    if (shape < 1) return this.gamma(shape + 1) * Math.pow(this.next() || 1e-12, 1 / shape);
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number, v: number;
      do { x = this.normal(); v = 1 + c * x; } while (v <= 0);
      v = v * v * v;
      const u = this.next();
      if (u < 1 - 0.0331 * x * x * x * x || Math.log(u || 1e-12) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
    }
  }
  beta(a: number, b: number): number {
    const x = this.gamma(a);
    return x / (x + this.gamma(b));
  }
}

const mean = (p: { a: number; b: number }) => p.a / (p.a + p.b);

/** A 95% interval for an arm's quality (normal approximation of its Beta posterior). */
export function interval(arm: { a: number; b: number }): [number, number] {
  const n = arm.a + arm.b;
  const m = arm.a / n;
  const sd = Math.sqrt((arm.a * arm.b) / (n * n * (n + 1)));
  return [Math.max(0, round(m - 1.96 * sd)), Math.min(1, round(m + 1.96 * sd))];
}

const round = (x: number, digits = 4) => Math.round(x * 10 ** digits) / 10 ** digits;
const usd = (p: Prices, t: { prompt: number; completion: number }) => (p.input * t.prompt + p.output * t.completion) / 1e6;

/** What GET /v1/router shows for one candidate of one task type. */
export interface CandidateView {
  model: string;
  pulls: number;
  signals: number;
  quality: number;
  quality_interval: [number, number];
  /** At the prices routing uses (a simulated price when set), for the task type's mean tokens. */
  cost_per_request_usd: number;
  /** Mean upstream cost of its pulls, as billed. */
  observed_cost_usd: number | null;
  price_simulated: boolean;
}

export interface TaskView {
  task_type: string;
  choice: string;
  requests: number;
  signals: number;
  mean_tokens: { prompt: number; completion: number };
  candidates: CandidateView[];
}

export class AdaptiveRouter {
  private readonly arms = new Map<string, Map<string, Arm>>();
  private readonly tokens = new Map<string, Tokens>();
  private readonly prices = new Map<string, Prices>();
  private rng: Rng;
  /** Records changed since the last batch: their key, by its encoding (one entry per record). */
  private readonly dirty = new Map<string, readonly string[]>();
  private timer: NodeJS.Timeout | null = null;
  private lastWrite: Promise<unknown> = Promise.resolve();
  private readonly db: Database<unknown, string[]>;
  readonly candidates: readonly Candidate[];
  private readonly byName: Map<string, Candidate>;
  private readonly priors: Map<string, number>;
  /** Signals being recorded (their put not committed yet): a second one for the same request is refused meanwhile. */
  private readonly recording = new Set<string>();
  /** Tenant workspaces' credibility (see the header). */
  private readonly trust = new Map<string, Trust>();
  /** Bumped when a credibility changes: every arm's weighed posterior is then computed again. */
  private trustVersion = 0;
  private readonly posts = new WeakMap<Arm, { version: number; a: number; b: number; signals: number }>();
  /** When learned state was last reset (ms): signals about requests answered before it are stored but move nothing. */
  private resetAt = 0;
  /** Cluster mode: the highest event of the shared log applied here (kept across restarts). */
  followed = 0;
  /** Cluster mode: signals, prices and resets go through it first (null: this process alone). */
  shared: RouterPublisher | null = null;

  constructor(private readonly store: Store, readonly opts: AdaptiveOptions) {
    this.db = store.router;
    this.candidates = opts.candidates;
    this.byName = new Map(opts.candidates.map((c) => [c.name, c]));
    this.priors = new Map(opts.candidates.map((c) => [c.name, priorOf(c, opts.candidates)]));
    this.rng = new Rng(opts.seed);
    this.load();
  }

  /** Reads the stored state; a record that does not validate is moved to quarantine (a bad record never stops a start). */
  private load(): void {
    for (const { key, value } of readableRange(this.db)) {
      // (a one-part array key reads back as its part alone: every key here has two or three parts)
      const k = (Array.isArray(key) ? key : [key]).map(String);
      const bad = (why: string) => {
        void this.store.quarantine.put(`router:${JSON.stringify(k).slice(0, 200)}`, { why, value: JSON.stringify(value)?.slice(0, 2000) ?? null });
        void this.db.remove(k);
      };
      if (k[0] === 'arm' && k.length === 3) {
        const arm = ArmSchema.safeParse(value);
        if (arm.success) this.armsOf(k[1]!).set(k[2]!, arm.data); else bad(arm.error.message);
      } else if (k[0] === 'tokens' && k.length === 2) {
        const t = TokensSchema.safeParse(value);
        if (t.success) this.tokens.set(k[1]!, t.data); else bad(t.error.message);
      } else if (k[0] === 'price' && k.length === 2) {
        const p = PricesSchema.safeParse(value);
        if (p.success) this.prices.set(k[1]!, p.data); else bad(p.error.message);
      } else if (k[0] === 'trust' && k.length === 2) {
        const tr = TrustSchema.safeParse(value);
        if (tr.success) this.trust.set(k[1]!, tr.data); else bad(tr.error.message);
      } else if (k[0] === 'meta' && k.length === 2 && k[1] === 'reset') {
        // (a reset from the future would make every signal until then move nothing; cluster mode's
        // are stamped by Postgres's clock, so a day's leeway for a replica's clock behind it)
        const at = z.number().int().min(0).max(Date.now() + 86_400_000).safeParse(value);
        if (at.success) this.resetAt = at.data; else bad(at.error.message);
      } else if (k[0] === 'meta' && k.length === 2 && k[1] === 'followed') {
        const seq = z.number().int().min(0).safeParse(value);
        if (seq.success) this.followed = seq.data; else bad(seq.error.message);
      } else if (k[0] === 'rng' && k.length === 2 && k[1] === 'state') {
        const s = z.array(z.number().int().min(0).max(0xffffffff)).length(4).safeParse(value);
        if (s.success) this.rng = new Rng(this.opts.seed, s.data); else bad(s.error.message);
      } else bad('unknown key');
    }
  }

  private armsOf(task: string): Map<string, Arm> {
    let m = this.arms.get(task);
    if (!m) this.arms.set(task, m = new Map());
    return m;
  }

  private arm(task: string, model: string): Arm {
    const m = this.armsOf(task);
    let arm = m.get(model);
    if (!arm) {
      const q = this.priors.get(model) ?? 0.5;
      m.set(model, arm = { a: PRIOR_WEIGHT * q, b: PRIOR_WEIGHT * (1 - q), pulls: 0, signals: 0, cost: 0, tenants: {} });
    }
    return arm;
  }

  /** A tenant workspace's credibility: (agreements + 1) / (scored twice + 2). */
  credibility(workspace: string): number {
    const t = this.trust.get(workspace);
    return t ? (t.agree + 1) / (t.agree + t.disagree + 2) : 0.5;
  }

  /** An arm's posterior: its trusted evidence plus each tenant's, weighed by the tenant's credibility (kept until either changes). */
  private post(task: string, model: string): { a: number; b: number } {
    const arm = this.arm(task, model);
    const memo = this.posts.get(arm);
    if (memo && memo.version === this.trustVersion && memo.signals === arm.signals && memo.a === arm.a) return memo;
    let ta = 0;
    let tb = 0;
    for (const ws in arm.tenants) {
      const [wa, wb] = arm.tenants[ws]!;
      const w = this.credibility(ws);
      ta += w * wa;
      tb += w * wb;
    }
    // All tenants together (many workspaces one party controls are still one voice) count as
    // at most three tenants' worth; where a judge teaches, as one tenant's worth and no more
    // than a quarter of the arm's trusted signals: the judge's evidence leads.
    const one = this.opts.tenantCap ?? 10;
    const all = this.opts.judged ? Math.min(one, 0.25 * Math.max(0, arm.a + arm.b - PRIOR_WEIGHT)) : 3 * one;
    if (ta + tb > all) { const k = all / (ta + tb); ta *= k; tb *= k; }
    const a = arm.a + ta;
    const b = arm.b + tb;
    const fresh = { version: this.trustVersion, a, b, signals: arm.signals };
    this.posts.set(arm, fresh);
    return fresh;
  }

  /** The prices routing uses for a candidate: the simulated ones when set, else its list prices. */
  pricesOf(c: Candidate): Prices {
    return this.prices.get(c.name) ?? c.prices;
  }

  private tokensOf(task: string): { prompt: number; completion: number } {
    const t = this.tokens.get(task);
    return t && t.n > 0 ? { prompt: t.prompt / t.n, completion: t.completion / t.n } : PRIOR_TOKENS;
  }

  /** Cost per request of a candidate for a task type, at the prices routing uses. */
  private costOf(task: string, c: Candidate): number {
    return usd(this.pricesOf(c), this.tokensOf(task));
  }

  /** The cheapest candidate whose estimated quality (posterior mean) is within the margin of the best: the current choice, no draw. */
  current(task: string, among: readonly Candidate[] = this.candidates): Candidate {
    let best = 0;
    for (const c of among) best = Math.max(best, mean(this.post(task, c.name)));
    return this.cheapest(task, among, (c) => mean(this.post(task, c.name)) >= best - this.opts.margin - 1e-12);
  }

  /** The cheapest eligible candidate (the first listed on a tie); at least the best is always eligible. */
  private cheapest(task: string, among: readonly Candidate[], eligible: (c: Candidate, i: number) => boolean): Candidate {
    let chosen: Candidate | null = null;
    let cost = 0;
    among.forEach((c, i) => {
      if (!eligible(c, i)) return;
      const k = this.costOf(task, c);
      if (chosen === null || k < cost) { cost = k; chosen = c; }
    });
    return chosen ?? among[0]!;
  }

  /**
   * Thompson sampling under the cost objective, among the candidates the caller may use (null:
   * none). `free`: nothing but the policy narrows the choice (no pinned provider): only then,
   * and with every candidate allowed, may the answer teach.
   */
  choose(task: string, allowed: (c: Candidate) => boolean = () => true, free = true): Choice | null {
    const among = this.candidates.length && this.candidates.every(allowed) ? this.candidates : this.candidates.filter(allowed);
    if (among.length === 0) return null;
    const teaches = free && among.length === this.candidates.length;
    if (among.length === 1) return { model: among[0]!.name, quality: round(mean(this.post(task, among[0]!.name))), reason: 'only_candidate', teaches };
    const draws = among.map((c) => { const p = this.post(task, c.name); return this.rng.beta(p.a, p.b); });
    this.touch(RNG_KEY);
    const best = Math.max(...draws);
    const chosen = this.cheapest(task, among, (_c, i) => draws[i]! >= best - this.opts.margin);
    return {
      model: chosen.name,
      quality: round(mean(this.post(task, chosen.name))),
      reason: chosen === this.current(task, among) ? 'cheapest_within_margin' : 'exploring',
      teaches,
    };
  }

  /** A routed request was answered by its own upstream call: a pull of the arm, its cost and the task type's tokens. */
  observe(task: string, model: string, costUsd: number, promptTokens: number, completionTokens: number): void {
    if (!this.byName.has(model)) return;
    const arm = this.arm(task, model);
    arm.pulls++;
    arm.cost += costUsd;
    const t = this.tokens.get(task) ?? { prompt: 0, completion: 0, n: 0 };
    // a running mean over at most the last MEMORY requests (a task's prompts may change)
    if (t.n >= MEMORY) { t.prompt *= (MEMORY - 1) / MEMORY; t.completion *= (MEMORY - 1) / MEMORY; t.n = MEMORY - 1; }
    t.prompt += promptTokens;
    t.completion += completionTokens;
    t.n++;
    this.tokens.set(task, t);
    this.touch(['arm', task, model]);
    this.touch(['tokens', task]);
  }

  /** How unsure the estimate of a model's quality on a task type is: its 95% interval's width (about 1 when nothing is known). */
  uncertainty(task: string, model: string): number {
    if (!this.arms.get(task)?.get(model)) return 1;
    const [lo, hi] = interval(this.post(task, model));
    return hi - lo;
  }

  /** Whether a signal from this source for this request exists (stored or being stored). */
  hasSignal(requestId: string, source: SignalSource): boolean {
    return this.recording.has(`${source}:${requestId}`) || this.store.feedback.get([requestId, source]) !== undefined;
  }

  /**
   * Records a quality signal once per request and source, and applies it to the arm it scores
   * (when it scores one: a routed request answered by its own call, after the last reset):
   * trusted evidence directly, a tenant's into its own share of the arm. When the request has
   * the other source's signal too, the tenant's credibility learns how far they agreed.
   * Resolves once the signal and what it changed are committed together: `applied` (it
   * moved an arm), `stored` (kept, moving nothing), or `duplicate` (the request has one).
   * Cluster mode: published, and applied from the shared log in its order (`remote`: read
   * from the log), on this replica as on every other.
   */
  async signal(requestId: string, source: SignalSource, signal: Signal, remote = false): Promise<'applied' | 'stored' | 'duplicate'> {
    const id = `${source}:${requestId}`;
    if (this.hasSignal(requestId, source)) return 'duplicate';
    if (!remote && this.shared) return this.shared.signal(requestId, source, signal);
    this.recording.add(id);
    let applied = false;
    try {
      const { task, model } = signal;
      if (task && model && this.byName.has(model) && signal.served_at >= this.resetAt) {
        const arm = this.arm(task, model);
        const s = signal.score;
        if (signal.trusted) {
          arm.a += s;
          arm.b += 1 - s;
          const n = arm.a + arm.b;
          if (n > MEMORY) { arm.a *= MEMORY / n; arm.b *= MEMORY / n; }
        } else {
          const own = arm.tenants[signal.workspace];
          if ((this.opts.tenantCap ?? 10) > 0 && (own || Object.keys(arm.tenants).length < MAX_TENANTS_PER_ARM)) {
            const pair: [number, number] = own ? [own[0] + s, own[1] + 1 - s] : [s, 1 - s];
            const n = pair[0] + pair[1];
            const cap = this.opts.tenantCap ?? 10;
            if (n > cap) { pair[0] *= cap / n; pair[1] *= cap / n; }
            arm.tenants[signal.workspace] = pair;
            applied = true;
          }
        }
        if (signal.trusted || applied) {
          applied = true;
          arm.signals++;
          void this.db.put(['arm', task, model], arm);
          this.dirty.delete(JSON.stringify(['arm', task, model]));
        }
      }
      this.learnTrust(requestId, source, signal);
      await this.store.feedback.put([requestId, source], signal);
      return applied ? 'applied' : 'stored';
    } finally {
      this.recording.delete(id);
    }
  }

  /** A request scored by both the judge and a tenant: how far they agreed moves the tenant's credibility. */
  private learnTrust(requestId: string, source: SignalSource, signal: Signal): void {
    const other = this.signalOf(requestId, source === 'app' ? 'judge' : 'app');
    if (!other) return;
    const app = source === 'app' ? signal : other;
    const judge = source === 'app' ? other : signal;
    if (app.trusted || app.served_at < this.resetAt) return;
    const agreement = 1 - Math.abs(app.score - judge.score);
    const t = this.trust.get(app.workspace) ?? { agree: 0, disagree: 0 };
    t.agree += agreement;
    t.disagree += 1 - agreement;
    this.trust.set(app.workspace, t);
    this.trustVersion++;
    void this.db.put(['trust', app.workspace], t);
  }

  /** A stored signal, or null. */
  signalOf(requestId: string, source: SignalSource): Signal | null {
    const parsed = SignalSchema.safeParse(this.store.feedback.get([requestId, source]));
    return parsed.success ? parsed.data : null;
  }

  /** POST /v1/simulate-price: routing decisions price `model` at `prices` (null: its list prices again). Billing is unchanged. */
  simulatePrice(model: string, prices: Prices | null): Promise<unknown> {
    return this.shared ? this.shared.price(model, prices) : this.setPrice(model, prices);
  }

  /** Applies a simulated price here (cluster mode: in the order the cluster took them). */
  setPrice(model: string, prices: Prices | null): Promise<unknown> {
    if (prices) this.prices.set(model, prices); else this.prices.delete(model);
    return prices ? this.db.put(['price', model], prices) : this.db.remove(['price', model]);
  }

  simulatedPrices(): Record<string, Prices> {
    return Object.fromEntries(this.prices);
  }

  /**
   * POST /v1/reset: forgets every estimate, pull, token mean, simulated price and credibility;
   * the draws start again from the seed, and signals about requests answered before now move nothing.
   */
  reset(): Promise<void> {
    return this.shared ? this.shared.reset() : this.resetTo(Math.max(Date.now(), this.resetAt + 1));
  }

  /** When learned state was last reset (ms since the epoch; 0: never). */
  get lastReset(): number {
    return this.resetAt;
  }

  /** Applies a reset made at `at` here: signals about requests answered before `at` move nothing. `followed`: cluster mode, the reset's place in the shared log. */
  async resetTo(at: number, followed = this.followed): Promise<void> {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this.dirty.clear();
    this.arms.clear();
    this.tokens.clear();
    this.prices.clear();
    this.trust.clear();
    this.trustVersion++;
    this.rng = new Rng(this.opts.seed);
    this.resetAt = at;
    this.followed = followed;
    await this.lastWrite;
    await this.db.clearAsync();
    await this.db.put(['meta', 'reset'], this.resetAt);
    if (this.followed) await this.db.put(['meta', 'followed'], this.followed);
  }

  /** Cluster mode: the shared log has been applied up to `seq`. */
  follow(seq: number): Promise<unknown> {
    this.followed = seq;
    return this.db.put(['meta', 'followed'], seq);
  }

  /** GET /v1/router: per task type seen, each candidate's pulls, quality and interval, cost, and the current choice. */
  view(): TaskView[] {
    const out: TaskView[] = [];
    for (const [task, arms] of this.arms) {
      let requests = 0;
      let signals = 0;
      for (const arm of arms.values()) { requests += arm.pulls; signals += arm.signals; }
      const t = this.tokensOf(task);
      out.push({
        task_type: task, choice: this.current(task).name, requests, signals,
        mean_tokens: { prompt: Math.round(t.prompt), completion: Math.round(t.completion) },
        candidates: this.candidates.map((c) => {
          const arm = this.arm(task, c.name);
          const p = this.post(task, c.name);
          return {
            model: c.name, pulls: arm.pulls, signals: arm.signals, quality: round(mean(p)), quality_interval: interval(p),
            cost_per_request_usd: round(this.costOf(task, c), 8), observed_cost_usd: arm.pulls ? round(arm.cost / arm.pulls, 8) : null,
            price_simulated: this.prices.has(c.name),
          };
        }),
      });
    }
    return out.sort((x, y) => x.task_type.localeCompare(y.task_type));
  }

  private touch(key: readonly string[]): void {
    this.dirty.set(key === RNG_KEY ? RNG_DIRTY : JSON.stringify(key), key);
    if (!this.timer) {
      this.timer = setTimeout(() => { this.timer = null; this.persist(); }, BATCH_MS);
      this.timer.unref();
    }
  }

  /** Writes what changed since the last batch (one LMDB transaction: the puts of one turn share it). */
  persist(): Promise<unknown> {
    let last: Promise<unknown> = this.lastWrite;
    for (const key of this.dirty.values()) {
      if (key === RNG_KEY) last = this.db.put(RNG_KEY, this.rng.state);
      else if (key[0] === 'tokens') { const t = this.tokens.get(key[1]!); if (t) last = this.db.put(key as string[], t); }
      else { const arm = this.arms.get(key[1]!)?.get(key[2]!); if (arm) last = this.db.put(key as string[], arm); }
    }
    this.dirty.clear();
    this.lastWrite = last;
    return last;
  }

  /** At shutdown: everything written. */
  async flush(): Promise<void> {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    await this.persist();
  }
}
