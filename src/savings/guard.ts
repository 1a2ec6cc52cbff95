// False-hit guards for the semantic cache. Sentence embeddings put "capital of France" and
// "capital of Germany" close together (cosine ≈ 0.84 with the embedded model), and "How
// does pricing work?" next to "How does discounts work?" (0.90), so a near neighbour is
// accepted only when both prompts name the same numbers, the same proper names, the same
// programming languages and the same negations, and neither swaps a content word for
// another (adding or dropping words, or changing function words, is fine: that is what
// paraphrases do).

const NEGATIONS = new Set(['not', 'no', 'never', 'none', 'nothing', 'nobody', 'neither', 'nor', 'without', 'cannot', 'dont', 'doesnt', 'didnt',
  'isnt', 'arent', 'wasnt', 'werent', 'wont', 'wouldnt', 'cant', 'couldnt', 'shouldnt', 'mustnt', 'havent', 'hasnt', 'hadnt', 'avoid', 'except', 'exclude', 'excluding']);

const LANGUAGES = new Set(['python', 'javascript', 'typescript', 'java', 'c++', 'c#', 'golang', 'rust', 'ruby', 'php', 'swift', 'kotlin', 'scala',
  'haskell', 'perl', 'sql', 'bash', 'shell', 'powershell', 'lua', 'dart', 'elixir', 'erlang', 'clojure', 'julia', 'matlab', 'fortran', 'cobol',
  'html', 'css', 'ocaml', 'zig', 'nim', 'groovy', 'objective-c', 'assembly', 'solidity', 'r', 'c', 'go', 'js', 'ts', 'node', 'node.js', 'react', 'vue', 'angular']);
/** One-letter or common-word languages count only when written as names: C, R, Go. */
const CASED_LANGUAGES = new Set(['c', 'r', 'go']);

const SENTENCE_END = /[.!?:;\n]/;

/** Function words: changing these does not change the question. */
const STOPWORDS = new Set(('a an the of to in on at for from by with about into over under and or but if then so than as is are was were be been being ' +
  'am do does did doing done have has had having can could will would shall should may might must what whats which who whom whose when where why how ' +
  'i me my we us our you your he him his she her it its they them their this that these those there here please tell give show explain describe ' +
  'let lets some any all each every more most very just also too much many way ways thing things get got make use using work works').split(' '));

export interface Signature {
  /** Content words (lowercased, a plural -s dropped). */
  content: Set<string>;
  numbers: string;
  names: string;
  languages: string;
  negations: string;
}

/** What two prompts must share to be the same question. */
export function signature(text: string): Signature {
  const numbers = (text.match(/\d+(?:[.,]\d+)*/g) ?? []).map((n) => n.replace(/,/g, ''));
  const names: string[] = [];
  const languages: string[] = [];
  const negations: string[] = [];
  const content = new Set<string>();
  const words = text.match(/[A-Za-z][A-Za-z0-9+#.'’-]*/g) ?? [];
  let at = 0;
  for (const raw of words) {
    const pos = text.indexOf(raw, at);
    const before = text.slice(at, pos);
    const sentenceStart = at === 0 ? !/\S/.test(before) || SENTENCE_END.test(before) : SENTENCE_END.test(before);
    at = pos + raw.length;
    const word = raw.replace(/['’]s$/, '').replace(/[.'’-]+$/, '');
    const lower = word.toLowerCase();
    const bare = lower.replace(/['’]/g, '');
    if (NEGATIONS.has(bare) || bare.endsWith("n't") || lower.endsWith('n’t')) { negations.push(bare.replace(/n[’']t$/, 'nt')); continue; }
    if (LANGUAGES.has(lower) && (!CASED_LANGUAGES.has(lower) || (/^[A-Z]/.test(word) && !sentenceStart))) { languages.push(lower === 'golang' ? 'go' : lower); continue; }
    // A capitalized word that does not start a sentence is taken as a name; so is an acronym anywhere.
    if ((/^[A-Z]/.test(word) && !sentenceStart && word !== 'I') || /^[A-Z]{2,}$/.test(word)) { names.push(lower); continue; }
    if (!STOPWORDS.has(bare)) content.add(bare.length > 3 && bare.endsWith('s') && !bare.endsWith('ss') ? bare.slice(0, -1) : bare);
  }
  const key = (xs: string[]) => [...new Set(xs)].sort().join('|');
  return { content, numbers: key(numbers), names: key(names), languages: key(languages), negations: String(negations.length % 2) + key(negations) };
}

/** True when the two prompts may be answered alike (the guards found no difference). */
export function sameQuestion(a: Signature, b: Signature): boolean {
  if (a.numbers !== b.numbers || a.names !== b.names || a.languages !== b.languages || a.negations !== b.negations) return false;
  // A substitution: each side has a content word the other lacks (words of one stem, like summary/summarize, pair up).
  const stem = (w: string) => w.slice(0, 5);
  const onlyA = [...a.content].filter((w) => !b.content.has(w));
  const onlyB = [...b.content].filter((w) => !a.content.has(w));
  const stemsB = new Set(onlyB.map(stem));
  const stemsA = new Set(onlyA.map(stem));
  return !(onlyA.some((w) => !stemsB.has(stem(w))) && onlyB.some((w) => !stemsA.has(stem(w))));
}
