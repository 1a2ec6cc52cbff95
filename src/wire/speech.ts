// The text-to-speech request on the wire (OpenAI's /v1/audio/speech): the input text, a voice
// and a format. Priced per character of input (tts-1, tts-1-hd), which the request itself says.
import { z } from 'zod';
import { ModelName } from './chat.js';

export const SpeechRequestSchema = z.looseObject({
  model: ModelName,
  input: z.string().min(1, 'input is required').max(4096, 'at most 4,096 characters'),
  voice: z.string().min(1).max(64),
  response_format: z.enum(['mp3', 'opus', 'aac', 'flac', 'wav', 'pcm']).nullish(),
  speed: z.number().min(0.25).max(4).nullish(),
  instructions: z.string().max(4096).nullish(),
  stream_format: z.literal('audio', { error: "only 'audio' (the bytes as they come) is supported by this gateway" }).nullish(),
  /** Sluice's own: pin a provider; never sent upstream. */
  provider: z.string().min(1).max(64).optional(),
});

/** The characters a speech request is billed for (code points, as a person counts them). */
export function speechCharacters(input: unknown): number {
  if (typeof input !== 'string') return 0;
  let n = 0;
  for (const _ of input) n++;
  return n;
}
