// GET /metrics in Prometheus text format. Request figures come from the ledger rows (so
// the metrics and the ledger never disagree), folded into plain counters and histograms in
// memory; gauges (route breakers, worker pool, event-loop lag, LMDB size, memory) are read
// at scrape time. No client library: a few Maps and arrays, nothing per request but adds.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { asToldUncommitted, type LedgerRow } from '../accounts/ledger.js';

/** Seconds; from sub-millisecond gateway overhead to multi-minute generations. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

class Histogram {
  readonly counts = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;
  count = 0;
  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

/** Label values escaped as the text format wants. */
const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

export interface Gauges {
  inFlight(): number;
  /** Each route's breaker: closed, open, half_open or disabled. */
  routes(): Array<{ decision: string; state: string }>;
  pool(): { queueSize: number; utilization: number; threads: number };
  /** What the semantic cache did with cacheable requests, by outcome (empty when it is off). */
  semantic(): Readonly<Record<string, number>>;
  /** Bytes of the LMDB data file in use (Store.usedBytes). */
  lmdbBytes(): number;
}


export class Metrics {
  private readonly requests = new Map<string, number>();
  private readonly errors = new Map<string, number>();
  private readonly tokens = { prompt: 0, completion: 0, cached: 0 };
  private readonly savedTokens = new Map<string, number>();
  private readonly money = { cost: 0, charge: 0, benchmark: 0, saved: 0 };
  private readonly duration = new Histogram();
  private readonly overhead = new Histogram();
  private readonly ttfb = new Histogram();
  private readonly upstream = new Map<string, Histogram>();
  private readonly loop = monitorEventLoopDelay({ resolution: 10 });

  constructor(private readonly gauges: Gauges) {
    this.loop.enable();
  }

  /**
   * A request whose row could not be committed (a full disk), charged nothing, so counted
   * with none of its figures: an answer was turned into a 500 (a stream: an error event), and
   * counts as that; a refusal or a failure was told as it was, and counts so.
   */
  notRecorded(row: LedgerRow): void {
    if (row.kind !== 'request') return;
    const told = asToldUncommitted(row);
    const k = `${told.endpoint}\u0000${told.status}\u0000${told.cache}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
    if (told.error) this.errors.set(told.error, (this.errors.get(told.error) ?? 0) + 1);
  }

  /** One ledger row (requests only). */
  observe(row: LedgerRow): void {
    if (row.kind !== 'request') return;
    const k = `${row.endpoint}\u0000${row.status}\u0000${row.cache}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
    if (row.error) this.errors.set(row.error, (this.errors.get(row.error) ?? 0) + 1);
    this.tokens.prompt += row.prompt_tokens;
    this.tokens.completion += row.completion_tokens;
    this.tokens.cached += row.cached_tokens;
    for (const [m, n] of Object.entries(row.saved_tokens)) this.savedTokens.set(m, (this.savedTokens.get(m) ?? 0) + n);
    this.money.cost += row.cost_usd;
    this.money.charge += row.charge_usd;
    this.money.benchmark += row.benchmark_usd;
    this.money.saved += row.saved_usd;
    this.duration.observe(row.total_ms / 1000);
    this.overhead.observe(row.overhead_ms / 1000);
    if (row.ttfb_ms !== null) this.ttfb.observe(row.ttfb_ms / 1000);
    if (row.served && row.cache === 'miss' && row.status < 500) {
      let h = this.upstream.get(row.served);
      if (!h) this.upstream.set(row.served, h = new Histogram());
      h.observe(Math.max(0, row.total_ms - row.overhead_ms) / 1000);
    }
  }

  async render(): Promise<string> {
    const out: string[] = [];
    const family = (name: string, type: string, help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    const hist = (name: string, h: Histogram, labels = '') => {
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((le, i) => {
        cumulative += h.counts[i]!;
        out.push(`${name}_bucket{${labels}${labels ? ',' : ''}le="${le}"} ${cumulative}`);
      });
      out.push(`${name}_bucket{${labels}${labels ? ',' : ''}le="+Inf"} ${h.count}`);
      const l = labels ? `{${labels}}` : '';
      out.push(`${name}_sum${l} ${h.sum}`, `${name}_count${l} ${h.count}`);
    };

    family('sluice_requests_total', 'counter', 'Requests answered, by endpoint, HTTP status and cache status.');
    let total = 0;
    let served = 0;
    for (const [k, n] of this.requests) {
      const [endpoint, status, cache] = k.split('\u0000') as [string, string, string];
      out.push(`sluice_requests_total{endpoint="${esc(endpoint)}",status="${status}",cache="${cache}"} ${n}`);
      if (status === '200') { total += n; if (cache !== 'miss') served += n; }
    }
    family('sluice_errors_total', 'counter', 'Failed requests by error kind (the error code in the envelope, or upstream_<status>).');
    for (const [kind, n] of this.errors) out.push(`sluice_errors_total{kind="${esc(kind)}"} ${n}`);
    family('sluice_cache_hit_ratio', 'gauge', 'Share of successful requests answered by the exact or semantic cache or dedupe, since start.');
    out.push(`sluice_cache_hit_ratio ${total ? served / total : 0}`);
    family('sluice_tokens_total', 'counter', 'Tokens billed by upstreams (cached = prompt tokens served from a provider cache).');
    for (const [type, n] of Object.entries(this.tokens)) out.push(`sluice_tokens_total{type="${type}"} ${n}`);
    family('sluice_saved_tokens_total', 'counter', 'Tokens kept off upstream bills, by savings mechanism.');
    for (const [m, n] of this.savedTokens) out.push(`sluice_saved_tokens_total{mechanism="${esc(m)}"} ${n}`);
    family('sluice_cost_usd_total', 'counter', 'Upstream cost at list prices.');
    out.push(`sluice_cost_usd_total ${this.money.cost}`);
    family('sluice_charge_usd_total', 'counter', 'What workspaces were charged.');
    out.push(`sluice_charge_usd_total ${this.money.charge}`);
    family('sluice_benchmark_usd_total', 'counter', 'What the same requests would have cost direct, without savings.');
    out.push(`sluice_benchmark_usd_total ${this.money.benchmark}`);
    family('sluice_saved_usd_total', 'counter', 'Benchmark minus charge.');
    out.push(`sluice_saved_usd_total ${this.money.saved}`);
    family('sluice_request_duration_seconds', 'histogram', 'Time from request to the last byte.');
    hist('sluice_request_duration_seconds', this.duration);
    family('sluice_overhead_seconds', 'histogram', 'Time spent in the gateway (total minus upstream wait).');
    hist('sluice_overhead_seconds', this.overhead);
    family('sluice_time_to_first_byte_seconds', 'histogram', 'Time to the first response byte.');
    hist('sluice_time_to_first_byte_seconds', this.ttfb);
    family('sluice_upstream_duration_seconds', 'histogram', 'Upstream time per route (provider/model), cache misses only.');
    for (const [route, h] of this.upstream) hist('sluice_upstream_duration_seconds', h, `route="${esc(route)}"`);

    family('sluice_route_breaker_state', 'gauge', '1 for the state each route\'s circuit breaker is in.');
    for (const r of this.gauges.routes()) {
      for (const state of ['closed', 'open', 'half_open', 'disabled']) out.push(`sluice_route_breaker_state{route="${esc(r.decision)}",state="${state}"} ${r.state === state ? 1 : 0}`);
    }
    family('sluice_semantic_cache_total', 'counter', 'Cacheable requests by what the semantic cache did: hit, miss, verified_hit, verified_miss, skipped_busy (max_in_flight), skipped_warming, not_compared, failed.');
    for (const [outcome, n] of Object.entries(this.gauges.semantic())) out.push(`sluice_semantic_cache_total{outcome="${outcome}"} ${n}`);
    const pool = this.gauges.pool();
    family('sluice_worker_pool_queue_depth', 'gauge', 'Tasks waiting for a worker thread.');
    out.push(`sluice_worker_pool_queue_depth ${pool.queueSize}`);
    family('sluice_worker_pool_utilization', 'gauge', 'Share of worker time spent running tasks (piscina).');
    out.push(`sluice_worker_pool_utilization ${pool.utilization}`);
    family('sluice_worker_pool_threads', 'gauge', 'Worker threads.');
    out.push(`sluice_worker_pool_threads ${pool.threads}`);
    family('sluice_in_flight_requests', 'gauge', 'Requests being answered now.');
    out.push(`sluice_in_flight_requests ${this.gauges.inFlight()}`);
    family('sluice_event_loop_lag_seconds', 'gauge', 'Event-loop delay since the last scrape, by quantile.');
    for (const q of [0.5, 0.99]) out.push(`sluice_event_loop_lag_seconds{quantile="${q}"} ${this.loop.percentile(q * 100) / 1e9}`);
    out.push(`sluice_event_loop_lag_seconds{quantile="1"} ${this.loop.max / 1e9}`);
    this.loop.reset();
    family('sluice_lmdb_size_bytes', 'gauge', 'Bytes of the LMDB data file in use (its apparent size is the map\'s when it is mapped writable).');
    out.push(`sluice_lmdb_size_bytes ${this.gauges.lmdbBytes()}`);
    const mem = process.memoryUsage();
    family('process_resident_memory_bytes', 'gauge', 'Resident memory.');
    out.push(`process_resident_memory_bytes ${mem.rss}`);
    family('nodejs_heap_used_bytes', 'gauge', 'V8 heap in use.');
    out.push(`nodejs_heap_used_bytes ${mem.heapUsed}`);
    const cpu = process.cpuUsage();
    family('process_cpu_seconds_total', 'counter', 'CPU time of the process (all threads).');
    out.push(`process_cpu_seconds_total ${(cpu.user + cpu.system) / 1e6}`);
    return `${out.join('\n')}\n`;
  }
}
