// The Dockerfile, checked without a container runtime (none runs where Sluice is built): its
// build stage copies every source tree the build compiles, and its runtime stage copies
// every built file the gateway loads — every relative import in dist/src that leaves
// dist/src lands in a copied path.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const lines = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').split('\n').filter((l) => l.startsWith('COPY '));
const buildCopies = lines.filter((l) => !l.includes('--from')).flatMap((l) => l.split(/\s+/).slice(1, -1)); // (sources: all but the destination)
const runtimeCopies = lines.filter((l) => l.includes('--from=build')).map((l) => l.split(/\s+/)[2]!.replace(/^\/app\//, ''));

t.test('the build stage copies every tree tsconfig compiles, and the web assets', async (t) => {
  const include = (JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as { include: string[] }).include;
  const roots = new Set(include.map((p) => p.split('/')[0]!));
  for (const root of [...roots, 'web', 'package.json', 'package-lock.json', 'tsconfig.json']) t.ok(buildCopies.includes(root), `COPY ${root}`);
});

t.test('the runtime stage copies every built file the gateway loads', async (t) => {
  for (const path of runtimeCopies) t.ok(existsSync(join(ROOT, path)), `${path} exists after the build`);
  const copied = (abs: string) => runtimeCopies.some((p) => abs === join(ROOT, p) || abs.startsWith(join(ROOT, p) + '/'));
  const walk = (dir: string): string[] => readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : n.endsWith('.js') ? [join(dir, n)] : []));
  let outside = 0;
  for (const file of walk(join(ROOT, 'dist/src'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\(\s*|new URL\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const target = resolve(dirname(file), m[1]!);
      if (target.startsWith(join(ROOT, 'dist/src') + '/')) continue;
      outside++;
      t.ok(copied(target), `${relative(ROOT, file)} loads ${relative(ROOT, target)}, which the image has`);
    }
  }
  t.ok(outside > 0, 'the check saw the imports that leave dist/src (native/, package.json, web/)');
});
