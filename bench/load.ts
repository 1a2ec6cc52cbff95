// The load generator shared by the benches: autocannon against a proxy, with the proxy
// process's CPU time per request read from /proc, and alternating rounds with medians.
import autocannon from 'autocannon';
import { MASTER, cpuSeconds } from './procs.js';

export const CONNECTIONS = 50;

export interface Measured { rps: number; p50: number; p99: number; errors: number; /** CPU µs per request of the measured proxy (all its threads), when a pid was given. */ cpuUs: number | null }

export const BODY = (stream: boolean, model = 'gpt-4.1-mini') => JSON.stringify({ model, stream,
  messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hello to the benchmark in one short sentence.' }] });

export interface LoadOptions {
  duration: number;
  rate?: number;
  model?: string;
  key?: string;
  /** Extra request headers (e.g. x-gateway-savings: off). */
  headers?: Record<string, string>;
  /** A different body per request (`unique`, so every request misses the caches), or one fixed body. */
  body?: string | 'unique';
  /** The proxy process to charge CPU time to. */
  pid?: number;
  /** A new body for every request (overrides `body`). */
  fresh?: () => string;
  /** The endpoint (default /v1/chat/completions). */
  path?: string;
  /** Concurrent connections (default CONNECTIONS). */
  connections?: number;
}

/**
 * A stream as a provider sends it (bench/fake-upstream.ts, models named `paced-…`): 60 events,
 * each its own write, 1 ms apart, and the usage event. Its model must be in the gateway's
 * config (PACED_MODEL).
 */
export const PACED_BODY = JSON.stringify({ model: 'paced-model', stream: true, stream_options: { include_usage: true },
  messages: [{ role: 'user', content: 'Say hello to the benchmark in one short sentence.' }] });
export const PACED_MODEL = { slug: 'openai/paced-model', upstream_id: 'paced-model', context_window: 128000, tokenizer: 'o200k_base', prices: { input: 0.4, cached_input: 0.1, output: 1.6 } };

/** A Responses API request (stored, the default: the gateway records the upstream's response id). */
export const RESPONSES_BODY = JSON.stringify({ model: 'gpt-4.1-mini', input: 'Say hello in one short sentence.', max_output_tokens: 64 });

let uniqueSeq = 0;
/** Deterministic (temperature 0, so cacheable) and different on every call: a cache miss each time. */
export const uniqueBody = () => JSON.stringify({ model: 'gpt-4.1-mini', temperature: 0,
  messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: `Say hello to benchmark request ${++uniqueSeq} in one short sentence.` }] });
/** The same deterministic request every time: an exact-cache hit after the first. */
export const REPEATED = JSON.stringify({ model: 'gpt-4.1-mini', temperature: 0,
  messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hello to the benchmark in one short sentence.' }] });

export async function load(port: number, stream: boolean, opts: LoadOptions): Promise<Measured> {
  const fresh = opts.fresh ?? (opts.body === 'unique' ? uniqueBody : null);
  const body = fresh ? fresh() : opts.body ?? BODY(stream, opts.model);
  const cpu0 = opts.pid ? cpuSeconds(opts.pid) : 0;
  const result = await autocannon({
    url: `http://127.0.0.1:${port}${opts.path ?? '/v1/chat/completions'}`, method: 'POST', body,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${opts.key ?? MASTER}`, ...opts.headers },
    connections: opts.connections ?? (opts.rate ? 20 : CONNECTIONS), duration: opts.duration, ...(opts.rate ? { overallRate: opts.rate } : {}),
    // (autocannon calls setupRequest per request only inside `requests`; given at the top level it is ignored and every request is the first body)
    ...(fresh ? { requests: [{ setupRequest: (req: autocannon.Request) => ({ ...req, body: fresh() }) }] } : {}),
  });
  const cpuUs = opts.pid && result.requests.total ? ((cpuSeconds(opts.pid) - cpu0) * 1e6) / result.requests.total : null;
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx, cpuUs };
}

export const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2; };

/** Medians over rounds, per field (errors summed). */
export function medianOf(runs: Measured[]): Measured {
  const cpu = runs.map((r) => r.cpuUs).filter((c): c is number => c !== null);
  return { rps: median(runs.map((r) => r.rps)), p50: median(runs.map((r) => r.p50)), p99: median(runs.map((r) => r.p99)),
    errors: runs.reduce((a, r) => a + r.errors, 0), cpuUs: cpu.length ? median(cpu) : null };
}

/** Runs each named measurement once per round, the order reversed every other round so drift hits all alike. */
export async function alternate<K extends string>(rounds: number, runs: Record<K, () => Promise<Measured>>): Promise<Record<K, Measured>> {
  const names = Object.keys(runs) as K[];
  const got = Object.fromEntries(names.map((n) => [n, [] as Measured[]])) as unknown as Record<K, Measured[]>;
  for (let r = 0; r < rounds; r++) for (const n of r % 2 ? [...names].reverse() : names) got[n].push(await runs[n]());
  return Object.fromEntries(names.map((n) => [n, medianOf(got[n])])) as unknown as Record<K, Measured>;
}


/** A key in a metered workspace with limits that the bench never reaches, so every check runs. */
export async function mintLimitedKey(port: number): Promise<string> {
  return (await mintLimited(port)).key;
}

/** The same, with the key's id. */
export async function mintLimited(port: number): Promise<{ id: string; key: string }> {
  const admin = (path: string, body: unknown) => fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${MASTER}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  }).then((r) => r.json() as Promise<{ id: string; key: string }>);
  const ws = await admin('/admin/workspaces', { name: 'bench', credits_usd: 1_000_000 });
  const key = await admin('/admin/keys', { name: 'bench-limited', workspace: ws.id, limits: {
    rpm: 10_000_000, tpm: 1_000_000_000, windows: [{ requests: 100_000_000, seconds: LIMITED_WINDOWS[0] }, { requests: 1_000_000_000, seconds: LIMITED_WINDOWS[1] }],
    budget_usd_day: 100_000, budget_usd_month: 1_000_000, max_concurrency: 10_000 } });
  return { id: key.id, key: key.key };
}

/** The windows of mintLimited's key, in seconds. */
export const LIMITED_WINDOWS = [3600, 7 * 86400];

