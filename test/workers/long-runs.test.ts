// tiktoken's BPE costs the square of an unbroken run's length (300k characters of one letter:
// 140 s of a worker; 1M: a WASM trap), so runs longer than 256 characters are counted slice
// by slice (native/tokenizer.ts). What that must keep: ordinary text counts exactly as
// before, a long run counts at least what it is and at most one token more per slice, and a
// run of millions of characters is counted at all.
import t from 'tap';
import { compileTokenizerWasm, countBounded, loadTokenizers } from '../../native/tokenizer.js';

const tok = (await loadTokenizers(await compileTokenizerWasm(), ['o200k_base'])).get('o200k_base')!;

t.test('ordinary text is counted whole, exactly', async (t) => {
  const prose = 'The quick brown fox jumps over the lazy dog, twice. '.repeat(200);
  t.equal(countBounded(prose, (s) => tok.count(s)), tok.count(prose));
  t.equal(tok.count('hello world'), 2);
});

t.test('a long unbroken run: at least its tokens, at most one more per slice', async (t) => {
  const b64 = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 256)).toString('base64');
  const slices: number[] = [];
  for (let i = 0; i < b64.length; i += 256) slices.push(tok.count(b64.slice(i, i + 256)));
  const counted = tok.count(`before ${b64} after`);
  t.equal(counted, tok.count('before ') + slices.reduce((a, b) => a + b, 0) + tok.count(' after'), 'the run is counted slice by slice');
  t.ok(counted >= b64.length / 6, `a plausible count (${counted} for ${b64.length} characters)`);
});

t.test('a run of 4 million characters is counted (it trapped the WASM kernel before)', async (t) => {
  t.equal(tok.count('a'.repeat(4_000_000)), 500_000);
});

t.test('long runs of whitespace are bounded too (300k spaces took 256 s of a worker)', async (t) => {
  for (const ws of [' ', '\n', '\t', ' \n']) {
    const t0 = Date.now();
    const n = tok.count(`x${ws.repeat(200_000)}x`);
    t.ok(n > 0 && n <= 200_000 * ws.length, `${JSON.stringify(ws)}×200k: ${n} tokens`);
    t.ok(Date.now() - t0 < 60_000, 'counted at all (not a timing claim: before, this took minutes)');
  }
});
