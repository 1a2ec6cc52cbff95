// Speech to text on the wire (OpenAI's /v1/audio/transcriptions and /translations): a
// multipart form with the audio file and a few fields, read with undici's own multipart
// parser (Response.formData). What the audio lasts is not in the request. The reservation
// takes the file's size at a low 8 kbit/s, whatever its header says (a header can lie), so it
// is never short; billing without the upstream's usage takes a PCM WAV's length from its
// chunks (checked against each other, and never beyond that bound), else the size at
// 128 kbit/s, a usual speech MP3.
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
  if (!/^multipart\/form-data\s*;/i.test(contentType)) {
    throw new GatewayError(Errors.invalidRequest, "Send the audio as multipart/form-data with a 'file' part (as the SDKs do).", 'file');
  }
  let form: FormData;
  try {
    form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
  } catch {
    throw new GatewayError(Errors.invalidRequest, 'The multipart body could not be read.', 'file');
  }
  const fields: Record<string, string> = Object.create(null) as Record<string, string>; // (the caller names the keys)
  let file: File | null = null;
  for (const [name, value] of form) {
    // One of each: a second file or model would be a guess at which one the caller meant.
    if (Object.hasOwn(fields, name) || (name === 'file' && file)) throw new GatewayError(Errors.invalidRequest, `The form names '${name.slice(0, 64)}' more than once.`, name.slice(0, 64));
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
  const bound = Math.max(1, Math.ceil(file.size / 1000));
  const head = Buffer.from(await file.slice(0, 4096).arrayBuffer());
  const wav = wavSeconds(head, file.size);
  return { model: parsed.data.model, stream: parsed.data.stream === 'true', fields, file,
    secondsBound: bound, secondsEstimate: Math.min(bound, Math.max(1, Math.ceil(wav ?? file.size / 16_000))) };
}

/**
 * A PCM WAV's length: its chunks walked to `fmt ` and `data` (other chunks, such as ffmpeg's
 * LIST, may come between), the byte rate checked against sample rate × block align; null for
 * anything else (another format, or a header that does not add up).
 */
export function wavSeconds(head: Buffer, size: number): number | null {
  if (head.length < 12 || head.toString('ascii', 0, 4) !== 'RIFF' || head.toString('ascii', 8, 12) !== 'WAVE') return null;
  let byteRate = 0;
  for (let at = 12; at + 8 <= head.length;) {
    const id = head.toString('ascii', at, at + 4);
    const length = head.readUInt32LE(at + 4);
    if (id === 'fmt ' && at + 24 <= head.length) {
      const rate = head.readUInt32LE(at + 12);
      const align = head.readUInt16LE(at + 20);
      byteRate = head.readUInt32LE(at + 16);
      if (rate === 0 || align === 0 || byteRate !== rate * align) return null;
    } else if (id === 'data') {
      if (byteRate === 0) return null;
      return Math.min(length, size - at - 8) / byteRate;
    }
    at += 8 + length + (length & 1);
  }
  return null;
}
