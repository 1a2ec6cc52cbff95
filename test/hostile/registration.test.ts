// Open registration is not free money: throttled per client address, starter credits only
// when the operator opts in, one workspace per mailbox however the address is spelled.
import t from 'tap';
import { addressUnit, normalizeEmail } from '../../src/accounts/registration.js';
import { clientAddress } from '../../src/server/handlers.js';
import { startGateway, tempDataDir } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

t.test('30 registrations back to back from one address: 5 accepted, then 429 with Retry-After', async (t) => {
  const gw = await startGateway({}, tempDataDir());
  t.teardown(() => gw.stop());
  const { call } = http(gw);
  const statuses: number[] = [];
  let last = null as Awaited<ReturnType<typeof call>> | null;
  for (let i = 0; i < 30; i++) {
    last = await call('/v1/register', '', { email: `user${i}@example.com` }, 'POST', { 'x-forwarded-for': `10.0.0.${i}` });
    statuses.push(last.status);
  }
  t.equal(statuses.filter((s) => s === 201).length, 5, 'a handful per hour (the default: 5)');
  t.same(statuses.slice(5), Array(25).fill(429), 'X-Forwarded-For is not trusted by default: spoofing it changes nothing');
  t.equal(last!.json.error.code, 'registration_throttled');
  t.ok(Number(last!.headers.get('retry-after')) > 3000, 'Retry-After until the oldest registration is an hour old');
  t.equal(last!.headers.get('x-gateway-limit-kind'), 'window', 'a 429 names its kind of limit, as a key\'s do');
  t.equal(last!.json.error.kind, 'window');
  t.equal(last!.json.error.retry_after_seconds, Number(last!.headers.get('retry-after')));
  const first = await call('/v1/register', '', { email: 'late@example.com' });
  t.equal(first.status, 429);
  t.equal((await call('/v1/register', '', { email: 'user0@example.com' })).status, 429, 'a taken mailbox is throttled too: existence is not free to probe');
});

t.test('starter credits are opt-in; mailboxes are compared in a normal form', async (t) => {
  const gw = await startGateway({}, tempDataDir(), { registration: { per_address_per_hour: 100 } });
  t.teardown(() => gw.stop());
  const { call } = http(gw);
  const reg = await call('/v1/register', '', { email: 'Ann.Lee@gmail.com' });
  t.equal(reg.status, 201);
  t.equal(reg.json.workspace.balance_usd, 0, 'no starter credits unless billing.starter_credits is set');
  for (const same of ['annlee@gmail.com', 'ann.lee+promo@gmail.com', 'A.N.N.L.E.E@googlemail.com', ' ANN.LEE@GMAIL.COM ']) {
    t.equal((await call('/v1/register', '', { email: same.trim() })).status, 409, `${same.trim()} is the same mailbox`);
  }
  t.equal((await call('/v1/register', '', { email: 'bob+x@example.com' })).status, 201);
  t.equal((await call('/v1/register', '', { email: 'bob@example.com' })).status, 409, 'plus-addressing is one mailbox anywhere');
  t.equal((await call('/v1/register', '', { email: 'b.o.b@example.com' })).status, 201, 'dots matter outside Gmail');
});

t.test('behind a trusted proxy, the client is the address the proxy saw', async (t) => {
  const gw = await startGateway({}, tempDataDir(), { trust_proxy_hops: 1, registration: { per_address_per_hour: 2 }, billing: { starter_credits: 0.5 } });
  t.teardown(() => gw.stop());
  const { call } = http(gw);
  const from = (ip: string, n: number) => call('/v1/register', '', { email: `p${n}@example.com` }, 'POST', { 'x-forwarded-for': `6.6.6.6, ${ip}` });
  t.equal((await from('198.51.100.1', 1)).status, 201);
  t.equal((await from('198.51.100.1', 2)).status, 201);
  t.equal((await from('198.51.100.1', 3)).status, 429, 'the third from that client');
  const other = await from('198.51.100.2', 4);
  t.equal(other.status, 201, 'another client is counted apart');
  t.equal(other.json.workspace.balance_usd, 0.5, 'starter credits when the operator sets them');
  t.equal((await from('2001:db8:1:2::1', 5)).status, 201);
  t.equal((await from('2001:db8:1:2:ffff::9', 6)).status, 201);
  t.equal((await from('2001:db8:1:2:aaaa::7', 7)).status, 429, 'an IPv6 client is its /64');
});

t.test('address and email normal forms', (t) => {
  t.equal(normalizeEmail('First.Last+tag@GoogleMail.com'), 'firstlast@gmail.com');
  t.equal(normalizeEmail('a.b+c@example.org'), 'a.b@example.org');
  t.equal(addressUnit('::ffff:127.0.0.1'), '127.0.0.1');
  t.equal(addressUnit('0000:0000:0000:0000:0000:ffff:7f00:0001'), '127.0.0.1', 'IPv4-mapped, in hex');
  t.equal(addressUnit('::ffff:7f00:1'), '127.0.0.1');
  t.equal(addressUnit('2001:db8::1'), '2001:db8:0:0::/64');
  t.equal(addressUnit('2001:0db8:0000:0001:0000:0000:0000:0001'), '2001:db8:0:1::/64');
  t.equal(clientAddress('10.0.0.1', '1.1.1.1, 2.2.2.2', 0), '10.0.0.1');
  t.equal(clientAddress('10.0.0.1', '1.1.1.1, 2.2.2.2', 1), '2.2.2.2');
  t.equal(clientAddress('10.0.0.1', '1.1.1.1, 2.2.2.2', 2), '1.1.1.1');
  t.equal(clientAddress('10.0.0.1', '2.2.2.2', 3), '2.2.2.2');
  t.end();
});
