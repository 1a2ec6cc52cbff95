// False-hit guards for the semantic cache. Sentence embeddings put "capital of France" and
// "capital of Germany" close together (cosine ≈ 0.84 with the embedded model), so a
// near neighbour is accepted only when both prompts name the same numbers, the same proper
// names, the same programming languages and the same negations.

const NEGATIONS = new Set(['not', 'no', 'never', 'none', 'nothing', 'nobody', 'neither', 'nor', 'without', 'cannot', 'dont', 'doesnt', 'didnt',
  'isnt', 'arent', 'wasnt', 'werent', 'wont', 'wouldnt', 'cant', 'couldnt', 'shouldnt', 'mustnt', 'havent', 'hasnt', 'hadnt', 'avoid', 'except', 'exclude', 'excluding']);

const LANGUAGES = new Set(['python', 'javascript', 'typescript', 'java', 'c++', 'c#', 'golang', 'rust', 'ruby', 'php', 'swift', 'kotlin', 'scala',
  'haskell', 'perl', 'sql', 'bash', 'shell', 'powershell', 'lua', 'dart', 'elixir', 'erlang', 'clojure', 'julia', 'matlab', 'fortran', 'cobol',
  'html', 'css', 'ocaml', 'zig', 'nim', 'groovy', 'objective-c', 'assembly', 'solidity', 'r', 'c', 'go', 'js', 'ts', 'node', 'node.js', 'react', 'vue', 'angular']);
/** One-letter or common-word languages count only when written as names: C, R, Go. */
const CASED_LANGUAGES = new Set(['c', 'r', 'go']);

const SENTENCE_END = /[.!?:;\n]/;

export interface Signature {
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
    if ((/^[A-Z]/.test(word) && !sentenceStart && word !== 'I') || /^[A-Z]{2,}$/.test(word)) names.push(lower);
  }
  const key = (xs: string[]) => [...new Set(xs)].sort().join('|');
  return { numbers: key(numbers), names: key(names), languages: key(languages), negations: String(negations.length % 2) + key(negations) };
}

/** True when the two prompts may be answered alike (the guards found no difference). */
export function sameQuestion(a: Signature, b: Signature): boolean {
  return a.numbers === b.numbers && a.names === b.names && a.languages === b.languages && a.negations === b.negations;
}
