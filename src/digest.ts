// SHA-256, the one digest Sluice uses (cache keys, key hashes, long key parts, the sim's
// seed). node:crypto's one-shot `hash` skips the Hash object (cheaper for the short inputs
// here); its text outputs are cheaper still than its Buffer one (Node 20, a 53-byte key:
// 0.25 µs as hex against 1.36 µs as a Buffer, which its binding makes slowly), so what runs
// per request (a key's hash, a cache key) asks for text. Imported by every layer.
import { hash } from 'node:crypto';

/** The digest's bytes. */
export function sha256(data: string | Buffer): Buffer {
  return hash('sha256', data, 'buffer');
}

/** The digest as hex text (keys' stored hashes). */
export function sha256Hex(data: string | Buffer): string {
  return hash('sha256', data, 'hex');
}

/** The digest as base64url text (keys of stores, cache entries). */
export function sha256Text(data: string | Buffer): string {
  return hash('sha256', data, 'base64url');
}
