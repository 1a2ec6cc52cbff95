// Cached answers are stored once, as a chat.completion JSON body. A streamed miss is
// assembled into that form (in the worker pool); a hit for a streaming caller is replayed
// as chat.completion.chunk events, so the SDK sees an ordinary stream.
import { isRecord } from '../json.js';
import { eachData } from '../wire/sse.js';
import { usageChunk } from '../wire/sse-usage.js';

interface ToolCallAcc { id?: string; type?: string; name: string; arguments: string }
interface ChoiceAcc { role: string; content: string | null; refusal: string | null; toolCalls: ToolCallAcc[]; finish: string | null }

/** A chat.completion from the SSE events of a chat.completion.chunk stream; null when it is not one. */
export function assembleStream(sse: string): string | null {
  let head = null as Record<string, unknown> | null; // (assigned in the callback; TS would narrow it to null)
  let usage: unknown = null;
  const choices: ChoiceAcc[] = [];
  let broken = false;
  eachData(sse, (data) => {
    let chunk: unknown;
    try { chunk = JSON.parse(data); } catch { broken = true; return false; }
    if (!isRecord(chunk) || chunk.error !== undefined) { broken = true; return false; }
    head ??= chunk;
    if (isRecord(chunk.usage)) usage = chunk.usage;
    if (!Array.isArray(chunk.choices)) return true;
    for (const c of chunk.choices) {
      if (!isRecord(c) || typeof c.index !== 'number') continue;
      const acc = choices[c.index] ??= { role: 'assistant', content: null, refusal: null, toolCalls: [], finish: null };
      const d = isRecord(c.delta) ? c.delta : {};
      if (typeof d.role === 'string') acc.role = d.role;
      if (typeof d.content === 'string') acc.content = (acc.content ?? '') + d.content;
      if (typeof d.refusal === 'string') acc.refusal = (acc.refusal ?? '') + d.refusal;
      if (Array.isArray(d.tool_calls)) {
        for (const t of d.tool_calls) {
          if (!isRecord(t) || typeof t.index !== 'number') continue;
          const call = acc.toolCalls[t.index] ??= { name: '', arguments: '' };
          if (typeof t.id === 'string') call.id = t.id;
          if (typeof t.type === 'string') call.type = t.type;
          const f = isRecord(t.function) ? t.function : {};
          if (typeof f.name === 'string') call.name += f.name;
          if (typeof f.arguments === 'string') call.arguments += f.arguments;
        }
      }
      if (typeof c.finish_reason === 'string') acc.finish = c.finish_reason;
    }
    return true;
  });
  if (broken || !head || !choices.length || choices.some((c) => !c || !c.finish)) return null;
  return JSON.stringify({
    id: head.id, object: 'chat.completion', created: head.created, model: head.model,
    ...(head.system_fingerprint !== undefined ? { system_fingerprint: head.system_fingerprint } : {}),
    choices: choices.map((c, index) => ({
      index,
      message: {
        role: c.role, content: c.content, refusal: c.refusal,
        ...(c.toolCalls.length ? { tool_calls: c.toolCalls.map((t) => ({ id: t.id, type: t.type ?? 'function', function: { name: t.name, arguments: t.arguments } })) } : {}),
      },
      finish_reason: c.finish,
    })),
    usage,
  });
}

/** Characters of content per replayed chunk: enough events for a real stream, few enough to be cheap. */
const PIECE = 64;

/** The SSE events of a cached chat.completion (without `[DONE]`); the usage event only when asked. */
export function replayAsSse(completion: Record<string, unknown>, includeUsage: boolean): string {
  const base = { id: completion.id, object: 'chat.completion.chunk', created: completion.created, model: completion.model };
  const events: string[] = [];
  const emit = (choices: unknown[], extra?: Record<string, unknown>) => {
    events.push(`data: ${JSON.stringify({ ...base, ...(completion.system_fingerprint !== undefined ? { system_fingerprint: completion.system_fingerprint } : {}), choices, ...extra })}\n\n`);
  };
  const choices = Array.isArray(completion.choices) ? completion.choices : [];
  for (const c of choices) {
    if (!isRecord(c)) continue;
    const index = typeof c.index === 'number' ? c.index : 0;
    const msg = isRecord(c.message) ? c.message : {};
    emit([{ index, delta: { role: typeof msg.role === 'string' ? msg.role : 'assistant', content: '' }, finish_reason: null }]);
    const content = typeof msg.content === 'string' ? msg.content : '';
    for (let at = 0; at < content.length; at += PIECE) {
      emit([{ index, delta: { content: content.slice(at, at + PIECE) }, finish_reason: null }]);
    }
    if (typeof msg.refusal === 'string' && msg.refusal) emit([{ index, delta: { refusal: msg.refusal }, finish_reason: null }]);
    if (Array.isArray(msg.tool_calls)) {
      msg.tool_calls.forEach((t, k) => {
        if (isRecord(t)) emit([{ index, delta: { tool_calls: [{ index: k, id: t.id, type: t.type ?? 'function', function: t.function }] }, finish_reason: null }]);
      });
    }
    emit([{ index, delta: {}, finish_reason: c.finish_reason ?? 'stop' }]);
  }
  if (includeUsage && completion.usage !== undefined) events.push(replayUsageEvent(completion)!);
  return events.join('');
}

/** The usage chunk of a replayed completion (null without usage): the last before [DONE], where the figures join it. */
export function replayUsageEvent(completion: Record<string, unknown>): string | null {
  if (completion.usage === undefined) return null;
  return usageChunk(completion, completion.usage);
}
