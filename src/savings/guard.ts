// False-hit guards for the semantic cache. Sentence embeddings put "capital of France" and
// "capital of Germany" close together (cosine ≈ 0.84 with the embedded model), "How does
// pricing work?" next to "How does discounts work?" (0.90), and a question next to itself
// with two words swapped ("Convert 100 USD to EUR" / "… EUR to USD": 0.97), so a near
// neighbour is accepted only when the two prompts name the same numbers, proper names,
// programming languages, negations and degrees (more/less, cheapest/…), the same content
// words (an added one may narrow the question: "vacation days for part-time employees"),
// the same particles (in for out, to for from), and no two of their words trade places
// around the same relation ("A to B" / "B to A", "X before Y" / "Y before X", "the dog
// chased the cat" / "the cat chased the dog"). Changing function words, adding fillers
// (please, exactly, …), other forms of one word and moving a phrase are fine: that is what
// paraphrases do. The embedded model is English-only, so text in another language is not
// compared at all.
//
// Each prompt is read once into a Signature (tokens with their positions); comparing two is
// then a few set and array comparisons. Stems are Porter's (the `stemmer` package).
import { stemmer } from 'stemmer';

const NEGATIONS = new Set(['not', 'no', 'never', 'none', 'nothing', 'nobody', 'neither', 'nor', 'without', 'cannot', 'dont', 'doesnt', 'didnt',
  'isnt', 'arent', 'wasnt', 'werent', 'wont', 'wouldnt', 'cant', 'couldnt', 'shouldnt', 'mustnt', 'havent', 'hasnt', 'hadnt', 'avoid', 'except', 'exclude', 'excluding']);

const LANGUAGES = new Set(['python', 'javascript', 'typescript', 'java', 'c++', 'c#', 'golang', 'rust', 'ruby', 'php', 'swift', 'kotlin', 'scala',
  'haskell', 'perl', 'sql', 'bash', 'shell', 'powershell', 'lua', 'dart', 'elixir', 'erlang', 'clojure', 'julia', 'matlab', 'fortran', 'cobol',
  'html', 'css', 'ocaml', 'zig', 'nim', 'groovy', 'objective-c', 'assembly', 'solidity', 'r', 'c', 'go', 'js', 'ts', 'node', 'node.js', 'react', 'vue', 'angular']);
/** One-letter or common-word languages count only when written as names: C, R, Go. */
const CASED_LANGUAGES = new Set(['c', 'r', 'go']);

/** Function words: changing these does not change the question. */
const STOPWORDS = new Set(('a an the of to in on at for from by with about into over under and or but if then so as is are was were be been being ' +
  'am do does did doing done have has had having can could will would shall should may might must what whats which who whom whose when where why how ' +
  'i me my we us our you your he him his she her it its they them their this that these those there here please tell show explain describe ' +
  'very just also too way ways thing things work works ' +
  'out off up down onto toward towards inside outside above below').split(' '));

/**
 * Degree words: a comparative or superlative changes the question ("the cheapest plan" /
 * "the most expensive plan", "more memory" / "less memory"), so both prompts must use the same.
 */
const DEGREES = new Set(['more', 'most', 'less', 'least', 'fewer', 'fewest', 'better', 'best', 'worse', 'worst', 'further', 'furthest', 'farther', 'farthest',
  'max', 'min', 'maximum', 'minimum']);
for (const adj of ('cheap fast slow quick high low long short old new young easy hard safe strong weak light heavy cold warm cool deep rich poor tall ' +
  'small great loud quiet clean smart near few dark bright soft tough cheap close large wide late fine safe nice simple').split(' ')) {
  const base = adj.endsWith('e') ? adj.slice(0, -1) : adj;
  DEGREES.add(`${base}er`).add(`${base}est`);
}
for (const [er, est] of [['bigger', 'biggest'], ['hotter', 'hottest'], ['thinner', 'thinnest'], ['fatter', 'fattest'], ['wetter', 'wettest'],
  ['easier', 'easiest'], ['busier', 'busiest'], ['earlier', 'earliest'], ['heavier', 'heaviest'], ['happier', 'happiest'], ['healthier', 'healthiest'],
  ['prettier', 'prettiest'], ['funnier', 'funniest'], ['riskier', 'riskiest'], ['lazier', 'laziest'], ['tinier', 'tiniest']] as const) DEGREES.add(er).add(est);

/**
 * Closed-class words that change what is asked though they carry no content: the question
 * word (how / why), the person (my account / your account, I / they), the modality (can I /
 * must I), the tense (is / was). Both prompts must have the same of each class.
 * "how can I" and "how do I" ask the same (a modal right after a question word is not
 * counted, except must and need); "what is the way / what are the steps to" asks how.
 */
type SenseClass = 'wh' | 'person' | 'modal' | 'tense' | 'conj';
const SENSES: Record<string, [cls: SenseClass, value: string]> = {};
const sense = (cls: SenseClass, value: string, words: string) => { for (const w of words.split(' ')) SENSES[w] = [cls, value]; };
sense('wh', 'what', 'what whats which');
sense('wh', 'who', 'who whom whose');
for (const w of ['when', 'where', 'why', 'how']) sense('wh', w, w);
sense('person', 'p1', 'i me my mine myself im ive id');
sense('person', 'p1pl', 'we us our ours ourselves');
sense('person', 'p2', 'you your yours yourself yourselves youre');
sense('person', 'p3m', 'he him his himself');
sense('person', 'p3f', 'she her hers herself');
sense('person', 'p3pl', 'they them their theirs themselves');
sense('person', 'p3n', 'it its itself');
sense('modal', 'can', 'can could may might able possible possibly');
sense('modal', 'must', 'must should need needs needed have_to has_to ought required');
sense('modal', 'will', 'will would shall');
sense('tense', 'past', 'was were did had');
sense('conj', 'and', 'and');
sense('conj', 'or', 'or');
const PERSONS = new Set(Object.values(SENSES).filter(([cls]) => cls === 'person').map(([, v]) => v));
/** "what" followed within a few words by one of these asks how ("what is the way to", "what are the steps to"). */
const HOW_FRAME = /^(?:\s*[\w'’]+){0,3}?\s*(?:way|ways|steps?|process|procedure|method)\b/i;

/**
 * A request frame addressed to the assistant, or a greeting or thanks around the question:
 * not part of what is asked ("Can you tell me how to cancel?" asks "how to cancel?").
 */
const FRAMES = [
  /^\s*(?:hi|hello|hey)(?: there)?\b[\s,.!]*/i,
  /^\s*(?:please[\s,]+)?(?:can|could|would|will)\s+you\s+(?:please\s+)?(?:tell|show|explain\s+to|help|give)\s+(?:me|us)\s+/i,
  /^\s*(?:please\s+)?(?:give|tell|show)\s+me\s+/i,
  /^\s*(?:i\s+(?:would|'d|’d)\s+like\s+to\s+know|i\s+want\s+to\s+know|i\s+was\s+wondering|do\s+you\s+know)\s*[,:]?\s*/i,
  /[\s,.!]*(?:thanks|thank\s+you|thx|cheers)(?:\s+(?:a\s+lot|in\s+advance))?[\s.!]*$/i,
];

/** Without the frames around it. */
function unframed(text: string): string {
  let out = text;
  for (const frame of FRAMES) out = out.replace(frame, '');
  return out;
}

/**
 * What the embedding is taken of: the question without its frames, in lower case, spaces
 * collapsed. The embedded model reads case ("HOW DO I RESET MY PASSWORD?" is at 0.62 of
 * its lower-case self) and greetings; the guards still read the text as sent.
 */
export function embeddingText(text: string): string {
  return unframed(text).toLowerCase().replace(/\s+/g, ' ').trim();
}

/** Words that widen a question from one thing to many ("mark an email as read" / "mark all emails as read"): both prompts must use the same. */
const QUANTIFIERS = new Set(['all', 'every', 'each', 'entire', 'whole', 'both', 'multiple', 'several', 'bulk', 'everything', 'everyone', 'everybody', 'batch',
  'any', 'some', 'many', 'much', 'few', 'lot', 'lots', 'numerous']);

/**
 * Particles and prepositions of direction or place: one swapped for another changes the
 * question ("log in" / "log out", "sign in" / "sign up", "copy to" / "copy from"), though
 * either may be added, dropped or moved.
 */
const PARTICLES: Record<string, string> = { in: 'in', inside: 'in', out: 'out', outside: 'out', on: 'on', off: 'off', up: 'up', down: 'down',
  over: 'over', above: 'over', under: 'under', below: 'under', beneath: 'under', to: 'to', into: 'to', onto: 'to', toward: 'to', towards: 'to',
  from: 'from', back: 'back', away: 'away', before: 'before', after: 'after', through: 'through', across: 'across', around: 'around', by: 'by' };

/** Words a relation is told apart by even when they differ: "12 miles to km" and "12 miles in km" ask the same direction. */
const RELATION_CLASS: Record<string, string> = { to: 'to', into: 'to', onto: 'to', toward: 'to', towards: 'to', in: 'to', inside: 'to',
  from: 'from', out: 'from', off: 'from', over: 'over', above: 'over', under: 'under', below: 'under', beneath: 'under' };

/** Words a relation's meaning does not depend on: left out of the text between two swapped words. */
const DETERMINERS = new Set('a an the my your our their his her its this that these those some any'.split(' '));

/** A relation that reads the same both ways round ("a fruit or a vegetable", "TCP and UDP"). */
const SYMMETRIC = new Set(['and', 'or', 'nor', 'vs', 'versus', 'plus', ',', '&', '/']);

/** Common words of languages other than English: a prompt with more of these than English ones is not compared. */
const FOREIGN = new Set(('le la les des une est et du au aux pour dans sur avec mon ma mes vous nous sont qui que quoi comment ' +
  'el los las una es y del por para con mi mis usted cómo qué dónde cuál ' +
  'der das und ist ein eine nicht mit für auf ich sie wie wo ' +
  'il lo gli di che è sono una ' +
  'os um uma é com não da ' +
  'het een en ik je hoe wat waar').split(' '));
const ENGLISH = new Set('the a an is are was do does did how what where which who why you your my i to of in and for on with can it this that'.split(' '));

/** One word or mark of a prompt, in order, with how it reads inside a relation (see gap()). */
interface Token {
  /** Its form in the text between two words: a stem, a relation class, or a mark. '' when it does not count (determiners). */
  rel: string;
  /** Its key, if it is a key word (content stem, name, number, language or degree): what the order of two prompts is compared on. */
  key: string | null;
}

export interface Signature {
  /** Content words' stems (lowercased, Porter-stemmed). */
  content: Set<string>;
  numbers: string;
  /** Operators, symbols and emoji, sorted (12 + 7 is not 12 - 7; 👍 is not 👎). */
  marks: string;
  /** Each key word's particle right before it (null: none, or the word occurs twice). */
  governed: Map<string, string | null>;
  /** Content stems seen as plurals, and as singulars (a file / files). */
  plural: Set<string>;
  singular: Set<string>;
  names: string;
  languages: string;
  negations: string;
  degrees: string;
  quantifiers: string;
  /** SENSES by class: each class's values, sorted (wh, person, modal, tense). */
  senses: string;
  /** Names as content stems: compared as content when either prompt has no letter case to tell names by (all lower or all upper case). */
  nameStems: Set<string>;
  caseless: boolean;
  /** Counts of the words in PARTICLES, by sense (into counts as to). */
  particles: Map<string, number>;
  tokens: Token[];
  /** Indexes in `tokens` of the key words, in order. */
  keys: number[];
  /** The key words. */
  keySet: Set<string>;
  /** English (or too little text to tell): the embedded model's language. */
  english: boolean;
}

/** An email address, a URL, a number, a word, or one mark. */
const WORD = /[\w.+-]+@[\w-]+(?:\.[\w-]+)+|https?:\/\/[^\s"'<>]+|-?\p{Nd}+(?:[.,]\p{Nd}+)*%?|\p{L}[\p{L}\p{N}+#.'’_-]*|[^\s\p{L}\p{N}]/gu;

/** Marks that only punctuate prose; every other mark (+ - * / = < > ^ %, emoji, symbols) is part of what is asked. */
const PROSE_MARKS = /^[.,?!;:'"’‘“”()[\]{}…—–]$/u;

/** A plural noun's stem: "files" is plural of file (its -s is what Porter takes off), "process" and "analysis" are not. */
const isPlural = (bare: string) => bare.length > 3 && bare.endsWith('s') && !/(?:ss|us|is)$/.test(bare) && stemmer(bare) === stemmer(bare.slice(0, -1));

/** What two prompts must share to be the same question. */
export function signature(original: string): Signature {
  // NFKC: fullwidth letters and digits are the ASCII ones (ｎｏｔ is not, ７ is 7).
  let text = unframed(original.normalize('NFKC'));
  // All upper case tells no names apart: read it as lower case (and compare names as content, see compare()).
  const caseless = !/\p{Ll}/u.test(text) || !/\p{Lu}/u.test(text);
  if (!/\p{Ll}/u.test(text)) text = text.toLowerCase();
  const senses: Record<SenseClass, string[]> = { wh: [], person: [], modal: [], tense: [], conj: [] };
  let afterWh = false;
  /** Numbers in order ("3 + 3 + 5" is not "3 + 5 + 5", 1/2/2020 not 2/1/2020), a minus kept, a decimal comma read as a point. */
  const numbers: string[] = [];
  const marks: string[] = [];
  /** The particle right before a key word (to Dropbox / from Dropbox), and what each negation negates. */
  const governed = new Map<string, string | null>();
  const negated: string[] = [];
  let particleBefore: string | null = null;
  let negationBefore = false;
  const plural = new Set<string>();
  const singular = new Set<string>();
  const names: string[] = [];
  const languages: string[] = [];
  const negations: string[] = [];
  const degrees: string[] = [];
  const quantifiers: string[] = [];
  const content = new Set<string>();
  const particles = new Map<string, number>();
  const tokens: Token[] = [];
  const keys: number[] = [];
  let english = 0;
  let foreign = 0;
  let last = 0;
  const push = (rel: string, key: string | null) => {
    if (key !== null) {
      keys.push(tokens.length);
      governed.set(key, governed.has(key) ? null : particleBefore);
      if (negationBefore) negated.push(key);
      // A possessive between the particle and its word does not end it ("from my laptop").
      if (!PERSONS.has(key)) particleBefore = null;
      negationBefore = false;
    } else if (rel && !PARTICLES[rel]) particleBefore = null;
    tokens.push({ rel, key });
  };
  for (const m of text.matchAll(WORD)) {
    const raw = m[0];
    const pos = m.index;
    const head = text.slice(0, pos);
    const sentenceStart = !/\S/.test(head) || /[.!?:;\n]["'”’)\]]*\s*$/.test(head.slice(-8));
    last = pos + raw.length;
    if (/^https?:\/\/|@/.test(raw)) { const id = raw.toLowerCase(); names.push(id); push(id, id); continue; }
    if (/^-?\p{Nd}/u.test(raw)) {
      const n = /,\p{Nd}{3}(?!\p{Nd})/u.test(raw) ? raw.replace(/,/g, '') : raw.replace(/,/g, '.');
      numbers.push(n);
      push(n, n);
      continue;
    }
    if (!/^\p{L}/u.test(raw)) {
      if (!PROSE_MARKS.test(raw)) marks.push(raw);
      push(/[,;:?!&/]/.test(raw) ? raw : '', null);
      continue;
    }
    const word = raw.replace(/['’]s$/, '').replace(/[.'’_-]+$/, '');
    const lower = word.toLowerCase();
    const bare = lower.replace(/['’]/g, '');
    if (ENGLISH.has(bare)) english++;
    else if (FOREIGN.has(bare)) foreign++;
    const particle = PARTICLES[bare];
    if (particle) particles.set(particle, (particles.get(particle) ?? 0) + 1);
    // (particleBefore is set after this word is pushed, below, so a particle governs the next key word.)
    if (NEGATIONS.has(bare) || bare.endsWith("n't") || lower.endsWith('n’t') || /^(?:dont|doesnt|didnt|isnt|arent|wasnt|werent|wont|wouldnt|cant|couldnt|shouldnt|mustnt|havent|hasnt|hadnt|cannot)$/.test(bare)) {
      // One word for "not" however written (can't, cannot, don't); the modal or tense inside it counts as its own.
      const neg = /nt$|^cannot$/.test(bare) ? 'not' : bare;
      negations.push(neg);
      const inner = bare.replace(/n[’']?t$|not$/, '').replace(/^wo$/, 'will').replace(/^ca$/, 'can');
      const s = SENSES[inner];
      if (s && (s[0] !== 'modal' || !afterWh || s[1] === 'must')) senses[s[0]].push(s[1]);
      afterWh = false;
      push('not', null);
      negationBefore = true;
      continue;
    }
    const closed = SENSES[bare];
    if (closed) {
      let [cls, value] = closed;
      if (cls === 'wh' && value === 'what' && HOW_FRAME.test(text.slice(last))) value = 'how';
      const counted = cls !== 'modal' || !afterWh || value === 'must';
      if (counted) senses[cls].push(value);
      afterWh = cls === 'wh' || (afterWh && cls === 'modal');
      push(cls === 'person' ? value : cls === 'conj' ? bare : '', cls === 'person' ? value : null);
      continue;
    }
    if (!DETERMINERS.has(bare)) afterWh = false;
    // "get" before a participle is the passive's auxiliary ("did my card get declined"), not a verb of its own.
    if (/^(?:get|gets|got|getting)$/.test(bare) && /^\s*[A-Za-z]+(?:ed|en)\b/.test(text.slice(last))) { push('', null); continue; }
    if (LANGUAGES.has(lower) && (!CASED_LANGUAGES.has(lower) || (/^[A-Z]/.test(word) && !sentenceStart))) {
      const lang = lower === 'golang' ? 'go' : lower;
      languages.push(lang);
      push(lang, lang);
      continue;
    }
    // A capitalized word that does not start a sentence is taken as a name; so is an acronym
    // anywhere, and an identifier (digits, underscores or capitals inside: ord_9f3k2, cus_ABCD, jdoe42).
    if ((/^\p{Lu}/u.test(word) && !sentenceStart && word !== 'I') || /^\p{Lu}{2,}$/u.test(word) || /[\p{Nd}_]|.\p{Lu}|\w\.\w/u.test(word)) { names.push(lower); push(lower, lower); continue; }
    if (QUANTIFIERS.has(bare)) { quantifiers.push(bare === 'every' || bare === 'each' ? 'all' : bare); push(bare, null); continue; }
    if (DEGREES.has(bare)) {
      const next = /^\s*([A-Za-z]+)/.exec(text.slice(last))?.[1] ?? '';
      if (bare === 'best' && FRAMED.test(next)) { push('', null); continue; }
      const degree = bare === 'max' ? 'maximum' : bare === 'min' ? 'minimum' : bare;
      degrees.push(degree);
      push(degree, degree);
      continue;
    }
    if (STOPWORDS.has(bare)) {
      push(DETERMINERS.has(bare) ? '' : RELATION_CLASS[bare] ?? bare, null);
      if (particle) particleBefore = particle;
      continue;
    }
    // -ee nouns keep their ending: an employee is not an employer (Porter would pair employe with employ).
    const stem = /ees?$/.test(bare) && bare.length > 5 ? bare.replace(/s$/, '') : stemmer(bare);
    (isPlural(bare) ? plural : singular).add(stem);
    content.add(stem);
    push(stem, stem);
  }
  const nameStems = new Set(names.filter((n) => /^[a-z]+$/.test(n)).map((n) => stemmer(n)));
  const key = (xs: string[]) => [...new Set(xs)].sort().join('|');
  return {
    content, numbers: numbers.join('|'), marks: [...marks].sort().join(''), governed, plural, singular,
    names: key(names), languages: key(languages), negations: `${negations.length % 2}${key(negations)}>${[...negated].sort().join('|')}`,
    degrees: [...degrees].sort().join('|'), quantifiers: key(quantifiers), particles,
    // A question with no person in it asks from the asker's ("how to reset my password", "summarize this"): the first person.
    senses: (['wh', 'person', 'modal', 'tense', 'conj'] as const).map((c) => key(c === 'person' && !senses.person.length ? ['p1'] : senses[c])).join('/'), nameStems, caseless, tokens, keys, keySet: new Set(keys.map((i) => tokens[i]!.key!)), english: foreign <= english && !/[^\s\p{Script=Latin}\p{P}\p{N}\p{S}]/u.test(text),
  };
}

/** Stems of words a question may gain or lose without changing what it asks. */
const FILLERS = new Set(['pleas', 'kindli', 'exactli', 'actual', 'realli', 'possibl', 'simpli',
  'step', 'help', 'know', 'want', 'like', 'question', 'thank', 'hi', 'hello', 'hei', 'wonder', 'curiou',
  'anyon', 'someon', 'anywai', 'okai', 'ok',
  // Words that frame a question without narrowing it: "what's the process for …", "why would that happen".
  'purpos', 'happen', 'avail', 'reason', 'suggest', 'recommend', 'idea']);

/** "the best way to": best only frames the question ("the fastest way" does not: it asks for speed). */
const FRAMED = /^(?:way|ways|method|methods|approach|option)$/i;

/** Two stems of one word family pair up ("summar" from summarize, "summari" from summary), but not plan and planet. */
function related(a: string, b: string): boolean {
  const [s, l] = a.length <= b.length ? [a, b] : [b, a];
  return s.length >= 5 && l.length - s.length <= 3 && l.startsWith(s) && /^[a-z]+$/.test(l) && l.endsWith('ee') === s.endsWith('ee');
}

/**
 * The text between tokens i and j (exclusive), as it reads for a relation: determiners
 * dropped, prepositions by class. null when nothing at all is between (adjacent words
 * relate to each other, not to a third: "the cat chased" vs "chase the cat").
 */
function gap(sig: Signature, i: number, j: number): string | null {
  if (j === i + 1) return null;
  let out = '';
  for (let k = i + 1; k < j; k++) {
    const r = sig.tokens[k]!.rel;
    if (r) out += `${r} `;
  }
  return out;
}

/**
 * The same relation holds both ways round between the two words: the same text between
 * them, and not a symmetric one; or nothing between them in either ("who succeeded Obama"
 * / "who did Obama succeed"). Adjacent in one only is a phrase rebuilt, as the passive voice
 * does ("chase the cat" / "the cat chased by").
 */
function sameRelation(ga: string | null, gb: string | null): boolean {
  if (ga === null && gb === null) return true;
  if (ga === null || gb === null || ga !== gb) return false;
  const words = ga.split(' ').filter(Boolean);
  return !(words.length > 0 && words.every((w) => SYMMETRIC.has(w)));
}

/** At most this many key words are compared for order (longer prompts: see swapped()). */
const ORDER_WORDS = 64;

/**
 * True when two words (or runs of words) trade places around the same relation
 * (sameRelation: the text between them reads the same in both prompts). Checked
 * for every pair of key words found once in each prompt, and for the one run of differing
 * order (one block exchanged with another: "the Renaissance … before the Middle Ages").
 * A prompt with more key words than ORDER_WORDS in a different order counts as swapped:
 * too long to tell, so not the same question.
 */
function swapped(a: Signature, b: Signature): boolean {
  // Words of one family are one word here (Porter stems "succeeded" to succeed but "succeed" to succe).
  const caseless = a.caseless || b.caseless;
  const family = (k: string) => (/^[a-z]+$/.test(k) && (caseless || (!a.names.split('|').includes(k) && !b.names.split('|').includes(k))) ? k.slice(0, 5) : k);
  const families = (s: Signature) => new Set([...s.keySet].map(family));
  const shared = (s: Signature, o: Set<string>) => s.keys.filter((i) => o.has(family(s.tokens[i]!.key!)));
  const sa = shared(a, families(b));
  const sb = shared(b, families(a));
  const ka = sa.map((i) => family(a.tokens[i]!.key!));
  const kb = sb.map((i) => family(b.tokens[i]!.key!));
  if (ka.join('\u0000') === kb.join('\u0000')) return false;
  if (ka.length > ORDER_WORDS || kb.length > ORDER_WORDS) return true;
  // Pairs of words found once in each.
  const once = (ks: string[]) => { const c = new Map<string, number>(); ks.forEach((k, i) => c.set(k, c.has(k) ? -1 : i)); return c; };
  const oa = once(ka);
  const ob = once(kb);
  const single = [...oa].filter(([k, i]) => i >= 0 && (ob.get(k) ?? -1) >= 0).map(([k]) => k);
  for (let x = 0; x < single.length; x++) {
    for (let y = x + 1; y < single.length; y++) {
      let [p, q] = [single[x]!, single[y]!];
      if (oa.get(p)! > oa.get(q)!) [p, q] = [q, p];
      if (ob.get(p)! < ob.get(q)!) continue; // same order in both
      if (sameRelation(gap(a, sa[oa.get(p)!]!, sa[oa.get(q)!]!), gap(b, sb[ob.get(q)!]!, sb[ob.get(p)!]!))) return true;
    }
  }
  // One block exchanged with another, within the run where the orders differ.
  if (ka.length !== kb.length) return false;
  let lo = 0;
  while (ka[lo] === kb[lo]) lo++;
  let hi = ka.length - 1;
  while (ka[hi] === kb[hi]) hi--;
  const w = hi - lo + 1;
  for (let lx = 1; lx < w; lx++) {
    for (let ly = 1; lx + ly <= w; ly++) {
      const ok = (from: number, to: number, len: number) => { for (let i = 0; i < len; i++) if (ka[from + i] !== kb[to + i]) return false; return true; };
      const m = w - lx - ly;
      // a: X M Y, b: Y M X
      if (!ok(hi - ly + 1, lo, ly) || !ok(lo + lx, lo + ly, m) || !ok(lo, lo + ly + m, lx)) continue;
      if (sameRelation(gap(a, sa[lo + lx - 1]!, sa[hi - ly + 1]!), gap(b, sb[lo + ly - 1]!, sb[hi - lx + 1]!))) return true;
    }
  }
  return false;
}

/** One side has more of one particle and the other more of another: one was swapped for the other. */
function particleSwapped(a: Map<string, number>, b: Map<string, number>): boolean {
  let more = false;
  let fewer = false;
  for (const p of new Set([...a.keys(), ...b.keys()])) {
    const d = (a.get(p) ?? 0) - (b.get(p) ?? 0);
    if (d > 0) more = true;
    else if (d < 0) fewer = true;
  }
  return more && fewer;
}

/**
 * What the guards make of two prompts: `same` (no difference found), `reworded` (the only
 * difference is in content words: a synonym, an added word — a model may tell whether it
 * matters, see verify.ts), or `different` (numbers, names, languages, negation, degree,
 * quantifier, particles or the order of words differ; or one is not English).
 */
export function compare(a: Signature, b: Signature): 'same' | 'reworded' | 'different' {
  if (!a.english || !b.english) return 'different';
  // Without letter case on one side, a name there reads as a content word: compare names as content (identifiers stay exact).
  const caseless = a.caseless || b.caseless;
  const namesOf = (s: Signature) => (caseless ? s.names.split('|').filter((n) => n && !/^[a-z]+$/.test(n)).join('|') : s.names);
  if (a.numbers !== b.numbers || a.marks !== b.marks || namesOf(a) !== namesOf(b) || a.languages !== b.languages || a.negations !== b.negations ||
    a.degrees !== b.degrees || a.quantifiers !== b.quantifiers || a.senses !== b.senses) return 'different';
  // A word under another particle ("to Dropbox from Drive" / "from Dropbox to Drive").
  for (const [k, p] of a.governed) {
    const q = b.governed.get(k);
    if (p && q && p !== q) return 'different';
  }
  // One and many of the same thing ("delete a file" / "delete files").
  for (const w of a.content) {
    if (!b.content.has(w)) continue;
    const onlyPluralA = a.plural.has(w) && !a.singular.has(w);
    const onlyPluralB = b.plural.has(w) && !b.singular.has(w);
    if (onlyPluralA !== onlyPluralB && (a.singular.has(w) || b.singular.has(w))) return 'different';
  }
  if (particleSwapped(a.particles, b.particles) || swapped(a, b)) return 'different';
  // A content word on one side only (stems of one word family pair up; fillers do not count).
  const contentA = caseless ? new Set([...a.content, ...a.nameStems]) : a.content;
  const contentB = caseless ? new Set([...b.content, ...b.nameStems]) : b.content;
  const onlyA = [...contentA].filter((w) => !contentB.has(w) && !FILLERS.has(w));
  const onlyB = [...contentB].filter((w) => !contentA.has(w) && !FILLERS.has(w));
  const unpaired = (xs: string[], ys: string[]) => xs.some((x) => !ys.some((y) => related(x, y)));
  return unpaired(onlyA, onlyB) || unpaired(onlyB, onlyA) ? 'reworded' : 'same';
}

/** True when the two prompts may be answered alike (the guards found no difference). */
export function sameQuestion(a: Signature, b: Signature): boolean {
  return compare(a, b) === 'same';
}
