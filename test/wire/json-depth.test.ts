// The depth of a large body read from its bytes before JSON.parse (json.ts textNestsDeeper,
// wire/body.ts parseJson): brackets inside strings, escaped quotes and the bound itself.
import t from 'tap';
import { MAX_JSON_DEPTH, nestsDeeper, textNestsDeeper } from '../../src/json.js';
import { parseJson } from '../../src/wire/body.js';

const b = (s: string) => Buffer.from(s, 'utf8');
const arrays = (n: number) => '['.repeat(n) + ']'.repeat(n);
const objects = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);

t.test('the bound: 64 levels pass, 65 do not, whichever containers; the same answer as the walk of the parsed value', async (t) => {
  for (const make of [arrays, objects]) {
    for (const n of [1, 63, 64, 65, 200]) {
      const text = make(n);
      t.equal(textNestsDeeper(b(text)), n > MAX_JSON_DEPTH, `${make.name} ${n}`);
      t.equal(textNestsDeeper(b(text)), nestsDeeper(JSON.parse(text)), `${make.name} ${n}: as the parsed walk`);
    }
  }
});

t.test('brackets in strings do not count; escaped quotes do not end a string; an escaped backslash does', async (t) => {
  const inString = `{"a":${JSON.stringify('['.repeat(500))},"b":${JSON.stringify('{"x":'.repeat(300))}}`;
  t.equal(textNestsDeeper(b(inString)), false, 'brackets inside strings');
  const escaped = `{"a":${JSON.stringify(`say \\"${'['.repeat(100)}\\" and "${'{'.repeat(100)}"`)}}`;
  t.equal(JSON.parse(escaped).a.includes('['), true);
  t.equal(textNestsDeeper(b(escaped)), false, 'escaped quotes inside a string');
  const backslash = `{"a":"ends with a backslash \\\\","b":${arrays(70)}}`;
  t.equal(JSON.parse(backslash).a.endsWith('\\'), true);
  t.equal(textNestsDeeper(b(backslash)), true, 'an escaped backslash before the closing quote: the string ends there');
  t.equal(textNestsDeeper(b(`{"a":"${'['.repeat(100)}`)), false, 'an unterminated string: nothing after it counts (JSON.parse refuses it)');
  t.equal(textNestsDeeper(b(`["é ✓ 😀",${arrays(10)}]`)), false, 'multi-byte text');
});

t.test('parseJson: a large deep body is refused from its bytes; a large shallow one parses', async (t) => {
  const deep = b(`{"model":"m","x":${arrays(2_000_000)}}`);
  t.throws(() => parseJson(deep), { code: 'json_too_deep', status: 400 }, '2,000,000 levels in 4 MB: json_too_deep');
  const shallow = b(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: '[{'.repeat(20_000) }], x: JSON.parse(arrays(60)) }));
  t.ok(shallow.length > 16 * 1024);
  t.same((parseJson(shallow) as { model: string }).model, 'm', 'brackets in a long prompt: parsed');
  t.throws(() => parseJson(b(`{"x":${arrays(65)}}`)), { code: 'json_too_deep' }, 'a small deep body: still refused (after the parse)');
});
