// Runs the tap suite over the compiled tests and ends the output with one line,
// "N passed, N failed", from tap's own summary. Exit code is tap's.
import { spawn } from 'node:child_process';

const tap = spawn(process.execPath, ['node_modules/tap/dist/esm/run.mjs', 'dist/test/**/*.test.js', ...process.argv.slice(2)], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let tail = '';
tap.stdout.on('data', (d) => { process.stdout.write(d); tail = (tail + d.toString()).slice(-4096); });
tap.on('exit', (code) => {
  const m = /# \{ total: (\d+), pass: (\d+)(?:, fail: (\d+))?/.exec(tail);
  const passed = m ? Number(m[2]) : 0;
  const failed = m ? Number(m[3] ?? 0) : 1;
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(code ?? 1);
});
