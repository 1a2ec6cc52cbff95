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

t.test("a key's limits as a request sets them: bounded lists of text every copy can hold", async (t) => {
  const { MintKeySchema, PatchKeySchema } = await import('../../src/server/schemas.js');
  const ok = (limits: unknown) => MintKeySchema.safeParse({ name: 'k', limits }).success;
  t.ok(ok({ models: ['openai/*', 'anthropic/claude-sonnet-4'], providers: ['openai'], regions: ['us', 'eu'] }));
  t.notOk(ok({ models: ['openai/\ud800*'] }), 'a lone surrogate in a model pattern');
  t.notOk(ok({ models: ['openai/\u0000'] }), 'NUL in a model pattern');
  t.notOk(ok({ models: ['x'.repeat(257)] }), 'a model pattern over 256 characters');
  t.notOk(ok({ models: Array.from({ length: 257 }, (_, i) => `m${i}`) }), 'over 256 model patterns');
  t.notOk(ok({ providers: Array.from({ length: 65 }, (_, i) => `p${i}`) }), 'over 64 providers');
  t.notOk(ok({ regions: ['us\u0000'] }), 'a control character in a region');
  t.notOk(ok({ rpm: 5, unknown: 1 }), 'still strict');
  t.notOk(PatchKeySchema.safeParse({ limits: { models: Array.from({ length: 300 }, () => 'a') } }).success, 'on PATCH too');
});
