-- Default scale-up policy: launch the cheapest template that fits the demand that running
-- and in-flight workers cannot absorb. A personal-only definition gets a personal-licence
-- template (the template's licence must be one the definition asks for). The host enforces
-- the hard limits again afterwards. See docs/policies.md.
--
-- plan(demand, fleet, templates, limits)
--   -> { {template = <name>, region = <region>, count = <1..1000>, reason = <text>}, ... }

local S = {}

local INFLIGHT = { pending = true, provisioning = true, starting = true }

-- Can a worker of this licence serve a session with this affinity? (enterprise also serves
-- personal; an empty affinity means any licence.)
local function serves(lic, affinity)
  if #affinity == 0 then return true end
  for _, a in ipairs(affinity) do
    if a == lic or (lic == "enterprise" and a == "personal") then return true end
  end
  return false
end

local function asks_for(affinity, lic)
  if #affinity == 0 then return true end
  for _, a in ipairs(affinity) do
    if a == lic then return true end
  end
  return false
end

-- How many sessions of group g fit into the free capacity of slot (at most want).
local function fit(slot, g, want)
  local k = want
  if slot.sessions_left >= 0 and slot.sessions_left < k then k = slot.sessions_left end
  local function cap(free, need)
    if need > 0 then
      local f = math.floor(free / need)
      if f < k then k = math.max(f, 0) end
    end
  end
  cap(slot.cpu, g.cpu_cores)
  cap(slot.mem, g.memory_gb)
  cap(slot.storage, g.storage_gb)
  cap(slot.nodes, g.node_count)
  return k
end

local function take(slot, g, k)
  slot.cpu = slot.cpu - g.cpu_cores * k
  slot.mem = slot.mem - g.memory_gb * k
  slot.storage = slot.storage - g.storage_gb * k
  slot.nodes = slot.nodes - g.node_count * k
  if slot.sessions_left >= 0 then slot.sessions_left = slot.sessions_left - k end
end

local function template_slot(t)
  local c = t.capacity
  return { region = t.region, license = t.license_type, inflight = true,
           cpu = c.cpu_cores, mem = c.memory_gb, storage = c.storage_gb, nodes = c.max_nodes,
           sessions_left = (t.license_type == "personal") and 1 or -1 }
end

local function usable(slot, g)
  if g.region ~= "" and g.region ~= slot.region then return false end
  return serves(slot.license, g.license_affinity)
end

local function workers_needed(t, g, sessions)
  local per = fit(template_slot(t), g, math.maxinteger // 4)
  if per <= 0 then return 0 end
  return (sessions + per - 1) // per
end

function S.plan(demand, fleet, templates, limits)
  if limits.cooldown_active or #demand.groups == 0 then return {} end

  -- Capacity that demand can still use: running and in-flight workers (fix: no duplicate
  -- launches), then the workers this plan launches.
  local slots = {}
  for _, w in ipairs(fleet) do
    local running = w.status == "running"
    if running or INFLIGHT[w.status] then
      local d, a = w.declared, w.allocated
      local left = -1
      if w.license_type == "personal" then left = (w.session_count > 0) and 0 or 1 end
      slots[#slots + 1] = { region = w.region, license = w.license_type, inflight = not running,
                            cpu = d.cpu_cores - a.cpu_cores, mem = d.memory_gb - a.memory_gb,
                            storage = d.storage_gb - a.storage_gb, nodes = d.max_nodes - a.nodes,
                            sessions_left = left }
    end
  end

  local plan, by_key = {}, {}
  for _, g in ipairs(demand.groups) do
    local unplaced = math.max(g.unplaced, 0)
    local upcoming = math.max(g.upcoming, 0)
    -- unplaced sessions already failed on every running worker: only future capacity helps.
    for _, s in ipairs(slots) do
      if unplaced <= 0 and upcoming <= 0 then break end
      if usable(s, g) then
        if s.inflight and unplaced > 0 then
          local k = fit(s, g, unplaced)
          take(s, g, k)
          unplaced = unplaced - k
        end
        if upcoming > 0 then
          local k = fit(s, g, upcoming)
          take(s, g, k)
          upcoming = upcoming - k
        end
      end
    end
    local remaining = unplaced + upcoming
    if remaining > 0 then
      local best, best_n, best_cost
      for _, t in ipairs(templates) do
        if t.enabled and (g.region == "" or g.region == t.region)
            and asks_for(g.license_affinity, t.license_type) then
          local n = workers_needed(t, g, remaining)
          if n > 0 then
            local cost = n * t.cost_per_hour
            if best == nil or cost < best_cost or (cost == best_cost and n < best_n)
                or (cost == best_cost and n == best_n and t.name < best.name) then
              best, best_n, best_cost = t, n, cost
            end
          end
        end
      end
      if best then
        for _ = 1, best_n do
          local s = template_slot(best)
          local f = fit(s, g, remaining)
          take(s, g, f)
          remaining = remaining - f
          slots[#slots + 1] = s
        end
        local key = best.name .. "\0" .. best.region
        local p = by_key[key]
        if not p then
          p = { template = best.name, region = best.region, count = 0,
                reason = string.format("demand for %s: %d unplaced, %d upcoming; cheapest fitting template",
                                       g.definition_id, g.unplaced, g.upcoming) }
          by_key[key] = p
          plan[#plan + 1] = p
        end
        p.count = p.count + best_n
      end
    end
  end

  -- Plan within the limits given (the host enforces them again).
  local budget = math.maxinteger
  if limits.max_launches_per_cycle > 0 then budget = limits.max_launches_per_cycle end
  local kept = {}
  for _, p in ipairs(plan) do
    local c = p.count
    if limits.max_workers_per_region > 0 then
      local in_region = 0
      for _, w in ipairs(fleet) do
        if w.region == p.region then in_region = in_region + 1 end
      end
      for _, k in ipairs(kept) do
        if k.region == p.region then in_region = in_region + k.count end
      end
      local room = limits.max_workers_per_region - in_region
      if c > room then c = room end
    end
    if c > budget then c = budget end
    if c > 0 then
      budget = budget - c
      p.count = c
      kept[#kept + 1] = p
    end
  end
  return kept
end

return S
