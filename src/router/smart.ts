// The smart router (model `auto`): the classifier (in the worker pool) gives the prompt a
// difficulty score (0–1) and a task type. The score picks a bucket, and each bucket names
// the model or alias that serves it; with the adaptive router on (router/adaptive.ts), the
// learned policy for the task type chooses the model instead, and the bucket stays visible.

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
  /** The model or alias that serves it. */
  model: string;
  /** The classifier's task type. */
  task: string;
  /** Set when the adaptive policy chose: the model's estimated quality for the task type, and why it was chosen. */
  learned: { quality: number; reason: string; teaches: boolean } | null;
}

export function pick(config: SmartRouterConfig, score: number, task: string): RouterPick {
  const bucket: Bucket = score >= config.complexFrom ? 'complex' : score >= config.mediumFrom ? 'medium' : 'simple';
  return { bucket, score, model: config[bucket], task, learned: null };
}
