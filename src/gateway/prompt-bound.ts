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

function isImage(type: unknown): boolean {
  return type === 'image_url' || type === 'input_image' || type === 'image';
}

/**
 * The extras of a chat body (`messages`) or a Responses body (`input`): image and file parts
 * wherever they sit (a message's content, a tool result's output, nested lists). Walked with
 * an explicit stack; a body is at most 64 levels deep (parseJson). Text-only messages are
 * skipped at once.
 */
export function promptExtras(request: { messages?: unknown; input?: unknown }): PromptExtras {
  const list = Array.isArray(request.messages) && request.messages.length ? request.messages : Array.isArray(request.input) ? request.input : null;
  if (!list) return NONE;
  let images = 0;
  let unsized = false;
  const stack: unknown[] = [];
  for (const m of list) if (isRecord(m) && typeof m.content !== 'string') stack.push(m);
  while (stack.length) {
    const v = stack.pop();
    if (Array.isArray(v)) { for (const x of v) if (typeof x === 'object' && x !== null) stack.push(x); continue; }
    if (!isRecord(v)) continue;
    if (isImage(v.type)) {
      images++;
      if (typeof v.file_id === 'string') unsized = true;
    } else if (v.type === 'file' || v.type === 'input_file') {
      const file = isRecord(v.file) ? v.file : v;
      if (typeof file.file_id === 'string' || typeof file.file_url === 'string') unsized = true;
    }
    for (const k in v) { const x = v[k]; if (typeof x === 'object' && x !== null) stack.push(x); }
  }
  return images || unsized ? { images, unsized } : NONE;
}
