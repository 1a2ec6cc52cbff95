// The output count's bound (billing without usage): an upstream that sends beyond its cap is neither billed nor counted past it.
import t from 'tap';
import { countBounded } from '../../src/workers/answer-text.js';

t.test('countBounded: the count up to a bound, counted a slice at a time once the text is long; never more than the bound', (t) => {
  const words = { count: (s: string) => s.split(/\s+/).filter(Boolean).length };
  const text = 'word '.repeat(100_000);
  t.equal(countBounded(words, text, null), 100_000, 'no bound: the whole text');
  t.equal(countBounded(words, 'a b c', 2), 2, 'short: counted whole, then bounded');
  let counted = 0;
  const spy = { count: (s: string) => { counted += s.length; return words.count(s); } };
  t.equal(countBounded(spy, text, 50), 50);
  t.ok(counted <= 16_384 + 1, `stopped after the first slice (${counted} of ${text.length} characters read)`);
  const pairs = '😀'.repeat(20_000); // surrogate pairs across a slice's edge
  const seen: string[] = [];
  countBounded({ count: (s: string) => { seen.push(s); return 1; } }, pairs, 1_000_000);
  t.ok(seen.every((s) => !/^[\uDC00-\uDFFF]|[\uD800-\uDBFF]$/.test(s)), 'no slice splits a pair');
  t.equal(seen.join(''), pairs);
  t.end();
});
