// The adaptive router's task-type patterns come from config and run on every `auto` prompt,
// in the worker pool: one pattern that backtracks catastrophically (`^(a+)+$` on forty a's
// and a b) would hold a worker for ever, and with it every request that needs the pool. So
// V8's linear-time regexp engine backs every backtracking one: with
// --enable-experimental-regexp-engine-on-excessive-backtracks (process-wide, so the workers'
// isolates have it too) a regexp that backtracks too much is run again on the linear engine.
// That engine runs only what can be matched in linear time (no lookarounds, backreferences or
// large counted repeats)
// and without the `i` flag, so a pattern must compile with the `l` flag to be accepted, and
// patterns are matched case-sensitively against the lowercased text (written in lowercase).
import v8 from 'node:v8';

let enabled = false;

/** Turns on the linear engine's fallback (and its `l` flag, to check patterns), once per process. */
export function enableLinearFallback(): void {
  if (enabled) return;
  v8.setFlagsFromString('--enable-experimental-regexp-engine');
  v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');
  // (V8's default lets a regexp backtrack 50,000 times first: at every start position of a long text, that adds up)
  v8.setFlagsFromString('--regexp-backtracks-before-fallback=2000');
  enabled = true;
}

/** Why a task-type pattern cannot be used (null: it can). */
export function patternProblem(source: string): string | null {
  enableLinearFallback();
  try {
    new RegExp(source, 'gm');
  } catch (err) {
    return `not a valid regular expression (${err instanceof Error ? err.message : String(err)})`;
  }
  try {
    new RegExp(source, 'gml');
  } catch {
    return 'cannot run in linear time (no lookarounds, backreferences or large counted repeats such as .{0,40}: use [^.?!\\n]* for "in the same sentence")';
  }
  if (/\\[pP]\{/.test(source)) return 'unicode property escapes (\\p{…}) are not supported: use a character class';
  // an uppercase letter outside an escape (\D, \S, \W, \B, \P…) could never match the lowercased text
  if (/(^|[^\\])(\\\\)*[A-Z]/.test(source.replace(/\\[A-Za-z]/g, ''))) return 'matches lowercased text: write it in lowercase';
  return null;
}
