// SSE split as it arrives: whatever the chunking (a CRLF, a blank line or a UTF-8 character
// cut in two), the events are those of the whole text read at once.
import t from 'tap';
import { SseEvents } from '../../src/providers/translator.js';

const streams = [
  'data: {"a":1}\r\n\r\ndata: {"b":"é€😀"}\r\n\r\ndata: {"c":3}\r\n\r\n',
  'event: message_start\ndata: {"x":1}\n\nevent: ping\ndata: {}\n\ndata: [DONE]\n\n',
  'data: one\n\ndata: two\r\n\r\ndata: tail without end',
];

function read(text: string, cuts: number[]): string[] {
  const bytes = Buffer.from(text);
  const e = new SseEvents();
  const out: string[] = [];
  let at = 0;
  for (const cut of [...cuts, bytes.length]) { out.push(...e.push(bytes.subarray(at, cut))); at = cut; }
  const rest = e.rest();
  if (rest) out.push(rest);
  return out;
}

t.test('every two-way and many-way cut reads the same events', (t) => {
  for (const text of streams) {
    const whole = read(text, []);
    t.ok(whole.length >= 3, 'the whole text has its events');
    const n = Buffer.byteLength(text);
    let same = true;
    for (let cut = 1; cut < n; cut++) if (JSON.stringify(read(text, [cut])) !== JSON.stringify(whole)) same = false;
    for (let step = 1; step <= 7; step++) {
      const cuts: number[] = [];
      for (let c = step; c < n; c += step) cuts.push(c);
      if (JSON.stringify(read(text, cuts)) !== JSON.stringify(whole)) same = false;
    }
    t.ok(same, `cut anywhere: ${JSON.stringify(text.slice(0, 30))}…`);
  }
  t.end();
});
