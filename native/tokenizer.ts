// Boundary to the tiktoken WASM kernel. The WASM module is compiled once (on the main
// thread, at start) and the compiled `WebAssembly.Module` is handed to every worker, which
// only instantiates it: no worker recompiles 1 MB of WASM. BPE rank files load per worker.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export type EncodingName = 'o200k_base' | 'cl100k_base';

/** What the rest of Sluice sees of a tokenizer. */
export interface Tokenizer {
  count(text: string): number;
}

interface TiktokenLite {
  init(cb: (imports: WebAssembly.Imports) => Promise<WebAssembly.Instance>): Promise<unknown>;
  Tiktoken: new (bpe: string, special: Record<string, number>, pat: string) => {
    encode_ordinary(text: string): Uint32Array;
  };
}

interface EncoderFile {
  bpe_ranks: string;
  special_tokens: Record<string, number>;
  pat_str: string;
}

/**
 * The longest run of non-whitespace, or of whitespace, that BPE sees whole. tiktoken's
 * pre-tokenizer makes each such run one piece and BPE costs the square of a piece's length
 * (measured here: 10k characters of one letter 0.2 s, 100k 14 s, 300k 140 s, 1M a WASM trap;
 * 300k spaces 256 s), so one long run in a prompt would hold a worker for minutes. Runs
 * longer than this are counted slice by slice: a merge across a cut is lost, so such a run
 * counts at most one token more per slice (never fewer: safe for reservations and bounds).
 */
const MAX_RUN = 256;
const LONG_RUN = new RegExp(`\\S{${MAX_RUN + 1},}|\\s{${MAX_RUN + 1},}`, 'g');

export function countBounded(text: string, encode: (text: string) => number): number {
  if (text.length <= MAX_RUN) return encode(text);
  LONG_RUN.lastIndex = 0;
  let total = 0;
  let from = 0;
  for (let m = LONG_RUN.exec(text); m !== null; m = LONG_RUN.exec(text)) {
    if (m.index > from) total += encode(text.slice(from, m.index));
    const run = m[0];
    for (let i = 0; i < run.length; i += MAX_RUN) total += encode(run.slice(i, i + MAX_RUN));
    from = m.index + run.length;
  }
  if (from === 0) return encode(text);
  if (from < text.length) total += encode(text.slice(from));
  return total;
}

export async function compileTokenizerWasm(): Promise<WebAssembly.Module> {
  const bytes = await readFile(require.resolve('@dqbd/tiktoken/lite/tiktoken_bg.wasm'));
  return WebAssembly.compile(bytes);
}

/** Instantiate the shared module in this thread and build tokenizers for the named encodings. */
export async function loadTokenizers(
  module: WebAssembly.Module,
  names: readonly EncodingName[],
): Promise<Map<EncodingName, Tokenizer>> {
  const lite = require('@dqbd/tiktoken/lite/init') as TiktokenLite;
  await lite.init((imports) => WebAssembly.instantiate(module, imports));
  const out = new Map<EncodingName, Tokenizer>();
  for (const name of names) {
    const file = JSON.parse(await readFile(require.resolve(`@dqbd/tiktoken/encoders/${name}.json`), 'utf8')) as EncoderFile;
    const enc = new lite.Tiktoken(file.bpe_ranks, file.special_tokens, file.pat_str);
    // encode_ordinary: user text may contain "<|endoftext|>" literally; count it as text, never throw.
    const encode = (text: string) => enc.encode_ordinary(text).length;
    out.set(name, { count: (text) => countBounded(text, encode) });
  }
  return out;
}
