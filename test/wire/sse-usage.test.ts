// The SSE tap must find the usage frame and [DONE] whatever way the bytes are split.
import t from 'tap';
import { SseUsageTap, scanCompletion } from '../../src/wire/sse-usage.js';

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

t.test('the usage key is found among look-alikes: other g\'s, "usag", "usages", an escaped "usage" in text, spaced JSON', (t) => {
  const noisy = [
    'data: {"id":"g","model":"gpt-gggg","choices":[{"index":0,"delta":{"content":"usage \\"usage\\":{\\"prompt_tokens\\":99} g\\"usag\\"g"},"logprobs":null}],"usages":{"prompt_tokens":98},"usag":{"x":1},"usage":null}\n\n',
    'data: {"id":"g","choices":[], "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}\n\n',
    'data: [DONE]\n\n',
  ].join('');
  const bytes = Buffer.from(noisy);
  for (let cut = 1; cut < bytes.length; cut++) {
    const out: Buffer[] = [];
    const tap = new SseUsageTap(false, (b) => { out.push(Buffer.from(b)); return true; }, () => Buffer.alloc(0));
    tap.push(bytes.subarray(0, cut));
    tap.push(bytes.subarray(cut));
    if (tap.usage?.prompt_tokens !== 7 || tap.usage.completion_tokens !== 2 || !tap.sawDone) { t.fail(`cut at ${cut}: ${JSON.stringify(tap.usage)}`); return t.end(); }
  }
  t.pass('usage 7/2 at every split');
  t.end();
});

t.test('scanCompletion finds the top-level usage without parsing the whole body', (t) => {
  const usage = { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12, prompt_tokens_details: { cached_tokens: 2, audio_tokens: 0 } };
  const body = { id: 'c', choices: [{ index: 0, message: { role: 'assistant', content: 'the "usage": {"prompt_tokens": 999} } is just text' } }], usage, service_tier: 'default' };
  for (const text of [JSON.stringify(body), JSON.stringify(body, null, 2), `\n  ${JSON.stringify(body)}\n`]) {
    const scan = scanCompletion(Buffer.from(text));
    t.ok(scan.isObject);
    t.same(scan.usage, { prompt_tokens: 9, completion_tokens: 3, cached_tokens: 2 });
    t.equal(text[scan.close], '}');
    t.equal(text.slice(scan.close + 1).trim(), '', 'close is the last brace');
  }
  t.equal(scanCompletion(Buffer.from('{"id":"c","usage":null}')).usage, null, 'usage null');
  t.equal(scanCompletion(Buffer.from('{"id":"c","choices":[]}')).usage, null, 'no usage');
  t.equal(scanCompletion(Buffer.from('{"usage":{"prompt_tokens":-1,"completion_tokens":1}}')).usage, null, 'invalid usage is not billed from');
  t.equal(scanCompletion(Buffer.from('{"usage":{"prompt_tokens":1,')).isObject, false, 'truncated');
  t.equal(scanCompletion(Buffer.from('[1,2]')).isObject, false, 'not an object');
  t.equal(scanCompletion(Buffer.from('')).isObject, false, 'empty');
  const empty = scanCompletion(Buffer.from(' { } '));
  t.ok(empty.isObject && empty.empty, '{} has no members');
  t.end();
});

t.test('an Anthropic stream passed through: usage from message_start and message_delta, message_stop held, at every split', (t) => {
  const events = [
    'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":20,"cache_read_input_tokens":100,"cache_creation_input_tokens":7,"output_tokens":1}}}\n\n',
    'event: ping\ndata: {"type":"ping"}\n\n',
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n',
    'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}\n\n',
    'event: message_stop\ndata: {"type":"message_stop"}\n\n',
  ];
  const bytes = Buffer.from(events.join(''));
  for (let cut = 1; cut < bytes.length; cut += 5) {
    const out: Buffer[] = [];
    const tap = new SseUsageTap(false, (b) => { out.push(Buffer.from(b)); return true; }, () => Buffer.alloc(0), true);
    tap.push(bytes.subarray(0, cut));
    if (cut < events.slice(0, 3).join('').length) t.equal(tap.usage, null, 'not billed from message_start alone');
    tap.push(bytes.subarray(cut));
    const usage = tap.usage;
    const written = Buffer.concat(out).toString();
    // (the events that came in the terminal event's chunk are held with it, the lead; those before went out at once)
    const lead = tap.takeLead()?.toString() ?? '';
    const held = tap.flushTail()?.toString();
    const whole = [0, 1, 2, 3, 4].map((k) => events.slice(0, k).join(''));
    if (JSON.stringify(usage) !== JSON.stringify({ prompt_tokens: 127, completion_tokens: 9, cached_tokens: 100, cache_write_tokens: 7 }) || written + lead !== events.slice(0, 4).join('')
      || !whole.includes(written) || held !== events[4] || !tap.sawDone) {
      t.fail(`cut at ${cut}: ${JSON.stringify(usage)} ${written.length} ${lead.length} ${held}`);
      return t.end();
    }
  }
  t.pass('the same at every split');
  // (the field's space is optional in SSE: `event:message_stop` ends the stream too)
  const tight = Buffer.from(events.join('').replaceAll('event: ', 'event:'));
  const tap = new SseUsageTap(false, () => true, () => Buffer.alloc(0), true);
  tap.push(tight);
  t.ok(tap.sawDone, 'event:message_stop, without the space');
  t.equal(tap.flushTail()?.toString(), 'event:message_stop\ndata: {"type":"message_stop"}\n\n', 'held as the terminal event');
  t.end();
});

t.test('a stream written with Python\'s spacing: its usage chunk is known as such (dropped, or held for the gateway\'s figures), and a tab before the usage object is read', (t) => {
  const spaced = [
    'data: {"id": "c", "choices": [{"index": 0, "delta": {"content": "Hi"}}], "usage": null}\n\n',
    'data: {"id": "c", "choices": [ ], "usage": {"prompt_tokens": 11, "completion_tokens": 1, "total_tokens": 12}}\n\n',
    'data: [DONE]\n\n',
  ];
  for (const keep of [false, true]) {
    const out: Buffer[] = [];
    const tap = new SseUsageTap(keep, (b) => { out.push(Buffer.from(b)); return true; }, () => Buffer.from(': gateway {}\n\n'), true);
    tap.push(Buffer.from(spaced.join('')));
    t.same(tap.usage, { prompt_tokens: 11, completion_tokens: 1, cached_tokens: 0 }, `usage read (include_usage ${keep})`);
    t.equal(Buffer.concat(out).toString(), '', 'nothing went out yet: the content chunk came with the terminal event');
    t.equal(tap.takeLead()?.toString(), spaced[0], 'the content chunk is held with it, as it came');
    t.equal(tap.usageEvent?.toString() ?? null, keep ? spaced[1] : null, keep ? 'the usage chunk held, for the gateway\'s figures to go in it' : 'the usage chunk not forwarded: the caller did not ask for it');
  }
  // A string value spelling the key before it (an id, a model) is not the key.
  const named = 'data: {"id":"choices","model":"choices","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}\n\n';
  const heldNamed = new SseUsageTap(true, () => true, () => Buffer.alloc(0), true);
  heldNamed.push(Buffer.from(`${named}data: [DONE]\n\n`));
  t.equal(heldNamed.usageEvent?.toString(), named, 'the usage chunk is known by its "choices" key, not by a value spelling it');
  const tabbed = new SseUsageTap(false, () => true, () => Buffer.alloc(0));
  tabbed.push(Buffer.from('data: {"choices":[],"usage":\t{"prompt_tokens":3,"completion_tokens":2}}\n\ndata: [DONE]\n\n'));
  t.equal(tabbed.usage?.prompt_tokens, 3, 'a tab between the key and the object');
  t.end();
});

t.test('an event that arrives in many pieces is forwarded whole once it ends; one that never ends stops the tap at 16 MiB', (t) => {
  const long = `data: {"id":"c","choices":[{"index":0,"delta":{"content":"${'x'.repeat(300_000)}"}}],"usage":null}\n\n`;
  const stream = Buffer.from(long + frames.slice(3).join(''));
  for (const size of [1000, 4096, 299_999]) {
    const out: Buffer[] = [];
    const tap = new SseUsageTap(false, (b) => { out.push(Buffer.from(b)); return true; }, () => Buffer.from(': g\n\n'));
    for (let at = 0; at < stream.length; at += size) tap.push(stream.subarray(at, at + size));
    t.equal(Buffer.concat(out).toString(), `${long}: g\n\ndata: [DONE]\n\n`, `pieces of ${size}: forwarded whole, in order`);
    t.equal(tap.usage?.prompt_tokens, 11);
    t.ok(tap.terminal && !tap.oversized);
  }
  // A blank line split across pieces, at every way a CRLF one can be cut.
  const crlf = Buffer.from(long.replace('\n\n', '\r\n\r\n') + 'data: [DONE]\r\n\r\n');
  for (let cut = crlf.indexOf('\r\n\r\n') - 1; cut <= crlf.indexOf('\r\n\r\n') + 4; cut++) {
    const tap = new SseUsageTap(false, () => true, () => Buffer.alloc(0));
    tap.push(crlf.subarray(0, 100)); tap.push(crlf.subarray(100, cut)); tap.push(crlf.subarray(cut));
    t.ok(tap.sawDone, `CRLF blank line cut at ${cut}`);
  }
  for (const framed of [crlf, Buffer.from(long + 'data: [DONE]\n\n')]) {
    const tap = new SseUsageTap(false, () => true, () => Buffer.alloc(0));
    tap.push(framed.subarray(0, 299_000));
    for (let at = 299_000; at < framed.length; at++) tap.push(framed.subarray(at, at + 1));
    t.ok(tap.sawDone, `a long event then byte by byte (${framed === crlf ? 'CRLF' : 'LF'}): [DONE] seen`);
  }
  const tap = new SseUsageTap(false, () => true, () => Buffer.alloc(0));
  tap.push(Buffer.from('data: '));
  const piece = Buffer.alloc(1 << 20, 120);
  const t0 = performance.now();
  for (let i = 0; i < 15; i++) tap.push(piece);
  t.notOk(tap.oversized, '15 MiB: not yet');
  tap.push(piece);
  tap.push(piece);
  t.ok(tap.oversized, 'past 16 MiB: unreadable');
  t.ok(performance.now() - t0 < 2000, `17 MiB in 1 MiB pieces took ${(performance.now() - t0).toFixed(0)} ms (it was quadratic: each piece copied with all before it)`);
  t.equal(tap.flushTail(), null, 'and nothing of it is kept');
  t.end();
});

t.test('holding the terminal event: the events that came in its chunk are held with it (the lead), those of earlier chunks go out at once', (t) => {
  for (const keep of [false, true]) {
    // All in one chunk (an answer that arrived in one read): nothing goes out until its end.
    const out: Buffer[] = [];
    const tap = new SseUsageTap(keep, (b) => { out.push(Buffer.from(b)); return true; }, () => Buffer.alloc(0), true);
    tap.push(whole);
    t.equal(out.length, 0, `one chunk (include_usage ${keep}): nothing written`);
    t.equal(tap.takeLead()?.toString(), frames.slice(0, 3).join(''), 'the content events held, without the usage event');
    t.equal(tap.takeLead(), null, 'taken once');
    t.equal(tap.usageEvent?.toString() ?? null, keep ? frames[3] : null, 'the usage event held apart (it goes last, with the figures)');
    t.equal(tap.flushTail()?.toString(), frames[4], 'and [DONE]');
    t.same(tap.usage, { prompt_tokens: 11, completion_tokens: 1, cached_tokens: 4 });
  }
  // At every split: what went out at once and the lead are the content events, in order, each
  // whole; what went out is exactly the events that ended before the terminal event's chunk.
  for (let cut = 1; cut < whole.length; cut++) {
    const out: Buffer[] = [];
    const tap = new SseUsageTap(false, (b) => { out.push(Buffer.from(b)); return true; }, () => Buffer.alloc(0), true);
    tap.push(whole.subarray(0, cut));
    const early = Buffer.concat(out).toString();
    tap.push(whole.subarray(cut));
    const written = Buffer.concat(out).toString();
    const lead = tap.takeLead()?.toString() ?? '';
    const ended = frames.slice(0, 3).filter((_, i) => frames.slice(0, i + 1).join('').length <= cut).join('');
    if (written !== early || written !== ended || written + lead !== frames.slice(0, 3).join('') || tap.flushTail()?.toString() !== frames[4]) {
      t.fail(`cut at ${cut}: written ${JSON.stringify(written)} lead ${JSON.stringify(lead)}`);
      return t.end();
    }
  }
  t.pass('every split');
  // Without holding, nothing changes: every event goes out as its chunk is read.
  const out: Buffer[] = [];
  const tap = new SseUsageTap(false, (b) => { out.push(Buffer.from(b)); return true; }, () => Buffer.from(': g\n\n'));
  tap.push(whole);
  t.equal(Buffer.concat(out).toString(), `${frames.slice(0, 3).join('')}: g\n\n${frames[4]}`);
  t.equal(tap.takeLead(), null);
  t.end();
});

t.test('what follows the terminal event is not the answer\'s: dropped, in its chunk or a later one, at every split', (t) => {
  const after = 'data: {"id":"c","choices":[{"index":0,"delta":{"content":" AFTER"}}],"usage":null}\n\ndata: [DONE]\n\n';
  const stream = Buffer.from(frames.join('') + after);
  const anthropicStop = 'event: message_stop\ndata: {"type":"message_stop"}\n\n';
  for (const hold of [true, false]) {
    for (let cut = 1; cut < stream.length; cut += 3) {
      const out: Buffer[] = [];
      const tap = new SseUsageTap(false, (b) => { out.push(Buffer.from(b)); return true; }, () => Buffer.from(': g\n\n'), hold);
      tap.push(stream.subarray(0, cut));
      tap.push(stream.subarray(cut));
      tap.end();
      const text = Buffer.concat(out).toString() + (tap.takeLead()?.toString() ?? '') + (hold ? ': g\n\n' : '') + (tap.flushTail()?.toString() ?? '');
      if (text !== `${frames.slice(0, 3).join('')}: g\n\ndata: [DONE]\n\n`) {
        t.fail(`hold ${hold}, cut at ${cut}: ${JSON.stringify(text.slice(-160))}`);
        return t.end();
      }
    }
  }
  t.pass('only the answer and one [DONE]');
  // A Responses stream's terminal event, and an Anthropic one, with more after them in the same chunk.
  const completed = 'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1","usage":{"input_tokens":3,"output_tokens":2}}}\n\n';
  const responses = new SseUsageTap(false, () => true, () => Buffer.alloc(0), true);
  responses.push(Buffer.from(`event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n${completed}event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"AFTER"}\n\n`));
  t.equal(responses.flushTail()?.toString(), completed, 'response.completed held alone');
  const anthropic = new SseUsageTap(false, () => true, () => Buffer.alloc(0), true);
  anthropic.push(Buffer.from('event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'));
  anthropic.push(Buffer.from(`event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":2}}\n\n${anthropicStop}event: ping\ndata: {"type":"ping"}\n\n`));
  t.equal(anthropic.flushTail()?.toString(), anthropicStop, 'message_stop held alone');
  t.end();
});
