package store

import "github.com/redis/go-redis/v9"

// recordScript runs recordLua. A Script is only its source and SHA, so one
// value serves every Store.
var recordScript = redis.NewScript(recordLua)

// recordLua adds one connector's share of a batch of poll reports, summed by
// RecordReports, to its metrics, latency window, recent reports and rollups.
// Like the lease scripts it touches only the keys of one connector and sticks
// to commands miniredis implements too: HMGET HSET HINCRBY HGETALL LPUSH
// LTRIM PEXPIRE PEXPIREAT.
//
// Redis charges for every redis.call and every value crossing into Lua, and
// Lua parses and prints numbers slowly (strtod, printf), so the common path
// is lean. Counters go through HINCRBY; times, all 13-digit unix ms, compare
// as strings; the latency window is a field of packed durations, prepended
// and cut without parsing; the recent list is trimmed once it is trim_slack
// past recent_kept. A connector polled every minute costs HMGET, 2-3
// HINCRBY and HSET of the metrics, LPUSH of the report, HMGET and HSET of a
// new minute bucket.
//
// Hour buckets are not written on every flush: the connector's open hour
// (metrics field rollup_hour, unix s) keeps its minute hash without expiry
// and has no hour bucket yet. The first report of a later hour closes it: its
// minute buckets are summed into its hour bucket, and its minute hash gets
// its expiry. A late report, for an hour before the open one, goes to both
// its minute and its hour bucket. Rollups adds the open hour to the hour
// buckets it reads. The open hour's keys are not in KEYS (only Redis knows
// which hour is open): the script names them from key_base, the connector's
// hash-tagged prefix, so they are in the same slot as KEYS.
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
//	      n_minutes pairs (minute index in the hour, minute_sums)
//	-> 1
//
// Sums are "successes,failures,skipped,fetched,published,failed,
// latency_sum_us,latency_max_us"; a bucket already stored is added to
// (latency_max: the larger). A rollup hash expires retention after its span
// ends (PEXPIREAT); one whose expiry has passed is deleted at once, so
// reports older than the retention leave nothing behind. Numbers Lua writes
// go through %.0f: Lua numbers are doubles, which tostring prints as 1e+15
// past 14 digits.
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
local cur = redis.call('HMGET', metrics, 'last_poll', 'last_success', 'last_error_at', 'latency', 'rollup_hour')
local counters = {'polls', 'successes', 'failures', 'skipped', 'items_fetched', 'items_published', 'items_failed'}
for i = 1, 7 do
  if ARGV[i + 1] ~= '0' then
    redis.call('HINCRBY', metrics, counters[i], ARGV[i + 1])
  end
end
local set = {'type', ARGV[1]}
if later(ARGV[9], cur[1]) then
  set[#set + 1] = 'last_poll'
  set[#set + 1] = ARGV[9]
end
if later(ARGV[10], cur[2]) then
  set[#set + 1] = 'last_success'
  set[#set + 1] = ARGV[10]
end
if later(ARGV[11], cur[3]) then
  set[#set + 1] = 'last_error_at'
  set[#set + 1] = ARGV[11]
  set[#set + 1] = 'last_error'
  set[#set + 1] = ARGV[12]
end
if ARGV[13] ~= '' then
  set[#set + 1] = 'latency'
  set[#set + 1] = string.sub(ARGV[13] .. (cur[4] or ''), 1, tonumber(ARGV[14]))
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
local function minuteKey(hour) return base .. 'rollup:1m:' .. hour end
local function hourKey(day) return base .. 'rollup:1h:' .. num(day) end
local function dayOf(hour)
  local h = tonumber(hour)
  local day = h - h % 86400
  return day, num((h - day) / 3600)
end
local function expire(minutes, hours, hour)
  local day = dayOf(hour)
  redis.call('PEXPIREAT', minutes, num((tonumber(hour) + 3600) * 1000 + minuteKeep))
  redis.call('PEXPIREAT', hours, num((day + 86400) * 1000 + hourKeep))
end
local function close(hour)
  local minutes = minuteKey(hour)
  local all = redis.call('HGETALL', minutes)
  if #all == 0 then return end
  local total = parse(all[2])
  for i = 4, #all, 2 do total = add(total, all[i]) end
  local day, index = dayOf(hour)
  local hours = hourKey(day)
  redis.call('HSET', hours, index, pack(total))
  expire(minutes, hours, hour)
end

local open = cur[5]
for k = 3, #KEYS, 2 do
  local minutes, hours = KEYS[k], KEYS[k + 1]
  local hour, sums, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  if not open then open = hour end
  if tonumber(hour) > tonumber(open) then
    close(open)
    open = hour
  end
  local fields = {}
  for j = 1, n do fields[j] = ARGV[a + 2 * j - 2] end
  local old = redis.call('HMGET', minutes, unpack(fields))
  local put = {}
  for j = 1, n do
    local v = ARGV[a + 2 * j - 1]
    if old[j] then v = pack(add(parse(old[j]), v)) end
    put[2 * j - 1] = fields[j]
    put[2 * j] = v
  end
  redis.call('HSET', minutes, unpack(put))
  a = a + 2 * n
  if tonumber(hour) < tonumber(open) then
    local _, index = dayOf(hour)
    local prev = redis.call('HMGET', hours, index)[1]
    redis.call('HSET', hours, index, prev and pack(add(parse(prev), sums)) or sums)
    expire(minutes, hours, hour)
  end
end
if open ~= cur[5] then
  set[#set + 1] = 'rollup_hour'
  set[#set + 1] = open
end
redis.call('HSET', metrics, unpack(set))
return 1
`
