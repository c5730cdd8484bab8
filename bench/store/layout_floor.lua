#!lua name=lcm_bench_floor
-- The floor of the store layout (bench only, never loaded by lcmd): exactly the writes that
-- ARCHITECTURE.md and docs/redis-layout.md require for one event of bench_store's workload,
-- with none of lcm_append's checks (no argument validation, no type checks, no fencing, no
-- version comparison; the HGET of the version is kept because optimistic concurrency needs
-- that read). Whatever an implementation of the layout does, it does at least this much per
-- event; bench_store measures it in the same run as lcm_append and raw XADD so that the aim
-- can be compared with what the layout allows on this Redis.
--
-- FCALL lcm_bench_floor <4n> {hkey ekey from-index to-index}×n lcm:feed-key
--       {version status data}×n
-- lcm_bench_floor_feed1: the same, with one lcm:feed entry per call holding every event of
-- the call (a feed layout LCM does not use: it shows what batching the feed would buy).

local function each(keys, args, fn)
  for i = 0, (#keys - 1) / 4 - 1 do
    local k, a = 4 * i, 3 * i
    fn(keys[k + 1], keys[k + 2], keys[k + 3], keys[k + 4], args[a + 1], args[a + 2],
       args[a + 3])
  end
end

local AT, BY = '2025-01-01T00:00:00.000Z', 'bench'

local function floor(keys, args)
  local feed = keys[#keys]
  each(keys, args, function(hk, ek, from, to, v, st, data)
    redis.call('HGET', hk, 'version')
    redis.call('XADD', ek, '*', 'type', 'note.set', 'version', v, 'at', AT, 'by', BY,
               'data', data)
    redis.call('XADD', feed, '*', 'kind', 'note', 'id', hk, 'type', 'note.set', 'version', v,
               'at', AT, 'by', BY, 'data', data)
    redis.call('HSET', hk, 'version', v, 'status', st, 'n', v)
    redis.call('SMOVE', from, to, hk)
  end)
  return 1
end

local function floor_feed1(keys, args)
  local feed, batch = keys[#keys], {}
  each(keys, args, function(hk, ek, from, to, v, st, data)
    redis.call('HGET', hk, 'version')
    redis.call('XADD', ek, '*', 'type', 'note.set', 'version', v, 'at', AT, 'by', BY,
               'data', data)
    redis.call('HSET', hk, 'version', v, 'status', st, 'n', v)
    redis.call('SMOVE', from, to, hk)
    batch[#batch + 1] = hk .. ' ' .. v
    batch[#batch + 1] = data
  end)
  redis.call('XADD', feed, '*', unpack(batch))
  return 1
end

redis.register_function('lcm_bench_floor', floor)
redis.register_function('lcm_bench_floor_feed1', floor_feed1)
