// Text every copy of a record can hold: names, notes and model names with a lone surrogate
// (or, for names, a control character; for notes, NUL) are refused at the door.
import t from 'tap';
import { ModelName } from '../../src/wire/chat.js';
import { FreeText, isWellFormed, Name, toWellFormed } from '../../src/wire/text.js';

t.test('names', async (t) => {
  for (const ok of ['bench', 'quotes " \\ and ✨', 'pair 🚀', 'é'.repeat(200)]) t.ok(Name.safeParse(ok).success, JSON.stringify(ok));
  for (const bad of ['', 'x'.repeat(201), 'half \ud800 a pair', 'low \udfff', 'nul \u0000', 'tab\there', 'line\nbreak', 'del \u007f']) t.notOk(Name.safeParse(bad).success, JSON.stringify(bad));
});

t.test('free text', async (t) => {
  const note = FreeText(20);
  for (const ok of ['', 'two\nlines\tand tab', '🚀 fine']) t.ok(note.safeParse(ok).success, JSON.stringify(ok));
  for (const bad of ['nul \u0000', 'lone \ud83d', 'x'.repeat(21)]) t.notOk(note.safeParse(bad).success, JSON.stringify(bad));
});

t.test('model names', async (t) => {
  t.ok(ModelName.safeParse('openai/gpt-4.1-mini').success);
  t.ok(ModelName.safeParse('modèle ✨ 🚀').success);
  const lone = ModelName.safeParse('x\ud800');
  t.notOk(lone.success);
  t.match(lone.error?.issues[0]?.message, /well-formed Unicode/);
});

t.test('the helpers', async (t) => {
  t.equal(isWellFormed('a\ud83d\ude80b'), true);
  t.equal(isWellFormed('a\ud83db'), false);
  t.equal(toWellFormed('a\ud83db'), 'a\ufffdb');
});
