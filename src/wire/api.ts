// The APIs a request may speak, one per inference endpoint: what providers are told
// (ChatCall.api) and what the worker pool counts a body as.
export type Api = 'chat' | 'responses' | 'embeddings' | 'moderations' | 'completions' | 'messages' | 'images' | 'speech' | 'transcriptions' | 'translations';

/** An answer of these APIs is vectors, verdicts, images or audio: nothing generated to count as output tokens (nor bytes to send the pool for it). */
export const generatesNoText = (api: Api | undefined): boolean => api === 'embeddings' || api === 'moderations' || api === 'images' || api === 'speech';
