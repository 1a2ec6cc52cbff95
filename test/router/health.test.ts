// The circuit breaker (router/health.ts), with the clock passed in: closed → open after N
// failures in a row → one probe after the cooldown → closed on success, open again on failure.
import t from 'tap';
import { RouteHealth } from '../../src/router/health.js';

const R = 'p/m';

t.test('opens after the configured failures in a row, not before', async (t) => {
  const h = new RouteHealth({ failures: 3, cooldownMs: 1000 });
  h.failure(R, 'http_500', null, 0);
  h.failure(R, 'http_500', null, 0);
  t.ok(h.admits(R, 0), 'two failures: still closed');
  h.success(R, 5);
  h.failure(R, 'http_500', null, 0);
  h.failure(R, 'http_500', null, 0);
  t.ok(h.admits(R, 0), 'a success in between reset the count');
  h.failure(R, 'http_500', null, 0);
  t.notOk(h.admits(R, 10), 'third in a row: open');
  t.equal(h.view(R).state, 'open');
  t.equal(h.waitMs([R], 10), 990, 'resting for the rest of the cooldown');
});

t.test('after the cooldown, exactly one probe; its outcome decides', async (t) => {
  const h = new RouteHealth({ failures: 1, cooldownMs: 100 });
  h.failure(R, 'timeout', null, 0);
  t.notOk(h.admits(R, 99));
  t.ok(h.admits(R, 100), 'the probe');
  t.notOk(h.admits(R, 101), 'a second request waits for the probe');
  h.failure(R, 'http_500', null, 101);
  t.notOk(h.admits(R, 150), 'a failed probe opens it again');
  t.ok(h.admits(R, 201), 'next probe after a fresh cooldown');
  h.success(R, 3);
  t.equal(h.view(R).state, 'closed');
  t.ok(h.admits(R, 202) && h.admits(R, 202), 'closed: everyone');
});

t.test('a probe whose client left frees the probe slot', async (t) => {
  const h = new RouteHealth({ failures: 1, cooldownMs: 10 });
  h.failure(R, 'x', null, 0);
  t.ok(h.admits(R, 10));
  t.notOk(h.admits(R, 10));
  h.release(R);
  t.ok(h.admits(R, 10), 'released: the next request probes');
});

t.test("an upstream's Retry-After rests the route that long, even on a first failure", async (t) => {
  const h = new RouteHealth({ failures: 5, cooldownMs: 100 });
  h.failure(R, 'http_429', 2000, 0);
  t.notOk(h.admits(R, 1999));
  t.equal(h.waitMs([R, 'other/m'], 500), 0, 'another route may take it now');
  t.equal(h.waitMs([R], 500), 1500);
  t.ok(h.admits(R, 2000));
});

t.test('a disabled route takes nothing and has no wait to offer', async (t) => {
  const h = new RouteHealth({ failures: 1, cooldownMs: 10 });
  h.setDisabled(R, true);
  t.notOk(h.admits(R, 0));
  t.equal(h.waitMs([R], 0), null);
  t.equal(h.view(R).state, 'disabled');
  h.setDisabled(R, false);
  t.ok(h.admits(R, 0));
});

t.test('latency is an EWMA of successes', async (t) => {
  const h = new RouteHealth({ failures: 1, cooldownMs: 10 });
  h.success(R, 100);
  const first = h.view(R).latency_ewma_ms!;
  h.success(R, 200);
  const second = h.view(R).latency_ewma_ms!;
  t.equal(first, 100);
  t.ok(second > 100 && second < 200, `moves toward new samples (${second})`);
});
