// The embeddings body the gateway writes (the sim's, and Bedrock's and Gemini's vectors gathered
// into OpenAI's shape): each vector a JSON array of its numbers as String() writes them, a
// non-finite one as 0, or float32 base64; and normalise's unit vectors.
import t from 'tap';
import { embeddingsBody, normalise } from '../../src/wire/embeddings.js';

t.test('vectors as JSON arrays, numbers as String() writes them, non-finite as 0', (t) => {
  const vectors = [[0.1, -2.5e-7, 1e21, 0, -0], new Float64Array([1 / 3, NaN, Infinity, -Infinity, 5]), []];
  const body = JSON.parse(embeddingsBody('m', vectors, 7, false).toString()) as { object: string; data: Array<{ index: number; embedding: number[] }>; model: string; usage: unknown };
  t.equal(body.object, 'list');
  t.same(body.data.map((d) => d.index), [0, 1, 2]);
  t.same(body.data[0]!.embedding, [0.1, -2.5e-7, 1e21, 0, 0]);
  t.same(body.data[1]!.embedding, [1 / 3, 0, 0, 0, 5], 'NaN and ±Infinity written as 0');
  t.same(body.data[2]!.embedding, []);
  t.same(body.usage, { prompt_tokens: 7, total_tokens: 7 });
  const text = embeddingsBody('m', [[0.1, 1 / 3, 1e-7]], null, false).toString();
  t.equal(text, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,${String(1 / 3)},1e-7]}],"model":"m"}`, 'the exact bytes, no usage when none is known');
  t.end();
});

t.test('base64: float32, little-endian', (t) => {
  const body = JSON.parse(embeddingsBody('m', [[1, -0.5]], 1, true).toString()) as { data: Array<{ embedding: string }> };
  const bytes = Buffer.from(body.data[0]!.embedding, 'base64');
  t.same([bytes.readFloatLE(0), bytes.readFloatLE(4)], [1, -0.5]);
  t.end();
});

t.test('normalise: unit length; a zero vector stays zero', (t) => {
  const v = normalise(new Float64Array([3, 4]));
  t.same(v, [0.6, 0.8]);
  t.ok(Array.isArray(v));
  t.same(normalise([0, 0, 0]), [0, 0, 0]);
  t.end();
});
