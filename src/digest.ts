// SHA-256, the one digest Sluice uses (cache keys, key hashes, long key parts, the sim's
// seed). node:crypto's one-shot `hash` skips the Hash object (cheaper for the short inputs
// here). Imported by every layer.
import { hash } from 'node:crypto';

/** The digest's bytes. */
export function sha256(data: string | Buffer): Buffer {
  return hash('sha256', data, 'buffer');
}

/** The digest as base64url text (keys of stores, cache entries). */
export function sha256Text(data: string | Buffer): string {
  return hash('sha256', data, 'base64url');
}
