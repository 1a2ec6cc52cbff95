// The sim's world: tasks whose right answer can be checked, and models that get them right
// at rates that depend on the model and the task. So the adaptive router has something real
// to learn with no provider key: the sim answers a task it can solve right or wrong (a
// deterministic draw per prompt and model), and the sim as a judge checks an answer against
// the task's right answer — nothing is scripted about which model wins where.
//
// A model's skill (0–1) follows its list price (you get what you pay for: gpt-4.1-nano ≈ 0.27,
// gpt-4.1-mini ≈ 0.55, gpt-4.1 ≈ 0.87); each task family asks for more skill as its items get
// harder (more digits, more steps, longer texts), and a model's chance of a right answer is a
// logistic curve of its skill over that need.

export type Family = 'arithmetic' | 'extraction' | 'code' | 'summarisation' | 'reasoning' | 'chat';

export interface Solved {
  family: Family;
  /** The right answer (the text a right reply contains). */
  answer: string;
  /** How hard the item is, 0–1. */
  difficulty: number;
}

const clamp = (x: number, lo = 0, hi = 1) => Math.min(hi, Math.max(lo, x));

/** A model's skill from its list output price (USD per 1M tokens). */
export function skillOf(outputPrice: number): number {
  return clamp((Math.log10(Math.max(outputPrice, 0.01)) + 1) / 2.2, 0.05, 1);
}

/** Skill each family needs: at difficulty 0, and added at difficulty 1. */
const NEED: Record<Family, [number, number]> = {
  chat: [0, 0.15],
  extraction: [0.05, 0.2],
  summarisation: [0.1, 0.2],
  arithmetic: [0, 0.45],
  code: [0.35, 0.3],
  reasoning: [0.4, 0.35],
};

/** The chance a model of this skill answers an item right. */
export function pRight(skill: number, s: Pick<Solved, 'family' | 'difficulty'>): number {
  const [base, slope] = NEED[s.family];
  const need = base + slope * s.difficulty;
  return 0.02 + 0.97 / (1 + Math.exp(-14 * (skill - need)));
}

// ---- arithmetic: integers with + - * and parentheses ------------------------------------

/** Evaluates an integer expression (+ - * / and parentheses); null when it is not one. */
export function evaluate(expr: string): number | null {
  const tokens = expr.replace(/×/g, '*').match(/\d+|[-+*/()]/g);
  if (!tokens) return null;
  let i = 0;
  const primary = (): number | null => {
    const t = tokens[i++];
    if (t === '(') { const v = sum(); if (tokens[i++] !== ')') return null; return v; }
    if (t === '-') { const v = primary(); return v === null ? null : -v; }
    return t !== undefined && /^\d+$/.test(t) ? Number(t) : null;
  };
  const product = (): number | null => {
    let v = primary();
    while (v !== null && (tokens[i] === '*' || tokens[i] === '/')) {
      const op = tokens[i++];
      const r = primary();
      if (r === null) return null;
      v = op === '*' ? v * r : r === 0 ? null : v / r;
    }
    return v;
  };
  const sum = (): number | null => {
    let v = product();
    while (v !== null && (tokens[i] === '+' || tokens[i] === '-')) {
      const op = tokens[i++];
      const r = product();
      if (r === null) return null;
      v = op === '+' ? v + r : v - r;
    }
    return v;
  };
  const v = sum();
  return v !== null && i === tokens.length && Number.isFinite(v) ? v : null;
}

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2));

function arithmetic(q: string): Solved | null {
  if (!/\b(calculate|compute|evaluate|what is)\b/i.test(q)) return null;
  const m = /[-(\d][\d\s+\-*/×()]*\d\)?/.exec(q.replace(/,(?=\d{3})/g, ''));
  if (!m || !/[-+*/×]/.test(m[0].slice(1))) return null;
  const v = evaluate(m[0]);
  if (v === null) return null;
  const digits = (m[0].match(/\d/g) ?? []).length;
  const ops = (m[0].match(/[-+*/×]/g) ?? []).length;
  return { family: 'arithmetic', answer: fmt(v), difficulty: clamp((digits - 3) / 9 + (ops - 1) * 0.15) };
}

// ---- extraction: one e-mail address, phone number, order id or date in a message -----------

const EXTRACT: Array<[RegExp, RegExp]> = [
  [/\be-?mail\b/i, /[\w.+-]+@[\w-]+\.[\w.]+\w/],
  [/\bphone\b/i, /\+?\d[\d -]{7,}\d/],
  [/\border (id|number)\b/i, /\b[A-Z]{2,4}-\d{3,8}\b/],
  [/\bdate\b/i, /\b\d{4}-\d{2}-\d{2}\b/],
];

function extraction(q: string): Solved | null {
  if (!/\b(extract|pull out|find)\b/i.test(q)) return null;
  const colon = q.indexOf(':');
  const instruction = colon === -1 ? q : q.slice(0, colon);
  const text = colon === -1 ? q : q.slice(colon + 1);
  for (const [asks, value] of EXTRACT) {
    if (!asks.test(instruction)) continue;
    const m = value.exec(text);
    if (!m) return null;
    const distractors = (text.match(/\d+|@/g) ?? []).length;
    return { family: 'extraction', answer: m[0], difficulty: clamp(distractors / 12 + text.length / 1500) };
  }
  return null;
}

// ---- code: what a short JavaScript expression prints --------------------------------------

function code(q: string): Solved | null {
  let m = /console\.log\(\[([\d,\s-]+)\]\.sort\(\(a, b\) => a - b\)\.join\('([^']*)'\)\)/.exec(q);
  if (m) {
    const xs = m[1]!.split(',').map((x) => Number(x.trim()));
    return { family: 'code', answer: [...xs].sort((a, b) => a - b).join(m[2]), difficulty: clamp((xs.length - 3) / 6) };
  }
  m = /console\.log\('([a-z]+)'\.split\(''\)\.reverse\(\)\.join\(''\)\)/.exec(q);
  if (m) return { family: 'code', answer: [...m[1]!].reverse().join(''), difficulty: clamp((m[1]!.length - 4) / 8) };
  m = /console\.log\(\[([\d,\s]+)\]\.filter\(x => x % (\d+) === 0\)\.length\)/.exec(q);
  if (m) {
    const xs = m[1]!.split(',').map((x) => Number(x.trim()));
    const k = Number(m[2]);
    return { family: 'code', answer: String(xs.filter((x) => x % k === 0).length), difficulty: clamp((xs.length - 3) / 6 + 0.2) };
  }
  return null;
}

// ---- summarisation: a ticket whose summary must name its product ---------------------------

function summarisation(q: string): Solved | null {
  if (!/\bsummari[sz]e\b/i.test(q)) return null;
  const m = /\bProduct: ([A-Z][\w-]+(?: [A-Z0-9][\w-]*)?)/.exec(q);
  return m ? { family: 'summarisation', answer: m[1]!, difficulty: clamp(q.length / 1500) } : null;
}

// ---- reasoning: a count that changes over a few steps -------------------------------------

function reasoning(q: string): Solved | null {
  const start = /\b([A-Z][a-z]+) has (\d+) (\w+)\./.exec(q);
  if (!start || !/\bhow many\b/i.test(q)) return null;
  let n = Number(start[2]);
  let steps = 0;
  for (const m of q.slice(start.index + start[0].length).matchAll(/\b(gives away|gives|loses|eats|sells|buys|finds|gets|receives|doubles|triples)(?: (\d+))?/g)) {
    const k = Number(m[2] ?? 0);
    if (m[1] === 'doubles') n *= 2;
    else if (m[1] === 'triples') n *= 3;
    else if (/^(gives|loses|eats|sells)/.test(m[1]!)) n -= k;
    else n += k;
    steps++;
  }
  return steps ? { family: 'reasoning', answer: String(n), difficulty: clamp((steps - 1) / 4) } : null;
}

// ---- chat: a recommendation that must stay on its topic -----------------------------------

function chat(q: string): Solved | null {
  const m = /\b(?:about|for someone who likes|related to) ([a-z][a-z -]{2,40}?)\s*\?/i.exec(q);
  return m && /\b(recommend|suggest|ideas?)\b/i.test(q) ? { family: 'chat', answer: m[1]!.trim(), difficulty: clamp(q.length / 600) } : null;
}

/** The item's family, right answer and difficulty, when the sim knows how to solve it. */
export function solve(question: string): Solved | null {
  return code(question) ?? reasoning(question) ?? extraction(question) ?? summarisation(question) ?? arithmetic(question) ?? chat(question);
}

/** A reply: the right answer, or (when `right` is false) a plausible wrong one drawn from `u` (0–1). */
export function reply(s: Solved, right: boolean, u: number): string {
  const off = 1 + Math.floor(u * 9);
  switch (s.family) {
    case 'arithmetic': {
      const v = right ? s.answer : fmt(Number(s.answer) + (u < 0.5 ? off : -off * 10));
      return `The result is ${v}.`;
    }
    case 'extraction':
      return right ? s.answer : s.answer.replace(/[a-z0-9](?=[^a-z0-9]*$)/i, (c) => (c === '7' ? '3' : /\d/.test(c) ? '7' : 'x'));
    case 'code':
      return `It prints: ${right ? s.answer : [...s.answer].reverse().join('') === s.answer ? `${s.answer}0` : [...s.answer].reverse().join('')}`;
    case 'reasoning':
      return `Step by step, the count ends at ${right ? s.answer : String(Number(s.answer) + off)}.`;
    case 'summarisation':
      return right ? `The customer reports a fault with the ${s.answer} and asks for a fix.` : 'The customer reports a fault with a device and asks for a fix.';
    case 'chat':
      return right ? `A good pick about ${s.answer}: start with the classic introduction, then try a hands-on guide.` : 'A good pick: start with a classic, then try something new.';
  }
}

/** Does `answer` contain `expected` (case-insensitive, as a whole word or number: 1056 is not in 10560)? */
export function contains(answer: string, expected: string): boolean {
  const esc = expected.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\w.-])${esc}($|[^\\w@-]|\\.(\\s|$))`, 'i').test(answer);
}

export const JUDGE_MARK = /\[QUESTION\]\n([\s\S]*)\n\[\/QUESTION\]\n\[ANSWER\]\n([\s\S]*)\n\[\/ANSWER\]/;

/**
 * The sim as a judge (a request in the judge's rubric format, gateway/judge.ts): the item's
 * right answer checked against the answer; for an item the sim cannot solve, whether the
 * reply is on the question (the sim's off-topic replies are its wrong ones).
 */
export function judgeReply(userTurn: string): string | null {
  const m = JUDGE_MARK.exec(userTurn);
  if (!m) return null;
  const [, question, answer] = m as unknown as [string, string, string];
  const s = solve(question);
  const right = s ? contains(answer, s.answer) : answer.startsWith(`Simulated reply to ${question.split(/\s+/).filter(Boolean).slice(0, 3).join(' ')}`);
  return JSON.stringify({ score: right ? 10 : 1, reason: right ? 'The answer is correct.' : 'The answer is wrong or off the question.' });
}
