#!lua name=lcm
-- LCM's Redis Function library: every write to the event store goes through lcm_append, one
-- atomic server-side call that validates everything before its first write (Redis does not
-- roll back) and then appends events, updates hashes, indexes, uniqueness keys and the feed.
-- Loaded by lcmd with FUNCTION LOAD REPLACE on every connect; see docs/redis-layout.md.

local PROTO = '1'

local function fail(code, msg)
  return redis.error_reply(code .. ' ' .. msg)
end

local function keytype(k)
  return redis.call('TYPE', k)['ok']
end

local function is_uint(s)
  return type(s) == 'string' and s:match('^%d+$') ~= nil and #s <= 15
end

local function valid_name(s)
  return type(s) == 'string' and #s > 0 and #s <= 128 and s:match('^[%w._%-]+$') ~= nil
end

-- Returns the first word of lcm:leader ("<token> <holder>"), or nil when there is no lease.
local function leader_token(k)
  local cur = redis.call('GET', k)
  if not cur then return nil end
  return cur:match('^(%S+)')
end

-- FCALL lcm_append <numkeys> lcm:leader lcm:feed {per write: hash events idx-keys… uniq-keys…}
--   1 <fence|""> <feed-maxlen> <nwrites>
--   {per write: kind id expected nev nset ndel nidx nuniq
--               nev×(type at by data) nset×(field value) ndel×(field)
--               nidx×(op score member) nuniq×(value ttl_ms mode)}
-- op ∈ sadd srem zadd zrem uadd (a unique set: it may hold only this member, else
-- DUPLICATE); mode ∈ set (reserve, idempotent for the same value) del (release
-- when the value matches). Reply: the new version of each aggregate, in order.
local function append(keys, args)
  local ki, ai = 0, 0
  local function K() ki = ki + 1; return keys[ki] end
  local function A() ai = ai + 1; return args[ai] end

  if A() ~= PROTO then return fail('INVALID', 'protocol version, expected ' .. PROTO) end
  local fence, maxlen, nw = A(), A(), A()
  if fence == nil or not is_uint(maxlen) or not is_uint(nw) then
    return fail('INVALID', 'header')
  end
  nw = tonumber(nw)
  if nw < 1 then return fail('INVALID', 'no writes') end
  local leader_key, feed_key = K(), K()
  if leader_key == nil or feed_key == nil then return fail('INVALID', 'missing keys') end

  -- Parse every write into a plan; nothing is touched yet.
  local plan, seen = {}, {}
  for w = 1, nw do
    local p = { kind = A(), id = A() }
    local exp, nev, nset, ndel, nidx, nuniq = A(), A(), A(), A(), A(), A()
    if not valid_name(p.kind) or not valid_name(p.id) then
      return fail('INVALID', 'write ' .. w .. ': kind/id must match [A-Za-z0-9._-]{1,128}')
    end
    local agg = p.kind .. ':' .. p.id
    if seen[agg] then return fail('INVALID', agg .. ' appears twice') end
    seen[agg] = true
    p.agg = agg
    for _, n in ipairs({ exp, nev, nset, ndel, nidx, nuniq }) do
      if not is_uint(n) then return fail('INVALID', agg .. ': counts must be integers') end
    end
    p.expected = tonumber(exp)
    nev, nset, ndel, nidx, nuniq =
      tonumber(nev), tonumber(nset), tonumber(ndel), tonumber(nidx), tonumber(nuniq)
    if nev < 1 then return fail('INVALID', agg .. ': no events') end
    p.hkey, p.ekey = K(), K()
    if p.hkey ~= 'lcm:{' .. agg .. '}' or p.ekey ~= 'lcm:{' .. agg .. '}:events' then
      return fail('INVALID', agg .. ': keys do not match kind and id')
    end
    p.events = {}
    for i = 1, nev do
      local t, at, by, data = A(), A(), A(), A()
      if data == nil then return fail('INVALID', agg .. ': truncated events') end
      if #t == 0 or #t > 128 or t:find('%s') then
        return fail('INVALID', agg .. ': bad event type')
      end
      if #at == 0 then return fail('INVALID', agg .. ': event without at') end
      if data:sub(1, 1) ~= '{' or data:sub(-1) ~= '}' then
        return fail('INVALID', agg .. ': event data must be a JSON object')
      end
      p.events[i] = { t, at, by, data }
    end
    p.set = {}
    for i = 1, nset do
      local f, v = A(), A()
      if v == nil then return fail('INVALID', agg .. ': truncated fields') end
      if f == 'version' or #f == 0 then return fail('INVALID', agg .. ': bad field name') end
      p.set[#p.set + 1] = f
      p.set[#p.set + 1] = v
    end
    p.del = {}
    for i = 1, ndel do
      local f = A()
      if f == nil or f == 'version' then return fail('INVALID', agg .. ': bad deleted field') end
      p.del[i] = f
    end
    p.idx = {}
    for i = 1, nidx do
      local op, score, member, key = A(), A(), A(), K()
      if member == nil or key == nil then return fail('INVALID', agg .. ': truncated index ops') end
      if key:sub(1, 8) ~= 'lcm:idx:' then
        return fail('INVALID', agg .. ': index keys live under lcm:idx:')
      end
      local want
      if op == 'sadd' or op == 'srem' or op == 'uadd' then want = 'set'
      elseif op == 'zadd' or op == 'zrem' then want = 'zset'
        if op == 'zadd' and tonumber(score) == nil then
          return fail('INVALID', agg .. ': bad score for ' .. key)
        end
      else return fail('INVALID', agg .. ': bad index op ' .. tostring(op)) end
      p.idx[i] = { op, key, score, member, want }
    end
    p.uniq = {}
    for i = 1, nuniq do
      local value, ttl, mode, key = A(), A(), A(), K()
      if key == nil or mode == nil then return fail('INVALID', agg .. ': truncated uniques') end
      if key:sub(1, 9) ~= 'lcm:uniq:' then
        return fail('INVALID', agg .. ': uniqueness keys live under lcm:uniq:')
      end
      if #value == 0 or not is_uint(ttl) or (mode ~= 'set' and mode ~= 'del') then
        return fail('INVALID', agg .. ': bad uniqueness op on ' .. key)
      end
      p.uniq[i] = { key, value, tonumber(ttl), mode }
    end
    plan[w] = p
  end
  if ai ~= #args or ki ~= #keys then
    return fail('INVALID', 'trailing arguments or keys')
  end

  -- Validate against the current data, still before the first write.
  if fence ~= '' then
    local cur = leader_token(leader_key)
    if cur ~= fence then
      return fail('FENCED', 'current=' .. (cur or 'none') .. ' given=' .. fence)
    end
  end
  local ft = keytype(feed_key)
  if ft ~= 'none' and ft ~= 'stream' then return fail('INVALID', feed_key .. ' is a ' .. ft) end
  for _, p in ipairs(plan) do
    local ht = keytype(p.hkey)
    if ht ~= 'none' and ht ~= 'hash' then return fail('INVALID', p.hkey .. ' is a ' .. ht) end
    local et = keytype(p.ekey)
    if et ~= 'none' and et ~= 'stream' then return fail('INVALID', p.ekey .. ' is a ' .. et) end
    local cur = 0
    if ht == 'hash' then
      local v = redis.call('HGET', p.hkey, 'version')
      if not is_uint(v) then return fail('INVALID', p.hkey .. ' has no valid version') end
      cur = tonumber(v)
    elseif et == 'stream' then
      -- Events without a hash: the hashes were dropped (rebuild pending); refuse to guess.
      return fail('CONFLICT', p.agg .. ' current=unknown expected=' .. p.expected ..
                  ' (stream without hash: run lcmd --rebuild)')
    end
    if cur ~= p.expected then
      return fail('CONFLICT', p.agg .. ' current=' .. cur .. ' expected=' .. p.expected)
    end
    for _, ix in ipairs(p.idx) do
      local t = keytype(ix[2])
      if t ~= 'none' and t ~= ix[5] then return fail('INVALID', ix[2] .. ' is a ' .. t) end
      if ix[1] == 'uadd' and t == 'set' and redis.call('SISMEMBER', ix[2], ix[4]) == 0 then
        return fail('DUPLICATE', ix[2] .. ' ' .. redis.call('SRANDMEMBER', ix[2]))
      end
    end
    for _, u in ipairs(p.uniq) do
      local t = keytype(u[1])
      if t ~= 'none' and t ~= 'string' then return fail('INVALID', u[1] .. ' is a ' .. t) end
      if u[4] == 'set' and t == 'string' then
        local have = redis.call('GET', u[1])
        if have ~= u[2] then return fail('DUPLICATE', u[1] .. ' ' .. have) end
      end
    end
  end

  -- Write. Nothing below can fail on types or values checked above.
  local out = {}
  for w, p in ipairs(plan) do
    local v = p.expected
    for _, e in ipairs(p.events) do
      v = v + 1
      redis.call('XADD', p.ekey, '*', 'type', e[1], 'version', v, 'at', e[2], 'by', e[3],
                 'data', e[4])
      if maxlen == '0' then
        redis.call('XADD', feed_key, '*', 'kind', p.kind, 'id', p.id, 'type', e[1],
                   'version', v, 'at', e[2], 'by', e[3], 'data', e[4])
      else
        redis.call('XADD', feed_key, 'MAXLEN', '~', maxlen, '*', 'kind', p.kind, 'id', p.id,
                   'type', e[1], 'version', v, 'at', e[2], 'by', e[3], 'data', e[4])
      end
    end
    redis.call('HSET', p.hkey, 'version', v, unpack(p.set))
    if #p.del > 0 then redis.call('HDEL', p.hkey, unpack(p.del)) end
    for _, ix in ipairs(p.idx) do
      if ix[1] == 'zadd' then redis.call('ZADD', ix[2], ix[3], ix[4])
      elseif ix[1] == 'uadd' then redis.call('SADD', ix[2], ix[4])
      else redis.call(ix[1], ix[2], ix[4]) end
    end
    for _, u in ipairs(p.uniq) do
      if u[4] == 'set' then
        if u[3] > 0 then redis.call('SET', u[1], u[2], 'PX', u[3])
        else redis.call('SET', u[1], u[2]) end
      elseif redis.call('GET', u[1]) == u[2] then
        redis.call('DEL', u[1])
      end
    end
    out[w] = v
  end
  return out
end

-- RFC 3339 UTC from the server clock (os.date is not available to functions).
local function now_rfc3339()
  local t = redis.call('TIME')
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
  local hkey, ekey = keys[1], keys[2]
  if hkey == nil or ekey ~= hkey .. ':events' or not hkey:match('^lcm:{[%w._-]+:[%w._-]+}$') then
    return fail('INVALID', 'keys must be lcm:{<kind>:<id>} and lcm:{<kind>:<id>}:events')
  end
  if keytype(hkey) ~= 'hash' or keytype(ekey) ~= 'stream' then
    return fail('INVALID', 'no such aggregate')
  end
  local flat = redis.call('HGETALL', hkey)
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
  local n = redis.call('XLEN', ekey)
  redis.call('XTRIM', ekey, 'MAXLEN', '0')
  redis.call('XADD', ekey, '*', 'type', 'lcm.snapshot', 'version', version,
             'at', now_rfc3339(), 'by', 'lcm_compact', 'data', data)
  return n
end

-- FCALL lcm_lease_acquire 2 lcm:leader lcm:leader:epoch <holder> <ttl_ms>
-- Takes the lease when free (new token = INCR epoch) or renews it when <holder> holds it.
-- Reply: the token, or an error "HELD <token> <holder>" when another holder has it.
local function lease_acquire(keys, args)
  local lk, ek, holder, ttl = keys[1], keys[2], args[1], args[2]
  if lk == nil or ek == nil or not valid_name(holder) or not is_uint(ttl) or ttl == '0' then
    return fail('INVALID', 'usage: 2 <lease-key> <epoch-key> <holder> <ttl_ms>')
  end
  local cur = redis.call('GET', lk)
  if cur then
    local tok, who = cur:match('^(%S+) (%S+)$')
    if who == holder then
      redis.call('PEXPIRE', lk, ttl)
      return tok
    end
    return fail('HELD', cur)
  end
  local tok = tostring(redis.call('INCR', ek))
  redis.call('SET', lk, tok .. ' ' .. holder, 'PX', ttl)
  return tok
end

-- FCALL lcm_lease_release 1 lcm:leader <token>: gives the lease up if still ours.
local function lease_release(keys, args)
  if leader_token(keys[1]) == args[1] then
    redis.call('DEL', keys[1])
    return 1
  end
  return 0
end

redis.register_function('lcm_append', append)
redis.register_function('lcm_compact', compact)
redis.register_function('lcm_lease_acquire', lease_acquire)
redis.register_function('lcm_lease_release', lease_release)
