package store

import "github.com/redis/go-redis/v9"

// recordScript runs recordLua. A Script is only its source and SHA, so one
// value serves every Store.
var recordScript = redis.NewScript(recordLua)

// recordLua adds one connector's share of a batch of poll reports, summed by
// RecordReports, to its metrics, latency window, recent reports and rollups.
// Like the lease scripts it touches only the keys of one connector (passed
// in KEYS) and sticks to commands miniredis implements too: HMGET HSET LPUSH
// LTRIM PEXPIRE PEXPIREAT. Numbers are written with %.0f: Lua numbers are
// doubles, which tostring would print as 1e+15 past 14 digits.
//
//	KEYS: metrics latency recent, then one rollup hash per rollup entry below
//	ARGV: [1] connector type
//	      [2..8] polls successes failures skipped items_fetched items_published
//	             items_failed to add
//	      [9..12] last_poll last_success last_error_at (unix ms, "" when none in
//	              the batch) last_error
//	      [13..17] n_latency n_recent latency_stop recent_stop recent_ttl_ms
//	      then n_latency durations in ms and n_recent binary PollReports, oldest
//	      first (LPUSH leaves the newest at the head)
//	      then per rollup hash: expire_at_ms n_buckets, then n_buckets times
//	      bucket successes failures skipped fetched published failed
//	      latency_sum_us latency_max_us
//	-> 1
//
// A bucket is stored as "s,f,k,fetched,published,failed,sum_us,max_us" in a
// field named by its index in the hash's span. A hash gets its absolute
// expiry (end of span + retention) when a bucket is first created in it;
// one whose expiry has already passed is deleted at once, so reports older
// than the retention leave nothing behind.
const recordLua = `
local function num(v) return string.format('%.0f', v) end

local metrics = KEYS[1]
local cur = redis.call('HMGET', metrics, 'polls', 'successes', 'failures', 'skipped',
  'items_fetched', 'items_published', 'items_failed', 'last_poll', 'last_success', 'last_error_at')
local counters = {'polls', 'successes', 'failures', 'skipped', 'items_fetched', 'items_published', 'items_failed'}
local set = {'type', ARGV[1]}
for i = 1, 7 do
  local add = tonumber(ARGV[i + 1])
  if add ~= 0 then
    set[#set + 1] = counters[i]
    set[#set + 1] = num((tonumber(cur[i]) or 0) + add)
  end
end
local function later(i, at)
  return at ~= '' and (not cur[i] or tonumber(at) >= tonumber(cur[i]))
end
if later(8, ARGV[9]) then
  set[#set + 1] = 'last_poll'
  set[#set + 1] = ARGV[9]
end
if later(9, ARGV[10]) then
  set[#set + 1] = 'last_success'
  set[#set + 1] = ARGV[10]
end
if later(10, ARGV[11]) then
  set[#set + 1] = 'last_error_at'
  set[#set + 1] = ARGV[11]
  set[#set + 1] = 'last_error'
  set[#set + 1] = ARGV[12]
end
redis.call('HSET', metrics, unpack(set))

local nlat, nrecent = tonumber(ARGV[13]), tonumber(ARGV[14])
local a = 18
if nlat > 0 then
  redis.call('LPUSH', KEYS[2], unpack(ARGV, a, a + nlat - 1))
  redis.call('LTRIM', KEYS[2], 0, ARGV[15])
end
a = a + nlat
redis.call('LPUSH', KEYS[3], unpack(ARGV, a, a + nrecent - 1))
redis.call('LTRIM', KEYS[3], 0, ARGV[16])
redis.call('PEXPIRE', KEYS[3], ARGV[17])
a = a + nrecent

for k = 4, #KEYS do
  local key, expireAt, n = KEYS[k], ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  local fields = {}
  for j = 1, n do fields[j] = ARGV[a + (j - 1) * 9] end
  local old = redis.call('HMGET', key, unpack(fields))
  local put, fresh = {}, false
  for j = 1, n do
    local b = a + (j - 1) * 9
    local v = {}
    for i = 1, 8 do v[i] = tonumber(ARGV[b + i]) end
    if old[j] then
      local i = 1
      for x in string.gmatch(old[j], '[^,]+') do
        if i == 8 then v[8] = math.max(v[8], tonumber(x)) else v[i] = v[i] + tonumber(x) end
        i = i + 1
      end
    else
      fresh = true
    end
    put[#put + 1] = fields[j]
    put[#put + 1] = string.format('%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f', v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8])
  end
  redis.call('HSET', key, unpack(put))
  if fresh then
    redis.call('PEXPIREAT', key, expireAt)
  end
  a = a + n * 9
end
return 1
`
