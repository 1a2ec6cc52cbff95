// The semantic cache's embeddings: prompts that arrive together are embedded in one call of
// the model, each prompt's vector the one it gets alone; a prompt the model cannot take fails
// alone.
import t from 'tap';
import { embed, embedCalls, MAX_EMBED_BATCH } from '../../src/savings/embed.js';

const PROMPTS = Array.from({ length: 20 }, (_, i) => `How do I reset the password of account number ${i} on the billing portal?`);

function maxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

t.test('twenty prompts at once: two calls of the model, each vector the one its prompt gets alone', async (t) => {
  const alone: Float32Array[] = [];
  for (const p of PROMPTS) alone.push(await embed(p)); // (one at a time: a call each)
  const before = { ...embedCalls };
  const together = await Promise.all(PROMPTS.map((p) => embed(p)));
  t.equal(embedCalls.prompts - before.prompts, PROMPTS.length);
  t.equal(MAX_EMBED_BATCH, 16);
  t.equal(embedCalls.calls - before.calls, 2, "in two batches: 16, then 4");
  for (let i = 0; i < PROMPTS.length; i++) {
    t.equal(together[i]!.length, 512);
    t.ok(maxDiff(together[i]!, alone[i]!) < 1e-5, `prompt ${i}: the same vector as alone`);
  }
  t.ok(maxDiff(together[0]!, together[1]!) > 1e-3, 'different prompts, different vectors');
});

t.test('a prompt the model cannot take fails alone, and the prompts after it are served', async (t) => {
  const alone = [await embed(PROMPTS[3]!), await embed(PROMPTS[4]!)];
  // An empty text alone has no tokens: the model's sparse input refuses it.
  await t.rejects(embed(''));
  // In a batch it is padded like the others: whatever it gets, its neighbours get their own vectors.
  const [a, , b] = await Promise.allSettled([embed(PROMPTS[3]!), embed(''), embed(PROMPTS[4]!)]);
  t.equal(a!.status, 'fulfilled');
  t.equal(b!.status, 'fulfilled');
  if (a!.status === 'fulfilled') t.ok(maxDiff(a.value, alone[0]!) < 1e-5);
  if (b!.status === 'fulfilled') t.ok(maxDiff(b.value, alone[1]!) < 1e-5);
  const next = await Promise.all([embed(PROMPTS[5]!), embed(PROMPTS[6]!)]);
  t.equal(next.length, 2);
});
