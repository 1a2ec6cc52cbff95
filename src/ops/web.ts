// The landing page, the dashboard and the API docs: static files built into dist/web by
// `npm run build` (scripts/build-web.mjs; uPlot comes from its npm package, no CDN), read
// once at start and served from memory.
import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.json': 'application/json',
};

export interface Asset { type: string; body: Buffer }

/** Every file of dist/web by name (e.g. `app.js`); empty when the web build is missing. */
export async function loadWebAssets(dir = fileURLToPath(new URL('../../web/', import.meta.url))): Promise<Map<string, Asset>> {
  const assets = new Map<string, Asset>();
  let names: string[] = [];
  try { names = await readdir(dir); } catch { return assets; }
  await Promise.all(names.map(async (name) => {
    const type = TYPES[extname(name)];
    if (type) assets.set(name, { type, body: await readFile(join(dir, name)) });
  }));
  return assets;
}
