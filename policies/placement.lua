-- Default placement policy: the most utilised worker first (bin packing), so that lightly
-- used workers empty out and can be scaled down. The host has already removed every worker
-- that cannot take the session (status, licence, free capacity, CML version, node
-- definitions, ports): this only orders the shortlist. See docs/policies.md.
--
-- rank(session, workers, ctx) -> { {worker_id = <id>, score = <finite number>}, ... }
-- best first; a worker left out is not used for this session.

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

local function better(x, y)
  if x.score ~= y.score then return x.score > y.score end
  if x.sessions ~= y.sessions then return x.sessions > y.sessions end
  return x.worker_id < y.worker_id
end

function P.rank(session, workers, ctx)
  local ranked = {}
  for i, w in ipairs(workers) do
    ranked[i] = { worker_id = w.id, score = P.utilisation(w), sessions = w.session_count }
  end
  table.sort(ranked, better)
  return ranked
end

return P
