// What Sluice shows without a key is the operator's choice, and the default shows no
// tenant data: /v1/stats is off, /metrics (dollar totals) asks for a token.
import t from 'tap';
import { startGateway, tempDataDir } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

t.test('defaults: no tenant data without a key', async (t) => {
  const gw = await startGateway({}, tempDataDir());
  t.teardown(() => gw.stop());
  const { call, tenant } = http(gw);
  await call('/v1/chat/completions', gw.masterKey, { model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'hi' }] });
  t.equal((await call('/v1/stats', '')).status, 404, '/v1/stats is off');
  const anonymous = await call('/metrics', '');
  t.equal(anonymous.status, 401, '/metrics asks for a key');
  t.notMatch(anonymous.text, /sluice_/, 'and shows nothing');
  const { key } = await tenant(gw.masterKey, 1);
  t.equal((await call('/metrics', key)).status, 403, 'a tenant key is not enough');
  const operator = await call('/metrics', gw.masterKey);
  t.equal(operator.status, 200, 'the master key reads it');
  t.match(operator.text, /sluice_charge_usd_total/);
  const landing = await call('/', '');
  t.equal(landing.status, 200, 'the landing page still renders (without its live totals)');
  t.equal((await call('/health', '')).status, 200, '/health stays public (no tenant data)');
});

t.test('a scraper token, public stats, metrics on a port of their own', async (t) => {
  const token = 'scrape-token-0123456789';
  const gw = await startGateway({ SLUICE_METRICS_TOKEN: token, SLUICE_PUBLIC_STATS: 'on' }, tempDataDir());
  t.teardown(() => gw.stop());
  const { call } = http(gw);
  t.equal((await call('/metrics', token)).status, 200, 'the scraper\'s token');
  t.equal((await call('/metrics', 'scrape-token-wrong-000000')).status, 401);
  const stats = await call('/v1/stats', '');
  t.equal(stats.status, 200, 'public totals when the operator turns them on');
  t.ok('saved_usd' in stats.json);

  const own = await startGateway({ SLUICE_METRICS_PORT: '0' }, tempDataDir());
  t.teardown(() => own.stop());
  const m = /metrics: (http:\/\/[\d.]+:\d+)\/metrics/.exec(own.output());
  t.ok(m, 'the metrics listener is announced');
  const scraped = await fetch(`${m![1]}/metrics`);
  t.equal(scraped.status, 200, 'served there without a token');
  t.equal((await fetch(`${m![1]}/v1/models`)).status, 404, 'and nothing else there');
  t.equal((await http(own).call('/metrics', own.masterKey)).status, 404, 'not on the main port');
});
