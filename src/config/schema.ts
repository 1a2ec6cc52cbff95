// The config file's shape (YAML or JSON) and the catalog data's shape, validated by zod
// at start. Field names are snake_case in files; the parsed object is used as is.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { patternProblem } from './linear-regex.js';

/**
 * SLUICE_THREADS's default: on a box of 4 or more cores, one event-loop thread per core up to
 * 6; on fewer, one. Measured (README "More than one core"): threads cost a little CPU per
 * request, so on 2 or 3 cores they give nothing; from 4 they multiply throughput until the
 * main thread's own share of every request (the ledger, limits) is its whole core, at about
 * 4 to 6 cores; more threads past that only take memory.
 */
export function autoThreads(cores = usableCores()): number {
  return cores >= 4 ? Math.min(cores, 6) : 1;
}

/**
 * The cores this process may use: the ones it may run on, and no more than the CPU quota of
 * its cgroup or of any cgroup above it (a container limited to 2 CPUs on a 16-core host gets
 * 2, as does a systemd service with CPUQuota=200%; Node 20's availableParallelism() reads
 * neither). A fraction rounds down: threads pay from 4 whole cores. `read`: a file's text, or null.
 */
export function usableCores(cpus = availableParallelism(), read: (path: string) => string | null = readText): number {
  let quota = Infinity;
  const limit = (q: number, p: number) => { if (q > 0 && p > 0) quota = Math.min(quota, q / p); };
  // cgroup v2: the process's cgroup from /proc/self/cgroup ("0::/path"), then each parent up to
  // the root: cpu.max is "max <period>" or "<quota> <period>".
  const v2 = /^0::(\/.*)$/m.exec(read('/proc/self/cgroup') ?? '')?.[1];
  if (v2 !== undefined) {
    for (let dir = v2.replace(/\/+$/, ''); ; dir = dir.slice(0, dir.lastIndexOf('/'))) {
      const [q, p] = (read(`/sys/fs/cgroup${dir}/cpu.max`) ?? '').trim().split(/\s+/);
      limit(Number(q), Number(p));
      if (dir === '') break;
    }
  }
  // v1: the quota (-1: none) and the period, in µs, where the cpu controller is mounted (in a container: its own).
  limit(Number(read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')?.trim()), Number(read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')?.trim()));
  return quota === Infinity ? cpus : Math.max(1, Math.min(cpus, Math.floor(quota)));
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

export const TokenizerName = z.enum(['o200k_base', 'cl100k_base']);
export type TokenizerName = z.infer<typeof TokenizerName>;

export const PricesSchema = z.object({
  input: z.number().nonnegative(),
  cached_input: z.number().nonnegative().optional(),
  cache_write: z.number().nonnegative().optional(),
  output: z.number().nonnegative(),
}).strict();
export type Prices = z.infer<typeof PricesSchema>;

/**
 * What a model does, and so which endpoints take it: chat (chat, Responses, and legacy
 * completions bridged), completion (legacy completions: gpt-3.5-turbo-instruct), embedding, moderation.
 */
export const MODEL_TYPES = ['chat', 'completion', 'embedding', 'moderation', 'image', 'speech', 'transcription'] as const;
export type ModelType = (typeof MODEL_TYPES)[number];

export const ModelSchema = z.object({
  slug: z.string().regex(/^[a-z0-9][a-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._:-]*$/, 'must look like provider/model'),
  upstream_id: z.string().min(1),
  context_window: z.number().int().positive(),
  max_output_tokens: z.number().int().positive().optional(),
  tokenizer: TokenizerName.default('o200k_base'),
  capabilities: z.array(z.enum(['tools', 'vision', 'json', 'reasoning'])).default([]),
  type: z.enum(MODEL_TYPES).default('chat'),
  /** An embedding model's vector size when the request names no `dimensions`. */
  dimensions: z.number().int().positive().optional(),
  /**
   * An image model: billing units per image by `quality/size` or `size` (DALL·E: units at
   * `prices.output` per million, so one unit is that price's millionth; gpt-image-1: output tokens).
   */
  image_units: z.record(z.string().max(64), z.number().int().positive()).optional(),
  /** A transcription model: its billing units per second of audio (whisper-1: 1, priced per second; gpt-4o-transcribe: audio tokens). */
  audio_units_per_second: z.number().positive().optional(),
  prices: PricesSchema,
  /** Where the model is served, and whether the provider keeps no data (zero data retention). */
  region: z.string().min(1).optional(),
  zdr: z.boolean().default(false),
  /** More ways to reach the same model: another provider (or deployment) and its upstream id. */
  routes: z.array(z.object({
    provider: z.string().min(1),
    upstream_id: z.string().min(1),
    prices: PricesSchema.optional(),
    region: z.string().min(1).optional(),
    zdr: z.boolean().optional(),
  }).strict()).default([]),
}).strict();
export type ModelEntry = z.infer<typeof ModelSchema>;

export const CatalogFileSchema = z.object({
  _comment: z.string().optional(),
  models: z.array(ModelSchema),
}).strict();

const PROVIDER_KINDS = ['openai', 'azure', 'anthropic', 'bedrock', 'gemini', 'vertex', 'sim'] as const;
/** Fields that only some kinds read: one set on another kind is a mistake worth naming. */
const KIND_FIELDS: Record<string, ReadonlyArray<(typeof PROVIDER_KINDS)[number]>> = {
  api_version: ['azure'], region: ['bedrock'], access_key_id: ['bedrock'], secret_access_key: ['bedrock'], session_token: ['bedrock'],
  project: ['vertex'], location: ['vertex'], credentials_file: ['vertex'], token_url: ['vertex'], prompt_cache_key: ['openai', 'azure'], responses_api: ['openai', 'azure'],
  context_cache: ['gemini', 'vertex'],
};

export const ProviderSchema = z.object({
  kind: z.enum(PROVIDER_KINDS),
  api_key: z.string().min(1).optional(),
  /** The API's endpoint (a private endpoint, a proxy, a test's fake); each kind has its public one by default (Azure: the resource's endpoint, required). */
  base_url: z.url().optional(),
  enabled: z.boolean().optional(),
  /** Extra headers sent upstream on every call (e.g. OpenRouter's HTTP-Referer). */
  headers: z.record(z.string(), z.string()).default({}),
  /** OpenAI-kind: send `prompt_cache_key` (OpenAI's own API accepts it; some compatible servers reject unknown fields). Default: only for the provider named `openai`. */
  prompt_cache_key: z.boolean().optional(),
  /**
   * OpenAI-kind: the upstream serves the Responses API itself (/v1/responses), so Responses
   * requests pass through as bytes. Default: only for the provider named `openai` and Azure;
   * for other compatible servers (vLLM, llama.cpp, most hosted ones) they are bridged onto chat.
   */
  responses_api: z.boolean().optional(),
  /**
   * Catalog models this provider also serves, by slug, with its id for each: an Azure
   * deployment name, a Bedrock model or inference-profile id, a Vertex model. Each becomes a
   * route of that model (failover and cheapest-first apply as to any route).
   */
  deployments: z.record(z.string(), z.string().min(1).max(256)).default({}),
  /** azure: the `api-version` query parameter. */
  api_version: z.string().min(1).max(64).optional(),
  /** bedrock: the AWS region (AWS_REGION), and the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). */
  region: z.string().regex(/^[a-z]{2}(-[a-z0-9]+)+-\d+$/, 'an AWS region such as us-east-1').optional(),
  access_key_id: z.string().min(1).optional(),
  secret_access_key: z.string().min(1).optional(),
  session_token: z.string().min(1).optional(),
  /** vertex: the service-account key file (GOOGLE_APPLICATION_CREDENTIALS), the project (default: the key file's) and the location. */
  credentials_file: z.string().min(1).optional(),
  project: z.string().regex(/^[a-z][a-z0-9-]{4,61}[a-z0-9]$/, 'a Google Cloud project id').optional(),
  location: z.string().regex(/^[a-z0-9-]{2,40}$/, 'a Google Cloud location such as us-central1 or global').optional(),
  /** vertex: where the service account's grant is exchanged for a token (default Google's, or the key file's token_uri). */
  token_url: z.url().optional(),
  /**
   * gemini, vertex: explicit context caching of a stable head (system instruction and tools) of
   * at least `min_head_bytes` (about 4 bytes a token; Gemini's minimum is 1,024–4,096 tokens by
   * model) sent twice within five minutes (README "Providers"). Part of `savings.prompt_cache`.
   */
  context_cache: z.object({
    enabled: z.boolean().default(true),
    min_head_bytes: z.number().int().min(1024).default(16_384),
  }).strict().optional(),
}).strict().superRefine((p, ctx) => {
  for (const [field, kinds] of Object.entries(KIND_FIELDS)) {
    if (p[field as keyof typeof p] !== undefined && !kinds.includes(p.kind)) ctx.addIssue({ code: 'custom', path: [field], message: `only for kind ${kinds.join(' or ')} (this entry is kind ${p.kind})` });
  }
  const need = (field: keyof typeof p, why: string) => { if (p[field] === undefined) ctx.addIssue({ code: 'custom', path: [field], message: `required for kind ${p.kind}: ${why}` }); };
  if (p.enabled === false) return;
  if (p.kind === 'azure') {
    need('base_url', 'the resource\'s endpoint, e.g. https://NAME.openai.azure.com (AZURE_OPENAI_ENDPOINT)');
    need('api_key', 'the resource\'s key (AZURE_OPENAI_API_KEY)');
  }
  if (p.kind === 'bedrock') {
    need('access_key_id', 'AWS_ACCESS_KEY_ID');
    need('secret_access_key', 'AWS_SECRET_ACCESS_KEY');
  }
  if (p.kind === 'vertex') need('credentials_file', 'a service-account key file (GOOGLE_APPLICATION_CREDENTIALS)');
});
export type ProviderConfig = z.infer<typeof ProviderSchema>;

const MiB = 1024 * 1024;


/** The adaptive router's task types when the config names none (see README). */
export const DEFAULT_TASK_TYPES: Record<string, { patterns: string[] }> = {
  arithmetic: { patterns: ['(^|[^-\\d.])\\d+(\\.\\d+)?\\s*[-+*/×x^%]\\s*\\(?\\d+($|[^-\\d])', '\\b(calculate|compute|evaluate|arithmetic|sum of|product of|percent(age)? of|square root)\\b'] },
  extraction: { patterns: ['\\b(extract|pull out|parse|find|identify|list)\\b[^.?!\\n]*\\b(e-?mails?|address(es)?|phone|numbers?|dates?|names?|ids?|order|fields?|entities|values?)\\b', '\\b(reply|respond|answer) with (it|them|the \\w+) only\\b', '\\bas json\\b'] },
  code: { patterns: ['```', '\\b(javascript|typescript|python|golang|rust|java|sql|regex|bash|function|compile[sdr]?|stack trace|refactor|unit test|console\\.log|def |class )\\b', '[{};]\\s*$'] },
  summarisation: { patterns: ['\\b(summari[sz]e|summary|tl;?dr|in one sentence|condense|key points|gist)\\b'] },
  reasoning: { patterns: ['\\b(step by step|prove|proof|derive|logic(al)?|puzzle|deduce|infer|why does|trade-?offs?)\\b', '\\bhow many\\b[^.?!\\n]*\\b(now|left|remain|in total|altogether)\\b'] },
};

export const ConfigSchema = z.object({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(8080),
  data_dir: z.string().min(1).default('./data'),
  /** Worker threads for CPU work (tokenizing). One on a 2-core box leaves a core to the event loop. */
  workers: z.number().int().min(1).max(64).default(1),
  /**
   * Event-loop threads serving HTTP on the one port (SLUICE_THREADS): the main thread and
   * threads-1 more, each a uWS app the kernel hands connections to (SO_REUSEPORT). Limits,
   * credits, the ledger and the caches stay with the main thread (server/threads.ts).
   * Default: autoThreads() (the cores, up to 6, from 4 cores; else 1).
   */
  threads: z.number().int().min(1).max(64).default(() => autoThreads()),
  /**
   * With threads > 1, the main thread takes connections too (true), or leaves them to the
   * others and keeps only what it serves them (limits, credits, the ledger, the caches):
   * worth it on many cores, where its share of that work bounds throughput. Unset: off from
   * 6 threads (mainHttp()).
   */
  threads_main_http: z.boolean().optional(),
  /**
   * Bytes of request bodies one workspace may have waiting for (or in) the worker pool before
   * admission; beyond, a 429 (concurrency). One largest body at a time by default.
   */
  worker_bytes_per_workspace: z.number().int().positive().default(4 * MiB),
  master_key: z.string().min(16, 'must be at least 16 characters').optional(),
  api_keys: z.array(z.string().min(16, 'each operator key must be at least 16 characters')).default([]),
  baseline_model: z.string().min(1).optional(),
  max_body_bytes: z.number().int().positive().default(4 * MiB),
  http: z.object({
    /** Origins browser apps may call from (CORS), e.g. https://app.example.com, or '*' for any; empty: off. */
    cors_origins: z.array(z.string().min(1).max(256)).default([]),
    /** Answers at least this large are gzipped for clients that accept it (0: never). */
    compress_min_bytes: z.number().int().min(0).default(8192),
    /** The largest audio upload /v1/audio/transcriptions and /translations take (OpenAI's own limit is 25 MB). */
    max_audio_bytes: z.number().int().positive().default(25 * 1024 * 1024),
  }).strict().prefault({}),
  upstream: z.object({
    connect_timeout_ms: z.number().int().positive().default(5_000),
    headers_timeout_ms: z.number().int().positive().default(120_000),
    body_timeout_ms: z.number().int().positive().default(120_000),
    connections: z.number().int().positive().default(256),
    keep_alive_timeout_ms: z.number().int().positive().default(30_000),
    /** Attempts after the first, each on the next eligible route (or, with none left, the same one again), before any byte reaches the client. */
    max_retries: z.number().int().min(0).max(5).default(2),
    /** A retry on the same route waits its Retry-After; one that would wait longer than this is not made (the caller gets the error and the Retry-After). */
    max_retry_wait_ms: z.number().int().min(0).max(60_000).default(2_000),
    /** A route's breaker opens after this many failures in a row, and lets a probe through after `breaker_cooldown_ms`. */
    breaker_failures: z.number().int().min(1).default(5),
    breaker_cooldown_ms: z.number().int().positive().default(10_000),
  }).strict().prefault({}),
  providers: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'provider names are lowercase'), ProviderSchema).default({}),
  models: z.array(ModelSchema).default([]),
  /** Names like `fast` or `frontier` for a set of models; the policy orders their routes. */
  aliases: z.record(z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'alias names are lowercase, without a slash'), z.object({
    models: z.array(z.string().min(1)).min(1),
    policy: z.enum(['cost', 'latency', 'balanced']).default('cost'),
  }).strict()).default({}),
  billing: z.object({
    /** charge = upstream cost × (1 + markup), never above the benchmark cost. */
    markup: z.number().min(0).default(0),
    /** Output tokens assumed by the credit check when neither the request nor the model caps them. */
    default_output_cap: z.number().int().positive().default(4096),
    /** Credits (USD) a self-registered workspace starts with: opt-in (anyone can register). */
    starter_credits: z.number().min(0).default(0),
  }).strict().prefault({}),
  sim: z.object({
    ttft_ms: z.number().int().min(0).default(120),
    tokens_per_second: z.number().positive().default(80),
    default_max_tokens: z.number().int().positive().default(200),
  }).strict().prefault({}),
  shutdown_grace_ms: z.number().int().positive().default(10_000),
  registration: z.object({
    /** POST /v1/register: anyone with an email gets a workspace (with `billing.starter_credits`) and a key. */
    enabled: z.boolean().default(true),
    /** Registrations accepted per client address (an IPv6 /64) in any rolling hour. */
    per_address_per_hour: z.number().int().min(1).default(5),
  }).strict().prefault({}),
  /** Self-serve keys (POST /v1/api-keys): at most this many live keys in a workspace. */
  keys: z.object({ max_per_workspace: z.number().int().min(1).default(1000) }).strict().prefault({}),
  /**
   * Proxies in front of Sluice that append the client to X-Forwarded-For (nginx, a load
   * balancer). 0: the TCP peer is the client, and X-Forwarded-For is ignored.
   */
  trust_proxy_hops: z.number().int().min(0).max(10).default(0),
  /** model `auto`: the classifier's score picks a bucket, each bucket a model or alias. */
  router: z.object({
    medium_from: z.number().min(0).max(1).default(0.35),
    complex_from: z.number().min(0).max(1).default(0.65),
    simple: z.string().min(1).default('openai/gpt-4.1-nano'),
    medium: z.string().min(1).default('openai/gpt-4.1-mini'),
    complex: z.string().min(1).default('openai/gpt-4.1'),
    /**
     * The adaptive router (README "The adaptive router"): per task type, a bandit over the
     * candidate models learns the cheapest one whose quality stays within `margin` of the
     * best, from the judge's scores and the apps' /v1/feedback. Off: the buckets decide.
     */
    adaptive: z.object({
      enabled: z.boolean().default(true),
      /** The models (or aliases) it chooses among; empty: the three buckets' models. */
      candidates: z.array(z.string().min(1)).default([]),
      /** How far below the best estimated quality (0–1) the chosen model may be. */
      margin: z.number().min(0).max(1).default(0.05),
      /** Seeds the sampling (Thompson) and the judge's sample: the same seed and signals give the same choices. */
      seed: z.number().int().min(0).default(1),
      /**
       * Task types, in order of precedence on a tie: each names regular expressions
       * (case-insensitive) over the last user turn; the type with the most matches wins,
       * none: `default_task`.
       */
      task_types: z.record(z.string(), z.object({
        /** Matched against the lowercased turn, each on V8's linear-time engine when it backtracks (config/linear-regex.ts). */
        patterns: z.array(z.string().min(1).max(1000).superRefine((p, ctx) => {
          const problem = patternProblem(p);
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        })).min(1),
      }).strict()).superRefine((t, ctx) => {
        if (Object.keys(t).length > 32) ctx.addIssue({ code: 'custom', message: 'at most 32 task types' });
        for (const name of Object.keys(t)) if (!/^[a-z][a-z0-9_]{0,31}$/.test(name)) ctx.addIssue({ code: 'custom', path: [name], message: `task type names are lowercase words ('${name.slice(0, 40)}')` });
      }).default(DEFAULT_TASK_TYPES),
      default_task: z.string().regex(/^[a-z][a-z0-9_]{0,31}$/).default('open_chat'),
      /**
       * A tenant workspace's /v1/feedback on one model and task type counts as at most this many
       * signals, weighed by how well its scores agree with the judge's (operator keys' feedback
       * and the judge count fully): one tenant cannot steer everyone's routing.
       */
      tenant_feedback_cap: z.number().min(0).max(200).default(10),
      /** Unknown model names go to the router instead of a 404 (clients may send any name; the gateway chooses). */
      catch_all: z.boolean().default(false),
      /**
       * The judge: a model that scores a sampled share of routed answers (0–10, JSON) off the
       * response path, through a normal route, billed as the operator's own requests.
       */
      judge: z.object({
        model: z.string().min(1).nullable().default('openai/gpt-4.1-mini'),
        /** The least share of answers judged: more while the router is unsure of a model on a task type (its quality interval's width), this share once it is sure. */
        sample_rate: z.number().min(0).max(1).default(0.1),
        /** Judge calls in flight at once; answers sampled beyond this are not judged. */
        max_in_flight: z.number().int().min(1).max(256).default(8),
      }).strict().prefault({}),
    }).strict().prefault({}),
  }).strict().prefault({}),
  /** The savings engine (SPEC "Savings engine"): each mechanism on or off here, and off per key (`limits.savings_off`) or per request (`x-gateway-savings: off`, `x-gateway-cache: off`). */
  savings: z.object({
    /** A max_tokens for requests that set none: per model slug or alias name, else `default` (null: no cap). */
    output_cap: z.object({
      enabled: z.boolean().default(true),
      default: z.number().int().positive().nullable().default(4096),
      models: z.record(z.string(), z.number().int().positive()).default({}),
    }).strict().prefault({}),
    exact_cache: z.object({
      enabled: z.boolean().default(true),
      ttl_seconds: z.number().int().positive().default(3600),
      /** Also cache sampled requests (temperature > 0); otherwise only with `x-gateway-cache: on`. */
      nondeterministic: z.boolean().default(false),
      /** Answers larger than this are not cached. */
      max_entry_bytes: z.number().int().positive().default(1024 * 1024),
      /** At most this many stored answers (the caches share LMDB with the ledger); expired ones are swept every 10 s. */
      max_entries: z.number().int().positive().default(200_000),
    }).strict().prefault({}),
    dedupe: z.object({ enabled: z.boolean().default(true) }).strict().prefault({}),
    semantic_cache: z.object({
      /**
       * On by default: `npm run bench:semantic` shows no false hit on any near-miss category of
       * its three sets. A cacheable miss (temperature 0, or opted in) waits for an embedding
       * (15–30 ms p50 at concurrency 1 on a 2-core VM; at most max_in_flight at once, beyond
       * that no lookup), and the model takes ~100 MiB in each worker.
       */
      enabled: z.boolean().default(true),
      /** Cosine similarity a cached prompt must reach (the guards then check numbers, names, negation, languages). */
      threshold: z.number().min(0.5).max(1).default(0.9),
      ttl_seconds: z.number().int().positive().default(86_400),
      /**
       * The final user turn is embedded only when it is at most this long: past a few hundred
       * characters the embedding barely moves (a long passage with two different questions
       * after it is at 0.96), so only the guards would decide.
       */
      max_prompt_chars: z.number().int().positive().default(600),
      max_entries: z.number().int().positive().default(100_000),
      /** Embeddings waiting or running at once; a request beyond goes on without a semantic lookup (a busy pool adds no queueing). */
      max_in_flight: z.number().int().positive().default(4),
      /**
       * A cheap model asked whether one answer serves both when the guards find a cached prompt
       * only reworded (a content word differs), or close from `min_similarity` up: a yes is a
       * hit; the caller waits for it; its cost is the operator's (gateway/verifier.ts). Off (null) by default.
       */
      verify: z.object({
        model: z.string().min(1).nullable().default(null),
        min_similarity: z.number().min(0.5).max(1).default(0.8),
        max_in_flight: z.number().int().min(1).max(256).default(8),
      }).strict().prefault({}),
    }).strict().prefault({}),
    /** /v1/feedback with a score below this on a cached answer (or on the miss that stored one) evicts it from both caches; a wrong semantic hit also tightens its neighbourhood. */
    evict_below: z.number().min(0).max(1).default(0.5),
    prompt_cache: z.object({
      enabled: z.boolean().default(true),
      /** Bodies at least this large get an OpenAI prompt_cache_key (shorter prompts are below OpenAI's 1,024-token cache minimum). */
      min_body_bytes: z.number().int().positive().default(4096),
    }).strict().prefault({}),
    compression: z.object({
      enabled: z.boolean().default(true),
      /** Compress stale history only when the prompt exceeds this many tokens. */
      budget_tokens: z.number().int().positive().default(12_000),
      /** The latest messages are never altered. */
      keep_last: z.number().int().min(1).default(6),
      /** A stale message longer than this keeps its head and tail around an elision mark. */
      stale_max_chars: z.number().int().min(200).default(1200),
    }).strict().prefault({}),
    chunk_dedupe: z.object({
      enabled: z.boolean().default(true),
      /** Passages (blank-line separated) at least this long are compared. */
      min_chars: z.number().int().min(40).default(200),
    }).strict().prefault({}),
    /** Compression and chunk dedupe run (in the worker pool) only on bodies at least this large. */
    rewrite_min_bytes: z.number().int().positive().default(2048),
    /**
     * …and at most this large: tokenizing costs the pool ~0.4 s per MB (a 4 MB body is 1.7 s
     * of a worker, counted up to three times), so larger bodies go as sent and are counted only
     * when their byte bound does not settle the context and credit checks by itself.
     */
    rewrite_max_bytes: z.number().int().positive().default(1024 * 1024),
  }).strict().prefault({}),
  /** Structured JSON access logs (pino): one line per request. `destination`: 'stdout', 'off', or a file path. */
  logs: z.object({
    access: z.string().min(1).default('stdout'),
  }).strict().prefault({}),
  /**
   * GET /metrics (Prometheus). It shows dollar totals, so by default it asks for a bearer
   * token: `token` (for the scraper), or the master key. `public: true` drops that; `port`
   * serves it on a listener of its own instead (bound to `host`, no token: keep that port
   * private), and the main port's /metrics answers 404. Off: 404 and nothing is counted.
   */
  metrics: z.object({
    enabled: z.boolean().default(true),
    token: z.string().min(16, 'at least 16 characters').optional(),
    public: z.boolean().default(false),
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).optional(),
  }).strict().prefault({}),
  /**
   * GET /v1/stats: totals across every tenant (requests, benchmark, charged, saved), shown by
   * the landing page. Off by default: the default exposes no tenant data without a key.
   */
  stats: z.object({ public: z.boolean().default(false) }).strict().prefault({}),
  /**
   * OpenTelemetry traces: one per request (spans for admission, savings, the upstream call and
   * settling, with GenAI attributes for model, tokens and cost), built after the response
   * went out and exported over OTLP/HTTP (JSON) in batches. Off without an endpoint.
   */
  otel: z.object({
    /** The OTLP/HTTP traces URL (a collector's http://host:4318/v1/traces). */
    endpoint: z.url({ protocol: /^https?$/ }).optional(),
    /** Headers on every export (a vendor's API key). */
    headers: z.record(z.string(), z.string()).default({}),
    /** The share of requests traced, 0 to 1. */
    sample_ratio: z.number().min(0).max(1).default(1),
    service_name: z.string().min(1).max(128).default('sluice'),
    /** How long spans wait to be exported in one batch; at most max_queue wait (more are dropped and counted). */
    export_delay_ms: z.number().int().min(10).max(60_000).default(1000),
    max_queue: z.number().int().min(64).max(1_000_000).default(8192),
  }).strict().prefault({}),
  /**
   * Cluster mode, on when both URLs are set (or SLUICE_REDIS_URL and SLUICE_POSTGRES_URL):
   * replicas share limits, credit holds and live balances in Redis, and keys, workspaces,
   * balances and ledger rows in Postgres. README: "Running more than one".
   */
  cluster: z.object({
    redis_url: z.url({ protocol: /^rediss?$/, error: 'expected a redis:// or rediss:// URL' }).optional(),
    postgres_url: z.url({ protocol: /^postgres(ql)?$/, error: 'expected a postgres:// or postgresql:// URL' }).optional(),
    /** Prefix of every Redis key (several gateways may share one Redis). */
    redis_prefix: z.string().min(1).max(64).regex(/^[A-Za-z0-9:_.-]+$/).default('sluice:'),
    /** A Redis command fails after this long, and the request that needed it is refused (503). */
    redis_timeout_ms: z.number().int().min(50).max(30_000).default(1000),
    /** A request's holds outlive a replica that died by at most this long. */
    lease_ms: z.number().int().min(3000).max(3_600_000).default(30_000),
    /** How often ledger rows are shipped from the local outbox to Postgres. */
    ship_ms: z.number().int().min(10).max(60_000).default(200),
    /** At most this long before a key or workspace changed through another replica is in force here (usually milliseconds: LISTEN/NOTIFY). */
    sync_ms: z.number().int().min(100).max(60_000).default(1000),
    postgres_pool: z.number().int().min(2).max(100).default(4),
    /**
     * Redis unreachable: requests that need it are refused (503), always for metered
     * workspaces. `local_limits`: keys with limits in unmetered workspaces (the operator's own)
     * are held to each replica's own counts meanwhile, so each replica allows the full limit.
     */
    unmetered_without_redis: z.enum(['refuse', 'local_limits']).default('refuse'),
  }).strict().prefault({}).refine((c) => (c.redis_url === undefined) === (c.postgres_url === undefined), { message: 'cluster mode needs both redis_url (SLUICE_REDIS_URL) and postgres_url (SLUICE_POSTGRES_URL)' }),
  ledger: z.object({
    /**
     * Group commit: queued rows are committed this long after the first one (0 = on the
     * next event-loop turn). Successful responses complete once their row is committed.
     */
    flush_ms: z.number().int().min(0).max(1000).default(0),
    /**
     * false: commits go to the OS page cache (they survive kill -9 and crashes of the
     * process, not power loss), each batch in a synchronous transaction on the event loop's
     * thread (tens of µs; no thread hop before the response). true: each batch is also
     * synced to disk, by lmdb-js's writer thread (the disk's sync latency must not block the
     * event loop), at the cost of that latency on every response.
     */
    fsync: z.boolean().default(false),
  }).strict().prefault({}),
}).strict();

export type Config = z.infer<typeof ConfigSchema>;

/** Does the main thread take connections beside its event-loop threads (threads_main_http; unset: below 6 threads)? */
export function mainHttp(config: Pick<Config, 'threads' | 'threads_main_http'>): boolean {
  return config.threads_main_http ?? config.threads < 6;
}
