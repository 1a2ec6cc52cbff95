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
    out.set(name, { count: (text) => enc.encode_ordinary(text).length });
  }
  return out;
}
