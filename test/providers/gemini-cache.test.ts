// When a Gemini head is cached: the second sighting in five minutes creates, one creation at a
// time, a live cache is named until 30 s before it expires, a failure waits out the window.
import t from 'tap';
import { CACHE_TTL_SECONDS, ContextCaches, splitHead } from '../../src/providers/gemini-cache.js';

t.test('the plan over a head\'s life', (t) => {
  const c = new ContextCaches(100);
  const at = 1_000_000;
  t.equal(c.plan('k', 99, at), null, 'a head under the threshold is never cached');
  t.equal(c.plan('k', 500, at), null, 'first sighting');
  t.equal(c.plan('k', 500, at + 1000), 'create', 'second sighting in the window: this request creates');
  t.equal(c.plan('k', 500, at + 1500), null, 'while it creates, others go as they are');
  c.created('k', 'cachedContents/a', at + 2000 + CACHE_TTL_SECONDS * 1000);
  t.same(c.plan('k', 500, at + 3000), { use: 'cachedContents/a' });
  t.same(c.plan('k', 500, at + 2000 + CACHE_TTL_SECONDS * 1000 - 31_000), { use: 'cachedContents/a' }, 'named until 30 s before expiry');
  t.equal(c.plan('k', 500, at + 2000 + CACHE_TTL_SECONDS * 1000 - 29_000), 'create', 'then a head in steady use gets a fresh cache (its creator pays again)');
  t.equal(c.plan('k', 500, at + 2000 + CACHE_TTL_SECONDS * 1000 - 28_000), null, 'one creation at a time');
  c.failed('k');
  t.equal(c.plan('k', 500, at + 2000 + CACHE_TTL_SECONDS * 1000), null, 'a failed creation is not retried in its window');
  const later = at + 2 * CACHE_TTL_SECONDS * 1000 + 10_000;
  t.equal(c.plan('k', 500, later), null, 'a new window: first sighting');
  t.equal(c.plan('k', 500, later + 1), 'create', 'its second sighting may try again');
  t.equal(c.plan('other', 500, at), null, 'heads are apart');
  t.end();
});

t.test('the head is what a cache can hold', (t) => {
  const { head, rest } = splitHead({ contents: [1], systemInstruction: { parts: [] }, tools: [2], toolConfig: { a: 1 }, generationConfig: { b: 2 } });
  t.same(head, { systemInstruction: { parts: [] }, tools: [2], toolConfig: { a: 1 } });
  t.same(rest, { contents: [1], generationConfig: { b: 2 } });
  t.end();
});
