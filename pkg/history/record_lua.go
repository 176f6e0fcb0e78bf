package history

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// recordScript runs recordLua. A Script is only its source and SHA, so one
// value serves every Store.
var recordScript = redis.NewScript(recordLua)

// recordLua adds one connector's share of a batch of poll reports, summed by
// RecordReports, to its metrics hash and its history (layout.go).
// Like package store's scripts it touches only the keys of one connector and
// sticks to what miniredis implements too: HMGET HSET HDEL GET SET GETRANGE
// SETRANGE PEXPIRE PEXPIREAT DEL, and the base, string, table and math
// libraries (no struct, no bit, no BITFIELD).
//
// With thousands of connectors every redis.call costs microseconds (each
// touches cold keys), and a string costs about as much again per KB it
// carries between Redis and Lua, so the script reads and writes only what
// changes: HMGET and HSET of the metrics, GETRANGE and SETRANGE of the head
// (518 bytes at most: header, open buckets, latency window), and a SETRANGE of the
// new recent reports (two when they wrap). A report of a ring's open period
// adds to the head; one of a later period also writes the open bucket to its
// ring slot (SETRANGE); a late one, of a period before the open one but
// still in the ring, adds to its slot (GETRANGE, SETRANGE). A connector
// polled every minute costs six calls, one more every quarter-hour and six
// at a new day. PEXPIRE gives every key history_ttl_ms whenever a new day
// opens, and a key its script creates or grows gets it too.
//
// Growing: the head is written whole, its latency window as long as the
// durations it holds (a SET when that changes, a SETRANGE else). A ring's key
// or the recent reports' key is created with the first slot or report it
// gets and grows when a write falls past its end, to twice its size (at
// least what the write needs, at most the ring's size), by a GET and a SET
// of the padded value: SETRANGE past a string's end would have Redis keep
// room for twice the new length, which a full ring would carry for good.
//
// Latency window: the batch's durations (packed, newest first) are
// prepended and the window cut to LatencyWindow. Rings: RecordReports sends
// the buckets the batch adds to, by ring and period, each as a whole slot
// (tag and sums) and at most one a slot. A bucket of the open period is
// added to the open bucket (sums saturate at their width, latency_max is the
// larger); one of a later period moves the open bucket to its slot and
// takes its place; one of an earlier period in the ring is added to its
// slot, or replaces the slot when that holds an earlier period still; one
// before the ring (a ring's worth before the open one) is dropped, as
// readers no longer read it. Recent reports: the batch's entries (oldest
// first, at most the ring's size) are written at the ring's write position,
// which moves past them; the bytes written grow up to the ring's size.
//
// A connector last written by layout 1 (one string of 14,330 bytes) moves over
// on its next write: its rings are copied to their keys as they are (a
// shift of 0), its newest recent reports that fit layout 2's ring to the
// reports key, and its head becomes layout 2's. One last written
// by the former layout (rollup hashes, a recent list, the latency window and
// rollup_minute in the metrics hash) moves over on its first write: the
// window is carried into the head, the open hour's minute hash (the one
// rollup hash without an expiry) gets the expiry its hour's close would have
// given it, the recent list is deleted and the two fields removed. Its other
// rollup hashes expire on their own and are never read.
//
// KEYS holds the metrics hash and the head alone: the script names the
// rings' and the recent reports' keys (and the former layout's) from the
// head's hash-tagged prefix, so they share its slot, also on a cluster.
// Four more KEYS cost Redis 4-8 µs a call (BenchmarkRecordReports, 1,000
// connectors polled every minute: each EVALSHA parses and Lua interns them).
//
// Numbers Lua writes go through %.0f: Lua numbers are doubles, which
// tostring prints as 1e+15 past 14 digits (exact to 2^53, so every sum of a
// slot is exact); times, all 13-digit unix ms, compare as strings.
//
//	KEYS: metrics history
//	ARGV: [1] connector type
//	      [2..8] polls successes failures skipped items_fetched items_published
//	             items_failed to add
//	      [9..12] last_poll last_success last_error_at (unix ms, "" when none in
//	              the batch) last_error
//	      [13] durations to prepend to the latency window (packed, newest first)
//	      [14] recent entries to write (oldest first)
//	      [15..16] history_ttl_ms n_buckets
//	      then n_buckets triples, by ring then period: ring (0 minutes,
//	      1 quarter-hours, 2 days), period, slot
//	-> 1
var recordLua = strings.NewReplacer(
	"$VERSION", strconv.Itoa(layoutVersion),
	"$HEAD_BYTES", strconv.Itoa(headBytes),
	"$OPEN_OFFSET", strconv.Itoa(openOffset),
	"$RING_HEADER", strconv.Itoa(ringHeaderOffset),
	"$RING_SLOTS", luaList(ringSlots[:]),
	"$CODEC", slotCodecLua(),
	"$LATENCY_OFFSET", strconv.Itoa(latencyOffset),
	"$LATENCY_BYTES", strconv.Itoa(LatencyWindow*latencyBytes),
	"$RECENT_BYTES", strconv.Itoa(recentBytes),
	"$SLOT_BYTES", strconv.Itoa(slotBytes),
	"$V1_HEADER_BYTES", strconv.Itoa(v1HeaderBytes),
	"$V1_RING_OFFSETS", luaList([]int{v1HeadBytes, v1HeadBytes + minuteSlots*slotBytes,
		v1HeadBytes + (minuteSlots+quarterSlots)*slotBytes}),
	"$V1_RECENT_OFFSET", strconv.Itoa(v1RecentOffset),
	"$V1_RECENT_BYTES", strconv.Itoa(v1RecentBytes),
	"$MINUTE_KEEP_MS", strconv.FormatInt(oldMinuteRetentionMs, 10),
	"$HISTORY_SUFFIX", keyHistory,
	"$RECENT_SUFFIX", recentKey,
	"$MINUTES_SUFFIX", ringKeys[ringMinutes],
	"$QUARTERS_SUFFIX", ringKeys[ringQuarters],
	"$DAYS_SUFFIX", ringKeys[ringDays],
).Replace(`
local function num(v) return string.format('%.0f', v) end
local function later(at, cur)
  return at ~= '' and (not cur or #at > #cur or (#at == #cur and at >= cur))
end
local function u16(s, i) return string.byte(s, i) * 256 + string.byte(s, i + 1) end
local function be16(n) return string.char(math.floor(n / 256), n % 256) end

local metrics, history = KEYS[1], KEYS[2]
local base = string.sub(history, 1, #history - #'$HISTORY_SUFFIX')
local reports = base .. '$RECENT_SUFFIX'
local ringKeys, ringSlots = {base .. '$MINUTES_SUFFIX', base .. '$QUARTERS_SUFFIX', base .. '$DAYS_SUFFIX'}, {$RING_SLOTS}
local ttl = ARGV[15]
local counters = {'polls', 'successes', 'failures', 'skipped', 'items_fetched', 'items_published', 'items_failed'}
local cur = redis.call('HMGET', metrics, 'polls', 'successes', 'failures', 'skipped', 'items_fetched',
  'items_published', 'items_failed', 'last_poll', 'last_success', 'last_error_at', 'rollup_minute', 'latency')
-- Read the head first: a key Redis refuses fails the call before anything
-- is written.
local head = redis.call('GETRANGE', history, 0, $HEAD_BYTES - 1)
local empty = string.rep('\0', $SLOT_BYTES)
-- shift: -1 while the ring's key is not created; held: the slots it holds.
local shift, held = {-1, -1, -1}, {0, 0, 0}
local pos, used, recentHeld = 0, 0, 0
local window, openBuckets
local create = #head == 0 or string.byte(head, 1) == 1
if #head == 0 then
  window, openBuckets = cur[12] or '', string.rep(empty, 3)
elseif string.byte(head, 1) == 1 then
  -- Layout 1: its rings and recent reports move to their keys as they are.
  local old = redis.call('GET', history)
  redis.call('DEL', history)
  local offsets = {$V1_RING_OFFSETS}
  for r = 1, 3 do
    local slots = string.sub(old, offsets[r] + 1, offsets[r] + ringSlots[r] * $SLOT_BYTES)
    if slots ~= string.rep('\0', #slots) then
      redis.call('SET', ringKeys[r], slots, 'PX', ttl)
      shift[r], held[r] = 0, ringSlots[r]
    end
  end
  -- Its recent reports, oldest first, then the newest that fit the ring
  -- (the oldest of them may be cut: it is not read).
  local ring = string.sub(old, $V1_RECENT_OFFSET + 1, $V1_RECENT_OFFSET + $V1_RECENT_BYTES)
  local from = u16(old, 3)
  recentHeld = math.min(u16(old, 5), $RECENT_BYTES)
  if recentHeld > 0 then
    redis.call('SET', reports, string.sub(string.sub(ring, from + 1) .. string.sub(ring, 1, from), -recentHeld), 'PX', ttl)
  end
  pos, used = recentHeld % $RECENT_BYTES, recentHeld
  openBuckets = string.sub(old, $V1_HEADER_BYTES + 1, $V1_HEADER_BYTES + 3 * $SLOT_BYTES)
  local at = $V1_HEADER_BYTES + 3 * $SLOT_BYTES
  window = string.sub(old, at + 1, at + 4 * string.byte(old, 2))
elseif #head < $LATENCY_OFFSET or string.byte(head, 1) ~= $VERSION then
  return redis.error_reply('history ' .. history .. ' is not layout $VERSION: delete the key')
else
  pos, used, recentHeld = u16(head, 3), u16(head, 5), u16(head, 7)
  for r = 1, 3 do
    shift[r], held[r] = string.byte(head, $RING_HEADER + 2 * r - 1) - 1, string.byte(head, $RING_HEADER + 2 * r)
  end
  openBuckets = string.sub(head, $OPEN_OFFSET + 1, $OPEN_OFFSET + 3 * $SLOT_BYTES)
  window = string.sub(head, $LATENCY_OFFSET + 1, $LATENCY_OFFSET + 4 * string.byte(head, 2))
end

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
redis.call('HSET', metrics, unpack(set))

-- The former layout: carry the latency window over, let the rest go.
if cur[11] or cur[12] then
  if cur[11] then
    local latest = tonumber(cur[11])
    local hour = latest - latest % 3600
    redis.call('PEXPIREAT', base .. 'rollup:1m:' .. num(hour), num((hour + 3600) * 1000 + $MINUTE_KEEP_MS))
  end
  redis.call('DEL', base .. 'recent')
  redis.call('HDEL', metrics, 'rollup_minute', 'latency')
end

-- grow makes key, holding have bytes, size bytes long (zeros after them).
local function grow(key, have, size)
  local old = have > 0 and (redis.call('GET', key) or '') or ''
  old = string.sub(old, 1, have) .. string.rep('\0', have - #old)
  redis.call('SET', key, old .. string.rep('\0', size - have), 'PX', ttl)
end

-- slotAt is where period p's slot is in ring r's key, which it creates or
-- grows when the slot is past its end.
local function slotAt(r, p)
  local n = ringSlots[r]
  if shift[r] < 0 then shift[r] = p % n end
  local i = (p - shift[r]) % n
  if i >= held[r] then
    local size = math.min(n, math.max(i + 1, 2 * held[r]))
    grow(ringKeys[r], held[r] * $SLOT_BYTES, size * $SLOT_BYTES)
    held[r] = size
  end
  return i * $SLOT_BYTES
end

-- Rings.
local function tag(slot)
  local a, b, c, d = string.byte(slot, 1, 4)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
$CODEC
local open, openPeriod = {}, {}
for r = 1, 3 do
  open[r] = string.sub(openBuckets, (r - 1) * $SLOT_BYTES + 1, r * $SLOT_BYTES)
  openPeriod[r] = open[r] == empty and -1 or tag(open[r])
end
local a = 17
for _ = 1, tonumber(ARGV[16]) do
  local r, p, slot = tonumber(ARGV[a]) + 1, tonumber(ARGV[a + 1]), ARGV[a + 2]
  a = a + 3
  local n = ringSlots[r]
  if p > openPeriod[r] then
    if openPeriod[r] >= 0 then
      redis.call('SETRANGE', ringKeys[r], slotAt(r, openPeriod[r]), open[r])
    end
    if r == 3 then
      for _, key in ipairs({history, ringKeys[1], ringKeys[2], ringKeys[3], reports}) do
        redis.call('PEXPIRE', key, ttl)
      end
    end
    open[r], openPeriod[r] = slot, p
  elseif p == openPeriod[r] then
    open[r] = combine(open[r], slot)
  elseif p > openPeriod[r] - n then
    local have, old = 0, nil
    if shift[r] >= 0 and (p - shift[r]) % n < held[r] then
      local off = ((p - shift[r]) % n) * $SLOT_BYTES
      old = redis.call('GETRANGE', ringKeys[r], off, off + $SLOT_BYTES - 1)
      if #old == $SLOT_BYTES then have = tag(old) end
    end
    if have < p then
      redis.call('SETRANGE', ringKeys[r], slotAt(r, p), slot)
    elseif have == p then
      redis.call('SETRANGE', ringKeys[r], slotAt(r, p), combine(old, slot))
    end
  end
end

-- Recent reports.
local entries = ARGV[14]
if #entries > 0 then
  if pos + #entries > recentHeld and recentHeld < $RECENT_BYTES then
    local size = math.min($RECENT_BYTES, math.max(pos + #entries, 2 * recentHeld))
    grow(reports, recentHeld, size)
    recentHeld = size
  end
  local room = $RECENT_BYTES - pos
  if #entries <= room then
    redis.call('SETRANGE', reports, pos, entries)
  else
    redis.call('SETRANGE', reports, pos, string.sub(entries, 1, room))
    redis.call('SETRANGE', reports, 0, string.sub(entries, room + 1))
  end
  pos = (pos + #entries) % $RECENT_BYTES
  used = math.min(used + #entries, $RECENT_BYTES)
end

-- The head, whole: header, open buckets, latency window; a SET when its
-- length changes (the window fills), so that Redis holds what it needs.
window = string.sub(ARGV[13] .. window, 1, $LATENCY_BYTES)
local header = string.char($VERSION, #window / 4) .. be16(pos) .. be16(used) .. be16(recentHeld) ..
  string.char(shift[1] + 1, held[1], shift[2] + 1, held[2], shift[3] + 1, held[3], 0, 0)
local written = header .. open[1] .. open[2] .. open[3] .. window
if create then
  redis.call('SET', history, written, 'PX', ttl)
elseif #written ~= #head then
  redis.call('SET', history, written, 'KEEPTTL')
else
  redis.call('SETRANGE', history, 0, written)
end
return 1
`)

// oldMinuteRetentionMs is how long the former layout kept a closed hour's
// minute hash after the hour ended: 24 hours.
const oldMinuteRetentionMs = 24 * 60 * 60 * 1000

// luaList is v as the items of a Lua table constructor.
func luaList[T int | int64](v []T) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.FormatInt(int64(n), 10)
	}
	return strings.Join(s, ", ")
}

// slotCodecLua is Lua's combine(a, b): slot a with b's sums added (each
// saturating at its width's largest value, latency_max the larger),
// unrolled from fieldBytes with no table: loops and tables cost several
// times as much in Lua 5.1.
func slotCodecLua() string {
	var as, bs, sums, enc []string
	b := 0
	for f, w := range fieldBytes {
		var ta, tb []string
		for k := range w {
			b++
			as, bs = append(as, "a"+strconv.Itoa(b)), append(bs, "b"+strconv.Itoa(b))
			shift := int64(1) << (8 * (w - 1 - k))
			ta = append(ta, fmt.Sprintf("a%d * %d", b, shift))
			tb = append(tb, fmt.Sprintf("b%d * %d", b, shift))
		}
		x := "x" + strconv.Itoa(f+1)
		if f == len(fieldBytes)-1 {
			sums = append(sums, fmt.Sprintf("local %s = math.max(%s, %s)", x, strings.Join(ta, " + "), strings.Join(tb, " + ")))
		} else {
			sums = append(sums, fmt.Sprintf("local %s = math.min(%s + %s, %d)", x, strings.Join(ta, " + "), strings.Join(tb, " + "), int64(1)<<(8*w)-1))
		}
		for k := range w {
			if shift := int64(1) << (8 * (w - 1 - k)); shift == 1 {
				enc = append(enc, x+" % 256")
			} else {
				enc = append(enc, fmt.Sprintf("math.floor(%s / %d) %% 256", x, shift))
			}
		}
	}
	return fmt.Sprintf(`local function combine(a, b)
  local %s = string.byte(a, %d, %d)
  local %s = string.byte(b, %d, %d)
  %s
  return string.sub(a, 1, %d) .. string.char(%s)
end`, strings.Join(as, ", "), tagBytes+1, slotBytes, strings.Join(bs, ", "), tagBytes+1, slotBytes,
		strings.Join(sums, "\n  "), tagBytes, strings.Join(enc, ",\n    "))
}
