// A buffered answer gathered as it arrives (wire/answer-bytes.ts): the same bytes whatever the
// chunks, a declared length or none, more than declared; and the gateway member spliced into
// the room after it (sse-usage.ts) the same as by copying.
import t from 'tap';
import { AnswerBytes, GATEWAY_ROOM, GATHER_FROM } from '../../src/wire/answer-bytes.js';
import { scanCompletion, spliceGateway } from '../../src/wire/sse-usage.js';

/** A JSON object of `n` bytes or a little more, its bytes varied so a misplaced copy shows. */
function answer(n: number): Buffer {
  const items: string[] = [];
  let len = 40;
  for (let i = 0; len < n; i++) { const item = `[${i},${(i * 7919) % 10007},"w${i % 97}"]`; items.push(item); len += item.length + 1; }
  return Buffer.from(`{"object":"list","data":[${items.join(',')}],"usage":{"prompt_tokens":3,"total_tokens":3}}`);
}

function gather(body: Buffer, sizes: number[], declared: number | null, most = 64 * 1024 * 1024): AnswerBytes {
  const bytes = new AnswerBytes(most);
  bytes.reset(declared);
  let at = 0;
  for (let i = 0; at < body.length; i++) {
    const n = sizes[i % sizes.length]!;
    bytes.push(body.subarray(at, at + n));
    at += n;
  }
  return bytes;
}

t.test('the same bytes, whatever the chunks and whether a length was declared', async (t) => {
  for (const size of [10, GATHER_FROM - 1, GATHER_FROM, 300_000, 5_000_000]) {
    const body = answer(size);
    for (const sizes of [[body.length], [65_536], [1, 7, 1000, 65_536], [GATHER_FROM - 1, 3]]) {
      for (const declared of [null, body.length]) {
        const bytes = gather(body, sizes, declared);
        t.equal(bytes.size, body.length);
        t.ok(Buffer.concat(bytes.parts()).equals(body), `parts: ${body.length} bytes in ${sizes.join('/')}, declared ${declared}`);
        const { body: taken, room } = bytes.take();
        t.ok(taken.equals(body), `taken: ${body.length} bytes in ${sizes.join('/')}, declared ${declared}`);
        if (body.length >= GATHER_FROM && sizes[0] !== body.length) {
          t.ok(room && room.buffer === taken.buffer && room.byteOffset === taken.byteOffset && room.length >= taken.length + GATEWAY_ROOM, 'with room after it');
        }
        t.equal(bytes.size, 0, 'and let go');
        t.same(bytes.parts(), []);
      }
    }
  }
});

t.test('a small answer in one chunk is kept as it is, in several joined without room', async (t) => {
  const body = answer(GATHER_FROM - 1000);
  const one = gather(body, [body.length], null).take();
  t.ok(one.body.buffer === body.buffer && one.body.equals(body), 'the chunk itself');
  t.equal(one.room, null);
  const small = gather(answer(1000), [100], null).take();
  t.equal(small.room, null);
});

t.test('more than it declared: every byte, joined at the end; more than it may be: every byte still, for the caller to refuse', async (t) => {
  const body = answer(400_000);
  const over = gather(body, [10_000], 100_000);
  t.ok(Buffer.concat(over.parts()).equals(body));
  t.ok(over.take().body.equals(body));
  const most = 150_000;
  const huge = gather(body, [10_000], null, most);
  t.equal(huge.size, body.length, 'the size says it is over');
  t.ok(huge.take().body.equals(body));
  const lied = new AnswerBytes(most);
  lied.reset(most * 10); // (a declared length over the most: no buffer of that size)
  const first = body.subarray(0, 1000);
  lied.push(first);
  t.equal(lied.parts().length, 1);
  t.equal(lied.parts()[0], first, 'kept as it came: no buffer of the declared length');
});

t.test('the gateway member in the room: the same bytes as spliced by copying', async (t) => {
  const figures = JSON.stringify({ request_id: 'req_1', usage: { prompt_tokens: 3 }, cost_usd: 0.000001 });
  for (const tail of ['', '\n', ' \r\n  ']) {
    for (const declared of [false, true]) {
      const src = Buffer.concat([answer(300_000), Buffer.from(tail)]);
      const bytes = gather(src, [65_536], declared ? src.length : null);
      const { body, room } = bytes.take();
      const scan = scanCompletion(body);
      const copied = spliceGateway(Buffer.from(body), scan, figures);
      const inPlace = spliceGateway(body, scan, figures, room);
      t.equal(inPlace.buffer, room!.buffer, 'written in the room');
      t.ok(inPlace.equals(copied), `the same bytes (tail ${JSON.stringify(tail)})`);
      t.same(JSON.parse(inPlace.toString()).gateway, JSON.parse(figures));
    }
  }
  // An empty object, and a member larger than the room: copied.
  const empty = Buffer.from('{ }');
  t.equal(spliceGateway(empty, scanCompletion(empty), '{"a":1}').toString(), '{ "gateway":{"a":1}}');
  const src = answer(300_000);
  const { body, room } = gather(src, [65_536], null).take();
  const big = JSON.stringify({ note: 'x'.repeat(room!.length - body.length + 10) });
  const out = spliceGateway(body, scanCompletion(body), big, room);
  t.not(out.buffer, room!.buffer, 'too large for the room: a copy');
  t.same(JSON.parse(out.toString()).gateway, JSON.parse(big));
  t.ok(body.equals(src), 'and the body untouched');
  // A room that is not the body's own: a copy.
  const other = Buffer.alloc(src.length + GATEWAY_ROOM);
  t.not(spliceGateway(src, scanCompletion(src), '{}', other).buffer, other.buffer);
});
