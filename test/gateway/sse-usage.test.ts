// The SSE tap must find the usage frame and [DONE] whatever way the bytes are split.
import t from 'tap';
import { SseUsageTap } from '../../src/gateway/sse-usage.js';

const frames = [
  'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}\n\n',
  'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}\n\n',
  'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n',
  'data: {"id":"c","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":1,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":4}}}\n\n',
  'data: [DONE]\n\n',
];
const whole = Buffer.from(frames.join(''));

function run(split: number[], keepUsage: boolean) {
  const out: Buffer[] = [];
  const tap = new SseUsageTap(keepUsage, (b) => { out.push(Buffer.from(b)); return true; }, () => Buffer.from(': gateway {}\n\n'));
  let at = 0;
  for (const cut of [...split, whole.length]) { tap.push(whole.subarray(at, cut)); at = cut; }
  return { tap, text: Buffer.concat(out).toString() };
}

t.test('every split point gives the same result', (t) => {
  for (let cut = 1; cut < whole.length; cut += 7) {
    for (const keep of [true, false]) {
      const { tap, text } = run([cut], keep);
      t.same(tap.usage, { prompt_tokens: 11, completion_tokens: 1, cached_tokens: 4 });
      t.ok(tap.sawDone);
      const expected = keep ? frames.slice(0, 4).join('') : frames.slice(0, 3).join('');
      if (text !== `${expected}: gateway {}\n\ndata: [DONE]\n\n`) { t.fail(`cut at ${cut}, keep=${keep}: ${text}`); return t.end(); }
    }
  }
  t.pass('all splits identical');
  t.end();
});

t.test('byte-at-a-time and CRLF framing', (t) => {
  const { tap } = run(Array.from({ length: whole.length - 1 }, (_, i) => i + 1), false);
  t.equal(tap.usage?.prompt_tokens, 11);
  const crlf = Buffer.from(frames.join('').replaceAll('\n\n', '\r\n\r\n'));
  const out: Buffer[] = [];
  const tap2 = new SseUsageTap(false, (b) => { out.push(Buffer.from(b)); return true; }, () => Buffer.alloc(0));
  tap2.push(crlf);
  t.equal(tap2.usage?.completion_tokens, 1);
  t.ok(tap2.sawDone);
  t.notMatch(Buffer.concat(out).toString(), /"choices":\[\],"usage"/);
  t.end();
});
