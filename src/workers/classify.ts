// The smart router's classifier: a cheap, deterministic score in [0, 1] of how demanding
// a chat request is, from the final user turn (its length in tokens, code, math, words that
// ask for reasoning or for something simple) and the conversation around it. Runs in the
// worker pool next to the tokenizer it needs.
import type { Tokenizer } from '../../native/tokenizer.js';
import { contentText } from '../wire/chat.js';

const REASONING = /\b(prove|proof|derive|analy[sz]e|design|architect|optimi[sz]e|step[- ]by[- ]step|trade-?offs?|compare|why|debug|refactor|algorithm|complexity|evaluate|critique|plan|strategy|implement)\b/gi;
const SIMPLE = /\b(hi|hello|hey|thanks|thank you|translate|spell|define|what is|who is|capital of|yes|no|ok)\b/gi;
const MATH = /[∑∫√≤≥≠]|\b\d+\s*[*/^]\s*\d+\b|\b(equation|integral|derivative|matrix|probability|theorem)\b/gi;
const CODE = /```|\b(function|def|class|import|return|const|SELECT|#include)\b|[{};]\s*$/gim;

const count = (re: RegExp, s: string) => s.match(re)?.length ?? 0;

export function classifyPrompt(tok: Tokenizer, request: unknown): number {
  const body = typeof request === 'object' && request !== null ? request as { messages?: unknown; tools?: unknown } : {};
  const messages = Array.isArray(body.messages) ? body.messages as Array<{ role?: unknown; content?: unknown }> : [];
  const lastUser = [...messages].reverse().find((m) => m.role === 'user');
  const text = contentText(lastUser?.content, ' ');
  const tokens = tok.count(text);
  let z = -2.2;
  z += 2.2 * Math.min(1, Math.log2(1 + tokens) / 11); // ~2k tokens saturate
  z += 0.9 * Math.min(3, count(REASONING, text));
  z += 0.8 * Math.min(2, count(MATH, text));
  z += 0.5 * Math.min(3, count(CODE, text));
  z -= 0.8 * Math.min(2, count(SIMPLE, text));
  if (Array.isArray(body.tools) && body.tools.length) z += 0.4;
  z += 0.1 * Math.min(10, messages.length - 1);
  return Math.round((1 / (1 + Math.exp(-z))) * 1000) / 1000;
}
