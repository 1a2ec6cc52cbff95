// `npm run build`, after tsc: the dashboard, landing page and docs into dist/web, with uPlot
// taken from its npm package (served by Sluice itself; no CDN).
import { cp, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'web');
await mkdir(out, { recursive: true });
await cp(join(root, 'web'), out, { recursive: true });
const uplot = join(dirname(createRequire(import.meta.url).resolve('uplot')), '.');
await cp(join(uplot, 'uPlot.iife.min.js'), join(out, 'uPlot.iife.min.js'));
await cp(join(uplot, 'uPlot.min.css'), join(out, 'uPlot.min.css'));
