package store

// The Lua scripts. Each one touches only the keys of one connector (one hash
// slot), passed in KEYS, and sticks to EXISTS GET SET INCR PEXPIRE PTTL DEL HGETALL
// HLEN HINCRBY TIME HSET HDEL HMGET ZADD ZREM ZCARD ZRANGE ZRANGEBYSCORE so that it
// runs on miniredis as well as on Redis. Variadic commands are called in
// chunks: unpack of a long table overflows Lua's C stack.

// acquireLua takes a connector's lease.
//
//	KEYS: lease fence state seen
//	ARGV: owner ttl_ms prefetch_max
//	held     -> {0, pttl_ms}
//	acquired -> {1, token, {state field, value, ...}, prefetched, {seen id, version, ...}}
//
// The lease value is "<owner>:<token>". The fencing token is the greater of
// the last one plus one and Redis's clock in microseconds: it grows on every
// acquire, and it still grows when Redis restarts with no data (a token
// from before the loss is older than the clock), so a paused worker's
// commit stays fenced across the loss. Numbers are written with %.0f: Lua's
// own formatting keeps 14 digits, and a token has 16.
//
// attempts in the state counts the polls begun since the last commit, this
// one included: a connector that keeps killing its worker shows there.
//
// When the connector remembers at most prefetch_max items, their versions
// come along (prefetched = 1), which saves the poll a round trip to read
// them.
const acquireLua = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('PTTL', KEYS[1])}
end
local now = redis.call('TIME')
local token = math.max(tonumber(redis.call('GET', KEYS[2]) or '0') + 1, tonumber(now[1]) * 1000000 + tonumber(now[2]))
local text = string.format('%.0f', token)
redis.call('SET', KEYS[2], text)
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. text, 'PX', ARGV[2])
redis.call('HINCRBY', KEYS[3], 'attempts', 1)
local prefetched, seen = 0, {}
if redis.call('HLEN', KEYS[4]) <= tonumber(ARGV[3]) then
  prefetched, seen = 1, redis.call('HGETALL', KEYS[4])
end
return {1, text, redis.call('HGETALL', KEYS[3]), prefetched, seen}
`

// renewLua extends a lease that is still ours.
//
//	KEYS: lease
//	ARGV: "<owner>:<token>" ttl_ms
//	-> 1 renewed, 0 gone or taken over
const renewLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`

// releaseLua deletes a lease that is still ours.
//
//	KEYS: lease
//	ARGV: "<owner>:<token>"
//	-> 1 released, 0 already gone or someone else's (left alone)
const releaseLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`

// commitLua writes the outcome of one poll, fenced.
//
//	KEYS: lease fence state seen seen_at seen_data
//	ARGV: token "<owner>:<token>" now_ms forget_before_ms seen_cap n_state n_seen n_gone
//	      then n_state pairs (state field, value; "" deletes the field)
//	      then n_seen triples (item id, version, data; "" keeps no data)
//	      then n_gone item ids (published as deleted: forget them)
//	-> 0 fenced: the fence moved past token, nothing written
//	-> 1 committed
//
// The fence, not the lease, decides: a lease that expired while nobody else
// acquired it leaves the fence equal to token, and then no newer writer can
// exist (any Acquire would have moved the fence), so the write is as safe as
// if the lease were still held and it is accepted. Equality rather than
// "token >= fence" also rejects a token from before a Redis data loss (the
// fence is gone, or newer), whatever happened since.
//
// An item forgotten for any reason (gone, not seen for the TTL, past the
// cap) loses its version, its time and its data together.
const commitLua = `
local function chunked(cmd, key, list)
  local step = 500
  for i = 1, #list, step do
    local j = math.min(i + step - 1, #list)
    redis.call(cmd, key, unpack(list, i, j))
  end
end
local function forget(ids)
  if #ids > 0 then
    chunked('HDEL', KEYS[4], ids)
    chunked('ZREM', KEYS[5], ids)
    chunked('HDEL', KEYS[6], ids)
  end
end

if tonumber(redis.call('GET', KEYS[2])) ~= tonumber(ARGV[1]) then
  return 0
end

local now = ARGV[3]
local cap = tonumber(ARGV[5])
local nstate, nseen, ngone = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local i = 9

local set, del = {}, {}
for _ = 1, nstate do
  if ARGV[i + 1] == '' then
    del[#del + 1] = ARGV[i]
  else
    set[#set + 1] = ARGV[i]
    set[#set + 1] = ARGV[i + 1]
  end
  i = i + 2
end
if #set > 0 then chunked('HSET', KEYS[3], set) end
if #del > 0 then chunked('HDEL', KEYS[3], del) end

local seen, seenAt, data = {}, {}, {}
for _ = 1, nseen do
  seen[#seen + 1] = ARGV[i]
  seen[#seen + 1] = ARGV[i + 1]
  seenAt[#seenAt + 1] = now
  seenAt[#seenAt + 1] = ARGV[i]
  if ARGV[i + 2] ~= '' then
    data[#data + 1] = ARGV[i]
    data[#data + 1] = ARGV[i + 2]
  end
  i = i + 3
end
if #seen > 0 then
  chunked('HSET', KEYS[4], seen)
  chunked('ZADD', KEYS[5], seenAt)
end
if #data > 0 then chunked('HSET', KEYS[6], data) end

local gone = {}
for _ = 1, ngone do
  gone[#gone + 1] = ARGV[i]
  i = i + 1
end
forget(gone)

forget(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[4]))

local excess = redis.call('ZCARD', KEYS[5]) - cap
if excess > 0 then
  local popped = redis.call('ZRANGE', KEYS[5], 0, excess - 1)
  forget(popped)
end

if redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
end
return 1
`

// leaderLua takes or keeps a leader lease.
//
//	KEYS: leader
//	ARGV: owner ttl_ms
//	-> 1 owner is leader (newly, or renewed), 0 someone else is
const leaderLua = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`

// resignLua deletes a leader lease that is still ours.
//
//	KEYS: leader
//	ARGV: owner
//	-> 1 resigned, 0 not ours
const resignLua = releaseLua
