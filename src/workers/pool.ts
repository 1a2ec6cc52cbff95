// The worker pool: piscina over src/workers/task.ts. The main thread never tokenizes.
import { Piscina } from 'piscina';
import type { EncodingName } from '../../native/tokenizer.js';
import type { Api } from '../wire/api.js';
import { compileTokenizerWasm } from '../../native/tokenizer.js';
import { LimitError } from '../errors.js';
import { DEFAULT_TASK_TYPES } from '../config/schema.js';
import { enableLinearFallback } from '../config/linear-regex.js';
import type { Classified } from './classify.js';
import { TASKS_PER_WORKER, type AnswerCount, type JudgeTexts, type RewriteReply, type RewriteTask, type WorkerResult, type WorkerTask } from './protocol.js';

export interface TaskTypes {
  types: Record<string, { patterns: string[] }>;
  fallback: string;
}

export class WorkerPool {
  /** Bytes of work each tenant has queued or running (see reserveFor). */
  private readonly byTenant = new Map<string, number>();

  /** Runs one task: in this thread's piscina, or (an event-loop thread: server/threads.ts) in the main thread's. */
  private readonly run: (task: WorkerTask) => Promise<WorkerResult>;

  private constructor(private readonly piscina: Piscina | null, private readonly bytesPerTenant: number, run?: (task: WorkerTask) => Promise<WorkerResult>) {
    this.run = run ?? ((task) => this.piscina!.run(task) as Promise<WorkerResult>);
  }

  /**
   * A pool whose tasks run in another thread's pool (`run` sends them there): an event-loop
   * thread's, so every thread shares the main thread's workers and its compiled tokenizer.
   * Its tenant shares are this thread's own.
   */
  static remote(run: (task: WorkerTask) => Promise<WorkerResult>, bytesPerTenant: number): WorkerPool {
    return new WorkerPool(null, bytesPerTenant, run);
  }

  /** One task, as another thread's remote pool sent it. */
  runTask(task: WorkerTask): Promise<WorkerResult> {
    return this.run(task);
  }

  /**
   * Room for `bytes` of work for `tenant` (a workspace), or null when it already has
   * `bytesPerTenant` queued or running: the pool is first come, first served, and
   * tokenizing costs ~0.4 s per MB, so without a share one tenant's large bodies would
   * queue every other tenant's requests behind them. The caller runs its task and then
   * calls the release it got, once.
   */
  reserveFor(tenant: string, bytes: number): (() => void) | null {
    const held = this.byTenant.get(tenant) ?? 0;
    if (held > 0 && held + bytes > this.bytesPerTenant) return null;
    this.byTenant.set(tenant, held + bytes);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.byTenant.get(tenant) ?? 0) - bytes;
      if (left > 0) this.byTenant.set(tenant, left); else this.byTenant.delete(tenant);
    };
  }
  /** reserveFor, or the 429 every caller answers when the tenant's share is taken (a request, a quote). */
  shareFor(tenant: string, bytes: number): () => void {
    const release = this.reserveFor(tenant, bytes);
    if (release) return release;
    throw new LimitError('concurrency', 1, 'This workspace already has requests as large as the worker pool\'s share for one workspace being read; retry in 1s.',
      [['retry-after', '1'], ['x-gateway-limit-kind', 'concurrency']], { worker_bytes_per_workspace: this.bytesPerTenant });
  }


  /** `tasks`: the adaptive router's task types (the classifier's rules), compiled in each worker. */
  static async start(threads: number, bytesPerTenant = 4 * 1024 * 1024, tasks: TaskTypes = { types: DEFAULT_TASK_TYPES, fallback: 'open_chat' }): Promise<WorkerPool> {
    enableLinearFallback(); // before the workers start: config regexes run in them (config/linear-regex.ts)
    const wasm = await compileTokenizerWasm();
    const piscina = new Piscina({
      filename: new URL('./task.js', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Infinity,
      // Measured (bench/tokenize-boundary.ts, trivial task, 64 in flight): with the default
      // one task per worker every call waits a full thread wake-up, ~200 µs CPU per call here;
      // letting 16 queue on the worker's port and waking it asynchronously costs ~30-40 µs.
      concurrentTasksPerWorker: TASKS_PER_WORKER,
      atomics: 'async',
      workerData: { wasm, tasks },
    });
    const pool = new WorkerPool(piscina, bytesPerTenant);
    // Warm every thread so the first request does not pay for loading the BPE ranks.
    await Promise.all(Array.from({ length: threads }, () => pool.countText('o200k_base', 'warm up')));
    return pool;
  }

  countPrompt(encoding: EncodingName, body: Uint8Array, api: Api = 'chat'): Promise<number> {
    const task: WorkerTask = { op: 'countPrompt', encoding, body, api };
    return this.run(task) as Promise<number>;
  }

  /** The sim's answer to an embeddings request, made in a worker (providers/sim-vectors.ts). */
  simEmbeddings(encoding: EncodingName, body: Uint8Array, model: string, dims: number, base64: boolean): Promise<Uint8Array> {
    const task: WorkerTask = { op: 'simEmbeddings', encoding, body, model, dims, base64 };
    return this.run(task) as Promise<Uint8Array>;
  }

  /** Prompt and completion tokens of a request and the answer it got so far (billing without upstream usage). */
  countAnswer(encoding: EncodingName, body: Uint8Array, answer: Uint8Array, stream: boolean, api: Api = 'chat', maxCompletion: number | null = null): Promise<AnswerCount> {
    const task: WorkerTask = { op: 'countAnswer', encoding, body, answer, stream, api, maxCompletion };
    return this.run(task) as Promise<AnswerCount>;
  }

  /** What the judge reads: the request's last user turn and the answer's text, each at most `maxChars`. */
  judgeTexts(body: Uint8Array, answer: Uint8Array, stream: boolean, maxChars: number): Promise<JudgeTexts> {
    const task: WorkerTask = { op: 'judgeTexts', body, answer, stream, maxChars };
    return this.run(task) as Promise<JudgeTexts>;
  }

  /** The smart router's verdict on a chat body: its 0–1 difficulty score and its task type. */
  classify(body: Uint8Array): Promise<Classified> {
    const task: WorkerTask = { op: 'classify', encoding: 'o200k_base', body };
    return this.run(task) as Promise<Classified>;
  }

  /** Chunk dedupe and compression (savings/rewrite.ts), with the prompt tokens of the result and, when asked, the cache key. */
  rewrite(encoding: EncodingName, body: Uint8Array, chunkMinChars: number, compression: RewriteTask['compression'], hash: boolean): Promise<RewriteReply> {
    const task: WorkerTask = { op: 'rewrite', encoding, body, chunkMinChars, compression, hash };
    return this.run(task) as Promise<RewriteReply>;
  }

  /** A streamed answer as a chat.completion JSON body; null when the bytes are not a complete chat stream. */
  assemble(sse: Uint8Array): Promise<string | null> {
    const task: WorkerTask = { op: 'assemble', sse };
    return this.run(task) as Promise<string | null>;
  }

  /** The semantic cache's embedding of a prompt (the model loads on a worker's first call). */
  embed(text: string): Promise<Float32Array> {
    const task: WorkerTask = { op: 'embed', text };
    return this.run(task) as Promise<Float32Array>;
  }

  /**
   * Loads the embedding model in every worker (~0.2-1 s each, in parallel), so no request
   * waits for it: called at start when the semantic cache is on, not awaited; /health says
   * `warming` until it is done. A failure only means the first lookups load it instead.
   */
  warmEmbeddings(): void {
    this.embeddings = 'warming';
    const all = Array.from({ length: this.piscina?.threads.length ?? 0 }, () => this.embed('warm up'));
    void Promise.allSettled(all).then(() => { this.embeddings = 'ready'; });
  }

  /** The embedding model: not used ('off'), loading in the workers ('warming': lookups are skipped meanwhile), or 'ready'. */
  embeddings: 'off' | 'warming' | 'ready' = 'off';

  countText(encoding: EncodingName, text: string): Promise<number> {
    const task: WorkerTask = { op: 'countText', encoding, text };
    return this.run(task) as Promise<number>;
  }

  /** For /metrics: tasks waiting, share of worker time busy, threads. */
  stats(): { queueSize: number; utilization: number; threads: number } {
    const p = this.piscina;
    return p ? { queueSize: p.queueSize, utilization: p.utilization, threads: p.threads.length } : { queueSize: 0, utilization: 0, threads: 0 };
  }

  async close(): Promise<void> {
    await this.piscina?.destroy();
  }
}
