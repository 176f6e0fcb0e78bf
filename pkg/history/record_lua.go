package history

import "github.com/redis/go-redis/v9"

// recordScript runs recordLua. A Script is only its source and SHA, so one
// value serves every Store.
var recordScript = redis.NewScript(recordLua)

// recordLua adds one connector's share of a batch of poll reports, summed by
// RecordReports, to its metrics, latency window, recent reports and rollups.
// Like package store's scripts it touches only the keys of one connector and sticks
// to commands miniredis implements too: HMGET HSET HGETALL LPUSH LTRIM
// PEXPIRE PEXPIREAT.
//
// With thousands of connectors every redis.call costs microseconds (each
// touches cold keys), so the script makes as few as it can: a connector
// polled every minute costs four, HMGET and HSET of the metrics, LPUSH of the
// report, HSET of a new minute bucket. The metrics hash carries what lets
// the rest go without a read: the counters (added up in Lua), the latency
// window (a field of packed durations, prepended and cut without parsing)
// and rollup_minute, the start (unix s) of the latest minute bucket written,
// so that a bucket past it is known to be new. The recent list is trimmed
// once it is trim_slack past recent_kept. Times, all 13-digit unix ms,
// compare as strings. Numbers Lua writes go through %.0f: Lua numbers are
// doubles, which tostring prints as 1e+15 past 14 digits.
//
// Hour buckets are not written on every flush: the hour of rollup_minute is
// the connector's open hour, whose minute hash has no expiry and which has
// no hour bucket yet. The first report of a later hour closes it: its minute
// buckets are summed into its hour bucket, and its minute hash gets its
// expiry. A late report, for an hour before the open one, goes to both its
// minute and its hour bucket. Rollups adds the open hour to the hour buckets
// it reads. The open hour's keys are not in KEYS (only Redis knows which hour
// is open): the script names them from key_base, the connector's hash-tagged
// prefix, so they are in the same slot as KEYS.
//
//	KEYS: metrics recent, then per hour of the batch, oldest first: its minute
//	      hash and the hour hash of its day
//	ARGV: [1] connector type
//	      [2..8] polls successes failures skipped items_fetched items_published
//	             items_failed to add
//	      [9..12] last_poll last_success last_error_at (unix ms, "" when none in
//	              the batch) last_error
//	      [13..14] durations to prepend to the latency window (packed, newest
//	               first) and the window's length in bytes
//	      [15..18] n_recent recent_kept trim_slack recent_ttl_ms
//	      [19..21] minute_retention_ms hour_retention_ms key_base
//	      then n_recent binary PollReports, oldest first (LPUSH leaves the
//	      newest at the head)
//	      then per hour of the batch: hour_start_s hour_sums n_minutes, then
//	      n_minutes pairs (minute index in the hour, minute_sums), in order
//	-> 1
//
// Sums are "successes,failures,skipped,fetched,published,failed,
// latency_sum_us,latency_max_us"; a bucket already stored is added to
// (latency_max: the larger). A rollup hash expires retention after its span
// ends (PEXPIREAT); one whose expiry has passed is deleted at once, so
// reports older than the retention leave nothing behind.
const recordLua = `
local function num(v) return string.format('%.0f', v) end
local pattern = '^(%d+),(%d+),(%d+),(%d+),(%d+),(%d+),(%d+),(%d+)$'
local function parse(sums)
  local v = {string.match(sums, pattern)}
  for i = 1, 8 do v[i] = tonumber(v[i]) end
  return v
end
local function add(total, sums)
  local v = parse(sums)
  for i = 1, 7 do total[i] = total[i] + v[i] end
  total[8] = math.max(total[8], v[8])
  return total
end
local function pack(t)
  return string.format('%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f', t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8])
end
local function later(at, cur)
  return at ~= '' and (not cur or #at > #cur or (#at == #cur and at >= cur))
end

local metrics = KEYS[1]
local counters = {'polls', 'successes', 'failures', 'skipped', 'items_fetched', 'items_published', 'items_failed'}
local cur = redis.call('HMGET', metrics, 'polls', 'successes', 'failures', 'skipped', 'items_fetched',
  'items_published', 'items_failed', 'last_poll', 'last_success', 'last_error_at', 'latency', 'rollup_minute')
local set = {'type', ARGV[1]}
for i = 1, 7 do
  local add = ARGV[i + 1]
  if add ~= '0' then
    set[#set + 1] = counters[i]
    set[#set + 1] = cur[i] and num(tonumber(cur[i]) + tonumber(add)) or add
  end
end
if later(ARGV[9], cur[8]) then
  set[#set + 1] = 'last_poll'
  set[#set + 1] = ARGV[9]
end
if later(ARGV[10], cur[9]) then
  set[#set + 1] = 'last_success'
  set[#set + 1] = ARGV[10]
end
if later(ARGV[11], cur[10]) then
  set[#set + 1] = 'last_error_at'
  set[#set + 1] = ARGV[11]
  set[#set + 1] = 'last_error'
  set[#set + 1] = ARGV[12]
end
if ARGV[13] ~= '' then
  set[#set + 1] = 'latency'
  set[#set + 1] = string.sub(ARGV[13] .. (cur[11] or ''), 1, tonumber(ARGV[14]))
end

local nrecent, kept = tonumber(ARGV[15]), tonumber(ARGV[16])
local a = 22
local len = redis.call('LPUSH', KEYS[2], unpack(ARGV, a, a + nrecent - 1))
if len > kept + tonumber(ARGV[17]) then
  redis.call('LTRIM', KEYS[2], 0, kept - 1)
  redis.call('PEXPIRE', KEYS[2], ARGV[18])
elseif len == nrecent then
  redis.call('PEXPIRE', KEYS[2], ARGV[18])
end
a = a + nrecent

local minuteKeep, hourKeep, base = tonumber(ARGV[19]), tonumber(ARGV[20]), ARGV[21]
local function dayOf(hour)
  local day = hour - hour % 86400
  return day, num((hour - day) / 3600)
end
local function expire(minutes, hours, hour)
  local day = dayOf(hour)
  redis.call('PEXPIREAT', minutes, num((hour + 3600) * 1000 + minuteKeep))
  redis.call('PEXPIREAT', hours, num((day + 86400) * 1000 + hourKeep))
end
local function close(hour)
  local minutes = base .. 'rollup:1m:' .. num(hour)
  local all = redis.call('HGETALL', minutes)
  if #all == 0 then return end
  local total = parse(all[2])
  for i = 4, #all, 2 do total = add(total, all[i]) end
  local day, index = dayOf(hour)
  local hours = base .. 'rollup:1h:' .. num(day)
  redis.call('HSET', hours, index, pack(total))
  expire(minutes, hours, hour)
end

local latest = tonumber(cur[12] or '-1')
local open = latest >= 0 and latest - latest % 3600 or nil
for k = 3, #KEYS, 2 do
  local minutes, hours = KEYS[k], KEYS[k + 1]
  local hour, sums, n = tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  if open and hour > open then close(open) end
  if not open or hour > open then open = hour end
  local put = {}
  for j = 1, 2 * n do put[j] = ARGV[a + j - 1] end
  if hour + 60 * tonumber(put[1]) <= latest then
    -- Not all new: add to what is there.
    local fields = {}
    for j = 1, n do fields[j] = put[2 * j - 1] end
    local old = redis.call('HMGET', minutes, unpack(fields))
    for j = 1, n do
      if old[j] then put[2 * j] = pack(add(parse(old[j]), put[2 * j])) end
    end
  end
  redis.call('HSET', minutes, unpack(put))
  latest = math.max(latest, hour + 60 * tonumber(put[2 * n - 1]))
  a = a + 2 * n
  if hour < open then
    local _, index = dayOf(hour)
    local prev = redis.call('HMGET', hours, index)[1]
    redis.call('HSET', hours, index, prev and pack(add(parse(prev), sums)) or sums)
    expire(minutes, hours, hour)
  end
end
if latest ~= tonumber(cur[12] or '-1') then
  set[#set + 1] = 'rollup_minute'
  set[#set + 1] = num(latest)
end
redis.call('HSET', metrics, unpack(set))
return 1
`
