// The smart router (model `auto`): the classifier's score for the prompt (0–1, computed in
// the worker pool) picks a bucket, and each bucket names the model or alias that serves it.

export type Bucket = 'simple' | 'medium' | 'complex';

export interface SmartRouterConfig {
  mediumFrom: number;
  complexFrom: number;
  simple: string;
  medium: string;
  complex: string;
}

/** The smart router's choice for one request. */
export interface RouterPick {
  bucket: Bucket;
  score: number;
  model: string;
}

export function pick(config: SmartRouterConfig, score: number): RouterPick {
  const bucket: Bucket = score >= config.complexFrom ? 'complex' : score >= config.mediumFrom ? 'medium' : 'simple';
  return { bucket, score, model: config[bucket] };
}
