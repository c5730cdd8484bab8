"""Placement behaviour through a real lcmd leader and Redis: bin packing keeps idle workers
empty; personal-licence workers take one session; CML version and node-definition
requirements are respected (rejections visible in preview, /metrics, the scheduler status
and lcm:sched:retry); placement and capacity are one atomic write; preview and availability
answer without side effects; a hot-reloaded placement policy changes the next decision."""
import json
import os
import time

from harness import Redis, check, run_tests, wait_until
from schedlib import (allocated, definition, event_types, lcmd, metric, policy_dir, seed, session,
                      status, template, worker, worker_of, worker_sessions)


def test_bin_packing_and_requirements():
    rd = Redis()
    seed(rd, [template("multi"), definition("d1"), definition("dnew", vmin="2.10.0"),
              definition("dnxos", nds=("iosv", "nxosv")),
              worker("wa"), worker("wb"), worker("wold", version="2.8.9"), worker("wnond", nds=("csr1000v",))])
    l = lcmd(rd)
    try:
        seed(rd, [session(f"s{i}", "d1") for i in range(5)])
        wait_until(lambda: all(status(rd, f"s{i}") == "scheduled" for i in range(5)), what="5 scheduled")
        homes = {worker_of(rd, f"s{i}") for i in range(5)}
        check(len(homes) == 1, f"bin packing should use one worker, got {homes}")
        used = homes.pop()
        check(used in ("wa", "wb"), used)
        idle = "wb" if used == "wa" else "wa"
        check(allocated(rd, idle)["cpu_cores"] == 0, "the idle worker stayed empty")
        check(allocated(rd, used) == {"cpu_cores": 40, "memory_gb": 80, "storage_gb": 100, "nodes": 25},
              allocated(rd, used))
        check(len(worker_sessions(rd, used)) == 5, worker_sessions(rd, used))
        for w in ("wold", "wnond"):
            check(allocated(rd, w)["cpu_cores"] == 0, f"{w} must not get d1 sessions")
        # one more fills the worker (48 cpu), the next goes to the other
        seed(rd, [session("s5", "d1"), session("s6", "d1")])
        wait_until(lambda: status(rd, "s6") == "scheduled", what="s6 scheduled")
        check(worker_of(rd, "s5") == used and worker_of(rd, "s6") == idle,
              (worker_of(rd, "s5"), worker_of(rd, "s6")))
        # each placement is one atomic write: scheduled on the session, allocated on the worker
        check(event_types(rd, "session", "s0").count("session.scheduled") == 1, event_types(rd, "session", "s0"))

        # version: nothing runs CML >= 2.10.0 → stays pending, reason cml_version
        seed(rd, [session("v1", "dnew"), session("n1", "dnxos")])
        wait_until(lambda: metric(l, 'lcm_scheduler_rejections_total{reason="cml_version"}') > 0,
                   what="cml_version rejections in /metrics")
        wait_until(lambda: metric(l, 'lcm_scheduler_rejections_total{reason="node_definition"}') > 0,
                   what="node_definition rejections in /metrics")
        time.sleep(0.5)
        check(status(rd, "v1") == "pending" and status(rd, "n1") == "pending",
              (status(rd, "v1"), status(rd, "n1")))
        st, _, pv = l.call("POST", "/api/v1/scheduler/preview", {"session_id": "v1"})
        check(st == 200 and pv["worker_id"] is None, (st, pv))
        reasons = {r["worker_id"]: r["reason"] for r in pv["rejected"]}
        check(reasons.get(idle) == "cml_version" and reasons.get("wold") == "cml_version", reasons)
        st, _, pv = l.call("POST", "/api/v1/scheduler/preview", {"session_id": "n1"})
        reasons = {r["worker_id"]: r["reason"] for r in pv["rejected"]}
        check(reasons.get(idle) == "node_definition" and reasons.get("wnond") == "node_definition", reasons)
        # the retry counters live in Redis (they survive a failover)
        check(rd.cli("HEXISTS", "lcm:sched:retry", "v1").strip() == "1", "retry counter in Redis")
        st, _, sc = l.call("GET", "/api/v1/scheduler")
        check(st == 200 and sc["leader"] is True, sc)
        un = [d for d in sc["scheduler"]["decisions"] if d.get("session_id") == "v1"]
        check(un and un[0]["decision"] == "unplaced" and un[0]["rejections"].get("cml_version") == 3, un)

        # preview of a definition: the worker it would get, ranked with scores; no side effects
        before = rd.cli("XLEN", "lcm:feed")
        st, _, pv = l.call("POST", "/api/v1/scheduler/preview", {"definition_id": "d1"})
        check(st == 200 and pv["worker_id"] == idle and pv["candidates"][0]["score"] > 0, pv)
        check(rd.cli("XLEN", "lcm:feed") == before, "preview wrote to the store")
        st, _, pv = l.call("POST", "/api/v1/scheduler/preview", {"definition_id": "d1", "bogus": 1})
        check(st == 422, (st, pv))
        st, _, pv = l.call("POST", "/api/v1/scheduler/preview", {"session_id": "nope"})
        check(st == 404, (st, pv))
        # availability: wb has 8 cpu used → 5 more d1 sessions fit now
        st, _, av = l.call("GET", "/api/v1/availability?definition_id=d1")
        check(st == 200 and av["fits_now"] == 5, av)
        st, _, av = l.call("GET", "/api/v1/availability?definition_id=dnew")
        check(st == 200 and av["fits_now"] == 0 and av["rejections"].get("cml_version") == 3, av)
        check(av["available"] == av["autoscaler"]["sessions"], av)
        st, _, av = l.call("GET", "/api/v1/availability?definition_id=d1&start=2030-01-01T10:00:00Z&end=2030-01-01T09:00:00Z")
        check(st == 422, (st, av))
        st, _, _ = l.call("GET", "/api/v1/availability?definition_id=missing")
        check(st == 404, st)
        st, _, _ = l.call("GET", "/api/v1/scheduler", token=None)
        check(st == 401, st)
    finally:
        l.stop()
        rd.close()


def test_personal_licence_one_session():
    rd = Redis()
    seed(rd, [template("single", lic="personal", nodes=20), definition("dp", cpu=4, nodes=5, affinity=("personal",)),
              worker("p1", tpl="single", lic="personal"), worker("p2", tpl="single", lic="personal")])
    l = lcmd(rd)
    try:
        seed(rd, [session("a", "dp"), session("b", "dp"), session("c", "dp")])
        wait_until(lambda: sum(status(rd, s) == "scheduled" for s in "abc") == 2, what="two placed")
        time.sleep(0.6)
        placed = {s: worker_of(rd, s) for s in "abc" if status(rd, s) == "scheduled"}
        check(sorted(placed.values()) == ["p1", "p2"], f"one session per personal worker: {placed}")
        left = [s for s in "abc" if s not in placed][0]
        check(status(rd, left) == "pending", status(rd, left))
        st, _, pv = l.call("POST", "/api/v1/scheduler/preview", {"session_id": left})
        check({r["reason"] for r in pv["rejected"] if r["worker_id"] in ("p1", "p2")} == {"personal_busy"}, pv)
        check(metric(l, 'lcm_scheduler_rejections_total{reason="personal_busy"}') >= 2, "metric")
    finally:
        l.stop()
        rd.close()


SPREAD = """
local P = {}
function P.rank(session, workers, ctx)
  local out = {}
  for i, w in ipairs(workers) do
    out[i] = { worker_id = w.id, score = -(w.allocated.cpu_cores / w.declared.cpu_cores) }
  end
  table.sort(out, function(a, b)
    if a.score ~= b.score then return a.score > b.score end
    return a.worker_id < b.worker_id
  end)
  return out
end
return P
"""


SPREAD_FIXTURES = """
local function w(id, cpu)
  return { id = id, region = "r", template = "t", status = "running", license_type = "enterprise",
           cml_version = "2.9.1", declared = { cpu_cores = 48, memory_gb = 192, storage_gb = 256, max_nodes = 200 },
           allocated = { cpu_cores = cpu, memory_gb = 0, storage_gb = 0, nodes = 0 }, session_count = 0,
           cpu_percent = 0, memory_percent = 0, last_activity_at = 0, status_since = 0 }
end
return { { name = "least utilised first", ctx = { now = 1 },
           session = { id = "s", definition_id = "d", cpu_cores = 1, memory_gb = 1, storage_gb = 1,
                       node_count = 1, license_affinity = {} },
           workers = { w("a", 24), w("b", 0) }, expect = { "b", "a" } } }
"""


def test_hot_reloaded_policy_changes_next_decision():
    rd = Redis()
    pol = policy_dir()
    seed(rd, [template("multi"), definition("d1"), worker("wa"), worker("wb")])
    l = lcmd(rd, policies=pol)
    try:
        seed(rd, [session("x1", "d1")])
        wait_until(lambda: status(rd, "x1") == "scheduled", what="x1")
        first = worker_of(rd, "x1")
        seed(rd, [session("x2", "d1")])
        wait_until(lambda: status(rd, "x2") == "scheduled", what="x2")
        check(worker_of(rd, "x2") == first, "default policy packs")
        # least-utilised-first policy, no fixtures for it: drop the default fixtures
        with open(os.path.join(pol, "placement.lua"), "w") as f:
            f.write(SPREAD)
        fx = os.path.join(pol, "fixtures", "placement.lua")
        with open(fx, "w") as f:
            f.write(SPREAD_FIXTURES)
        st, _, body = l.call("POST", "/api/v1/policies/reload")
        check(st == 200, (st, body))
        seed(rd, [session("x3", "d1")])
        wait_until(lambda: status(rd, "x3") == "scheduled", what="x3")
        check(worker_of(rd, "x3") != first, f"spread policy should pick the empty worker, got {worker_of(rd, 'x3')}")
        st, _, pv = l.call("POST", "/api/v1/scheduler/preview", {"definition_id": "d1"})
        check(pv["policy"] == "lua" and pv["policy_generation"] >= 2, pv)
    finally:
        l.stop()
        rd.close()


run_tests([test_bin_packing_and_requirements, test_personal_licence_one_session,
           test_hot_reloaded_policy_changes_next_decision])
