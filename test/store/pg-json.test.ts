// pgJson: JSON text Postgres's jsonb takes, whatever the strings in it hold.
import t from 'tap';
import { pgJson } from '../../src/store/cluster.js';

t.test('ordinary values are JSON.stringify\'s text, unchanged', async (t) => {
  for (const v of [{ a: 'x "q" \\ y', n: 1.5, e: 1e-7, big: 2 ** 53 - 1 }, ['modèle ✨ 🚀', null, true], 'tab\tand\nnewline', 'x\\u0000 (a backslash, not a NUL)', 'x\\ud800 (likewise)']) {
    t.equal(pgJson(v), JSON.stringify(v), JSON.stringify(v));
  }
});

t.test('a lone surrogate and NUL, anywhere in the value, become U+FFFD; a pair stays', async (t) => {
  t.equal(pgJson('a\ud800b'), '"a\ufffdb"');
  t.equal(pgJson('a\udfffb'), '"a\ufffdb"');
  t.equal(pgJson('a\u0000b'), '"a\ufffdb"');
  t.equal(pgJson('pair \ud83d\ude80'), JSON.stringify('pair 🚀'));
  t.same(JSON.parse(pgJson({ rows: [{ model: 'x\ud800', n: 2 }, { model: 'fine' }], keep: '\\u0000' })), { rows: [{ model: 'x\ufffd', n: 2 }, { model: 'fine' }], keep: '\\u0000' });
  t.notMatch(pgJson(['\u0000', '\udbff']), /\\u(0000|d[89a-f])/i, 'no escape jsonb refuses is left');
});
