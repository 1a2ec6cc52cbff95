// Text every copy of a record can hold as it is. A lone surrogate has no UTF-8 form: LMDB,
// Postgres (whose jsonb refuses its escape, as it refuses NUL's), log lines and other
// replicas each end up with something else in its place, so one name or model became two
// (a replica's own rows against the ones read back from Postgres). Such text is refused at
// the HTTP boundary; what is already stored is read as it is.
import { z } from 'zod';

type Unicode = string & { isWellFormed(): boolean; toWellFormed(): string };

/** No lone surrogate (String.prototype.isWellFormed: Node 20 has it, TypeScript's ES2023 lib does not declare it). */
export const isWellFormed = (s: string): boolean => (s as Unicode).isWellFormed();

/** Each lone surrogate replaced by U+FFFD. */
export const toWellFormed = (s: string): string => (s as Unicode).toWellFormed();

const NOT_WELL_FORMED = 'must be well-formed Unicode (a lone surrogate is not)';

/** `text` narrowed to one line of plain text: no control character, no lone surrogate (names, model names). */
export const plainText = (text: z.ZodString) => text.regex(/^[^\u0000-\u001f\u007f]*$/, 'control characters are not allowed').refine(isWellFormed, NOT_WELL_FORMED);

/** A name (a key's, a workspace's): 1 to 200 characters, none of them a control character. */
export const Name = plainText(z.string().min(1).max(200));

/** Free text (a note, a comment) of at most `max` characters: line breaks and tabs allowed, NUL not. */
export const FreeText = (max: number) => z.string().max(max).refine((s) => !s.includes('\u0000') && isWellFormed(s), `must be well-formed Unicode without NUL characters`);
