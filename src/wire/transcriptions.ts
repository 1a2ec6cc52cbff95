// Speech to text on the wire (OpenAI's /v1/audio/transcriptions and /translations): a
// multipart form with the audio file and a few fields. The server reads it as it arrives
// (server/audio-upload.ts); here are its fields' schema, the request the pipeline carries,
// and the form sent again upstream with the route's model. What the audio lasts is not in
// the request. The reservation takes the upload's size at a low 8 kbit/s, whatever its
// header says (a header can lie), so it is never short; billing without the upstream's
// usage takes a PCM WAV's length from its chunks (checked against each other, and never
// beyond that bound), else the size at 128 kbit/s, a usual speech MP3.
import { randomBytes } from 'node:crypto';
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
}).catchall(z.union([z.string().max(10_000), z.array(z.string().max(10_000))]));

/** The audio's bytes as they arrive (store/spool.ts keeps them): readable again from the first by each attempt. */
export interface Upload {
  /** Bytes come so far. */
  readonly size: number;
  /** Every byte has come. */
  readonly complete: boolean;
  /** The first `n` bytes come so far. */
  head(n: number): Buffer;
  /** Every byte from the first, following the upload as it grows; throws the upload's failure. */
  read(): AsyncGenerator<Buffer>;
}

/** The form's fields as it carries them (the caller names the keys); an array's `name[]` has every value. */
export type AudioFields = Record<string, string | string[]>;

/** The fields checked against the schema: the model, or a 400. */
export function checkAudioFields(fields: AudioFields): string {
  const parsed = TranscriptionFieldsSchema.safeParse(fields);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const param = String(issue.path[0] ?? 'file');
    throw new GatewayError(Errors.invalidRequest, `Invalid '${param}': ${issue.message}.`, param);
  }
  return parsed.data.model;
}

/**
 * The form as the pipeline carries it: its fields, the audio as it arrives (kept for another
 * attempt), and what the audio lasts. `fields` may still grow while the audio streams (a
 * field sent after the file); they are all in by the time the spool completes.
 */
export class AudioRequest {
  constructor(
    readonly model: string,
    readonly fields: AudioFields,
    readonly file: { name: string; type: string },
    readonly upload: Upload,
    /** Seconds the audio surely lasts at most (the reservation): the size bound at 8 kbit/s. */
    readonly secondsBound: number,
  ) {}

  /** Whether the answer streams: read when it comes (the SDKs may send `stream` after the file, once the request is on its way). */
  get stream(): boolean {
    return this.fields.stream === 'true';
  }

  /** Seconds the audio likely lasts (billing without the upstream's usage), from what has come. */
  get secondsEstimate(): number {
    const size = this.upload.size;
    const wav = wavSeconds(this.upload.head(4096), size);
    return Math.min(this.secondsBound, Math.max(1, Math.ceil(wav ?? size / 16_000)));
  }
}

/** The reservation's bound for an upload of at most `bytes`: a second per 1000 bytes (8 kbit/s). */
export function audioSecondsBound(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / 1000));
}

const CRLF = '\r\n';

/** A form-data header value quoted as browsers and undici do (quotes and line breaks escaped). */
function quoted(value: string): string {
  return `"${value.replace(/"/g, '%22').replace(/\r/g, '%0D').replace(/\n/g, '%0A')}"`;
}

/**
 * The form again for an upstream, with `model` as the route names it: the fields known now,
 * then the file (its bytes read from the spool as they come), then any field that came after
 * the file, and the closing boundary. Its length is known only once the upload is complete.
 */
export function audioForm(audio: AudioRequest, model: string): { contentType: string; body: AsyncIterable<Buffer>; length: number | null } {
  const boundary = `----sluice-${randomBytes(12).toString('hex')}`;
  const part = (name: string, value: string) => `--${boundary}${CRLF}Content-Disposition: form-data; name=${quoted(name)}${CRLF}${CRLF}${value}${CRLF}`;
  const sent = new Set<string>(['model', 'provider']);
  const fieldParts = (): string => {
    let out = '';
    for (const [k, v] of Object.entries(audio.fields)) {
      if (sent.has(k)) continue;
      sent.add(k);
      if (typeof v === 'string') out += part(k, v);
      else for (const one of v) out += part(k, one);
    }
    return out;
  };
  const head = Buffer.from(`${part('model', model)}${fieldParts()}--${boundary}${CRLF}Content-Disposition: form-data; name="file"; filename=${quoted(audio.file.name || 'audio')}${CRLF}`
    + `Content-Type: ${audio.file.type || 'application/octet-stream'}${CRLF}${CRLF}`);
  const closing = `--${boundary}--${CRLF}`;
  // With the upload complete, every field is in the head already and the length is known.
  const length = audio.upload.complete ? head.length + audio.upload.size + CRLF.length + closing.length : null;
  async function* body(): AsyncGenerator<Buffer> {
    yield head;
    yield* audio.upload.read();
    yield Buffer.from(`${CRLF}${fieldParts()}${closing}`);
  }
  return { contentType: `multipart/form-data; boundary=${boundary}`, body: body(), length };
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
