// The smart router's classifier (workers/classify.ts) with the real tokenizer: harder prompts
// score higher, and the score is a probability rounded to 3 decimals.
import t from 'tap';
import { compileTokenizerWasm, loadTokenizers } from '../../native/tokenizer.js';
import { classifyPrompt } from '../../src/workers/classify.js';

const tok = (await loadTokenizers(await compileTokenizerWasm(), ['o200k_base'])).get('o200k_base')!;
const ask = (content: unknown, extra: Record<string, unknown> = {}) => classifyPrompt(tok, { messages: [{ role: 'user', content }], ...extra });

t.test('scores are probabilities, to three decimals', async (t) => {
  for (const text of ['hi', 'x'.repeat(50_000), '']) {
    const s = ask(text);
    t.ok(s >= 0 && s <= 1, `${s} in [0, 1]`);
    t.equal(Math.round(s * 1000) / 1000, s);
  }
});

t.test('harder prompts score higher than easy ones', async (t) => {
  const greeting = ask('Hi, thanks!');
  const proof = ask('Prove step by step that the sum of the first n odd numbers is n^2, then derive a closed form for the sum of squares and analyze its complexity.');
  const code = ask('```ts\nfunction f(x: number) { return x * 2; }\nclass A {}\nimport { y } from "z";\n```\nRefactor this and explain the trade-offs.');
  t.ok(proof > greeting, `reasoning and math (${proof}) above a greeting (${greeting})`);
  t.ok(code > greeting, `code (${code}) above a greeting (${greeting})`);
});

t.test('reads the last user turn, as text parts too; tools and a long conversation add to the score', async (t) => {
  const parts = ask([{ type: 'text', text: 'Prove it' }, { type: 'text', text: 'step by step' }]);
  t.equal(parts, ask('Prove it step by step'), 'text parts are joined with a space');
  const base = ask('What is the capital of France?');
  t.ok(ask('What is the capital of France?', { tools: [{ type: 'function', function: { name: 'f' } }] }) > base, 'tools');
  const long = classifyPrompt(tok, { messages: [...Array.from({ length: 8 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: 'ok' })), { role: 'user', content: 'What is the capital of France?' }] });
  t.ok(long > base, 'a long conversation');
  t.equal(classifyPrompt(tok, { messages: [{ role: 'user', content: 'Prove it' }, { role: 'assistant', content: 'Sure' }] }), classifyPrompt(tok, { messages: [{ role: 'user', content: 'Prove it' }, { role: 'assistant', content: 'No' }] }), 'the assistant turn is not read');
});

t.test('anything that is not a chat body scores as an empty prompt', async (t) => {
  const empty = classifyPrompt(tok, { messages: [] });
  for (const body of [null, 'text', 42, {}, { messages: 'x' }]) t.equal(classifyPrompt(tok, body), empty);
});
