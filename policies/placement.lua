-- Default placement policy: the most utilised worker first (bin packing), so that lightly
-- used workers empty out and can be scaled down. The host has already removed every worker
-- that cannot take the session (status, licence, free capacity, CML version, node
-- definitions, ports): this only orders the shortlist. See docs/policies.md.
--
-- rank(session, workers, ctx) -> { {worker_id = <id>, score = <finite number>}, ... }
-- best first; a worker left out is not used for this session.
--
-- rank runs once per pending session (10,000 in a cycle) under the sandbox's count hook, so
-- every VM instruction and allocation counts: each worker's score is computed once, inline;
-- the host hands the shortlist over already in this order (it keeps it sorted by the same
-- rule), so one pass checks that while it builds the result and the sort is skipped; any
-- other order is sorted by indices with a comparator over precomputed numbers. The result
-- and its entry tables are reused from call to call (the host copies them out before the
-- next call): read a result before calling rank again.

local P = {}

local function share(used, declared)
  if declared > 0 then return used / declared end
  return 0.0
end

-- The worker's dominant share: the fullest of cpu, memory, storage and nodes.
function P.utilisation(w)
  local d, a = w.declared, w.allocated
  local u = share(a.cpu_cores, d.cpu_cores)
  local m = share(a.memory_gb, d.memory_gb)
  local s = share(a.storage_gb, d.storage_gb)
  local n = share(a.nodes, d.max_nodes)
  if m > u then u = m end
  if s > u then u = s end
  if n > u then u = n end
  return u
end

-- Scratch for the sort (entries past the current shortlist are stale, never read): score,
-- session count and id of the i-th entry, and the order being sorted.
local score, sessions, ids, order = {}, {}, {}, {}
-- The result returned by every call, and its entry tables.
local ranked, pool = {}, {}

-- Order of two positions: higher score, then more sessions, then the smaller id.
local function better(p, q)
  local x, y = score[p], score[q]
  if x ~= y then return x > y end
  x, y = sessions[p], sessions[q]
  if x ~= y then return x > y end
  return ids[p] < ids[q]
end

-- The n entries of ranked (built in shortlist order) put in ranking order.
local function sort_ranked(workers, n)
  for i = 1, n do
    local e = ranked[i]
    score[i], sessions[i], ids[i], order[i] = e.score, workers[i].session_count, e.worker_id, i
  end
  for i = #order, n + 1, -1 do order[i] = nil end -- table.sort works on the whole array
  table.sort(order, better)
  for i = 1, n do ranked[i] = pool[order[i]] end
  -- pool keeps following ranked position by position for the next call
  for i = 1, n do pool[i] = ranked[i] end
  return ranked
end

function P.rank(session, workers, ctx)
  local n = #workers
  local pu, pc, pid = math.huge, math.huge, "" -- the previous entry, while the input is in order
  local sorted = true
  for i = 1, n do
    local w = workers[i]
    local d, a = w.declared, w.allocated
    -- P.utilisation inlined (same arithmetic, so the same score as the built-in)
    local u, y = 0.0, d.cpu_cores
    if y > 0 then u = a.cpu_cores / y end
    y = d.memory_gb
    if y > 0 then y = a.memory_gb / y; if y > u then u = y end end
    y = d.storage_gb
    if y > 0 then y = a.storage_gb / y; if y > u then u = y end end
    y = d.max_nodes
    if y > 0 then y = a.nodes / y; if y > u then u = y end end
    local id = w.id
    local e = pool[i]
    if e then
      e.worker_id, e.score = id, u
    else
      e = { worker_id = id, score = u }
      pool[i] = e
    end
    ranked[i] = e
    if u < pu then
      pu, pc, pid = u, w.session_count, id
    elseif sorted then
      local c = w.session_count
      if u == pu and (c < pc or (c == pc and pid < id)) then
        pc, pid = c, id
      else
        sorted = false
      end
    end
  end
  for i = #ranked, n + 1, -1 do ranked[i] = nil end
  if sorted then return ranked end
  return sort_ranked(workers, n)
end

return P
