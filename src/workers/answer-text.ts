// The text an upstream generated, read from its answer as it arrived: a chat.completion or
// a Responses object, or the SSE events of either (complete events only: a cut stream is
// read up to its last whole event). What billing counts when the upstream reported no usage.
import { isRecord, type Json } from '../json.js';
import { eachData } from '../wire/sse.js';

function pushChat(message: unknown, into: string[]): void {
  if (!isRecord(message)) return;
  for (const field of ['content', 'refusal', 'reasoning_content', 'reasoning'] as const) {
    if (typeof message[field] === 'string') into.push(message[field]);
  }
  if (Array.isArray(message.tool_calls)) {
    for (const call of message.tool_calls) {
      if (!isRecord(call) || !isRecord(call.function)) continue;
      if (typeof call.function.name === 'string') into.push(call.function.name);
      if (typeof call.function.arguments === 'string') into.push(call.function.arguments);
    }
  }
}

/** Texts of a Responses API `output` list. */
function pushOutput(output: unknown, into: string[]): void {
  if (!Array.isArray(output)) return;
  for (const item of output) {
    if (!isRecord(item)) continue;
    if (typeof item.arguments === 'string') into.push(item.arguments);
    if (Array.isArray(item.content)) for (const part of item.content) if (isRecord(part) && typeof part.text === 'string') into.push(part.text);
  }
}

function pushEvent(e: Json, into: string[]): void {
  if (Array.isArray(e.choices)) {
    for (const c of e.choices) if (isRecord(c)) { pushChat(c.delta, into); if (typeof c.text === 'string') into.push(c.text); } // (legacy completions: text)
    return;
  }
  // Responses API stream events: the deltas carry the generated text.
  if (typeof e.type === 'string' && e.type.endsWith('.delta') && typeof e.delta === 'string') into.push(e.delta);
  // Anthropic's Messages events: text and tool-input deltas.
  if (e.type === 'content_block_delta' && isRecord(e.delta)) {
    if (typeof e.delta.text === 'string') into.push(e.delta.text);
    if (typeof e.delta.partial_json === 'string') into.push(e.delta.partial_json);
    if (typeof e.delta.thinking === 'string') into.push(e.delta.thinking);
  }
}

export function answerText(answer: string, stream: boolean): string {
  return readAnswer(answer, stream).text;
}

/** `answerText`, and whether a body (not a stream) was a JSON object at all (`whole`: false when it does not parse, an answer cut short). */
export function readAnswer(answer: string, stream: boolean): { text: string; whole: boolean } {
  const texts: string[] = [];
  if (!stream) {
    let body: unknown;
    try { body = JSON.parse(answer); } catch { return { text: '', whole: false }; }
    if (!isRecord(body)) return { text: '', whole: false };
    if (Array.isArray(body.choices)) for (const c of body.choices) if (isRecord(c)) { pushChat(c.message, texts); if (typeof c.text === 'string') texts.push(c.text); }
    pushOutput(body.output, texts);
    // An Anthropic message: its text, tool inputs and thinking blocks.
    if (body.type === 'message' && Array.isArray(body.content)) {
      for (const b of body.content) {
        if (!isRecord(b)) continue;
        if (typeof b.text === 'string') texts.push(b.text);
        if (typeof b.thinking === 'string') texts.push(b.thinking);
        if (isRecord(b.input)) texts.push(JSON.stringify(b.input));
      }
    }
    return { text: texts.join(''), whole: true };
  }
  const complete = answer.lastIndexOf('\n\n');
  eachData(answer.slice(0, complete === -1 ? 0 : complete), (data) => {
    let event: unknown;
    try { event = JSON.parse(data); } catch { return; }
    if (isRecord(event)) pushEvent(event, texts);
  });
  return { text: texts.join(''), whole: true };
}

/** Text counted a slice at a time when a bound applies (at most one token more per slice, as a long run is counted). */
const COUNT_SLICE = 16_384;

/**
 * The text's tokens, or once they reach `max` (the most the upstream could have generated),
 * `max`: an answer an upstream sent beyond its cap is neither billed nor counted whole (27 MB
 * of it held a worker, and every request waiting on one, for seconds).
 */
export function countBounded(tok: { count(text: string): number }, text: string, max: number | null): number {
  if (max === null || text.length <= COUNT_SLICE) return max === null ? tok.count(text) : Math.min(max, tok.count(text));
  let n = 0;
  for (let at = 0; at < text.length && n < max;) {
    let end = Math.min(text.length, at + COUNT_SLICE);
    const c = text.charCodeAt(end - 1);
    if (end < text.length && c >= 0xd800 && c <= 0xdbff) end++; // never between the halves of a surrogate pair
    n += tok.count(text.slice(at, end));
    at = end;
  }
  return Math.min(n, max);
}
