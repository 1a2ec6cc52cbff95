// The moderations request and answer on the wire (OpenAI's /v1/moderations): texts, or
// (omni-moderation) text and image parts; the answer's categories as OpenAI names them.
import { z } from 'zod';
import { ModelName } from './chat.js';

/** The model OpenAI uses when a request names none. */
export const DEFAULT_MODERATION_MODEL = 'omni-moderation-latest';

const Part = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('text'), text: z.string() }),
  z.looseObject({ type: z.literal('image_url'), image_url: z.looseObject({ url: z.string().min(1) }) }),
]);

export const ModerationsRequestSchema = z.looseObject({
  model: ModelName.default(DEFAULT_MODERATION_MODEL),
  input: z.union([
    z.string(),
    z.array(z.string()).min(1, 'input must not be an empty list').max(2048, 'at most 2048 inputs'),
    z.array(Part).min(1, 'input must not be an empty list').max(2048, 'at most 2048 inputs'),
  ], { error: 'expected a string, an array of strings, or an array of text and image_url parts' }),
  /** Sluice's own: pin a provider; never sent upstream. */
  provider: z.string().min(1).max(64).optional(),
});

/** omni-moderation's categories, and the inputs each applies to. */
export const MODERATION_CATEGORIES = {
  'harassment': ['text'], 'harassment/threatening': ['text'], 'hate': ['text'], 'hate/threatening': ['text'],
  'illicit': ['text'], 'illicit/violent': ['text'], 'self-harm': ['text', 'image'], 'self-harm/intent': ['text', 'image'],
  'self-harm/instructions': ['text', 'image'], 'sexual': ['text', 'image'], 'sexual/minors': ['text'], 'violence': ['text', 'image'],
  'violence/graphic': ['text', 'image'],
} as const;
export type ModerationCategory = keyof typeof MODERATION_CATEGORIES;
