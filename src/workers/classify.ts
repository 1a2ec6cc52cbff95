// The smart router's classifier: a cheap, deterministic score in [0, 1] of how demanding
// a chat request is (its difficulty), from the final user turn (its length in tokens, code,
// math, words that ask for reasoning or for something simple) and the conversation around
// it; and its task type, for the adaptive router (config `router.adaptive.task_types`: the
// type whose patterns match the last user turn most often). Runs in the worker pool next to
// the tokenizer it needs: no upstream call.
import type { Tokenizer } from '../../native/tokenizer.js';
import { contentText } from '../wire/chat.js';

const REASONING = /\b(prove|proof|derive|analy[sz]e|design|architect|optimi[sz]e|step[- ]by[- ]step|trade-?offs?|compare|why|debug|refactor|algorithm|complexity|evaluate|critique|plan|strategy|implement)\b/gi;
const SIMPLE = /\b(hi|hello|hey|thanks|thank you|translate|spell|define|what is|who is|capital of|yes|no|ok)\b/gi;
const MATH = /[∑∫√≤≥≠]|\b\d+\s*[*/^]\s*\d+\b|\b(equation|integral|derivative|matrix|probability|theorem)\b/gi;
const CODE = /```|\b(function|def|class|import|return|const|SELECT|#include)\b|[{};]\s*$/gim;

const count = (re: RegExp, s: string) => s.match(re)?.length ?? 0;

/** Task types compiled once per worker: name and patterns, in precedence order. */
export interface TaskRules {
  readonly types: ReadonlyArray<{ readonly name: string; readonly patterns: readonly RegExp[] }>;
  readonly fallback: string;
}

/** Matches of a global pattern, counting no further than 3 (a pattern that matches everywhere stops early). */
function upTo3(re: RegExp, text: string): number {
  re.lastIndex = 0;
  let n = 0;
  let m: RegExpExecArray | null;
  while (n < 3 && (m = re.exec(text)) !== null) {
    n++;
    if (m[0] === '') re.lastIndex++; // an empty match moves on
  }
  re.lastIndex = 0;
  return n;
}

/** Patterns match the lowercased text without the `i` flag, so V8's linear engine can take over one that backtracks (config/linear-regex.ts). */
export function compileTaskRules(types: Record<string, { patterns: string[] }>, fallback: string): TaskRules {
  return { fallback, types: Object.entries(types).map(([name, t]) => ({ name, patterns: t.patterns.map((p) => new RegExp(p, 'gm')) })) };
}

/** The type with the most pattern matches (each pattern counts at most 3), the first listed on a tie; none: the fallback. */
export function taskOf(rules: TaskRules, turn: string): string {
  const text = turn.toLowerCase();
  let best = rules.fallback;
  let most = 0;
  for (const t of rules.types) {
    let n = 0;
    for (const re of t.patterns) n += upTo3(re, text);
    if (n > most) { most = n; best = t.name; }
  }
  return best;
}

/** The classifier's verdict: difficulty (the 0–1 score the buckets use) and task type. */
export interface Classified {
  score: number;
  task: string;
}

/** The final user turn's text (what both verdicts read), bounded: a huge turn is read by its first 64k characters. */
function lastUserText(request: unknown): { text: string; messages: number; tools: boolean } {
  const body = typeof request === 'object' && request !== null ? request as { messages?: unknown; tools?: unknown } : {};
  const messages = Array.isArray(body.messages) ? body.messages as Array<{ role?: unknown; content?: unknown }> : [];
  let lastUser: { content?: unknown } | undefined;
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i]?.role === 'user') { lastUser = messages[i]; break; }
  return { text: contentText(lastUser?.content, ' ').slice(0, 65_536), messages: messages.length, tools: Array.isArray(body.tools) && body.tools.length > 0 };
}

/** The final user turn's text. */
export function lastUserTurn(request: unknown): string {
  return lastUserText(request).text;
}

/**
 * The part of a turn the task patterns read: a long turn's first 3,000 and last 1,000
 * characters, where what is asked is said. Bounded because a pattern that fails at every
 * position of a long text costs the square of its length, even on the linear engine.
 */
export function taskText(text: string): string {
  return text.length <= 4000 ? text : `${text.slice(0, 3000)}\n${text.slice(-1000)}`;
}

export function classifyRequest(tok: Tokenizer, rules: TaskRules, request: unknown): Classified {
  const turn = lastUserText(request);
  return { score: scoreOf(tok, turn), task: taskOf(rules, taskText(turn.text)) };
}

export function classifyPrompt(tok: Tokenizer, request: unknown): number {
  return scoreOf(tok, lastUserText(request));
}

function scoreOf(tok: Tokenizer, turn: { text: string; messages: number; tools: boolean }): number {
  const { text } = turn;
  const tokens = tok.count(text);
  let z = -2.2;
  z += 2.2 * Math.min(1, Math.log2(1 + tokens) / 11); // ~2k tokens saturate
  z += 0.9 * Math.min(3, count(REASONING, text));
  z += 0.8 * Math.min(2, count(MATH, text));
  z += 0.5 * Math.min(3, count(CODE, text));
  z -= 0.8 * Math.min(2, count(SIMPLE, text));
  if (turn.tools) z += 0.4;
  z += 0.1 * Math.min(10, turn.messages - 1);
  return Math.round((1 / (1 + Math.exp(-z))) * 1000) / 1000;
}
