// What a request's prompt may cost beyond its bytes. Admission bounds a prompt by the
// body's size (a token is at least a byte), which holds for text but not for content the
// upstream expands: an image URL of 60 bytes is billed up to ~3,800 tokens (gpt-4.1-nano's
// 1,536 patches × 2.46), a file id or a previous response id stands for a whole document or
// conversation. So reservations, holds and tpm add this: each image at IMAGE_BOUND tokens,
// and a prompt with content that cannot be sized here is bounded by the context window.
import { isRecord } from '../json.js';

/** Tokens an image may cost at most, on any model in the catalog (gpt-4.1-nano's ceiling, rounded up). */
export const IMAGE_BOUND = 4000;
/** What the worker's prompt count already gives each image (prompt-text.ts). */
export const IMAGE_COUNTED = 85;

export interface PromptExtras {
  images: number;
  /** The prompt references content stored upstream (a file id): only the context window bounds it. */
  unsized: boolean;
}

const NONE: PromptExtras = { images: 0, unsized: false };

function scanParts(content: unknown, into: { images: number; unsized: boolean }): void {
  if (!Array.isArray(content)) return;
  for (const part of content) {
    if (!isRecord(part)) continue;
    const type = part.type;
    if (type === 'image_url' || type === 'input_image' || type === 'image') {
      into.images++;
      if (typeof part.file_id === 'string') into.unsized = true;
    } else if (type === 'file' || type === 'input_file') {
      const file = isRecord(part.file) ? part.file : part;
      if (typeof file.file_id === 'string' || typeof file.file_url === 'string') into.unsized = true;
    }
  }
}

/** The extras of a chat body (`messages`) or a Responses body (`input` items). Plain text requests return at once. */
export function promptExtras(request: { messages?: unknown; input?: unknown }): PromptExtras {
  const list = Array.isArray(request.messages) && request.messages.length ? request.messages : Array.isArray(request.input) ? request.input : null;
  if (!list) return NONE;
  let found: { images: number; unsized: boolean } | null = null;
  for (const m of list) {
    if (!isRecord(m) || !Array.isArray(m.content)) continue;
    found ??= { images: 0, unsized: false };
    scanParts(m.content, found);
  }
  return found && (found.images || found.unsized) ? found : NONE;
}
