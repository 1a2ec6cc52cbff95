// A bounded fuzz of every JSON endpoint (and the query strings of the GET ones): a few
// thousand generated bodies, from a fixed seed so a failure replays. Whatever comes in, the
// answer is JSON (or an SSE stream for a valid streaming request) with a 2xx or 4xx status,
// never a 5xx; the process stays up; and afterwards nothing is in flight or held.
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const fake = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(), {
  models: ['m', 'drip-2', 'nousage', 'long-40'].map(testModel),
  aliases: { fast: { models: ['openai/m', 'openai/drip-2'] } },
  router: { simple: 'openai/m', medium: 'openai/m', complex: 'openai/drip-2' },
});
t.teardown(async () => { await gw.stop(); await fake.close(); });
const { call, tenant } = http(gw);

/** xorshift32: the same seed, the same bodies. */
let seed = Number(process.env.FUZZ_SEED ?? 0x5eed);
const rnd = () => { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed / 0x100000000; };
const int = (n: number) => Math.floor(rnd() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

const STRINGS = ['', 'hi', 'openai/m', 'm', 'fast', 'auto', 'user', 'assistant', 'system', 'tool', 'x'.repeat(5000), '\u0000', '\ud800', '😀'.repeat(50),
  'req_0', 'key_0', 'ws_0', '<script>', "'; DROP TABLE", '../../etc/passwd', '%00', 'a\nb', 'sk-sluice-x', '__proto__', 'constructor', 'toString'];
const NUMBERS = [0, -1, 1, 0.5, 2, 128, 129, 1e308, -1e308, 4096, 2 ** 53, -0, 1e-300, 3.14159];

function value(depth: number): unknown {
  const r = int(depth > 4 ? 4 : 8);
  if (r === 0) return pick(STRINGS);
  if (r === 1) return pick(NUMBERS);
  if (r === 2) return pick([true, false, null]);
  if (r === 3) return int(2) ? pick(STRINGS) : pick(NUMBERS);
  if (r < 6) return Array.from({ length: int(4) }, () => value(depth + 1));
  const o: Json = {};
  for (let i = int(5); i > 0; i--) o[pick([...STRINGS, 'role', 'content', 'type', 'text', 'model', 'messages', 'stream', 'max_tokens'])] = value(depth + 1);
  return o;
}

const validChat = (): Json => ({
  model: pick(['openai/m', 'm', 'fast', 'auto', 'openai/nousage', 'openai/long-40']),
  messages: [{ role: 'user', content: pick(['Hello', 'What is 2+2?', 'Summarise this: ' + 'words '.repeat(int(600))]) }],
  ...(int(3) === 0 ? { stream: true } : {}),
  ...(int(3) === 0 ? { temperature: 0 } : {}),
  ...(int(4) === 0 ? { max_tokens: pick([1, 10, 1000]) } : {}),
});

const templates: Record<string, () => Json> = {
  '/v1/chat/completions': validChat,
  '/v1/responses': () => ({ model: pick(['openai/m', 'm']), input: pick(['hi', [{ role: 'user', content: 'hi' }]]), ...(int(3) === 0 ? { stream: true } : {}) }),
  '/v1/account/quote': validChat,
  '/v1/api-keys': () => ({ name: 'fuzz', scopes: ['inference'], limits: { rpm: 5 } }),
  '/v1/register': () => ({ email: `f${int(1e9)}@example.com` }),
  '/admin/workspaces': () => ({ name: 'fuzz', credits_usd: 1 }),
  '/admin/keys': () => ({ name: 'fuzz', limits: { rpm: 100 } }),
  // (enable, not disable: a fuzzed decision may name a real deployment, and disabling it is the operator's right)
  '/admin/deployments/enable': () => ({ decision: 'nobody/none' }),
};

/** A body for `path`: a template mutated (a field replaced, dropped or added), random JSON, or not JSON at all. */
function body(path: string): string {
  const r = int(10);
  if (r === 0) return JSON.stringify(value(0));
  if (r === 1) { const s = JSON.stringify(templates[path]!()); return s.slice(0, int(s.length)); } // truncated
  if (r === 2) return pick(['', ' ', 'null', '[]', '{}', '"x"', '1', '\uFEFF{}', '{"a":1,"a":2}', '{'.repeat(70) + '}'.repeat(70), Buffer.from(Array.from({ length: 40 }, () => int(256))).toString('latin1')]);
  const o = templates[path]!();
  if (r < 5) return JSON.stringify(o); // valid: what gets past validation must be handled too
  const keys = Object.keys(o);
  for (let i = 1 + int(3); i > 0; i--) {
    const m = r < 7 ? 2 : int(3); // unknown fields only (carried upstream), or any change
    if (m === 0 && keys.length) o[pick(keys)] = value(1);
    else if (m === 1 && keys.length) delete o[pick(keys)];
    else o[pick([...STRINGS, 'provider', 'n', 'tools', 'stream_options', 'response_format', 'stop', 'tool_choice'])] = value(1);
  }
  if (Array.isArray(o.messages) && int(2)) o.messages.push(value(1));
  return JSON.stringify(o);
}

/** Percent-encodes the UTF-8 bytes (encodeURIComponent throws on a lone surrogate). */
const pct = (s: string) => [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

const QUERIES = ['/v1/requests', '/v1/usage/summary', '/v1/usage/timeseries', '/admin/spend'];
function query(): string {
  const params = Array.from({ length: int(4) }, () => `${pick(['limit', 'cursor', 'start', 'end', 'bucket', 'by', 'key', 'model', 'status', 'cache', 'x'])}=${pct(String(pick([...STRINGS, ...NUMBERS])))}`);
  return `${pick(QUERIES)}?${params.join('&')}`;
}

t.test('a few thousand hostile bodies: JSON 2xx/4xx only, the process up, nothing held', async (t) => {
  const a = await tenant(gw.masterKey, 50, { rpm: 100000, max_concurrency: 8, tpm: 10_000_000 }, ['inference', 'usage:read', 'keys:write']);
  const b = await tenant(gw.masterKey, 0.001, undefined, ['inference', 'usage:read', 'keys:write']);
  const keys = [a.key, b.key, gw.masterKey];
  const paths = Object.keys(templates);
  const total = Number(process.env.FUZZ_COUNT ?? 4000);
  const bad: string[] = [];
  const statuses = new Map<number, number>();
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const isQuery = int(8) === 0;
      const path = isQuery ? query() : pick(paths);
      const key = path.startsWith('/admin') ? gw.masterKey : pick(keys);
      const sent = isQuery ? undefined : body(path);
      const headers: Record<string, string> = int(6) === 0 ? { 'x-gateway-provider': pick(STRINGS.slice(0, 8)), 'x-gateway-cache': pick(['on', 'off', 'x']), 'x-gateway-savings': pick(['off', 'on']) } : {};
      let r: Awaited<ReturnType<typeof call>>;
      try {
        r = await call(path, key, sent, isQuery ? 'GET' : 'POST', headers);
      } catch (err) {
        bad.push(`#${i} ${path}: the connection failed (${String(err)})`);
        continue;
      }
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      const sse = r.status === 200 && r.headers.get('content-type')?.includes('event-stream');
      if (r.status >= 500) bad.push(`#${i} ${r.status} ${path} ${sent?.slice(0, 200)} → ${r.text.slice(0, 200)}`);
      else if (!sse && (r.json === null || typeof r.json !== 'object')) bad.push(`#${i} not JSON: ${path} ${sent?.slice(0, 120)} → ${r.text.slice(0, 120)}`);
      else if (!sse && r.status >= 400 && (typeof r.json.error?.message !== 'string' || typeof r.json.error?.type !== 'string')) bad.push(`#${i} no error envelope: ${r.text.slice(0, 200)}`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  t.same(bad.slice(0, 20), [], `every answer a JSON 2xx/4xx (${total} requests: ${[...statuses].sort((x, y) => x[0] - y[0]).map(([s, n]) => `${s}×${n}`).join(' ')})`);
  t.equal(gw.proc.exitCode, null, 'the process is up');
  await new Promise((r) => setTimeout(r, 300)); // the last streams' rows
  t.equal((await call('/health', '')).json.in_flight, 0, 'nothing in flight');
  for (const tenantOf of [a, b]) {
    t.equal((await call(`/admin/workspaces/${tenantOf.ws}`, gw.masterKey)).json.reserved_usd, 0, 'no credit held');
    const state = (await call(`/admin/keys/${tenantOf.id}`, gw.masterKey)).json.state;
    t.equal(state.in_flight, 0, 'no concurrency slot held');
    t.equal(state.reserved_usd, 0, 'no budget reserved');
  }
  const still = await call('/v1/chat/completions', a.key, { model: 'openai/m', messages: [{ role: 'user', content: 'still fine?' }] });
  t.equal(still.status, 200, 'and it still serves');
});
