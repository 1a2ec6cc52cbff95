// Speech to text on the wire (OpenAI's /v1/audio/transcriptions and /translations): a
// multipart form with the audio file and a few fields, read with undici's own multipart
// parser (Response.formData). What the audio lasts is not in the request: it is read from a
// WAV header, else estimated from the file's size, to reserve (at a low 8 kbit/s, so never
// short) and to bill when the upstream reports no usage (at 128 kbit/s, a usual speech MP3).
import { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import { ModelName } from './chat.js';

export const TranscriptionFieldsSchema = z.object({
  model: ModelName,
  response_format: z.enum(['json', 'text', 'srt', 'verbose_json', 'vtt']).optional(),
  language: z.string().max(16).optional(),
  prompt: z.string().max(10_000).optional(),
  temperature: z.coerce.number().min(0).max(1).optional(),
  stream: z.enum(['true', 'false']).optional(),
  provider: z.string().min(1).max(64).optional(),
}).catchall(z.string().max(10_000));

/** The form as the pipeline carries it: its fields, the audio, and what the audio lasts. */
export interface AudioRequest {
  model: string;
  stream: boolean;
  fields: Record<string, string>;
  file: File;
  /** Seconds the audio surely lasts at most (reservation), and likely lasts (billing without usage). */
  secondsBound: number;
  secondsEstimate: number;
}

/** The multipart body read into fields and the audio file; a 400 for anything else. */
export async function readAudioForm(body: Buffer, contentType: string): Promise<AudioRequest> {
  if (!/^multipart\/form-data;/i.test(contentType)) {
    throw new GatewayError(Errors.invalidRequest, "Send the audio as multipart/form-data with a 'file' part (as the SDKs do).", 'file');
  }
  let form: FormData;
  try {
    form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
  } catch {
    throw new GatewayError(Errors.invalidRequest, 'The multipart body could not be read.', 'file');
  }
  const fields: Record<string, string> = {};
  let file: File | null = null;
  for (const [name, value] of form) {
    if (typeof value === 'string') fields[name] = value;
    else if (name === 'file') file = value;
  }
  if (!file || file.size === 0) throw new GatewayError(Errors.invalidRequest, "A non-empty 'file' part is required.", 'file');
  const parsed = TranscriptionFieldsSchema.safeParse(fields);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const param = String(issue.path[0] ?? 'file');
    throw new GatewayError(Errors.invalidRequest, `Invalid '${param}': ${issue.message}.`, param);
  }
  const head = Buffer.from(await file.slice(0, 64).arrayBuffer());
  const wav = wavSeconds(head, file.size);
  return { model: parsed.data.model, stream: parsed.data.stream === 'true', fields, file,
    secondsBound: Math.max(1, Math.ceil(wav ?? file.size / 1000)), secondsEstimate: Math.max(1, Math.ceil(wav ?? file.size / 16_000)) };
}

/** A PCM WAV's length from its header (byte rate at 28, the data size in its chunk), or null. */
function wavSeconds(head: Buffer, size: number): number | null {
  if (head.length < 44 || head.toString('ascii', 0, 4) !== 'RIFF' || head.toString('ascii', 8, 12) !== 'WAVE') return null;
  const byteRate = head.readUInt32LE(28);
  if (byteRate <= 0) return null;
  return Math.min(size, head.readUInt32LE(40) || size) / byteRate;
}
