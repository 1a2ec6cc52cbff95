// A realistic mixed workload for the adaptive router: each item is a prompt of one task type
// with the answer a right reply must contain, computed here when the item is made (not by
// the sim), so the workload checks any model's answers — the sim's or a real one's.
import { contains } from '../src/providers/sim-tasks.js';

export interface Item {
  task: 'arithmetic' | 'extraction' | 'code' | 'summarisation' | 'reasoning' | 'chat';
  prompt: string;
  expected: string;
}

/** Seeded (mulberry32, in 32-bit integer arithmetic): two runs with the same seed send the same workload. */
export class Dice {
  constructor(private seed: number) {}
  next(): number {
    let x = (this.seed = (this.seed + 0x6d2b79f5) | 0);
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
}

const NAMES = ['Alice', 'Bruno', 'Chen', 'Dana', 'Emeka', 'Farah', 'Goran', 'Hana', 'Ivan', 'Julia'];
const THINGS = ['apples', 'stickers', 'marbles', 'books', 'coins', 'tickets'];
const PRODUCTS = ['Zentrix Router', 'Aurora Kettle', 'Nimbus Drive', 'Pico Scale', 'Vortex Fan', 'Quill Tablet', 'Orbit Lamp', 'Terra Watch'];
const TOPICS = ['sailing', 'bread baking', 'black holes', 'chess openings', 'urban gardening', 'jazz piano', 'roman history', 'bird watching'];
const FIRST = ['dana', 'li.wei', 'sam', 'noor', 'k.ito', 'maria', 'olu'];
const DOMAINS = ['example.org', 'acme.io', 'mail.test', 'shop.example'];

function arithmetic(d: Dice): Item {
  const hard = d.next() < 0.4;
  const a = hard ? d.int(120, 9999) : d.int(2, 99);
  const b = hard ? d.int(12, 999) : d.int(2, 99);
  const op = d.pick(['*', '+', '-']);
  if (hard && d.next() < 0.5) {
    const c = d.int(2, 99);
    return { task: 'arithmetic', prompt: `Compute (${a} ${op} ${b}) * ${c}. Reply with the number.`, expected: String((op === '*' ? a * b : op === '+' ? a + b : a - b) * c) };
  }
  return { task: 'arithmetic', prompt: `Calculate ${a} ${op} ${b}.`, expected: String(op === '*' ? a * b : op === '+' ? a + b : a - b) };
}

function extraction(d: Dice): Item {
  const email = `${d.pick(FIRST)}${d.int(1, 99)}@${d.pick(DOMAINS)}`;
  const order = `${d.pick(['ORD', 'INV', 'RMA'])}-${d.int(1000, 999999)}`;
  const phone = `+1 555 ${d.int(100, 999)} ${d.int(1000, 9999)}`;
  const date = `2026-${String(d.int(1, 12)).padStart(2, '0')}-${String(d.int(1, 28)).padStart(2, '0')}`;
  const filler = d.next() < 0.5 ? ` I tried twice on ${date} and called ${phone}, and my cart had ${d.int(2, 9)} items worth ${d.int(10, 900)} dollars.` : '';
  const want = d.pick(['email', 'order'] as const);
  const text = `Hi team, this is about order ${order}. Please reply to ${email} when it ships.${filler} Thanks!`;
  return want === 'email'
    ? { task: 'extraction', prompt: `Extract the email address from this message and reply with it only: ${text}`, expected: email }
    : { task: 'extraction', prompt: `Extract the order id from this message and reply with it only: ${text}`, expected: order };
}

function code(d: Dice): Item {
  const n = d.int(3, 9);
  const xs = Array.from({ length: n }, () => d.int(1, 60));
  const kind = d.int(0, 2);
  if (kind === 0) return { task: 'code', prompt: `What does this JavaScript print?\nconsole.log([${xs.join(', ')}].sort((a, b) => a - b).join(','))`, expected: [...xs].sort((a, b) => a - b).join(',') };
  if (kind === 1) {
    const w = Array.from({ length: d.int(4, 12) }, () => 'abcdefghijklmnopqrstuvwxyz'[d.int(0, 25)]).join('');
    return { task: 'code', prompt: `What does this JavaScript print?\nconsole.log('${w}'.split('').reverse().join(''))`, expected: [...w].reverse().join('') };
  }
  const k = d.int(2, 5);
  return { task: 'code', prompt: `What does this JavaScript print?\nconsole.log([${xs.join(', ')}].filter(x => x % ${k} === 0).length)`, expected: String(xs.filter((x) => x % k === 0).length) };
}

function summarisation(d: Dice): Item {
  const product = d.pick(PRODUCTS);
  const lines = ['It stopped working after the last update.', 'The light blinks twice and then nothing happens.', 'I already restarted it and reset it to factory settings.',
    'My neighbour has the same model and it works fine.', 'The manual does not mention this error.', 'I would like a replacement or a fix this week.'];
  const body = Array.from({ length: d.int(2, 6) }, () => d.pick(lines)).join(' ');
  return { task: 'summarisation', prompt: `Summarise this support ticket in one sentence.\nProduct: ${product}\nTicket: ${body}`, expected: product };
}

function reasoning(d: Dice): Item {
  const name = d.pick(NAMES);
  const thing = d.pick(THINGS);
  let n = d.int(5, 40);
  const start = n;
  const steps: string[] = [];
  for (let i = 0, k = d.int(1, 5); i < k; i++) {
    const verb = d.pick(['gives away', 'buys', 'loses', 'finds', 'doubles']);
    if (verb === 'doubles') { n *= 2; steps.push(`Then ${name} doubles the pile.`); continue; }
    const m = d.int(1, Math.max(1, Math.min(20, n - 1)));
    n += verb === 'buys' || verb === 'finds' ? m : -m;
    steps.push(`Then ${name} ${verb} ${m}.`);
  }
  return { task: 'reasoning', prompt: `${name} has ${start} ${thing}. ${steps.join(' ')} How many ${thing} does ${name} have now? Think step by step.`, expected: String(n) };
}

function chat(d: Dice): Item {
  const topic = d.pick(TOPICS);
  const prompt = d.pick([`Can you recommend a good book about ${topic}?`, `Could you suggest a weekend plan for someone who likes ${topic}?`, `Any ideas for a gift related to ${topic}?`]);
  return { task: 'chat', prompt, expected: topic };
}

/** The mix: chat and simple extraction are most of real traffic; code and reasoning the rest. */
const MIX: Array<[number, (d: Dice) => Item]> = [[0.25, chat], [0.2, extraction], [0.2, arithmetic], [0.15, summarisation], [0.1, code], [0.1, reasoning]];

export function nextItem(d: Dice): Item {
  let u = d.next();
  for (const [w, make] of MIX) { if ((u -= w) < 0) return make(d); }
  return chat(d);
}

/** Does the answer contain the expected value as a whole word or number (the sim judge's own test)? */
export function isRight(item: Item, answer: string): boolean {
  return contains(answer, item.expected);
}
