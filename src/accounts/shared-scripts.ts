// The Lua scripts behind cluster mode's limits and credits (shared-limits.ts). Redis runs a
// script atomically, so a check and its count are one step for every replica: the same
// contract as limits.ts on one node (token buckets for rpm and tpm, rolling windows of 60
// slices, UTC day and month budgets, concurrency), on Redis's clock.
//
// Keys (P = the prefix):
//   P e            the epoch: a random id, new whenever this Redis is not the server run that
//   P run          held the state before (`P run`: its run_id): a restart, empty or from a
//                  snapshot, or a failover to a replica. State of another epoch is not trusted:
//                  each workspace's balance and each key's counters are seeded again from
//                  Postgres (shipper.ts) as they are next used, which is what makes a Redis that
//                  lost writes lose no money and give no quota.
//   P w:<ws>       a workspace's live balance `b`, what requests in flight hold `h` (nano-USD),
//                  and the epoch `ep` it was seeded in.
//   P k:<key>      a key's counters: rpm bucket rl/ra, tpm bucket tl/ta, day dd/ds and month
//                  md/ms spend, budget reservations rv, requests in flight fl; epoch `ep`;
//                  layout `v` (LAYOUT); the UTC day its expiry was last pushed back `x`.
//   P k:<key>:s<s> a rolling window of s seconds: slice number → requests, with their total `t`,
//                  the lowest slice that may still count `lo` and the newest `hi`, so a check
//                  reads three fields however many slices are live (the layout before, `:w<s>`,
//                  was read whole: 60 live slices cost ~60 µs of Redis CPU per admission).
//   P h:<req>      what an admitted request holds (JSON: epoch, workspace, credit hold, keys,
//                  budget reservation, which keys have budgets, tokens), released once, at
//                  finish (which is told again what the request holds: nothing is decoded)
//                  or when its lease runs out (of another epoch: dropped, not released). The
//                  schema is the one replicas of earlier versions read, so while versions are
//                  mixed, whichever replica sweeps a lapsed lease releases its holds.
//   P leases       request → lease end (ms). A replica renews its requests' leases; those of a
//                  replica that died are released by the next admission after they end.
//   P a:<ep>:<row> a ledger row whose balance change is applied in epoch ep: applying is done
//                  once, by whichever of finish and the shipper gets there first. The shipper
//                  deletes the marker once the row is in Postgres and its outbox entry gone;
//                  a marker left behind (a replica killed in between) expires after a week.
//   P r:<req>      a request refunded (a refund is claimed here first, once for the cluster):
//                  pending with its claimant's token until the refund row is committed, then made.

/** What every script starts with (exported for the tests of the window functions, live and count). */
export const COMMON = `
local P = ARGV[1]
local EP = redis.call('GET', P .. 'e')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(x) return string.format('%d', x) end
-- The layout of a key's counters and windows (v in P k:<key>): a key counted in another, by
-- replicas of an earlier version, is seeded again from Postgres as it is next used.
local LAYOUT = '2'
-- A key's counters in one read (a table of field → string), written back in one HSET.
local function state(kk)
  local raw = redis.call('HGETALL', kk)
  local s = {}
  for j = 1, #raw, 2 do s[raw[j]] = raw[j + 1] end
  return s
end
-- A bucket's level refilled to now (full when it was never used).
local function level(s, lf, af, cap)
  local l, a = tonumber(s[lf]), tonumber(s[af])
  if not l then return cap end
  return math.min(cap, l + math.max(0, now - a) * cap / 60000)
end
-- What an admission held, given back: its credit hold on the workspace (once the workspace
-- is of this epoch), and on a key's state s its slot and its budget reservation.
local function unhold(ws, wn, seeded)
  if seeded == nil then seeded = redis.call('HGET', P .. 'w:' .. ws, 'ep') == EP end
  if wn > 0 and seeded then
    if redis.call('HINCRBY', P .. 'w:' .. ws, 'h', int(-wn)) < 0 then redis.call('HSET', P .. 'w:' .. ws, 'h', 0) end
  end
end
local function unslot(s, budgeted, kn)
  s.fl = int(math.max(0, (tonumber(s.fl) or 0) - 1))
  if tonumber(budgeted) == 1 and kn > 0 then s.rv = int(math.max(0, (tonumber(s.rv) or 0) - kn)) end
end
-- What request id holds, released because its lease ran out (nothing: released already, by
-- finish). A hold of an earlier epoch held counters that were seeded again since: dropped.
local function expire(id)
  redis.call('ZREM', P .. 'leases', id)
  local raw = redis.call('GET', P .. 'h:' .. id)
  if not raw then return end
  redis.call('DEL', P .. 'h:' .. id)
  local h = cjson.decode(raw)
  if h.ep ~= EP then return end
  unhold(h.ws, h.wn)
  for i, k in ipairs(h.k) do
    local kk = P .. 'k:' .. k
    local s = state(kk)
    unslot(s, h.b[i], h.kn)
    redis.call('HSET', kk, 'fl', s.fl, 'rv', s.rv or 0)
  end
end
-- A rolling window's live slices (P k:<key>:s<seconds>): slices at or below cut have left
-- it and are dropped, the total kept without them. Returns total, lo, hi (nil, nil: empty).
-- (hi - lo stays under 60: lo moves up past cut before any slice above head - 60 is added.)
local function live(wk, cut)
  local m = redis.call('HMGET', wk, 't', 'lo', 'hi')
  local total, lo, hi = tonumber(m[1]) or 0, tonumber(m[2]), tonumber(m[3])
  if not hi or not lo then return 0, nil, nil end
  if hi <= cut then redis.call('DEL', wk) return 0, nil, nil end
  if lo <= cut then
    for s = lo, cut do
      local c = redis.call('HGET', wk, s)
      if c then total = total - tonumber(c); redis.call('HDEL', wk, s) end
    end
    lo = cut + 1
    redis.call('HSET', wk, 't', total, 'lo', lo)
  end
  return total, lo, hi
end
-- Counts n requests in slice s (above the window's cut) of a window whose live slices are
-- total, lo, hi (from live); the hash lives until its newest slice has left the window.
local function count(wk, s, n, total, lo, hi, width)
  redis.call('HINCRBY', wk, s, n)
  if hi and s >= lo and s <= hi then redis.call('HINCRBY', wk, 't', n) return end
  local top = (hi and hi > s) and hi or s
  redis.call('HSET', wk, 't', total + n, 'lo', (lo and lo < s) and lo or s, 'hi', top)
  if top ~= hi then redis.call('PEXPIREAT', wk, math.ceil((top + 61) * width)) end
end
`;

/**
 * ARGV: P, request id, lease ms, workspace ('' none), credit hold (nano; 0 none), tokens,
 * budget reservation (nano), UTC day, UTC month, ms to the next day, ms to the next month,
 * what it holds as JSON (the hold record: {ws, wn: credit hold, k: key ids, kn: budget
 * reservation, b: per key 1 when it has a budget, tk: tokens}), number of keys, then per
 * key: id, rpm, tpm, day budget (nano), month budget (nano), concurrency, number of windows,
 * then (seconds, requests) per window (0: no such limit); then, optionally, the deadline:
 * Redis's time (ms) after which the replica has given up waiting for the answer.
 *
 * Returns {'late'} past the deadline, having counted and held nothing (a Redis that stalled
 * and resumed runs the admissions queued meanwhile, which their replicas answered 503),
 * {'ok', epoch, balance, rpm level, tpm level, window requests, window used,
 * window reset ms} (key 0's state after counting), {'seed'} when the epoch or the
 * workspace's balance is missing, {'seedkeys', epoch, key index…} when keys with budgets or
 * windows need their counts from Postgres (SEED_KEY), {'credits', available} or {'limit',
 * key index, kind, wait ms, window seconds, window requests, period}.
 */
export const ADMIT = `${COMMON}
local epoch = EP
if not epoch then return {'seed'} end
local expired = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, 64)
for _, id in ipairs(expired) do expire(id) end
local req, lease, ws, hold, tokens, nano = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local day, month, toDay, toMonth = ARGV[8], ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
local balance = 0
if hold > 0 then
  local w = redis.call('HMGET', P .. 'w:' .. ws, 'b', 'h', 'ep')
  if not w[1] or w[3] ~= epoch then return {'seed'} end
  balance = tonumber(w[1])
  local available = balance - (tonumber(w[2]) or 0)
  if available < hold then return {'credits', int(available)} end
end
local keys, idx = {}, 14
for i = 1, tonumber(ARGV[13]) do
  local k = { id = ARGV[idx], rpm = tonumber(ARGV[idx + 1]), tpm = tonumber(ARGV[idx + 2]), bd = tonumber(ARGV[idx + 3]),
    bm = tonumber(ARGV[idx + 4]), conc = tonumber(ARGV[idx + 5]), win = {} }
  local nw = tonumber(ARGV[idx + 6])
  idx = idx + 7
  for j = 1, nw do k.win[j] = { sec = tonumber(ARGV[idx]), req = tonumber(ARGV[idx + 1]) }; idx = idx + 2 end
  k.kk = P .. 'k:' .. k.id
  keys[i] = k
end
local deadline = tonumber(ARGV[idx])
if deadline and now > deadline then return {'late'} end
-- A window's live total, and the wait until it is below its limit (the oldest slices leaving).
local function window(k, w)
  local wk = k.kk .. ':s' .. w.sec
  local width = w.sec * 1000 / 60
  local head = math.floor(now / width)
  local total, lo, hi = live(wk, head - 60)
  local wait = w.sec * 1000
  if total >= w.req and lo then
    local slices = {}
    for s = lo, hi do slices[#slices + 1] = s end
    local counts = redis.call('HMGET', wk, unpack(slices))
    local left = total
    for j = 1, #slices do
      left = left - (tonumber(counts[j]) or 0)
      if left < w.req then wait = (slices[j] + 60) * width - now; break end
    end
  end
  w.total, w.key, w.head, w.width, w.lo, w.hi = total, wk, head, width, lo, hi
  return total, wait
end
-- A key this epoch has not seeded yet (a Redis restarted or failed over, or the key's first
-- use) is seeded first: its budgets and windows must not start again from nothing (or from
-- a stale snapshot), nor its in-flight count from one.
local unseeded = {}
for i, k in ipairs(keys) do
  k.s = state(k.kk)
  if k.s.ep ~= epoch or k.s.v ~= LAYOUT then unseeded[#unseeded + 1] = i - 1 end
end
if #unseeded > 0 then return {'seedkeys', epoch, unpack(unseeded)} end
for i, k in ipairs(keys) do
  local s = k.s
  if k.rpm > 0 then
    k.rl = level(s, 'rl', 'ra', k.rpm)
    if k.rl < 1 then return {'limit', i - 1, 'rpm', tostring((1 - k.rl) * 60000 / k.rpm)} end
  end
  if k.tpm > 0 then
    k.tl = level(s, 'tl', 'ta', k.tpm)
    if k.tl < 1 then return {'limit', i - 1, 'tpm', tostring((1 - k.tl) * 60000 / k.tpm)} end
  end
  for _, w in ipairs(k.win) do
    local total, wait = window(k, w)
    if total >= w.req then return {'limit', i - 1, 'window', tostring(wait), w.sec, w.req} end
  end
  if k.bd > 0 or k.bm > 0 then
    local rv = tonumber(s.rv) or 0
    local spentDay = (s.dd == day) and tonumber(s.ds) or 0
    local spentMonth = (s.md == month) and tonumber(s.ms) or 0
    if k.bd > 0 and spentDay + rv >= k.bd then return {'limit', i - 1, 'budget', tostring(toDay), 0, 0, 'day'} end
    if k.bm > 0 and spentMonth + rv >= k.bm then return {'limit', i - 1, 'budget', tostring(toMonth), 0, 0, 'month'} end
  end
  if k.conc > 0 and (tonumber(s.fl) or 0) >= k.conc then return {'limit', i - 1, 'concurrency', '1000'} end
end
-- Every check passed: count on every key (as the checks read them: a script runs alone), and hold.
local out = {'ok', epoch, int(balance), '', '', '', '', ''}
for i, k in ipairs(keys) do
  local set = {'fl', int((tonumber(k.s.fl) or 0) + 1)}
  if k.rpm > 0 then
    set[#set + 1] = 'rl'; set[#set + 1] = tostring(k.rl - 1); set[#set + 1] = 'ra'; set[#set + 1] = now
    if i == 1 then out[4] = tostring(k.rl - 1) end
  end
  if k.tpm > 0 then
    set[#set + 1] = 'tl'; set[#set + 1] = tostring(k.tl - tokens); set[#set + 1] = 'ta'; set[#set + 1] = now
    if i == 1 then out[5] = tostring(k.tl - tokens) end
  end
  local best = nil
  for _, w in ipairs(k.win) do
    count(w.key, w.head, 1, w.total, w.lo, w.hi, w.width)
    if i == 1 and (not best or w.req - w.total - 1 < best.req - best.total - 1) then best = w end
  end
  if best then
    -- Back to full once every slice has left the window, the newest being this one.
    out[6], out[7], out[8] = tostring(best.req), tostring(best.total + 1), tostring((best.head + 60) * best.width - now)
  end
  if k.bd > 0 or k.bm > 0 then
    set[#set + 1] = 'rv'; set[#set + 1] = int((tonumber(k.s.rv) or 0) + nano)
  end
  -- Counters outlive the longest window and a month's budget; a key unused that long starts
  -- afresh (its expiry is pushed back once a day).
  if k.s.x ~= day then set[#set + 1] = 'x'; set[#set + 1] = day end
  redis.call('HSET', k.kk, unpack(set))
  if k.s.x ~= day then redis.call('PEXPIRE', k.kk, 40 * 86400000) end
end
if hold > 0 then redis.call('HINCRBY', P .. 'w:' .. ws, 'h', int(hold)) end
-- (the replica's JSON with the epoch put first: '{"ep":"…",' and the rest of it)
redis.call('SET', P .. 'h:' .. req, '{"ep":"' .. epoch .. '",' .. string.sub(ARGV[12], 2))
redis.call('ZADD', P .. 'leases', now + lease, req)
return out
`;

/**
 * ARGV: P, request id, tokens used, charge (nano), workspace, balance change (nano), row id,
 * UTC day, UTC month, marker seconds, the admission's epoch, when it was admitted (ms), what
 * it held (credit hold, budget reservation, tokens: nano, nano, tokens), then per key of the
 * admission: id, rpm, tpm, 1 when it has a budget, number of windows, their seconds.
 * Releases what the request holds (unless its lease ran out and it was released then: its
 * hold record is gone), gives back unused tpm, counts the charge against each key's day and
 * month, and applies the balance change once. A request admitted in an earlier epoch (Redis
 * restarted meanwhile) is counted again in the windows and the rpm and tpm buckets of keys
 * seeded since, which could not see it: its row was not in Postgres yet.
 * Returns {epoch or '', balance or ''}.
 */
export const FINISH = `${COMMON}
local req, used, charge, ws, delta, row = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), ARGV[7]
local day, month, ttl, admittedIn, admittedAt = ARGV[8], ARGV[9], tonumber(ARGV[10]), ARGV[11], tonumber(ARGV[12])
local wn, kn, tk = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
local wk = P .. 'w:' .. ws
-- (the workspace's balance is of this epoch)
local seeded = ws ~= '' and EP ~= false and redis.call('HGET', wk, 'ep') == EP
-- Held still (its lease did not run out), and in this epoch (else its counters were seeded since)?
local held = false
if req ~= '' then
  redis.call('ZREM', P .. 'leases', req)
  held = redis.call('DEL', P .. 'h:' .. req) == 1 and admittedIn == EP
  if held then unhold(ws, wn, seeded) end
end
local i = 16
while i <= #ARGV do
  local k, rpm, tpm, budgeted, nw = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), ARGV[i + 3], tonumber(ARGV[i + 4])
  local kk = P .. 'k:' .. k
  local s = state(kk)
  if s.ep == EP then
    local set = {}
    if held then
      unslot(s, budgeted, kn)
      set = {'fl', s.fl, 'rv', s.rv or 0}
      if tpm > 0 then
        -- What was reserved and not used goes back, never past a full bucket.
        set[#set + 1] = 'tl'; set[#set + 1] = tostring(math.min(tpm, level(s, 'tl', 'ta', tpm) + tk - used)); set[#set + 1] = 'ta'; set[#set + 1] = now
      end
    end
    if charge > 0 then
      set[#set + 1] = 'dd'; set[#set + 1] = day; set[#set + 1] = 'ds'; set[#set + 1] = int(((s.dd == day) and tonumber(s.ds) or 0) + charge)
      set[#set + 1] = 'md'; set[#set + 1] = month; set[#set + 1] = 'ms'; set[#set + 1] = int(((s.md == month) and tonumber(s.ms) or 0) + charge)
    end
    if admittedIn ~= EP then
      -- (the buckets pay now what the request took then: they refill from here)
      if rpm > 0 then set[#set + 1] = 'rl'; set[#set + 1] = tostring(level(s, 'rl', 'ra', rpm) - 1); set[#set + 1] = 'ra'; set[#set + 1] = now end
      if tpm > 0 then set[#set + 1] = 'tl'; set[#set + 1] = tostring(level(s, 'tl', 'ta', tpm) - used); set[#set + 1] = 'ta'; set[#set + 1] = now end
    end
    if #set > 0 then redis.call('HSET', kk, unpack(set)) end
    if admittedIn ~= EP then
      for j = 1, nw do
        local sec = tonumber(ARGV[i + 4 + j])
        local width = sec * 1000 / 60
        local slice = math.floor(admittedAt / width)
        local cut = math.floor(now / width) - 60
        if slice > cut then
          local sk = kk .. ':s' .. sec
          local total, lo, hi = live(sk, cut)
          count(sk, slice, 1, total, lo, hi, width)
        end
      end
    end
  end
  i = i + 5 + nw
end
local balance = ''
if seeded then
  if delta ~= 0 and redis.call('SET', P .. 'a:' .. EP .. ':' .. row, 1, 'EX', ttl, 'NX') then balance = int(redis.call('HINCRBY', wk, 'b', int(delta)))
  else balance = redis.call('HGET', wk, 'b') end
end
return {EP or '', balance}
`;

/**
 * ARGV: P, marker seconds, then (row id, workspace, balance change, epoch) per row: the
 * shipper's pass after the rows are in Postgres. `epoch`: the one the workspace had been
 * seeded in when Postgres took the row. A row is applied when this Redis is still of that
 * epoch (else its balance was seeded after the row was in Postgres, row included) and no
 * marker says finish applied it already. Returns how many were applied.
 */
export const APPLY = `${COMMON}
local ttl = tonumber(ARGV[2])
local applied = 0
for i = 3, #ARGV, 4 do
  local row, ws, delta, seeded = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local wk = P .. 'w:' .. ws
  if EP and seeded == EP and redis.call('HGET', wk, 'ep') == EP and redis.call('SET', P .. 'a:' .. EP .. ':' .. row, 1, 'EX', ttl, 'NX') then
    redis.call('HINCRBY', wk, 'b', int(delta))
    applied = applied + 1
  end
end
return applied
`;

/** ARGV: P, then row ids: their markers (of this epoch) are no longer needed (the shipper's rows are in Postgres, out of its outbox). */
export const FORGET = `${COMMON}
if not EP then return 0 end
for i = 2, #ARGV do redis.call('DEL', P .. 'a:' .. EP .. ':' .. ARGV[i]) end
return 0
`;

/**
 * ARGV: P, workspace ('' for the epoch alone), balance (nano), a new epoch. Run while Postgres holds the workspace's
 * row locked (shipper.ts): starts the epoch if this Redis has none, and sets the balance
 * unless it is there. Returns the epoch.
 */
export const SEED = `${COMMON}
local epoch = EP
if not epoch then epoch = ARGV[4]; redis.call('SET', P .. 'e', epoch) end
local wk = P .. 'w:' .. ARGV[2]
if ARGV[2] ~= '' and redis.call('HGET', wk, 'ep') ~= epoch then redis.call('HSET', wk, 'b', ARGV[3], 'h', 0, 'ep', epoch) end
return epoch
`;

/**
 * ARGV: P, this server's run_id, a new epoch. Run by each replica as it connects: when the
 * state's epoch was set by another server run (a restart, empty or from a snapshot, or a
 * failover), a new epoch starts, and nothing of the old one is trusted. Returns the epoch.
 */
export const RUN = `${COMMON}
if redis.call('GET', P .. 'run') ~= ARGV[2] or not EP then
  redis.call('SET', P .. 'run', ARGV[2])
  redis.call('SET', P .. 'e', ARGV[3])
  return ARGV[3]
end
return EP
`;

/**
 * ARGV: P, an address unit (registration.ts), events allowed per rolling hour, a member id
 * (unique). Counts one registration from that unit for the whole cluster (a sorted set of
 * times, on Redis's clock), unless the hour holds that many: returns -1 when counted, else the
 * milliseconds until one more would be.
 */
export const REGISTER = `${COMMON}
local key, per = P .. 'reg:' .. ARGV[2], tonumber(ARGV[3])
local hourAgo = now - 3600000
redis.call('ZREMRANGEBYSCORE', key, '-inf', hourAgo)
if redis.call('ZCARD', key) >= per then
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(first[2]) - hourAgo)
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, 3600000)
return -1
`;

/**
 * ARGV: P, request id (a refund's), a token, ms after which a claim still pending is stale.
 * A claim is pending (`p:<token>:<when>`) until its refund row is committed, then
 * made (`d`; `1` from earlier versions). Returns 1: claimed (a stale pending claim, whose
 * replica died between the claim and the row, is taken over: the row's id is the request's,
 * so its balance change applies once whichever row ships); 0: made already (409); 2: another
 * replica is making it now (retry).
 */
export const CLAIM = `${COMMON}
local k = P .. 'r:' .. ARGV[2]
local v = redis.call('GET', k)
if v then
  local at = string.match(v, '^p:[^:]+:(%d+)$')
  if not at then return 0 end
  if now - tonumber(at) < tonumber(ARGV[4]) then return 2 end
end
redis.call('SET', k, 'p:' .. ARGV[3] .. ':' .. now, 'EX', 90 * 86400)
return 1
`;

/**
 * ARGV: P, request id, token, 'made' or 'dropped': the claim, while it is that token's, made
 * (its refund row is committed) or dropped (the refund was not made after all).
 */
export const SETTLE_CLAIM = `${COMMON}
local k = P .. 'r:' .. ARGV[2]
local v = redis.call('GET', k)
local mine = 'p:' .. ARGV[3] .. ':'
if not v or string.sub(v, 1, #mine) ~= mine then return 0 end
if ARGV[4] == 'made' then redis.call('SET', k, 'd', 'KEEPTTL') else redis.call('DEL', k) end
return 1
`;

/**
 * ARGV: P, epoch, key id, UTC day, spent that day (nano), UTC month, spent that month, the
 * rpm bucket's level and when ('' '': full), the tpm bucket's likewise, then per window:
 * seconds, number of slices, then (slice, requests) per slice. A key's spend, buckets and
 * windows as Postgres's rows say (SharedLimits.seedKeys), unless this Redis is of another
 * epoch by now or another replica seeded the key first. Returns 1 when it seeded.
 */
export const SEED_KEY = `${COMMON}
local epoch = EP
if epoch ~= ARGV[2] then return 0 end
local kk = P .. 'k:' .. ARGV[3]
local was = redis.call('HMGET', kk, 'ep', 'v', 'fl', 'rv')
if was[1] == epoch and was[2] == LAYOUT then return 0 end
-- (what an earlier epoch left, from a snapshot, is not trusted: buckets full, nothing in flight)
redis.call('DEL', kk)
redis.call('HSET', kk, 'ep', epoch, 'v', LAYOUT, 'dd', ARGV[4], 'ds', ARGV[5], 'md', ARGV[6], 'ms', ARGV[7])
-- (this epoch, counted in the layout before: its requests in flight still hold their slots and reservations)
if was[1] == epoch then redis.call('HSET', kk, 'fl', was[3] or 0, 'rv', was[4] or 0) end
if ARGV[8] ~= '' then redis.call('HSET', kk, 'rl', ARGV[8], 'ra', ARGV[9]) end
if ARGV[10] ~= '' then redis.call('HSET', kk, 'tl', ARGV[10], 'ta', ARGV[11]) end
redis.call('PEXPIRE', kk, 40 * 86400000)
local i = 12
while i <= #ARGV do
  local sec, n = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local wk = kk .. ':s' .. sec
  local width = sec * 1000 / 60
  local cut = math.floor(now / width) - 60
  redis.call('DEL', wk)
  local total, lo, hi = 0, nil, nil
  for j = 0, n - 1 do
    local slice, c = tonumber(ARGV[i + 2 + 2 * j]), tonumber(ARGV[i + 3 + 2 * j])
    -- (a slice that has left the window by now is not brought back)
    if slice > cut and c > 0 then
      redis.call('HINCRBY', wk, slice, c)
      total, lo, hi = total + c, math.min(lo or slice, slice), math.max(hi or slice, slice)
    end
  end
  if hi then
    redis.call('HSET', wk, 't', total, 'lo', lo, 'hi', hi)
    redis.call('PEXPIREAT', wk, math.ceil((hi + 61) * width))
  end
  i = i + 2 + 2 * n
end
return 1
`;

/**
 * ARGV: P, then request ids whose admission this replica gave up on (its command failed or
 * timed out: Redis may still have run it, and answered too late to be read): what each
 * holds is released now, as if its lease had run out (nothing, for one never admitted).
 */
export const ABANDON = `${COMMON}
for i = 2, #ARGV do expire(ARGV[i]) end
return 0
`;

/** ARGV: P, lease ms, then request ids: their leases are renewed (those already released are not brought back). */
export const RENEW = `${COMMON}
local lease = tonumber(ARGV[2])
for i = 3, #ARGV do redis.call('ZADD', P .. 'leases', 'XX', now + lease, ARGV[i]) end
return 0
`;
