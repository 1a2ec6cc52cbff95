// The APIs a request may speak, one per inference endpoint: what providers are told
// (ChatCall.api) and what the worker pool counts a body as.
export type Api = 'chat' | 'responses' | 'embeddings' | 'moderations' | 'completions' | 'messages' | 'images' | 'speech' | 'transcriptions' | 'translations';
