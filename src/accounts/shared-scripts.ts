// The Lua scripts behind cluster mode's limits and credits (shared-limits.ts). Redis runs a
// script atomically, so a check and its count are one step for every replica: the same
// contract as limits.ts on one node (token buckets for rpm and tpm, rolling windows of 60
// slices, UTC day and month budgets, concurrency), on Redis's clock.
//
// Keys (P = the prefix):
//   P e            the epoch: a random id set when this Redis first held state. A Redis that
//                  restarts empty has none, and the workspaces' balances are seeded again
//                  from Postgres (shipper.ts), which is what makes the restart lose no money.
//   P w:<ws>       a workspace's live balance `b` and what requests in flight hold `h` (nano-USD).
//   P k:<key>      a key's counters: rpm bucket rl/ra, tpm bucket tl/ta, day dd/ds and month
//                  md/ms spend, budget reservations rv, requests in flight fl.
//   P k:<key>:w<s> a rolling window of s seconds: slice number → requests.
//   P h:<req>      what an admitted request holds (JSON), released once, at finish or when
//                  its lease runs out.
//   P leases       request → lease end (ms). A replica renews its requests' leases; those of a
//                  replica that died are released by the next admission after they end.
//   P a:<row>      a ledger row whose balance change is applied (kept an hour): applying is
//                  done once whichever of finish and the shipper gets there first.

const COMMON = `
local P = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(x) return string.format('%d', x) end
local function release(id)
  redis.call('ZREM', P .. 'leases', id)
  local raw = redis.call('GET', P .. 'h:' .. id)
  if not raw then return nil end
  redis.call('DEL', P .. 'h:' .. id)
  local h = cjson.decode(raw)
  if h.wn > 0 and redis.call('EXISTS', P .. 'w:' .. h.ws) == 1 then
    if redis.call('HINCRBY', P .. 'w:' .. h.ws, 'h', int(-h.wn)) < 0 then redis.call('HSET', P .. 'w:' .. h.ws, 'h', 0) end
  end
  for i, k in ipairs(h.k) do
    local kk = P .. 'k:' .. k
    if redis.call('HINCRBY', kk, 'fl', -1) < 0 then redis.call('HSET', kk, 'fl', 0) end
    if h.b[i] == 1 and h.kn > 0 then
      if redis.call('HINCRBY', kk, 'rv', int(-h.kn)) < 0 then redis.call('HSET', kk, 'rv', 0) end
    end
  end
  return h
end
local function refill(kk, lf, af, cap)
  local v = redis.call('HMGET', kk, lf, af)
  local level, at = tonumber(v[1]), tonumber(v[2])
  if not level then return cap end
  return math.min(cap, level + math.max(0, now - at) * cap / 60000)
end
`;

/**
 * ARGV: P, request id, lease ms, workspace ('' none), credit hold (nano; 0 none), tokens,
 * budget reservation (nano), UTC day, UTC month, ms to the next day, ms to the next month,
 * number of keys, then per key: id, rpm, tpm, day budget (nano), month budget (nano),
 * concurrency, number of windows, then (seconds, requests) per window (0: no such limit).
 *
 * Returns {'ok', epoch, balance, rpm level, tpm level, window requests, window used,
 * window reset ms} (key 0's state after counting), {'seed'} when the epoch or the
 * workspace's balance is missing, {'credits', available} or {'limit', key index, kind,
 * wait ms, window seconds, window requests, period}.
 */
export const ADMIT = `${COMMON}
local epoch = redis.call('GET', P .. 'e')
if not epoch then return {'seed'} end
local expired = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, 64)
for _, id in ipairs(expired) do release(id) end
local req, lease, ws, hold, tokens, nano = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local day, month, toDay, toMonth = ARGV[8], ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
local balance = 0
if hold > 0 then
  local w = redis.call('HMGET', P .. 'w:' .. ws, 'b', 'h')
  if not w[1] then return {'seed'} end
  balance = tonumber(w[1])
  local available = balance - (tonumber(w[2]) or 0)
  if available < hold then return {'credits', int(available)} end
end
local keys, idx = {}, 13
for i = 1, tonumber(ARGV[12]) do
  local k = { id = ARGV[idx], rpm = tonumber(ARGV[idx + 1]), tpm = tonumber(ARGV[idx + 2]), bd = tonumber(ARGV[idx + 3]),
    bm = tonumber(ARGV[idx + 4]), conc = tonumber(ARGV[idx + 5]), win = {} }
  local nw = tonumber(ARGV[idx + 6])
  idx = idx + 7
  for j = 1, nw do k.win[j] = { sec = tonumber(ARGV[idx]), req = tonumber(ARGV[idx + 1]) }; idx = idx + 2 end
  k.kk = P .. 'k:' .. k.id
  keys[i] = k
end
-- A window's live slices (older ones deleted): their total, and the wait until it is below its limit.
local function window(k, w)
  local wk = k.kk .. ':w' .. w.sec
  local width = w.sec * 1000 / 60
  local head = math.floor(now / width)
  local raw = redis.call('HGETALL', wk)
  local slices, total = {}, 0
  for j = 1, #raw, 2 do
    local s, c = tonumber(raw[j]), tonumber(raw[j + 1])
    if s <= head - 60 then redis.call('HDEL', wk, raw[j]) else slices[#slices + 1] = { s, c }; total = total + c end
  end
  local wait = w.sec * 1000
  if total >= w.req then
    table.sort(slices, function(a, b) return a[1] < b[1] end)
    local left = total
    for _, sc in ipairs(slices) do
      left = left - sc[2]
      if left < w.req then wait = (sc[1] + 60) * width - now; break end
    end
  end
  w.total, w.key, w.head, w.width = total, wk, head, width
  return total, wait
end
for i, k in ipairs(keys) do
  if k.rpm > 0 then
    local level = refill(k.kk, 'rl', 'ra', k.rpm)
    if level < 1 then return {'limit', i - 1, 'rpm', tostring((1 - level) * 60000 / k.rpm)} end
  end
  if k.tpm > 0 then
    local level = refill(k.kk, 'tl', 'ta', k.tpm)
    if level < 1 then return {'limit', i - 1, 'tpm', tostring((1 - level) * 60000 / k.tpm)} end
  end
  for _, w in ipairs(k.win) do
    local total, wait = window(k, w)
    if total >= w.req then return {'limit', i - 1, 'window', tostring(wait), w.sec, w.req} end
  end
  if k.bd > 0 or k.bm > 0 then
    local s = redis.call('HMGET', k.kk, 'dd', 'ds', 'md', 'ms', 'rv')
    local rv = tonumber(s[5]) or 0
    local spentDay = (s[1] == day) and tonumber(s[2]) or 0
    local spentMonth = (s[3] == month) and tonumber(s[4]) or 0
    if k.bd > 0 and spentDay + rv >= k.bd then return {'limit', i - 1, 'budget', tostring(toDay), 0, 0, 'day'} end
    if k.bm > 0 and spentMonth + rv >= k.bm then return {'limit', i - 1, 'budget', tostring(toMonth), 0, 0, 'month'} end
  end
  if k.conc > 0 and (tonumber(redis.call('HGET', k.kk, 'fl')) or 0) >= k.conc then return {'limit', i - 1, 'concurrency', '1000'} end
end
-- Every check passed: count on every key, and hold.
local out = {'ok', epoch, int(balance), '', '', '', '', ''}
local ids, budgeted, tpms = {}, {}, {}
for i, k in ipairs(keys) do
  if k.rpm > 0 then
    local level = refill(k.kk, 'rl', 'ra', k.rpm) - 1
    redis.call('HSET', k.kk, 'rl', tostring(level), 'ra', now)
    if i == 1 then out[4] = tostring(level) end
  end
  if k.tpm > 0 then
    local level = refill(k.kk, 'tl', 'ta', k.tpm) - tokens
    redis.call('HSET', k.kk, 'tl', tostring(level), 'ta', now)
    if i == 1 then out[5] = tostring(level) end
  end
  -- (each window as the check read it: a script runs alone, nothing changed it since)
  local best = nil
  for _, w in ipairs(k.win) do
    redis.call('HINCRBY', w.key, w.head, 1)
    redis.call('PEXPIRE', w.key, math.ceil(w.sec * 1000 + w.width))
    if i == 1 and (not best or w.req - w.total - 1 < best.req - best.total - 1) then best = w end
  end
  if best then
    -- Back to full once every slice has left the window, the newest being this one.
    out[6], out[7], out[8] = tostring(best.req), tostring(best.total + 1), tostring((best.head + 60) * best.width - now)
  end
  local b = 0
  if k.bd > 0 or k.bm > 0 then
    b = 1
    if nano > 0 then redis.call('HINCRBY', k.kk, 'rv', int(nano)) end
  end
  redis.call('HINCRBY', k.kk, 'fl', 1)
  -- Counters outlive the longest window and a month's budget; a key unused that long starts afresh.
  redis.call('PEXPIRE', k.kk, 40 * 86400000)
  ids[i], budgeted[i], tpms[i] = k.id, b, k.tpm
end
if hold > 0 then redis.call('HINCRBY', P .. 'w:' .. ws, 'h', int(hold)) end
redis.call('SET', P .. 'h:' .. req, cjson.encode({ ws = ws, wn = hold, k = ids, kn = nano, b = budgeted, tp = tpms, tk = tokens }))
redis.call('ZADD', P .. 'leases', now + lease, req)
return out
`;

/**
 * ARGV: P, request id, tokens used, charge (nano), workspace, balance change (nano), row
 * id, UTC day, UTC month, marker seconds, then the admission's key ids. Releases what the
 * request holds (unless its lease ran out and it was released then), gives back unused tpm,
 * counts the charge against each key's day and month, and applies the balance change once.
 * Returns {epoch or '', balance or ''}.
 */
export const FINISH = `${COMMON}
local req, used, charge, ws, delta, row = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), ARGV[7]
local day, month, ttl = ARGV[8], ARGV[9], tonumber(ARGV[10])
local h = release(req)
if h then
  for i, k in ipairs(h.k) do
    local cap = h.tp[i]
    if cap > 0 then
      local kk = P .. 'k:' .. k
      local level = math.min(cap, refill(kk, 'tl', 'ta', cap) + h.tk - used)
      redis.call('HSET', kk, 'tl', tostring(level), 'ta', now)
    end
  end
end
if charge > 0 then
  for i = 11, #ARGV do
    local kk = P .. 'k:' .. ARGV[i]
    local s = redis.call('HMGET', kk, 'dd', 'md')
    if s[1] ~= day then redis.call('HSET', kk, 'dd', day, 'ds', 0) end
    if s[2] ~= month then redis.call('HSET', kk, 'md', month, 'ms', 0) end
    redis.call('HINCRBY', kk, 'ds', int(charge))
    redis.call('HINCRBY', kk, 'ms', int(charge))
  end
end
local epoch = redis.call('GET', P .. 'e') or ''
local balance = ''
local wk = P .. 'w:' .. ws
if ws ~= '' and redis.call('EXISTS', wk) == 1 then
  if delta ~= 0 and redis.call('SET', P .. 'a:' .. row, 1, 'EX', ttl, 'NX') then redis.call('HINCRBY', wk, 'b', int(delta)) end
  balance = redis.call('HGET', wk, 'b')
end
return {epoch, balance}
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
local epoch = redis.call('GET', P .. 'e')
local applied = 0
for i = 3, #ARGV, 4 do
  local row, ws, delta, seeded = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local wk = P .. 'w:' .. ws
  if epoch and seeded == epoch and redis.call('EXISTS', wk) == 1 and redis.call('SET', P .. 'a:' .. row, 1, 'EX', ttl, 'NX') then
    redis.call('HINCRBY', wk, 'b', int(delta))
    applied = applied + 1
  end
end
return applied
`;

/**
 * ARGV: P, workspace ('' for the epoch alone), balance (nano), a new epoch. Run while Postgres holds the workspace's
 * row locked (shipper.ts): starts the epoch if this Redis has none, and sets the balance
 * unless it is there. Returns the epoch.
 */
export const SEED = `${COMMON}
local epoch = redis.call('GET', P .. 'e')
if not epoch then epoch = ARGV[4]; redis.call('SET', P .. 'e', epoch) end
if ARGV[2] ~= '' and redis.call('EXISTS', P .. 'w:' .. ARGV[2]) == 0 then redis.call('HSET', P .. 'w:' .. ARGV[2], 'b', ARGV[3], 'h', 0) end
return epoch
`;

/** ARGV: P, lease ms, then request ids: their leases are renewed (those already released are not brought back). */
export const RENEW = `${COMMON}
local lease = tonumber(ARGV[2])
for i = 3, #ARGV do redis.call('ZADD', P .. 'leases', 'XX', now + lease, ARGV[i]) end
return 0
`;
