"""Several lcmd replicas on one Redis. (1) Forced race: two replicas share a lease holder name,
so both believe they lead and carry the same fencing token; only the expected versions of the
atomic session+worker write stand between them — no worker is over-committed and no session
is placed twice. (2) Three replicas, kill -9 of the leader during a burst of bookings: a new
leader takes over; every session is placed exactly once; no worker is launched. (3) A
SIGSTOPped leader is replaced; when it wakes it is a follower and places nothing."""
import json
import signal
import subprocess
import threading
import time

from harness import Redis, check, run_tests, wait_until
from schedlib import (SEED, definition, event_types, lcmd, metric, seed, session, status, template,
                      wait_leader, worker)

CAP = {"cpu_cores": 48, "memory_gb": 192, "storage_gb": 256, "nodes": 200}


def verify(rd, sessions, workers):
    """Every placed session once; worker allocations = sum of their sessions, within capacity."""
    per_worker = {w: [] for w in workers}
    for s in sessions:
        evs = event_types(rd, "session", s)
        n = evs.count("session.scheduled")
        check(n <= 1, f"{s} scheduled {n} times: {evs}")
        st = rd.cli("HGET", f"lcm:{{session:{s}}}", "status").strip()
        if st == "scheduled":
            w = rd.cli("HGET", f"lcm:{{session:{s}}}", "worker_id").strip()
            per_worker[w].append(s)
    for w in workers:
        alloc = json.loads(rd.cli("HGET", f"lcm:{{worker:{w}}}", "allocated"))
        held = [a["session_id"] for a in json.loads(rd.cli("HGET", f"lcm:{{worker:{w}}}", "sessions"))]
        check(sorted(held) == sorted(per_worker[w]), f"{w}: worker holds {held}, sessions say {per_worker[w]}")
        for k, cap in CAP.items():
            check(alloc[k] <= cap, f"{w} over-committed on {k}: {alloc}")
        check(alloc["cpu_cores"] == 8 * len(held), f"{w}: allocation {alloc} for {len(held)} sessions")
    return sum(len(v) for v in per_worker.values())


def test_forced_race_never_overcommits():
    rd = Redis()
    workers = [f"w{i}" for i in range(4)]
    seed(rd, [template("multi"), definition("d1")] + [worker(w) for w in workers])
    env = {"LCM_LEADER_HOLDER": "same-holder", "LCM_MAX_WORKERS_PER_REGION": "4",
           "LCM_SCHEDULER_INTERVAL_MS": "20"}
    a, b = lcmd(rd, env=env), lcmd(rd, env=env)
    try:
        wait_until(lambda: all(r.get("/readyz")[2].get("role") == "leader" for r in (a, b)),
                   what="both replicas believe they lead")
        sessions = [f"s{i:03d}" for i in range(40)]
        # two seeders at once: both schedulers wake on every burst
        ths = [threading.Thread(target=seed, args=(rd, [session(s, "d1") for s in sessions[k::2]]))
               for k in range(2)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        wait_until(lambda: sum(status(rd, s) == "scheduled" for s in sessions) == 24, timeout=30,
                   what="24 sessions placed (4 workers × 6)")
        time.sleep(1.0)
        placed = verify(rd, sessions, workers)
        check(placed == 24, placed)
        conflicts = metric(a, "lcm_scheduler_conflicts_total") + metric(b, "lcm_scheduler_conflicts_total")
        pa, pb = metric(a, "lcm_scheduler_placements_total"), metric(b, "lcm_scheduler_placements_total")
        print(f"     placements a={pa:.0f} b={pb:.0f}, refused commits {conflicts:.0f}")
        check(pa + pb == 24, (pa, pb))
    finally:
        a.stop()
        b.stop()
        rd.close()


def test_failover_during_burst_and_fenced_sleeper():
    rd = Redis()
    workers = [f"w{i}" for i in range(10)]
    seed(rd, [template("multi"), definition("d1")] + [worker(w) for w in workers])
    env = {"LCM_MAX_WORKERS_PER_REGION": "10"}
    reps = [lcmd(rd, env=env) for _ in range(3)]
    try:
        leader = wait_leader(reps)
        sessions = [f"b{i:03d}" for i in range(60)]
        proc = subprocess.Popen([SEED, rd.url, json.dumps([session(s, "d1") for s in sessions])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: sum(status(rd, s) in ("pending", "scheduled") for s in sessions) >= 10,
                   what="burst under way")
        t0 = time.monotonic()
        leader.stop(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        check(proc.returncode == 0, err)
        new = wait_leader([r for r in reps if r.proc])
        took = time.monotonic() - t0
        print(f"     new leader after kill -9: {took * 1000:.0f} ms")
        wait_until(lambda: all(status(rd, s) == "scheduled" for s in sessions), timeout=30,
                   what="all 60 sessions placed after failover")
        check(verify(rd, sessions, workers) == 60, "placed")
        wk = [k for k in rd.cli("--scan", "--pattern", "lcm:{worker:*}").split("\n") if k and not k.endswith(":events")]
        check(len(wk) == 10, f"no worker launched: {wk}")

        # SIGSTOP the leader; a third replica leads; the sleeper wakes as a follower and its
        # (stale) scheduler places nothing
        sleeper = new
        before = metric(sleeper, "lcm_scheduler_placements_total")
        sleeper.proc.send(signal.SIGSTOP)
        others = [r for r in reps if r.proc and r is not sleeper]
        third = wait_leader(others)
        more = [f"c{i:03d}" for i in range(10)]
        seed(rd, [session(s, "d1") for s in more])   # no room left: they stay pending
        seed(rd, [{"op": "worker", "id": "w10", "template": "multi", "region": "eu-west-1",
                   "status": "running", "cml": {"version": "2.9.1", "ready": True, "node_definitions": ["iosv"]},
                   "license": "enterprise"}])
        wait_until(lambda: sum(status(rd, s) == "scheduled" for s in more) == 6, timeout=30,
                   what="the new leader places on the new worker")
        sleeper.proc.send(signal.SIGCONT)
        time.sleep(2.0)
        role = sleeper.get("/readyz")[2].get("role")
        check(role == "follower", f"woken ex-leader is {role}")
        check(metric(sleeper, "lcm_scheduler_placements_total") == before, "the sleeper placed sessions after waking")
        check(verify(rd, sessions + more, workers + ["w10"]) == 66, "placed after the sleeper woke")
        check(third.get("/readyz")[2].get("role") == "leader", "third still leads")
    finally:
        for r in reps:
            if r.proc:
                r.proc.send(signal.SIGCONT)
                r.stop()
        rd.close()


run_tests([test_forced_race_never_overcommits, test_failover_during_burst_and_fenced_sleeper])
