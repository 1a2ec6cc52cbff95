// The two mechanisms that rewrite a prompt before it leaves: retrieval chunk dedupe and
// conversation compression. Pure and deterministic (the same conversation is rewritten
// the same way every time, so prefixes stay byte-stable for provider prompt caches); they
// run in the worker pool. Neither ever touches the system prompt, a tool call or a
// tool_call_id, or the final user turn's question; compression never touches the latest
// `keepLast` messages.
import { isRecord } from '../json.js';

export interface RewriteOptions {
  /** Passages at least this long are deduplicated; 0 = off. */
  chunkMinChars: number;
  compression: { budgetTokens: number; keepLast: number; staleMaxChars: number } | null;
}

export interface RewriteResult {
  /** The rewritten request, or null when nothing changed. */
  request: Record<string, unknown> | null;
  /** Prompt tokens of what will be sent. */
  promptTokens: number;
  savedChunk: number;
  savedCompression: number;
}

type Message = Record<string, unknown>;

/** Splits keeping separators at odd indices: a blank line (optionally with spaces) ends a passage. */
const PASSAGE_BREAK = /(\n[ \t]*\n+)/;

/** Applies `edit` to every text the message carries (string content, or text parts), copying on change. */
function mapTexts(m: Message, edit: (text: string, isLastText: boolean) => string): Message {
  if (typeof m.content === 'string') {
    const next = edit(m.content, true);
    return next === m.content ? m : { ...m, content: next };
  }
  if (!Array.isArray(m.content)) return m;
  const parts = m.content as unknown[];
  let lastText = -1;
  parts.forEach((p, i) => { if (isRecord(p) && typeof p.text === 'string') lastText = i; });
  let changed = false;
  const out = parts.map((p, i) => {
    if (!isRecord(p) || typeof p.text !== 'string') return p;
    const next = edit(p.text, i === lastText);
    if (next === p.text) return p;
    changed = true;
    return { ...p, text: next };
  });
  return changed ? { ...m, content: out } : m;
}

/**
 * Later copies of a pasted passage (≥ minChars, compared after collapsing whitespace) become
 * a short reference to the message holding the first copy. Copies are replaced only in user
 * and tool messages; the last passage of the final user message (its question) is never replaced.
 */
export function dedupeChunks(messages: readonly Message[], minChars: number): Message[] {
  const first = new Map<string, number>();
  const finalUser = messages.length - 1;
  return messages.map((m, i) => {
    if (m.role === 'assistant') return m;
    const editable = m.role === 'user' || m.role === 'tool';
    return mapTexts(m, (text, isLastText) => {
      if (text.length < minChars) return text;
      const pieces = text.split(PASSAGE_BREAK);
      let lastPassage = pieces.length - 1;
      while (lastPassage > 0 && !pieces[lastPassage]!.trim()) lastPassage -= 2;
      let changed = false;
      for (let j = 0; j < pieces.length; j += 2) {
        const passage = pieces[j]!;
        if (passage.length < minChars) continue;
        const norm = passage.trim().replace(/\s+/g, ' ');
        if (norm.length < minChars) continue;
        const at = first.get(norm);
        if (at === undefined) { first.set(norm, i); continue; }
        const isQuestion = i === finalUser && m.role === 'user' && isLastText && j === lastPassage;
        if (!editable || isQuestion) continue;
        pieces[j] = `[Same passage as in message ${at + 1} above.]`;
        changed = true;
      }
      return changed ? pieces.join('') : text;
    });
  });
}

/** Keeps the head and tail of a long text around a mark saying how much was left out. */
function elide(text: string, max: number): string {
  if (text.length <= max) return text;
  const head = Math.floor(max * 0.6);
  const tail = Math.floor(max * 0.25);
  const cut = text.length - head - tail;
  return `${text.slice(0, head)}\n[… ${cut} characters of earlier context omitted …]\n${text.slice(text.length - tail)}`;
}

/**
 * Stale history (everything but system/developer messages and the latest `keepLast`
 * messages): long texts keep their head and tail. Tool calls, ids and roles are kept, so
 * every tool call still has its result.
 */
export function compressStale(messages: readonly Message[], keepLast: number, staleMaxChars: number): Message[] {
  const staleBefore = messages.length - keepLast;
  return messages.map((m, i) => {
    if (i >= staleBefore || m.role === 'system' || m.role === 'developer') return m;
    return mapTexts(m, (text) => elide(text, staleMaxChars));
  });
}

/** Both rewrites, with the prompt tokens each saved; `count` is the prompt-token counter. */
export function rewrite(request: Record<string, unknown>, opts: RewriteOptions, count: (request: unknown) => number): RewriteResult {
  const original = request.messages as Message[];
  const before = count(request);
  let messages = original;
  let tokens = before;
  let savedChunk = 0;
  let savedCompression = 0;
  if (opts.chunkMinChars > 0) {
    const next = dedupeChunks(messages, opts.chunkMinChars);
    if (next.some((m, i) => m !== messages[i])) {
      const after = count({ ...request, messages: next });
      if (after < tokens) { savedChunk = tokens - after; messages = next; tokens = after; }
    }
  }
  const c = opts.compression;
  if (c && tokens > c.budgetTokens) {
    const next = compressStale(messages, c.keepLast, c.staleMaxChars);
    if (next.some((m, i) => m !== messages[i])) {
      const after = count({ ...request, messages: next });
      if (after < tokens) { savedCompression = tokens - after; messages = next; tokens = after; }
    }
  }
  return { request: messages === original ? null : { ...request, messages }, promptTokens: tokens, savedChunk, savedCompression };
}
