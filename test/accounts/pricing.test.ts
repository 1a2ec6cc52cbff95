import t from 'tap';
import { priceRequest, upstreamCost } from '../../src/accounts/pricing.js';
import { fmtUsd } from '../../src/gateway/fmt.js';
import { fmtDuration } from '../../src/accounts/limits.js';

const mini = { input: 0.4, cached_input: 0.1, output: 1.6 };
const big = { input: 2, cached_input: 0.5, output: 8 };

t.test('cost, benchmark, charge, saved', (t) => {
  const usage = { prompt_tokens: 1000, completion_tokens: 500, cached_tokens: 400 };
  t.equal(upstreamCost(mini, usage), (600 * 0.4 + 400 * 0.1 + 500 * 1.6) / 1e6);
  const c = priceRequest(mini, big, usage, 0.2);
  t.equal(c.benchmark_usd, (1000 * 2 + 500 * 8) / 1e6, 'benchmark: full prompt, no cache, baseline prices');
  t.equal(c.charge_usd, Math.round(c.cost_usd * 1.2 * 1e9) / 1e9);
  t.equal(c.saved_usd, Math.round((c.benchmark_usd - c.charge_usd) * 1e9) / 1e9);
  const capped = priceRequest(mini, mini, { ...usage, cached_tokens: 0 }, 5);
  t.equal(capped.charge_usd, capped.benchmark_usd, 'never charged above the benchmark');
  t.equal(capped.saved_usd, 0);
  t.end();
});

t.test('header formatting is plain decimal', (t) => {
  t.equal(fmtUsd(1e-7), '0.0000001');
  t.equal(fmtUsd(0), '0');
  t.equal(fmtUsd(0.0056), '0.0056');
  t.end();
});

t.test('fmtUsd: plain decimals rounded to 1e-9', (t) => {
  const cases: Array<[number, string]> = [[0.0000123, '0.0000123'], [1.5, '1.5'], [2, '2'], [0.1 + 0.2, '0.3'], [1e-10, '0'], [-0.25, '-0.25'], [12.000000001, '12.000000001'], [0.0000000004, '0']];
  for (const [n, s] of cases) t.equal(fmtUsd(n), s, String(n));
  t.end();
});

t.test('fmtDuration speaks OpenAI\'s reset style', (t) => {
  t.equal(fmtDuration(120), '120ms');
  t.equal(fmtDuration(1500), '1.5s');
  t.equal(fmtDuration(360_000), '6m0s');
  t.equal(fmtDuration(3_723_000), '1h2m3s');
  t.end();
});
