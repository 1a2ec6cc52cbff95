// Runs the tap suite over the compiled tests, then again over the files that drive the
// request path end to end with the gateway on two event-loop threads (SLUICE_TEST_THREADS=2:
// test/helpers/gateway.ts starts every gateway so), and ends the output with one line,
// "N passed, N failed", summed from tap's own summaries. Exit code: tap's first failure.
import { spawn } from 'node:child_process';

/** The second pass: what limits, credits, failover, streams, uploads and cluster mode do is the same on two threads. */
const THREADED = ['gateway/chat', 'gateway/stream-figures', 'accounts/keys-limits', 'accounts/credits', 'hostile/limits', 'hostile/benchmark',
  'hostile/upstream-errors', 'router/failover', 'server/audio-upload', 'gateway/messages', 'ops/cluster'].map((f) => `dist/test/${f}.test.js`);

function run(files, env) {
  return new Promise((resolve) => {
    const tap = spawn(process.execPath, ['node_modules/tap/dist/esm/run.mjs', ...files, ...process.argv.slice(2)], {
      stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env },
    });
    let tail = '';
    tap.stdout.on('data', (d) => { process.stdout.write(d); tail = (tail + d.toString()).slice(-4096); });
    tap.on('exit', (code) => {
      const m = /# \{ total: (\d+), pass: (\d+)(?:, fail: (\d+))?/.exec(tail);
      resolve({ code: code ?? 1, passed: m ? Number(m[2]) : 0, failed: m ? Number(m[3] ?? 0) : 1 });
    });
  });
}

const all = await run(['dist/test/**/*.test.js'], {});
// (only when the whole suite ran: a run of named files stays that run)
const threaded = process.argv.length > 2 ? { code: 0, passed: 0, failed: 0 } : (console.log('\n# the request path again, on two event-loop threads (SLUICE_THREADS=2)'), await run(THREADED, { SLUICE_TEST_THREADS: '2' }));
console.log(`${all.passed + threaded.passed} passed, ${all.failed + threaded.failed} failed`);
process.exit(all.code || threaded.code);
