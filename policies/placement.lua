-- Default placement policy: the most utilised worker first (bin packing), so that lightly
-- used workers empty out and can be scaled down. The host has already removed every worker
-- that cannot take the session (status, licence, free capacity, CML version, node
-- definitions, ports): this only orders the shortlist. See docs/policies.md.
--
-- rank(session, workers, ctx) -> { {worker_id = <id>, score = <finite number>}, ... }
-- best first; a worker left out is not used for this session.
--
-- rank runs once per pending session (10,000 in a cycle), so it is written for speed: each
-- worker's score is computed once into flat scratch arrays, no closure or key table is built
-- per call, and since the host hands the shortlist over already in this order (it keeps it
-- sorted with the same rule), one pass checks that and skips the sort; any other order is
-- sorted by indices with a comparator over the precomputed numbers.

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

-- Scratch reused by every call (entries past the current shortlist are stale, never read):
-- score, session count and id of the i-th worker, and the order being sorted.
local score, sessions, ids, order = {}, {}, {}, {}

-- Order of two shortlist positions: higher score, then more sessions, then the smaller id.
local function better(p, q)
  local x, y = score[p], score[q]
  if x ~= y then return x > y end
  x, y = sessions[p], sessions[q]
  if x ~= y then return x > y end
  return ids[p] < ids[q]
end

function P.rank(session, workers, ctx)
  local n = #workers
  local sorted = true
  local pu, pc, pid
  for i = 1, n do
    local w = workers[i]
    local d, a = w.declared, w.allocated
    -- P.utilisation inlined (same arithmetic, so the same score as the built-in)
    local u, x, y = 0.0, 0.0, d.cpu_cores
    if y > 0 then u = a.cpu_cores / y end
    y = d.memory_gb
    if y > 0 then x = a.memory_gb / y; if x > u then u = x end end
    y = d.storage_gb
    if y > 0 then x = a.storage_gb / y; if x > u then u = x end end
    y = d.max_nodes
    if y > 0 then x = a.nodes / y; if x > u then u = x end end
    local c, id = w.session_count, w.id
    if sorted and i > 1
        and not (pu > u or (pu == u and (pc > c or (pc == c and pid < id)))) then
      sorted = false
    end
    pu, pc, pid = u, c, id
    score[i], sessions[i], ids[i], order[i] = u, c, id, i
  end
  local ranked = {}
  if sorted then
    for i = 1, n do ranked[i] = { worker_id = ids[i], score = score[i] } end
    return ranked
  end
  for i = #order, n + 1, -1 do order[i] = nil end -- table.sort works on the whole array
  table.sort(order, better)
  for i = 1, n do
    local k = order[i]
    ranked[i] = { worker_id = ids[k], score = score[k] }
  end
  return ranked
end

return P
