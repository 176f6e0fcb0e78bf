package store

// The lease and commit scripts (the admin verbs' are in admin.go, the
// epoch's in epoch.go). Each one touches only the keys of one connector (one
// hash slot), passed in KEYS, and sticks to EXISTS PTTL TIME GET SET PEXPIRE
// DEL HGET HGETALL HMGET HSET HDEL HLEN HINCRBY HSCAN so that it runs on
// miniredis as well as on Redis. Variadic commands are called in chunks:
// unpack of a long table overflows Lua's C stack.

// acquireLua takes a connector's lease.
//
//	KEYS: lease fence state seen
//	ARGV: owner ttl_ms prefetch_max gate count known
//	held     -> {0, pttl_ms}
//	not due  -> {2, "paused" | "waiting", {state field, value, ...}}
//	acquired -> {1, token, {state field, value, ...}, prefetched, {seen id, entry, ...}, seen_count}
//	carried  -> {3, token, attempts, {paused_at, paused_by, resumed_at, generation}}
//
// With gate = 1 (a scheduled tick) a paused connector, or one whose
// not_before is later than Redis's clock, takes no lease: the tick has
// nothing to do, and it must leave no trace (no token, no attempt).
//
// The lease value is "<owner>:<token>". The fencing token is the greater of
// the last one plus one and Redis's clock in microseconds: it grows on every
// acquire, and it still grows when Redis restarts with no data (a token
// from before the loss is older than the clock), so a paused worker's
// commit stays fenced across the loss. Numbers are written with %.0f: Lua's
// own formatting keeps 14 digits, and a token has 16.
//
// With count = 1 (a poll, not an admin write) attempts in the state counts
// the polls begun since the last commit, this one included: a connector
// that keeps killing its worker shows there.
//
// known, when not "", is the token of the commit whose state the caller
// carries (Carried). When both the state's committed field and the fence
// still hold it, no one took the lease since that commit (every acquire
// moves the fence) and no one wrote the state or the seen items (every
// other writer deletes or replaces the field), and the answer is the token,
// the attempts and the operator's fields alone (read anew each time, so
// that a pause is seen whoever wrote it).
//
// When the connector remembers at most prefetch_max items, their entries
// come along (prefetched = 1), which saves the poll a round trip to read
// them; seen_count is how many it remembers.
const acquireLua = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('PTTL', KEYS[1])}
end
local now = redis.call('TIME')
local gate = redis.call('HMGET', KEYS[3], 'paused_at', 'not_before', 'committed', 'paused_by', 'resumed_at', 'generation')
if ARGV[4] == '1' then
  if gate[1] then
    return {2, 'paused', redis.call('HGETALL', KEYS[3])}
  end
  if gate[2] and tonumber(gate[2]) > tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) then
    return {2, 'waiting', redis.call('HGETALL', KEYS[3])}
  end
end
local fence = redis.call('GET', KEYS[2])
local token = math.max(tonumber(fence or '0') + 1, tonumber(now[1]) * 1000000 + tonumber(now[2]))
local text = string.format('%.0f', token)
redis.call('SET', KEYS[2], text)
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. text, 'PX', ARGV[2])
local attempts = 0
if ARGV[5] == '1' then
  attempts = redis.call('HINCRBY', KEYS[3], 'attempts', 1)
end
if ARGV[6] ~= '' and gate[3] == ARGV[6] and fence == ARGV[6] then
  if ARGV[5] ~= '1' then
    attempts = tonumber(redis.call('HGET', KEYS[3], 'attempts') or '0')
  end
  return {3, text, attempts, {gate[1], gate[4], gate[5], gate[6]}}
end
local count = redis.call('HLEN', KEYS[4])
local prefetched, seen = 0, {}
if count <= tonumber(ARGV[3]) then
  prefetched, seen = 1, redis.call('HGETALL', KEYS[4])
end
return {1, text, redis.call('HGETALL', KEYS[3]), prefetched, seen, count}
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

// ReleaseLua deletes a lease that is still ours: the connector's (Release)
// and the leader's (package leader's Resign), whose value is the owner alone.
//
//	KEYS: lease
//	ARGV: the lease's value ("<owner>:<token>"; the leader's: owner)
//	-> 1 released, 0 already gone or someone else's (left alone)
const ReleaseLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`

// commitLua writes the outcome of one poll, fenced.
//
//	KEYS: lease fence state seen seen_data seen_at
//	ARGV: token today forget_before sweep_step n_state n_seen n_data n_forget
//	      then n_state pairs (state field, value; "" deletes the field)
//	      then n_seen pairs (item id, "<seq>:<day>:<version>")
//	      then n_data pairs (item id, data)
//	      then n_forget item ids (forgotten first: entry and data)
//	-> {0} fenced: the fence moved past token, nothing written
//	-> {1, seen_count} committed
//
// The state's committed field is set to token: the state and seen items
// are now as this commit left them, which the committing worker may carry
// to its next acquire (acquireLua's known). The reply tells it what it did
// not write: how many items are remembered after the sweep.
//
// The fence, not the lease, decides: a lease that expired while nobody else
// acquired it leaves the fence equal to token, and then no newer writer can
// exist (any Acquire would have moved the fence), so the write is as safe as
// if the lease were still held and it is accepted. For the same reason the
// lease is deleted without reading it: only the acquire script writes a
// lease, and it moves the fence, so a lease there while the fence holds
// token is the one that acquire wrote. Equality rather than
// "token >= fence" also rejects a token from before a Redis data loss (the
// fence is gone, or newer), whatever happened since.
//
// forget_before > 0 (a poll that read a listing) sweeps: HSCAN looks at
// sweep_step entries from the cursor kept in the state's seen_sweep, and
// forgets those whose day is before forget_before. A pass that ends
// records its day in seen_swept; the next starts on a later day. An entry
// whose value has no day (written before sequences) is left for the poll
// that rewrites it. seen_at, the sorted set of those versions, is deleted
// by a sweep step (the first fetched commit after an upgrade takes one).
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
    chunked('HDEL', KEYS[5], ids)
  end
end

if tonumber(redis.call('GET', KEYS[2])) ~= tonumber(ARGV[1]) then
  return {0}
end

local today, forgetBefore = tonumber(ARGV[2]), tonumber(ARGV[3])
local nstate, nseen, ndata, nforget = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local i = 9

local set, del = {'committed', ARGV[1]}, {}
for _ = 1, nstate do
  if ARGV[i + 1] == '' then
    del[#del + 1] = ARGV[i]
  else
    set[#set + 1] = ARGV[i]
    set[#set + 1] = ARGV[i + 1]
  end
  i = i + 2
end
chunked('HSET', KEYS[3], set)
if #del > 0 then chunked('HDEL', KEYS[3], del) end

local seen = {}
for _ = 1, nseen do
  seen[#seen + 1] = ARGV[i]
  seen[#seen + 1] = ARGV[i + 1]
  i = i + 2
end
local data = {}
for _ = 1, ndata do
  data[#data + 1] = ARGV[i]
  data[#data + 1] = ARGV[i + 1]
  i = i + 2
end
local gone = {}
for _ = 1, nforget do
  gone[#gone + 1] = ARGV[i]
  i = i + 1
end
forget(gone)
if #seen > 0 then chunked('HSET', KEYS[4], seen) end
if #data > 0 then chunked('HSET', KEYS[5], data) end

if forgetBefore > 0 then
  local sweep = redis.call('HMGET', KEYS[3], 'seen_sweep', 'seen_swept')
  local cursor = sweep[1] or '0'
  if cursor ~= '0' or tonumber(sweep[2] or '0') < today then
    local page = redis.call('HSCAN', KEYS[4], cursor, 'COUNT', ARGV[4])
    local old, kv = {}, page[2]
    for j = 1, #kv, 2 do
      local day = tonumber(string.match(kv[j + 1], '^%d+:(%d+):'))
      if day and day < forgetBefore then
        old[#old + 1] = kv[j]
      end
    end
    forget(old)
    if page[1] == '0' then
      redis.call('HSET', KEYS[3], 'seen_swept', today)
      redis.call('HDEL', KEYS[3], 'seen_sweep')
    else
      redis.call('HSET', KEYS[3], 'seen_sweep', page[1])
    end
    redis.call('DEL', KEYS[6])
  end
end

redis.call('DEL', KEYS[1])
return {1, redis.call('HLEN', KEYS[4])}
`
