// Values of the wrong type where a translation expects text ({"toString": 1} makes String()
// throw): translated or refused, never a 500, and nothing held afterwards.
import t from 'tap';
import { startGateway, tempDataDir } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const gw = await startGateway({}, tempDataDir(), { sim: { ttft_ms: 0, tokens_per_second: 5000 }, savings: { semantic_cache: { enabled: true } } });
t.teardown(() => gw.stop());
const { call, tenant } = http(gw);

t.test('objects where text was expected', async (t) => {
  const { key, ws } = await tenant(gw.masterKey, 5);
  const odd = { toString: 1, valueOf: 2 };
  const cases: Array<[string, unknown]> = [
    ['/v1/responses', { model: 'anthropic/claude-haiku-4-5', input: [{ type: 'function_call_output', call_id: 'c', output: odd }] }],
    ['/v1/responses', { model: 'anthropic/claude-haiku-4-5', input: [{ type: 'function_call', call_id: odd, name: odd, arguments: odd }] }],
    ['/v1/responses', { model: 'anthropic/claude-haiku-4-5', input: [{ type: odd }] }],
    ['/v1/responses', { model: 'anthropic/claude-haiku-4-5', input: [{ role: 'user', content: [{ type: 'input_text', text: odd }, { type: 'input_image', image_url: odd }] }] }],
    ['/v1/chat/completions', { model: 'openai/gpt-4.1-mini', temperature: 0, messages: [{ role: 'user', content: [{ type: 'text', text: odd }] }] }],
    ['/v1/chat/completions', { model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'x', name: odd }] }],
    ['/v1/chat/completions', { model: 'openai/gpt-4.1-mini', messages: [{ role: 'tool', tool_call_id: odd, content: 'x' }] }],
  ];
  for (const [path, body] of cases) {
    const r = await call(path, key, body);
    t.ok(r.status < 500, `${path} ${JSON.stringify(body).slice(0, 90)}: ${r.status}`);
    t.ok(r.json?.error || r.status === 200, 'answered or refused in the envelope');
  }
  t.equal((await call('/health', '')).json.in_flight, 0, 'nothing in flight');
  t.equal((await call(`/admin/workspaces/${ws}`, gw.masterKey)).json.reserved_usd, 0, 'nothing held');
  t.notMatch(gw.output(), /internal error/, 'no internal error was logged');
});
