// The dependency direction of ../shared/STYLE.md, checked: each src/ module imports only
// from layers below its own (or its own directory). `main.ts`, `thread.ts` (an event-loop
// thread's), `compose.ts` (what both build from config) and the worker entry are
// composition roots and may import any layer. Type-only imports count: they couple too.
import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// The compiled test lives in dist/test/; the sources are read from the repository.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Higher imports lower; equal ranks (siblings) do not import each other. */
const RANK: Record<string, number> = {
  server: 5,
  ops: 4,
  gateway: 3,
  router: 2, savings: 2, accounts: 2,
  providers: 1, store: 1, workers: 1,
  wire: 0, config: 0, '.': 0, native: 0, // imported by all, and by each other
};
const ROOTS = new Set(['main.ts', 'thread.ts', 'compose.ts', 'workers/task.ts']);

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : name.endsWith('.ts') ? [path] : [];
  });
}

/** The layer a path belongs to: its first directory under src/ ('.' for src/ itself), or `native`. */
function layerOf(root: string, path: string): string {
  const rel = relative(join(root, 'src'), path);
  if (rel.startsWith('..')) return relative(root, path).split('/')[0]!;
  const parts = rel.split('/');
  return parts.length === 1 ? '.' : parts[0]!;
}

function violations(root: string): string[] {
  const src = join(root, 'src');
  const found: string[] = [];
  for (const file of sources(src)) {
    const rel = relative(src, file);
    if (ROOTS.has(rel)) continue;
    const from = layerOf(root, file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'(\.{1,2}\/[^']+)'/gm)) {
      const target = resolve(dirname(file), m[1]!);
      const to = layerOf(root, target);
      if (to === from) continue;
      const a = RANK[from];
      const b = RANK[to];
      if (a === undefined || b === undefined) { found.push(`${rel}: layer '${a === undefined ? from : to}' has no rank in test/layers.test.ts`); continue; }
      if (b >= a && !(a === 0 && b === 0)) found.push(`${rel} imports ${relative(root, target)} (${from} → ${to}: ${b === a ? 'siblings' : 'upward'})`);
    }
  }
  return found;
}

t.test('no module imports a layer above its own, or a sibling layer', async (t) => {
  t.same(violations(ROOT), []);
});

t.test('an upward or sibling import is found, type-only ones too; a root may import anything', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'sluice-layers-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const put = (path: string, text: string) => { mkdirSync(dirname(join(root, path)), { recursive: true }); writeFileSync(join(root, path), text); };
  put('src/savings/cache.ts', "import type { Exchange } from '../server/exchange.js';\nimport { Usage } from '../accounts/pricing.js';\nimport { z } from '../wire/usage.js';\n");
  put('src/main.ts', "import { startServer } from './server/app.js';\n");
  put('src/wire/usage.ts', "import { Errors } from '../errors.js';\n");
  t.same(violations(root), [
    'savings/cache.ts imports src/server/exchange.js (savings → server: upward)',
    'savings/cache.ts imports src/accounts/pricing.js (savings → accounts: siblings)',
  ]);
});
