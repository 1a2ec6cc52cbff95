// Cluster mode, after Redis restarts: a key's rpm and tpm buckets are rebuilt from the last
// minute's rows in Postgres (bucketOf), so a restart gives no free quota. The bucket must
// never hold more than the requests left it, nor less than a bucket that refilled as it
// went would (the key's clients would then be refused for what they never used).
import t from 'tap';
import { bucketOf } from '../../src/accounts/shared-limits.js';

const now = 1_000_000_000;

t.test('no limit or no recent request: a full bucket (the script leaves it unset)', async (t) => {
  t.same(bucketOf(undefined, [[now, 5, 100]], 1, now), ['', '']);
  t.same(bucketOf(0, [[now, 5, 100]], 1, now), ['', '']);
  t.same(bucketOf(60, [], 1, now), ['', '']);
});

t.test('requests just now take their share off a full bucket', async (t) => {
  const [level, at] = bucketOf(10, [[now, 4, 400]], 1, now);
  t.equal(level, 6, 'rpm 10, 4 requests in the last second: 6 left');
  t.equal(at, now);
  const [tokens] = bucketOf(1000, [[now, 4, 400]], 2, now);
  t.equal(tokens, 600, 'tpm 1000, 400 tokens used: 600 left');
});

t.test('older requests have been refilled since, never past full', async (t) => {
  // rpm 60 refills one a second: 30 requests 40 s ago have been refilled by now (the script adds the time since `at`).
  const [level, at] = bucketOf(60, [[now - 40_000, 30, 0]], 1, now);
  t.equal(at, now - 40_000);
  t.equal(level, 30, 'full a minute ago, 20 s of refill capped at full, minus 30');
  const refilled = Math.min(60, (level as number) + ((now - (at as number)) * 60) / 60_000);
  t.equal(refilled, 60, 'and 40 s later it is full again');
  // Two seconds' requests in order: each pays at its second's end.
  const [two] = bucketOf(6, [[now - 10_000, 3, 0], [now - 1000, 2, 0]], 1, now);
  t.equal(two, 6 - 3 + (9000 * 6) / 60_000 - 2, 'the refill between them counts, once');
});

t.test('a second that ends after now is paid now (no refill from the future)', async (t) => {
  const [level, at] = bucketOf(10, [[now + 700, 3, 0]], 1, now);
  t.same([level, at], [7, now]);
});

t.test('a burst beyond the limit (tpm: tokens beyond the reserve) leaves the bucket below zero, as the script does', async (t) => {
  const [tokens] = bucketOf(1000, [[now, 2, 1500]], 2, now);
  t.equal(tokens, -500);
});
