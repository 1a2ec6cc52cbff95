// The Responses API request on the wire (POST /v1/responses).
import { z } from 'zod';
import { ModelName } from './chat.js';

const InputItem = z.looseObject({ type: z.string().optional(), role: z.string().optional() });

export const ResponsesRequestSchema = z.looseObject({
  model: ModelName,
  input: z.union([z.string().min(1), z.array(InputItem).min(1)]),
  instructions: z.string().nullish(),
  max_output_tokens: z.number().int().positive().nullish(),
  stream: z.boolean().nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  tools: z.array(z.looseObject({ type: z.string() })).nullish(),
  tool_choice: z.union([z.enum(['auto', 'required', 'none']), z.looseObject({ type: z.string() })]).nullish(),
  /** `text.format`: plain text, or JSON (an object, or one matching a schema). */
  text: z.looseObject({ format: z.looseObject({ type: z.enum(['text', 'json_object', 'json_schema']) }).optional() }).nullish(),
  previous_response_id: z.string().min(1).max(256).nullish(),
  /** false: the response is not kept (no GET, no continuation). */
  store: z.boolean().nullish(),
  /** Sluice's own: pin a provider (also the x-gateway-provider header); never sent upstream. */
  provider: z.string().min(1).max(64).optional(),
});

export type ResponsesRequest = z.infer<typeof ResponsesRequestSchema>;
