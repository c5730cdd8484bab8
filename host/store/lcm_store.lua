#!lua name=lcm
-- LCM's Redis Function library: every write to the event store goes through lcm_append, one
-- atomic server-side call that validates everything before its first write (Redis does not
-- roll back) and then appends events, updates hashes, indexes, uniqueness keys and the feed.
-- Loaded by lcmd with FUNCTION LOAD REPLACE on every connect; see docs/redis-layout.md.

local PROTO = '2'

-- Locals rather than global lookups and method calls: lcm_append runs them for every event
-- it writes (a global is a table lookup per use; a local is a register). The globals exist
-- only when a function runs, not while the library loads: bind() sets the locals at the
-- start of every entry point.
local find, byte, match, sub = ('').find, ('').byte, ('').match, ('').sub
local type, tonumber, tostring, unpack, rcall, rpcall, error_reply

local function bind()
  type, tonumber, tostring, unpack = _G.type, _G.tonumber, _G.tostring, _G.unpack
  rcall, rpcall, error_reply = redis.call, redis.pcall, redis.error_reply
end

local function fail(code, msg)
  return error_reply(code .. ' ' .. msg)
end

local function keytype(k)
  return rcall('TYPE', k)['ok']
end

local function is_uint(s)
  return type(s) == 'string' and #s <= 15 and find(s, '^%d+$') ~= nil
end

local function valid_name(s)
  return type(s) == 'string' and #s > 0 and #s <= 128 and find(s, '^[%w._%-]+$') ~= nil
end

-- Returns the first word of lcm:leader ("<token> <holder>"), or nil when there is no lease.
local function leader_token(k)
  local cur = rcall('GET', k)
  if not cur then return nil end
  return match(cur, '^(%S+)')
end

-- FCALL lcm_append <numkeys> lcm:leader lcm:feed {per group: its keys}
--   2 <feed-maxlen> <ngroups> {per group: <fence|""> <sizes> <its args>}
-- <sizes>: 6 bytes, big-endian 16-bit nwrites, nargs (after <sizes>), nkeys.
-- A group's args, per write:
--   <counts><expected>: 10 bytes (16-bit nev nset ndel nidx nuniq) then the expected version
--                       in decimal (0: the aggregate must not exist)
--   nev×(type version at by data) nset×(field value) ndel×(field)
--   nidx×(op member, + score for zadd) nuniq×(value ttl_ms mode)
-- A group's keys, per write: lcm:{<kind>:<id>} lcm:{<kind>:<id>}:events, then one key per
--   index op (two for smove: from, to), then one lcm:uniq:<name> per uniqueness op.
-- Counts are binary because Lua 5.1 has no cheap way to read a decimal integer (tonumber is
-- strtod); the protocol is written by lcmd, not by hand (redis-cli reads are the operator
-- interface). A group is one atomic change set (one lcm_store_append): all its writes or
-- none. Groups are independent: each is validated and written on its own, in order, so one
-- call carries many appends (group commit) and a refused group does not affect the others;
-- the sizes of each group let a malformed group be refused alone.
-- kind and id are read from the hash key. Event versions are expected+1, expected+2, … (sent
-- as text so that nothing is formatted here). op ∈ sadd srem zadd zrem smove (SREM from one
-- set + SADD to another in one command) uadd (a unique set: it may hold only this member,
-- else DUPLICATE); mode ∈ set (reserve, idempotent for the same value) del (release when
-- the value matches). Reply: one element per group, in order: the array of the new version
-- of each of its aggregates, or an error (CONFLICT, FENCED, DUPLICATE, INVALID).

local function agg_name(p) return p.kind .. ':' .. p.id end

local IDX_ARITY = { sadd = 2, srem = 2, uadd = 2, zrem = 2, smove = 2, zadd = 3 }

-- Parses the write at args[ai], keys[ki] of a group into p (a reused table) and checks its
-- arguments; no Redis access. Returns the next ai, ki, or nil and an error.
local function parse_write(p, keys, args, ai, ki, alast, klast)
  local c = args[ai]
  if ai > alast or #c < 11 or #c > 25 then return nil, 'bad counts' end
  local a1, a2, b1, b2, c1, c2, d1, d2, e1, e2 = byte(c, 1, 10)
  local nev, nset, ndel, nidx, nuniq =
    a1 * 256 + a2, b1 * 256 + b2, c1 * 256 + c2, d1 * 256 + d2, e1 * 256 + e2
  local exp = sub(c, 11)
  if find(exp, '%D') or (#exp > 1 and byte(exp, 1) == 48) then
    return nil, 'bad expected version'
  end
  p.exp, p.nev, p.nset, p.ndel, p.nidx, p.nuniq = exp, nev, nset, ndel, nidx, nuniq
  p.ev = ai + 1
  p.set = p.ev + 5 * nev
  p.del = p.set + 2 * nset
  p.idx = p.del + ndel
  if p.idx - 1 > alast or ki + 1 > klast then return nil, 'truncated' end

  local hkey, ekey = keys[ki], keys[ki + 1]
  local kind, id = match(hkey, '^lcm:{([%w._%-]+):([%w._%-]+)}$')
  if not id or #kind > 128 or #id > 128 then
    return nil, 'hash key must be lcm:{<kind>:<id>} with kind/id [A-Za-z0-9._-]{1,128}'
  end
  p.hkey, p.ekey, p.kind, p.id = hkey, ekey, kind, id
  if #ekey ~= #hkey + 7 or find(ekey, hkey, 1, true) ~= 1 or not find(ekey, ':events', -7, true) then
    return nil, agg_name(p) .. ': events key must be ' .. hkey .. ':events'
  end
  if nev < 1 then return nil, agg_name(p) .. ': no events' end
  local v = tonumber(exp)
  for i = p.ev, p.set - 1, 5 do
    local t, vs, at, data = args[i], args[i + 1], args[i + 2], args[i + 4]
    v = v + 1
    if #t == 0 or #t > 128 or find(t, '%s') then return nil, agg_name(p) .. ': bad event type' end
    if #vs > 15 or find(vs, '%D') or tonumber(vs) ~= v then
      return nil, agg_name(p) .. ': event versions must follow ' .. exp
    end
    if #at == 0 then return nil, agg_name(p) .. ': event without at' end
    if byte(data, 1) ~= 123 or byte(data, -1) ~= 125 then
      return nil, agg_name(p) .. ': event data must be a JSON object'
    end
  end
  p.ver = args[p.set - 4]   -- the last event's version: the aggregate's new version
  for j = p.set, p.del - 1, 2 do
    local f = args[j]
    if f == 'version' or #f == 0 then return nil, agg_name(p) .. ': bad field name' end
  end
  for j = p.del, p.idx - 1 do
    if args[j] == 'version' then return nil, agg_name(p) .. ': bad deleted field' end
  end
  local k, j = ki + 2, p.idx
  p.ik = k
  for _ = 1, nidx do
    local op = args[j]
    local arity = IDX_ARITY[op]
    if not arity then return nil, agg_name(p) .. ': bad index op ' .. tostring(op) end
    local nk = op == 'smove' and 2 or 1
    if j + arity - 1 > alast or k + nk - 1 > klast then return nil, 'truncated' end
    for x = k, k + nk - 1 do
      if find(keys[x], 'lcm:idx:', 1, true) ~= 1 then
        return nil, agg_name(p) .. ': index keys live under lcm:idx:'
      end
    end
    if op == 'zadd' and tonumber(args[j + 2]) == nil then
      return nil, agg_name(p) .. ': bad score for ' .. keys[k]
    end
    k, j = k + nk, j + arity
  end
  p.uniq, p.uk = j, k
  local anext = j + 3 * nuniq
  if anext - 1 > alast or k + nuniq - 1 > klast then return nil, 'truncated' end
  for u = 0, nuniq - 1 do
    local value, ttl, mode = args[j + 3 * u], args[j + 3 * u + 1], args[j + 3 * u + 2]
    local key = keys[k + u]
    if find(key, 'lcm:uniq:', 1, true) ~= 1 then
      return nil, agg_name(p) .. ': uniqueness keys live under lcm:uniq:'
    end
    if #value == 0 or not is_uint(ttl) or (mode ~= 'set' and mode ~= 'del') then
      return nil, agg_name(p) .. ': bad uniqueness op on ' .. key
    end
  end
  return anext, k + nuniq
end

local function append(keys, args)
  bind()
  if args[1] ~= PROTO then return fail('INVALID', 'protocol version, expected ' .. PROTO) end
  local maxlen, ng = args[2], args[3]
  if not is_uint(maxlen) or not is_uint(ng) or ng == '0' or keys[1] == nil or keys[2] == nil then
    return fail('INVALID', 'header')
  end
  local leader_key, feed_key = keys[1], keys[2]
  ng = tonumber(ng)

  -- Pass 1: group boundaries, so that a malformed call is refused before any group wrote.
  local bounds, ai, ki = {}, 4, 3
  for g = 1, ng do
    local sz = args[ai + 1]
    if sz == nil or #sz ~= 6 then return fail('INVALID', 'group ' .. g .. ': bad sizes') end
    local w1, w2, a1, a2, k1, k2 = byte(sz, 1, 6)
    local nw, na, nk = w1 * 256 + w2, a1 * 256 + a2, k1 * 256 + k2
    if nw == 0 then return fail('INVALID', 'group ' .. g .. ': no writes') end
    bounds[g] = { ai, ki, nw, na, nk }
    ai = ai + 2 + na
    ki = ki + nk
  end
  if ai - 1 ~= #args or ki - 1 ~= #keys then
    return fail('INVALID', 'group sizes do not add up to the arguments and keys')
  end

  -- Facts read once per call and kept true by the call's own writes: the lease token (no
  -- write here touches lcm:leader), whether lcm:feed may take XADD, index key types.
  local leader, feed_ok, types = false, nil, {}
  -- types[k]: the key's type, or 'set?' / 'zset?' after a removal from it (that type, or
  -- gone if it was the last member): no TYPE round trip when the next op wants that type.
  local function idx_type(k, need)
    local t = types[k]
    if t == 'set?' or t == 'zset?' then
      if need and t == need .. '?' then return need end
      t = nil
    end
    if t == nil then t = keytype(k); types[k] = t end
    return t
  end
  local pool = {}   -- parsed writes of the current group, reused

  -- Checks a group's nw parsed writes against the current data. Error reply or nil.
  local function validate(fence, nw)
    if fence ~= '' then
      if leader == false then leader = leader_token(leader_key) end
      if leader ~= fence then
        return fail('FENCED', 'current=' .. (leader or 'none') .. ' given=' .. fence)
      end
    end
    if feed_ok == nil then
      local ft = keytype(feed_key)
      feed_ok = ft == 'none' or ft == 'stream' or ft
    end
    if feed_ok ~= true then return fail('INVALID', feed_key .. ' is a ' .. feed_ok) end
    local want, uadd, uniq = nil, nil, nil   -- this group's own intentions per key
    for w = 1, nw do
      local p = pool[w]
      -- HGET refuses a non-hash key (WRONGTYPE), which is all the type check it needs.
      local v = rpcall('HGET', p.hkey, 'version')
      if type(v) == 'table' then return fail('INVALID', p.hkey .. ' is not a hash') end
      -- Versions are compared as the canonical decimal text both sides write.
      if not v then
        if rcall('EXISTS', p.ekey) == 1 then
          -- Events without a hash: the hashes were dropped (rebuild pending); do not guess.
          return fail('CONFLICT', agg_name(p) .. ' current=unknown expected=' .. p.exp ..
                      ' (stream without hash: run lcmd --rebuild)')
        end
        v = '0'
      end
      if v ~= p.exp then
        if not is_uint(v) then return fail('INVALID', p.hkey .. ' has no valid version') end
        return fail('CONFLICT', agg_name(p) .. ' current=' .. v .. ' expected=' .. p.exp)
      end
      -- The group's first XADD is its first write and checks that stream's type itself
      -- (a refusal there has written nothing); the other streams are checked here.
      if w > 1 then
        local et = keytype(p.ekey)
        if et ~= 'none' and et ~= 'stream' then return fail('INVALID', p.ekey .. ' is a ' .. et) end
      end
      local k, j = p.ik, p.idx
      for _ = 1, p.nidx do
        local op, member = args[j], args[j + 1]
        local need = (op == 'zadd' or op == 'zrem') and 'zset' or 'set'
        for x = k, op == 'smove' and k + 1 or k do
          local t = idx_type(keys[x], need)
          if t == 'none' and want then t = want[keys[x]] or 'none' end
          if t ~= 'none' and t ~= need then return fail('INVALID', keys[x] .. ' is a ' .. t) end
        end
        local to = op == 'smove' and keys[k + 1] or keys[k]
        -- Keys this group may create: a later op of the group must agree on their type. (A
        -- key known to exist with that type keeps it through the group.)
        if op ~= 'srem' and op ~= 'zrem' and types[to] ~= need then
          want = want or {}
          want[to] = need
        end
        if op == 'uadd' then
          uadd = uadd or {}
          local holder = uadd[to]
          if holder == nil and idx_type(to) == 'set' and
             rcall('SISMEMBER', to, member) == 0 then
            holder = rcall('SRANDMEMBER', to) or nil
          end
          if holder ~= nil and holder ~= member then
            return fail('DUPLICATE', to .. ' ' .. holder)
          end
          uadd[to] = member
        end
        k = op == 'smove' and k + 2 or k + 1
        j = j + IDX_ARITY[op]
      end
      for j = 0, p.nuniq - 1 do
        local value, mode, uk = args[p.uniq + 3 * j], args[p.uniq + 3 * j + 2], keys[p.uk + j]
        uniq = uniq or {}
        if mode == 'set' then
          local have = uniq[uk]
          if have == nil then
            have = rpcall('GET', uk)
            if type(have) == 'table' then return fail('INVALID', uk .. ' is not a string') end
          end
          if have and have ~= value then return fail('DUPLICATE', uk .. ' ' .. have) end
          uniq[uk] = value
        elseif uniq[uk] == nil and type(rpcall('GET', uk)) == 'table' then
          return fail('INVALID', uk .. ' is not a string')
        end
      end
    end
    return nil
  end

  -- Writes a validated group. Returns its versions, or an error reply when its first XADD
  -- was refused (then nothing was written).
  local function write(nw)
    local out = {}
    for w = 1, nw do
      local p = pool[w]
      local hkey, ekey, kind, id = p.hkey, p.ekey, p.kind, p.id
      for i = p.ev, p.set - 1, 5 do
        local t, vs, at, by, data = args[i], args[i + 1], args[i + 2], args[i + 3], args[i + 4]
        if w == 1 and i == p.ev then
          local r = rpcall('XADD', ekey, '*', 'type', t, 'version', vs, 'at', at,
                                'by', by, 'data', data)
          if type(r) == 'table' and r.err then
            return fail('INVALID', ekey .. ': ' .. r.err)
          end
        else
          rcall('XADD', ekey, '*', 'type', t, 'version', vs, 'at', at, 'by', by,
                     'data', data)
        end
        rcall('XADD', feed_key, '*', 'kind', kind, 'id', id, 'type', t,
                   'version', vs, 'at', at, 'by', by, 'data', data)
      end
      if p.nset > 0 then
        rcall('HSET', hkey, 'version', p.ver, unpack(args, p.set, p.del - 1))
      else
        rcall('HSET', hkey, 'version', p.ver)
      end
      if p.ndel > 0 then rcall('HDEL', hkey, unpack(args, p.del, p.idx - 1)) end
      local k, j = p.ik, p.idx
      for _ = 1, p.nidx do
        local op, member, key = args[j], args[j + 1], keys[k]
        if op == 'smove' then
          local to = keys[k + 1]
          if rcall('SMOVE', key, to, member) == 0 then rcall('SADD', to, member) end
          types[key], types[to] = 'set?', 'set'
          k = k + 1
        elseif op == 'sadd' or op == 'uadd' then
          rcall('SADD', key, member)
          types[key] = 'set'
        elseif op == 'zadd' then
          rcall('ZADD', key, args[j + 2], member)
          types[key] = 'zset'
        else
          rcall(op, key, member)
          types[key] = op == 'srem' and 'set?' or 'zset?'   -- it may be gone now
        end
        k, j = k + 1, j + IDX_ARITY[op]
      end
      for j = 0, p.nuniq - 1 do
        local value, ttl, mode = args[p.uniq + 3 * j], args[p.uniq + 3 * j + 1],
                                 args[p.uniq + 3 * j + 2]
        local uk = keys[p.uk + j]
        if mode == 'set' then
          if ttl ~= '0' then rcall('SET', uk, value, 'PX', ttl)
          else rcall('SET', uk, value) end
        elseif rcall('GET', uk) == value then
          rcall('DEL', uk)
        end
      end
      out[w] = p.ver
    end
    return out
  end

  -- Pass 2: each group on its own, in order.
  local replies, wrote = {}, false
  for g = 1, ng do
    local b = bounds[g]
    local a0, k0, nw, na, nk = b[1], b[2], b[3], b[4], b[5]
    local fence = args[a0]
    local alast, klast = a0 + 1 + na, k0 + nk - 1
    local a, k, why = a0 + 2, k0, nil
    local seen = nw > 1 and {} or nil
    for w = 1, nw do
      local p = pool[w]
      if not p then p = {}; pool[w] = p end
      a, k = parse_write(p, keys, args, a, k, alast, klast)
      if not a then why = k; break end
      if seen then
        if seen[p.hkey] then why = agg_name(p) .. ' appears twice'; break end
        seen[p.hkey] = true
      end
    end
    if not why and (a - 1 ~= alast or k - 1 ~= klast) then why = 'group sizes do not match' end
    local err = why and fail('INVALID', why) or validate(fence, nw)
    if err then
      replies[g] = err
    else
      replies[g] = write(nw)
      if replies[g].err == nil then wrote = true end
    end
  end
  -- Retention: one approximate trim per call rather than one per feed entry.
  if wrote and maxlen ~= '0' then rcall('XTRIM', feed_key, 'MAXLEN', '~', maxlen) end
  return replies
end

-- RFC 3339 UTC from the server clock (os.date is not available to functions).
local function now_rfc3339()
  local t = rcall('TIME')
  local s = tonumber(t[1])
  local days, rem = math.floor(s / 86400), s % 86400
  -- days → civil date (Howard Hinnant's algorithm)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02dZ', y, m, d,
                       math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60)
end

-- FCALL lcm_compact 2 lcm:{<kind>:<id>} lcm:{<kind>:<id>}:events [force]
-- Replaces the event stream of an archived aggregate (hash status archived, terminated or
-- deleted) by one lcm.snapshot entry holding its hash fields; rebuild starts from it.
-- Reply: the number of entries removed.
local function compact(keys, args)
  bind()
  local hkey, ekey = keys[1], keys[2]
  if hkey == nil or ekey ~= hkey .. ':events' or not hkey:match('^lcm:{[%w._-]+:[%w._-]+}$') then
    return fail('INVALID', 'keys must be lcm:{<kind>:<id>} and lcm:{<kind>:<id>}:events')
  end
  if keytype(hkey) ~= 'hash' or keytype(ekey) ~= 'stream' then
    return fail('INVALID', 'no such aggregate')
  end
  local flat = rcall('HGETALL', hkey)
  local obj, version, status = {}, nil, nil
  for i = 1, #flat, 2 do
    if flat[i] == 'version' then version = flat[i + 1]
    else obj[flat[i]] = flat[i + 1] end
    if flat[i] == 'status' then status = flat[i + 1] end
  end
  if args[1] ~= 'force' and status ~= 'archived' and status ~= 'terminated'
     and status ~= 'deleted' then
    return fail('INVALID', 'status is ' .. tostring(status) ..
                ', only archived/terminated/deleted aggregates are compacted (or pass force)')
  end
  if not is_uint(version) then return fail('INVALID', hkey .. ' has no valid version') end
  local data = next(obj) == nil and '{}' or cjson.encode(obj)
  local n = rcall('XLEN', ekey)
  rcall('XTRIM', ekey, 'MAXLEN', '0')
  rcall('XADD', ekey, '*', 'type', 'lcm.snapshot', 'version', version,
             'at', now_rfc3339(), 'by', 'lcm_compact', 'data', data)
  return n
end

-- FCALL lcm_lease_acquire 2 lcm:leader lcm:leader:epoch <holder> <ttl_ms>
-- Takes the lease when free (new token = INCR epoch) or renews it when <holder> holds it.
-- Reply: the token, or an error "HELD <token> <holder>" when another holder has it.
local function lease_acquire(keys, args)
  bind()
  local lk, ek, holder, ttl = keys[1], keys[2], args[1], args[2]
  if lk == nil or ek == nil or not valid_name(holder) or not is_uint(ttl) or ttl == '0' then
    return fail('INVALID', 'usage: 2 <lease-key> <epoch-key> <holder> <ttl_ms>')
  end
  local cur = rcall('GET', lk)
  if cur then
    local tok, who = cur:match('^(%S+) (%S+)$')
    if who == holder then
      rcall('PEXPIRE', lk, ttl)
      return tok
    end
    return fail('HELD', cur)
  end
  local tok = tostring(rcall('INCR', ek))
  rcall('SET', lk, tok .. ' ' .. holder, 'PX', ttl)
  return tok
end

-- FCALL lcm_lease_release 1 lcm:leader <token>: gives the lease up if still ours.
local function lease_release(keys, args)
  bind()
  if leader_token(keys[1]) == args[1] then
    rcall('DEL', keys[1])
    return 1
  end
  return 0
end

redis.register_function('lcm_append', append)
redis.register_function('lcm_compact', compact)
redis.register_function('lcm_lease_acquire', lease_acquire)
redis.register_function('lcm_lease_release', lease_release)
