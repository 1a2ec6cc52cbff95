// Self-registration's two guards: one workspace per mailbox (addresses are compared in a
// normal form, so `Ann.Lee+x@gmail.com` and `annlee@googlemail.com` are one person), and a
// throttle per client address (an IPv6 client is its /64: one host can hold all of it).

/** The form two addresses of the same mailbox share: lowercased, without a +tag, and for Gmail without dots. */
export function normalizeEmail(email: string): string {
  const trimmed = email.trim().toLowerCase();
  const at = trimmed.lastIndexOf('@');
  if (at <= 0) return trimmed;
  let local = trimmed.slice(0, at);
  let domain = trimmed.slice(at + 1);
  const plus = local.indexOf('+');
  if (plus > 0) local = local.slice(0, plus);
  if (domain === 'googlemail.com') domain = 'gmail.com';
  if (domain === 'gmail.com') local = local.replace(/\./g, '');
  return `${local}@${domain}`;
}

/** The unit a throttle counts: an IPv4 address, or the /64 of an IPv6 one (IPv4-mapped IPv6 is IPv4). */
export function addressUnit(address: string): string {
  const a = address.trim().toLowerCase();
  if (!a.includes(':')) return a;
  // Expand '::' (and a dotted IPv4 tail) into eight groups.
  let text = a;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [b0, b1, b2, b3] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = (tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right])
    .map((g) => parseInt(g || '0', 16) || 0);
  if (groups.length === 8 && groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`;
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/** At most `perHour` events per address unit in any rolling hour. Bounded: the oldest units are forgotten first. */
export class AddressThrottle {
  private readonly seen = new Map<string, number[]>();

  constructor(private readonly perHour: number, private readonly maxUnits = 100_000) {}

  /** Counts one event for `address`; null when allowed, else the milliseconds until the next would be. */
  take(address: string, now = Date.now()): number | null {
    const unit = addressUnit(address);
    const hourAgo = now - 3_600_000;
    const times = (this.seen.get(unit) ?? []).filter((t) => t > hourAgo);
    if (times.length >= this.perHour) {
      this.seen.set(unit, times);
      return times[0]! - hourAgo;
    }
    times.push(now);
    this.seen.delete(unit); // re-inserted last: the Map's order is least recently used first
    this.seen.set(unit, times);
    if (this.seen.size > this.maxUnits) this.seen.delete(this.seen.keys().next().value!);
    return null;
  }
}
