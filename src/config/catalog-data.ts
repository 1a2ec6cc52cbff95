// Loads the built-in catalog data file (models.json beside this file), validated like config.
import { readFile } from 'node:fs/promises';
import { CatalogFileSchema, type ModelEntry } from './schema.js';
import { ConfigError } from './load.js';

export async function loadBuiltinModels(): Promise<ModelEntry[]> {
  const url = new URL('./models.json', import.meta.url);
  const parsed = CatalogFileSchema.safeParse(JSON.parse(await readFile(url, 'utf8')));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`src/config/models.json: ${issue.path.join('.')}: ${issue.message}`);
  }
  return parsed.data.models;
}
