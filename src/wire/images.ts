// The image-generation request on the wire (OpenAI's /v1/images/generations), and what one
// image costs in a model's billing units: DALL·E is priced per image by size and quality
// (units at the model's `prices.output` per million), gpt-image-1 per output token (its units
// are tokens, and the upstream reports them); the catalog's `image_units` says how many each
// image of a size and quality takes.
import { z } from 'zod';
import { ModelName } from './chat.js';

/** OpenAI's model when a request names none. */
export const DEFAULT_IMAGE_MODEL = 'dall-e-2';

export const ImagesRequestSchema = z.looseObject({
  model: ModelName.default(DEFAULT_IMAGE_MODEL),
  prompt: z.string().min(1, 'prompt is required').max(32000, 'at most 32,000 characters'),
  n: z.number().int().min(1).max(10).nullish(),
  size: z.string().regex(/^(\d{2,4}x\d{2,4}|auto)$/, "a size such as '1024x1024', or 'auto'").nullish(),
  quality: z.enum(['standard', 'hd', 'low', 'medium', 'high', 'auto']).nullish(),
  response_format: z.enum(['url', 'b64_json']).nullish(),
  style: z.enum(['vivid', 'natural']).nullish(),
  user: z.string().max(256).nullish(),
  stream: z.literal(false, { error: 'streamed image generation is not supported by this gateway yet; leave stream out' }).nullish(),
  /** Sluice's own: pin a provider; never sent upstream. */
  provider: z.string().min(1).max(64).optional(),
});
export type ImagesRequest = z.infer<typeof ImagesRequestSchema>;

/**
 * Billing units one image of this request takes on a model: its `quality/size` entry, else
 * its size's, else (auto, or a size the table does not name) the dearest the model has, so
 * the reservation never falls short. null: the model has no table.
 */
export function unitsPerImage(table: Readonly<Record<string, number>> | undefined, req: Readonly<Record<string, unknown>>): number | null {
  if (!table) return null;
  const size = typeof req.size === 'string' ? req.size : '';
  const quality = typeof req.quality === 'string' ? req.quality : '';
  return table[`${quality}/${size}`] ?? table[size] ?? Math.max(...Object.values(table));
}

/** The images a request asks for (OpenAI's default is one). */
export function imageCount(req: Readonly<Record<string, unknown>>): number {
  return typeof req.n === 'number' ? req.n : 1;
}
