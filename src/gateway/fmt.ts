// Figures as responses carry them: dollar amounts for the x-btl-* headers, and milliseconds.

/** Plain decimal rounded to 1e-9 (never `1e-7`): what the x-btl-* headers carry. */
export function fmtUsd(usd: number): string {
  const nano = Math.round(usd * 1e9);
  if (nano === 0) return '0';
  const sign = nano < 0 ? '-' : '';
  const abs = Math.abs(nano);
  const whole = Math.floor(abs / 1e9);
  let frac = abs - whole * 1e9;
  if (frac === 0) return `${sign}${whole}`;
  let digits = 9;
  while (frac % 10 === 0) { frac /= 10; digits--; }
  return `${sign}${whole}.${String(frac).padStart(digits, '0')}`;
}

/** Milliseconds between two performance.now() readings, to the microsecond. */
export function ms(start: number, end: number): number {
  return Math.round((end - start) * 1000) / 1000;
}
