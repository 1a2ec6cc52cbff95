// The savings mechanisms by name, as they appear on the wire: a key's `savings_off`, the
// `saved_tokens` of the gateway object and the ledger row.
export const MECHANISMS = ['output_cap', 'exact_cache', 'dedupe', 'semantic_cache', 'prompt_cache', 'compression', 'chunk_dedupe'] as const;
export type Mechanism = (typeof MECHANISMS)[number];

/** Tokens each mechanism kept from the upstream bill on one request (absent = none). */
export type SavedTokens = Partial<Record<Mechanism, number>>;
