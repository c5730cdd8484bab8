-- Default scale-down policy: drain the idlest eligible running workers while more running
-- workers than the warm minimum remain; terminate stopped workers kept longer than the
-- retention. The host only offers workers that are empty, have nothing scheduled within the
-- lead window and have been idle long enough (fix: idle is not empty). See docs/policies.md.
--
-- choose(eligible, fleet, limits)
--   -> { {worker_id = <id>, action = "drain"|"stop"|"terminate", reason = <text>}, ... }

local D = {}

local function idler(x, y)
  if x.last_activity_at ~= y.last_activity_at then
    return x.last_activity_at < y.last_activity_at
  end
  return x.id < y.id
end

function D.choose(eligible, fleet, limits)
  if limits.cooldown_active or #eligible == 0 then return {} end
  local running = 0
  for _, w in ipairs(fleet) do
    if w.status == "running" then running = running + 1 end
  end
  local removable = running - limits.min_warm_workers

  local cand = {}
  for _, w in ipairs(eligible) do
    if w.status == "running" then cand[#cand + 1] = w end
  end
  table.sort(cand, idler)

  local out = {}
  -- Graceful first: drain (running sessions would finish; these have none) rather than stop.
  for _, w in ipairs(cand) do
    if removable <= 0 then break end
    out[#out + 1] = { worker_id = w.id, action = "drain",
                      reason = string.format("empty and idle, above warm minimum %d",
                                             limits.min_warm_workers) }
    removable = removable - 1
  end

  local retention = limits.stopped_retention_minutes * 60
  if limits.stopped_retention_minutes > 0 then
    for _, w in ipairs(eligible) do
      if w.status == "stopped" and limits.now - w.status_since >= retention then
        out[#out + 1] = { worker_id = w.id, action = "terminate",
                          reason = string.format("stopped longer than retention %d min",
                                                 limits.stopped_retention_minutes) }
      end
    end
  end
  return out
end

return D
