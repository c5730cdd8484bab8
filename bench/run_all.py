#!/usr/bin/env python3
"""One command for every benchmark in bench/: store, policy, placement, api, plus lcmd's
memory per session and policy reload under load. Each figure is printed next to its baseline
(measured in the same run) and their ratio, as a table, and written as JSON to
bench/results/latest.json (git-ignored: the figures worth keeping go to docs/performance.md).

Benchmarks: store, policy, placement, scaling (if bench/scaling exists), api, memory, reload, e2e (booking → ready, 1,000 sessions
on 1,000 workers simulated by cml-sim at zero latency).
Usage: python3 bench/run_all.py [--build DIR] [--quick] [--only NAME,...] [--out FILE]
  --build DIR  a Release build without sanitizers (configured and built here when missing;
               default build-bench). Budget: under 10 minutes on 2 cores (--quick: ~2).
Exit status: 0 when every benchmark ran (goals missed are reported, not fatal), 1 otherwise."""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))
import harness  # noqa: E402

TARGETS = ["lcmd", "bench_store", "bench_policy", "bench_placement", "bench_api_bare_evhttp",
           "bench_api_evhttp_xadd", "bench_api_evhttp_session", "sched_seed", "cml-sim", "lds-sim", "lcm-cml", "lcm-lds", "lcm-aws"]
ROWS = []        # (bench, figure, value, baseline, ratio, goal, met)
RESULTS = {}


def say(msg):
    print(msg, flush=True)


def row(bench, figure, value, baseline=None, ratio=None, goal="", met=None, unit=""):
    if ratio is None and baseline:
        ratio = value / baseline
    ROWS.append({"bench": bench, "figure": figure, "value": value, "baseline": baseline,
                 "ratio": ratio, "goal": goal, "met": met, "unit": unit})


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in output:\n" + text[-2000:])


def run(argv, timeout):
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode not in (0,):
        say(f"  {os.path.basename(argv[0])} exited {r.returncode}: {r.stderr[-1500:]}")
    return r, time.monotonic() - t0


def ensure_build(build):
    cache = os.path.join(build, "CMakeCache.txt")
    if os.path.exists(cache):
        text = open(cache).read()
        if "LCM_SANITIZE:BOOL=ON" in text:
            raise SystemExit(f"{build} is a sanitizer build: use a Release build for figures")
    else:
        subprocess.run(["cmake", "-S", SRC, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                        "-DLCM_SANITIZE=OFF"], check=True, stdout=subprocess.DEVNULL)
    say(f"building {len(TARGETS)} targets in {build} …")
    subprocess.run(["cmake", "--build", build, "--target", *TARGETS, "-j", str(os.cpu_count() or 2)],
                   check=True, stdout=subprocess.DEVNULL)


# ---- the C benchmarks -----------------------------------------------------------------------

def bench_store(a):
    r, dt = run([os.path.join(a.bin, "bench_store")] + (["--quick"] if a.quick else []), 600)
    j = last_json(r.stdout)
    RESULTS["store"] = dict(j, seconds=dt)
    row("store", "lcm_store_append (events/s)", j["store_append_eps"], j["raw_xadd_eps"],
        goal="ratio ≥ 0.35", met=j["ratio"] >= 0.35)
    # The layout's floor (bench/store/layout_floor.lua): what any implementation can reach.
    row("store", "layout floor as a Redis Function (events/s)", j["floor_function_eps"],
        j["raw_xadd_eps"])
    row("store", "layout floor as plain pipelined commands (events/s)", j["floor_raw_eps"],
        j["raw_xadd_eps"])
    row("store", "rebuild 100k events (s)", j["rebuild_100k_s"], unit="s")
    if not a.quick:
        row("store", f"rebuild {j['rebuild_big_events']} events (s)", j["rebuild_big_s"],
            goal="≤ 2.5 s", met=j["rebuild_big_s"] <= 2.5, unit="s")


def bench_policy(a):
    r, dt = run([os.path.join(a.bin, "bench_policy"), "--seconds", "0.5" if a.quick else "2",
                 "--dir", os.path.join(SRC, "policies")], 300)
    j = last_json(r.stdout)
    RESULTS["policy"] = dict(j, seconds=dt)
    row("policy", "Lua placement evals/s", j["lua_evals_per_s"], j["c_evals_per_s"])
    row("policy", "policy reload (ms, mean)", j["reload_ms_mean"], unit="ms")
    row("policy", "eval p99 while reloading (us)", j["eval_during_reload_p99_us"], unit="us")


def bench_placement(a):
    argv = [os.path.join(a.bin, "bench_placement")] + (["--quick"] if a.quick else [])
    r, dt = run(argv, 600)
    j = last_json(r.stdout)
    RESULTS["placement"] = dict(j, seconds=dt)
    row("placement", f"placements/s Lua ({j['workers']} workers × {j['sessions']} sessions)",
        j["lua"]["placements_per_s"], j["c"]["placements_per_s"], goal="same placements",
        met=j["same_placements"])


def bench_scaling(a):
    script = os.path.join(HERE, "scaling", "run.py")
    if not os.path.exists(script):
        say("  bench/scaling not present: skipped")
        return
    argv = [sys.executable, script, "--build", a.build] + (["--sessions", "200"] if a.quick else [])
    r, dt = run(argv, 400)
    j = last_json(r.stdout)
    RESULTS["scaling"] = dict(j, seconds=dt)
    row("scaling", f"reaction p99, {j['sessions']} sessions booked at once (s)", j["reaction_p99_s"],
        goal="≤ 2 s", met=j["met"]["reaction_p99"], unit="s")
    row("scaling", "first RunInstances after the first booking (s)", j["first_run_instances_s"], unit="s")
    row("scaling", "workers launched vs minimum", max(j["run_instances"], j["workers_in_redis"]),
        j["minimum_workers"], goal="ratio ≤ 1.1", met=j["met"]["capacity"])


def bench_api(a):
    r, dt = run([sys.executable, os.path.join(HERE, "api", "run.py"), "--build", a.build,
                 "--duration", "3" if a.quick else "5"], 300)
    j = last_json(r.stdout)
    RESULTS["api"] = dict(j, seconds=dt)
    res = j["results"]
    row("api", "GET /sessions/{id} req/s", res["lcmd_get"]["rps"], res["bare_get"]["rps"],
        goal="ratio ≥ 0.5", met=j["met"]["get_ratio"])
    row("api", "GET /sessions/{id} p99 (ms)", res["lcmd_get"]["p99_ms"], res["bare_get"]["p99_ms"],
        goal="≤ 5 ms", met=j["met"]["get_p99"], unit="ms")
    row("api", "POST /sessions req/s", res["lcmd_post"]["rps"], res["xadd_post"]["rps"],
        goal="ratio ≥ 0.6", met=j["met"]["post_ratio"])
    # Ceilings (bench/api/evhttp_session.c): evhttp + a session's Redis writes and nothing else.
    row("api", "ceiling: evhttp + session append req/s", res["ceiling_store"]["rps"],
        res["xadd_post"]["rps"])
    row("api", "floor: evhttp + session commands req/s", res["ceiling_commands"]["rps"],
        res["xadd_post"]["rps"])


# ---- memory per session ---------------------------------------------------------------------

def rss_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon"):
                out[k] = int(v.split()[0])
    return out


def seed_workers(a, redis, n):
    ops = [{"op": "template", "body": {
        "name": "mem", "instance_type": "m5zn.metal", "ami_name_pattern": "cml-*", "region": "us-east-1",
        "license_type": "enterprise", "enabled": True, "cost_per_hour": 1.0,
        "capacity": {"cpu_cores": 48, "memory_gb": 192, "storage_gb": 256, "max_nodes": 200}}}]
    for i in range(n):
        ops.append({"op": "worker", "id": f"w{i:05d}", "template": "mem", "region": "us-east-1",
                    "status": "running", "cml": {"version": "2.9.0", "ready": True,
                                                 "node_definitions": ["iosv", "alpine", "ubuntu"]},
                    "license": "enterprise"})
    for i in range(0, len(ops), 400):
        r = subprocess.run([os.path.join(a.bin, "sched_seed"), redis.url, json.dumps(ops[i:i + 400])],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError("sched_seed failed: " + r.stderr[-1000:])


def post_sessions(lc, did, n, start_h=6.0, threads=16):
    from concurrent.futures import ThreadPoolExecutor
    t0 = time.time() + start_h * 3600
    ts = {"start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
          "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 3600))}

    def one(i):
        st, _, doc = lc.call("POST", "/api/v1/sessions", {
            "definition_id": did, "timeslot": ts, "reservation_id": f"mem-{i:06d}",
            "owner": f"learner-{i % 997}"}, timeout=30)
        return st
    with ThreadPoolExecutor(threads) as ex:
        sts = list(ex.map(one, range(n)))
    bad = [s for s in sts if s not in (200, 201)]
    if bad:
        raise RuntimeError(f"{len(bad)} session creations failed: {sorted(set(bad))}")


def make_definition(lc):
    st, _, d = lc.call("POST", "/api/v1/definitions", {
        "name": "bench", "version": "1.0.0", "node_count": 3, "max_duration_minutes": 600,
        "lds_enabled": False, "resource_requirements": {"cpu_cores": 1, "memory_gb": 1, "storage_gb": 1}})
    assert st == 201, d
    st, _, d2 = lc.call("POST", f"/api/v1/definitions/{d['id']}/activate")
    assert st == 200, d2
    return d["id"]


def settle_rss(lc):
    # read models loaded (readyz) and a moment for the initial sweeps
    harness.wait_until(lambda: lc.get("/readyz")[0] == 200, timeout=60, what="ready")
    time.sleep(1.0)
    return rss_kb(lc.proc.p.pid)


def bench_memory(a):
    nsess = 2000 if a.quick else 10000
    nwork = 200 if a.quick else 1000
    redis = harness.Redis()
    env = {"LCM_LOG_LEVEL": "warn", "LCM_PLUGIN_DIR": "/nonexistent", "LCM_HTTP_MAX_CONNECTIONS": "1024"}
    try:
        empty_lc = harness.Lcmd(redis.url, env=env)
        rss_empty = settle_rss(empty_lc)
        empty_lc.stop()
        seed_workers(a, redis, nwork)
        lc = harness.Lcmd(redis.url, env=env)
        rss_workers = settle_rss(lc)
        did = make_definition(lc)
        t0 = time.monotonic()
        post_sessions(lc, did, nsess)
        create_s = time.monotonic() - t0
        rss_live = rss_kb(lc.proc.p.pid)
        lc.stop()
        # a fresh start loads the read models from the hashes: the steady-state footprint
        t0 = time.monotonic()
        lc = harness.Lcmd(redis.url, env=env)
        rss_loaded = settle_rss(lc)
        load_s = time.monotonic() - t0
        lc.stop()
        dbsize = int(redis.cli("DBSIZE").strip() or 0)
        used = re.search(r"used_memory:(\d+)", redis.cli("INFO", "memory"))
        per_session = (rss_loaded["VmRSS"] - rss_workers["VmRSS"]) * 1024 / nsess
        per_worker = (rss_workers["VmRSS"] - rss_empty["VmRSS"]) * 1024 / nwork
        RESULTS["memory"] = {
            "sessions": nsess, "workers": nwork, "rss_kb_empty": rss_empty, "rss_kb_workers": rss_workers,
            "rss_kb_after_posts": rss_live, "rss_kb_loaded": rss_loaded,
            "bytes_per_session": per_session, "bytes_per_worker": per_worker,
            "create_seconds": create_s, "creates_per_s": nsess / create_s, "restart_ready_s": load_s,
            "redis_keys": dbsize, "redis_used_memory": int(used.group(1)) if used else None}
        row("memory", f"lcmd RSS, {nsess} sessions + {nwork} workers (MiB)", rss_loaded["VmRSS"] / 1024,
            rss_empty["VmRSS"] / 1024, unit="MiB")
        row("memory", "bytes per session (RSS delta / sessions)", per_session, goal="≤ 2048 B",
            met=per_session <= 2048, unit="B")
        row("memory", "bytes per worker (RSS delta / workers)", per_worker, unit="B")
        row("memory", f"restart to ready with {nsess + nwork} aggregates (s)", load_s, unit="s")
        row("memory", "Redis used_memory per session+worker (B)",
            (int(used.group(1)) if used else 0) / (nsess + nwork), unit="B")
    finally:
        redis.close()


# ---- policy reload under load ---------------------------------------------------------------

def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for p in ("50", "99"):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v = float(m.group(1))
        lat[p] = v / 1000.0 if m.group(2) == "us" else v * 1000.0 if m.group(2) == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    nerr = sum(int(x) for x in errs.groups()) if errs else 0
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"], "requests": total,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": nerr}


def wrk_get(url, token, seconds, conns=16):
    f = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    f.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    f.close()
    out = subprocess.run(["wrk", "--latency", "-t", "2", "-c", str(conns), "-d", f"{seconds}s", "-s", f.name, url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    os.unlink(f.name)
    return parse_wrk(out)


def bench_reload(a):
    seconds = 4 if a.quick else 10
    nreload = 100
    redis = harness.Redis()
    pol = tempfile.mkdtemp(prefix="lcm-bench-policies-")
    for n in os.listdir(os.path.join(SRC, "policies")):
        p = os.path.join(SRC, "policies", n)
        if os.path.isfile(p):
            with open(p, "rb") as src, open(os.path.join(pol, n), "wb") as dst:
                dst.write(src.read())
        elif os.path.isdir(p):
            subprocess.run(["cp", "-r", p, pol], check=True)
    env = {"LCM_LOG_LEVEL": "warn", "LCM_PLUGIN_DIR": "/nonexistent", "LCM_POLICY_DIR": pol}
    try:
        lc = harness.Lcmd(redis.url, env=env)
        did = make_definition(lc)
        post_sessions(lc, did, 1, threads=1)
        st, _, doc = lc.call("GET", "/api/v1/sessions?limit=1")
        sid = (doc.get("items") or doc.get("sessions") or doc.get("data"))[0]["id"]
        url = f"{lc.url}/api/v1/sessions/{sid}"
        base = wrk_get(url, harness.Lcmd.ADMIN, seconds)
        reload_status = []
        stop = threading.Event()

        def reloader():
            gap = seconds * 0.9 / nreload
            time.sleep(seconds * 0.05)
            for _ in range(nreload):
                if stop.is_set():
                    break
                t0 = time.monotonic()
                st2 = lc.call("POST", "/api/v1/policies/reload", {})[0]
                reload_status.append((st2, (time.monotonic() - t0) * 1e3))
                time.sleep(max(0.0, gap - (time.monotonic() - t0)))
        t = threading.Thread(target=reloader)
        t.start()
        loaded = wrk_get(url, harness.Lcmd.ADMIN, seconds)
        stop.set()
        t.join()
        st, _, pols = lc.call("GET", "/api/v1/policies")
        lc.stop()
        ok_reloads = sum(1 for s, _ in reload_status if s == 200)
        failed = loaded["non_2xx"] + loaded["socket_errors"]
        RESULTS["reload"] = {"no_reload": base, "with_reloads": loaded, "reloads": len(reload_status),
                             "reloads_ok": ok_reloads, "reload_statuses": sorted(set(s for s, _ in reload_status)),
                             "reload_ms_max": max((m for _, m in reload_status), default=None),
                             "failed_requests": failed, "policies": pols}
        row("reload", f"GET p99 with {len(reload_status)} reloads (ms)", loaded["p99_ms"], base["p99_ms"],
            goal="ratio ≤ 1.5", met=loaded["p99_ms"] <= 1.5 * base["p99_ms"], unit="ms")
        row("reload", "GET req/s with reloads", loaded["rps"], base["rps"])
        row("reload", "failed requests during reloads", failed, goal="0", met=failed == 0)
        row("reload", "reloads answered 200", ok_reloads, nreload, goal=f"{nreload}", met=ok_reloads == nreload)
    finally:
        redis.close()



# ---- end to end: booking -> ready --------------------------------------------------------------

def sim(a, name, args):
    d = tempfile.mkdtemp(prefix=f"lcm-bench-{name}-")
    pf = os.path.join(d, "port")
    p = harness.Proc(name, [os.path.join(a.bin, name), "--listen", "127.0.0.1:0", "--port-file", pf, *args],
                     log_dir=d)
    harness.wait_until(lambda: os.path.exists(pf) and open(pf).read().strip(), what=f"{name} port")
    p.url = f"http://127.0.0.1:{open(pf).read().strip()}"
    return p


def rfc3339(t):
    import datetime as dt
    return dt.datetime.strptime(t[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp() + \
        (float("0" + t[19:t.index("Z")]) if "." in t[19:] else 0.0)


def bench_e2e(a):
    """N sessions booked through the API at once on N simulated workers (cml-sim with zero
    latency): time from the first POST until every session is `ready` (scheduled, lab imported,
    ports allocated, lab started and booted). LDS is off: sched_seed's workers have no private
    IP, which LDS device records need; lds-sim still runs for CloudEvents."""
    import shutil
    n = 200 if a.quick else 1000
    redis = harness.Redis()
    procs = []
    plug = tempfile.mkdtemp(prefix="lcm-bench-plugins-")
    try:
        for name in ("lcm-cml.so", "lcm-lds.so"):
            shutil.copy(os.path.join(a.build, "plugins", name), os.path.join(plug, name))
            os.chmod(os.path.join(plug, name), 0o755)
        lcm_port = harness.free_port()
        cml = sim(a, "cml-sim", ["--boot-ms", "0", "--import-ms", "0", "--stop-ms", "0", "--wipe-ms", "0"])
        lds = sim(a, "lds-sim", ["--lcm-url", f"http://127.0.0.1:{lcm_port}", "--lcm-token", harness.Lcmd.ADMIN,
                                 "--username", "lds", "--password", "lds-pass", "--quiet"])
        procs += [cml, lds]
        seed_workers(a, redis, n)
        env = {"LCM_LOG_LEVEL": "warn", "LCM_PLUGIN_DIR": plug, "LCM_HTTP_MAX_CONNECTIONS": "4096",
               "LCM_CML_ENDPOINT": cml.url + "/{worker_id}", "LCM_CML_USERNAME": "admin",
               "LCM_CML_PASSWORD": "admin-sim", "LCM_CML_VERIFY_TLS": "false",
               "LCM_LDS_URL": lds.url, "LCM_LDS_FRONTEND_URL": lds.url, "LCM_LDS_USERNAME": "lds",
               "LCM_LDS_PASSWORD": "lds-pass", "LCM_SESSION_POLL_MS": "50", "LCM_BOOT_LEAD_MINUTES": "0",
               "LCM_SCHEDULER_INTERVAL_MS": "100"}
        lc = harness.Lcmd(redis.url, env=env, port=lcm_port)
        harness.wait_until(lambda: lc.get("/readyz")[2].get("role") == "leader", timeout=30, what="leader")
        topo = open(os.path.join(SRC, "tests", "integration", "lifecycle", "lab.yaml")).read()
        st, _, d = lc.call("POST", "/api/v1/definitions", {
            "name": "e2e", "version": "1.0.0", "topology": topo, "max_duration_minutes": 120,
            "lds_enabled": False, "grading_enabled": False,
            "lab_reuse_enabled": False, "boot_lead_minutes": 0,
            "resource_requirements": {"cpu_cores": 40, "memory_gb": 4, "storage_gb": 10}})
        assert st == 201, d
        st, _, d2 = lc.call("POST", f"/api/v1/definitions/{d['id']}/activate")
        assert st == 200, d2
        from concurrent.futures import ThreadPoolExecutor
        now = time.time()
        ts = {"start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
              "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600))}
        t0 = time.monotonic()
        t0_wall = time.time()

        def one(i):
            return lc.call("POST", "/api/v1/sessions", {"definition_id": d["id"], "timeslot": ts,
                                                         "reservation_id": f"e2e-{i:05d}"}, timeout=60)[0]
        with ThreadPoolExecutor(32) as ex:
            sts = list(ex.map(one, range(n)))
        booked = time.monotonic() - t0
        assert all(x == 201 for x in sts), sorted(set(sts))

        def nready():
            return int(redis.cli("SCARD", "lcm:idx:session:status:ready").strip() or 0)
        deadline = 240 if not a.quick else 120
        progress = []
        while time.monotonic() - t0 < deadline:
            k = nready()
            progress.append((time.monotonic() - t0, k))
            if k >= n:
                break
            time.sleep(0.05)
        total = time.monotonic() - t0
        k = nready()
        # share of sessions ready over time (polled every 50 ms): when half, 99 % and all were
        def when(frac):
            return next((t for t, c in progress if c >= frac * n), None)
        lc_proc = lc.proc
        lc.stop()
        lc_err = open(lc_proc.err_path, errors="replace").read()
        RESULTS["e2e"] = {"sessions": n, "workers": n, "ready": k, "book_seconds": booked,
                          "all_ready_seconds": total if k >= n else None, "progress": progress[::10],
                          "half_ready_s": when(0.5), "p99_ready_s": when(0.99), "t0": t0_wall}
        row("e2e", f"booking → ready, {n} sessions on {n} sim workers (s)", total, goal=f"all {n} ready",
            met=k >= n, unit="s")
        row("e2e", f"of which booking {n} sessions through the API (s)", booked, unit="s")
        row("e2e", "sessions ready per second", k / total)
        if when(0.5) is not None:
            row("e2e", "time until 50 % of the sessions were ready (s)", when(0.5), unit="s")
            row("e2e", "time until 99 % of the sessions were ready (s)", when(0.99), unit="s")
        if k < n:
            hist = {key.rsplit(":", 1)[1]: int(redis.cli("SCARD", key).strip() or 0)
                    for key in redis.cli("--scan", "--pattern", "lcm:idx:session:status:*").split()}
            errs = [l for l in lc_err.splitlines() if "level=warn" in l or "level=error" in l][-5:]
            raise RuntimeError(f"only {k}/{n} sessions ready after {deadline}s; statuses {hist}; "
                               f"lcmd said: {errs}")
    finally:
        for p in procs:
            p.stop()
        redis.close()
        shutil.rmtree(plug, ignore_errors=True)

BENCHES = {"store": bench_store, "policy": bench_policy, "placement": bench_placement,
           "scaling": bench_scaling, "api": bench_api,
           "memory": bench_memory, "reload": bench_reload, "e2e": bench_e2e}


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3f}"
    return str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("LCM_BENCH_BUILD") or os.path.join(SRC, "build-bench"))
    ap.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs")
    ap.add_argument("--only", default="", help="comma-separated subset of " + ",".join(BENCHES))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest.json"))
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    a.bin = os.path.join(a.build, "bin")
    harness.BUILD_DIR = a.build
    t_all = time.monotonic()
    load0 = os.getloadavg()
    if not a.no_build:
        ensure_build(a.build)
    names = [n for n in (a.only.split(",") if a.only else BENCHES) if n]
    failed = []
    times = {}
    for n in names:
        say(f"== {n}")
        t0 = time.monotonic()
        try:
            BENCHES[n](a)
        except Exception as e:  # noqa: BLE001 - reported, the others still run
            failed.append(n)
            say(f"  {n} FAILED: {e}")
        times[n] = round(time.monotonic() - t0, 1)
        say(f"  {n}: {times[n]} s")
    total = time.monotonic() - t_all
    w = [10, 58, 14, 14, 8, 16, 5]
    head = ["bench", "figure", "value", "baseline", "ratio", "goal", "met"]
    say("")
    say("".join(h.ljust(x) if i < 2 else h.rjust(x) for i, (h, x) in enumerate(zip(head, w))))
    for r in ROWS:
        cells = [r["bench"], r["figure"], fmt(r["value"]), fmt(r["baseline"]), fmt(r["ratio"]), r["goal"] or "-",
                 "-" if r["met"] is None else ("yes" if r["met"] else "NO")]
        say("".join(c.ljust(x) if i < 2 else c.rjust(x) for i, (c, x) in enumerate(zip(cells, w))))
    load1 = os.getloadavg()
    say(f"\nload average (1 min) {load0[0]:.1f} at start, {load1[0]:.1f} at end on {os.cpu_count()} CPUs"
        " (other work on the machine lowers every figure; ratios suffer less)")
    say(f"total {total:.0f} s ({', '.join(f'{k} {v}s' for k, v in times.items())})"
        + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    doc = {"bench": "all", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "quick": a.quick, "build": a.build, "cpus": os.cpu_count(), "seconds": round(total, 1),
           "loadavg_start": load0, "loadavg_end": load1,
           "times": times, "failed": failed, "rows": ROWS, "results": RESULTS}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    say(f"JSON written to {a.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
