#!/usr/bin/env python3
"""bench/api: lcmd vs bare evhttp baselines, same run, same wrk settings.
  GET  /api/v1/sessions/{id}  (lcmd)  vs  bare evhttp responder (fixed body of the same size)
  POST /api/v1/sessions       (lcmd)  vs  evhttp + one async Redis XADD per request
and two ceilings for POST (evhttp_session.c): evhttp + the Redis writes of one session creation
and nothing else, through lcm_store_append (the real function) and as plain pipelined commands
(the layout's floor). No lcmd can beat them, so their ratios to evhttp + XADD bound the aim.
Prints req/s, p50/p99 and the ratios as a table and as JSON (last line).
Usage: python3 bench/api/run.py [--build DIR] [--duration S] [--connections N] [--threads N]
Use a build without sanitizers for meaningful numbers."""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "lib"))
import harness  # noqa: E402


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for p in ("50", "99"):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v = float(m.group(1))
        lat[p] = v / 1000.0 if m.group(2) == "us" else v * 1000.0 if m.group(2) == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"],
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errs.group(0) if errs else ""}


def wrk(url, args, script=None):
    cmd = ["wrk", "--latency", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s"]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60).stdout
    return parse_wrk(out)


def lua_post(path, body, token=None):
    f = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    hdr = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
            f'wrk.headers["Content-Type"] = "application/json"\n{hdr}')
    f.close()
    return f.name


def lua_get(token):
    f = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    f.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    f.close()
    return f.name


def start(argv, what):
    p = harness.Proc(what, argv)
    harness.wait_until(lambda: "listening" in p.stdout() or not p.alive(), timeout=10, what=what)
    if not p.alive():
        raise SystemExit(f"{what} did not start: {p.stderr()}")
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("LCM_BUILD_DIR") or os.path.join(HERE, "..", "..", "build"))
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    harness.BUILD_DIR = os.path.abspath(args.build)
    bindir = os.path.join(harness.BUILD_DIR, "bin")

    redis = harness.Redis(appendfsync="everysec")
    lc = harness.Lcmd(redis.url, env={"LCM_LOG_LEVEL": "warn", "LCM_PLUGIN_DIR": "/nonexistent"})
    tok = harness.Lcmd.ADMIN
    st, _, d = lc.call("POST", "/api/v1/definitions", {
        "name": "bench", "version": "1.0.0", "node_count": 1, "max_duration_minutes": 600,
        "resource_requirements": {"cpu_cores": 1, "memory_gb": 1}})
    assert st == 201, d
    st, _, d = lc.call("POST", f"/api/v1/definitions/{d['id']}/activate")
    assert st == 200, d
    t0 = time.time() + 6 * 3600
    ts = {"start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
          "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 3600))}
    body = json.dumps({"definition_id": d["id"], "timeslot": ts})
    st, _, s = lc.call("POST", "/api/v1/sessions", json.loads(body))
    assert st == 201, s
    sid = s["id"]
    size = len(harness.http("GET", f"{lc.url}/api/v1/sessions/{sid}", token=tok)[2])

    results = {}
    results["lcmd_get"] = wrk(f"{lc.url}/api/v1/sessions/{sid}", args, lua_get(tok))
    results["lcmd_post"] = wrk(f"{lc.url}/api/v1/sessions", args, lua_post("/api/v1/sessions", body, tok))
    lc.stop()

    port = harness.free_port()
    bare = start([os.path.join(bindir, "bench_api_bare_evhttp"), str(port), str(size)], "bare_evhttp")
    results["bare_get"] = wrk(f"http://127.0.0.1:{port}/api/v1/sessions/{sid}", args)
    bare.stop()
    port = harness.free_port()
    xadd = start([os.path.join(bindir, "bench_api_evhttp_xadd"), str(port), str(redis.port)], "evhttp_xadd")
    results["xadd_post"] = wrk(f"http://127.0.0.1:{port}/api/v1/sessions", args, lua_post("/", body))
    xadd.stop()
    for mode in ("store", "commands"):
        port = harness.free_port()
        h = start([os.path.join(bindir, "bench_api_evhttp_session"), str(port), str(redis.port), mode],
                  f"evhttp_session_{mode}")
        results[f"ceiling_{mode}"] = wrk(f"http://127.0.0.1:{port}/api/v1/sessions", args, lua_post("/", body))
        h.stop()
    redis.close()

    ratios = {"get_vs_bare": results["lcmd_get"]["rps"] / results["bare_get"]["rps"],
              "post_vs_xadd": results["lcmd_post"]["rps"] / results["xadd_post"]["rps"],
              "ceiling_store_vs_xadd": results["ceiling_store"]["rps"] / results["xadd_post"]["rps"],
              "ceiling_commands_vs_xadd": results["ceiling_commands"]["rps"] / results["xadd_post"]["rps"],
              "post_vs_ceiling_store": results["lcmd_post"]["rps"] / results["ceiling_store"]["rps"]}
    goals = {"get_ratio_min": 0.5, "get_p99_max_ms": 5.0, "post_ratio_min": 0.6}
    ok = {"get_ratio": ratios["get_vs_bare"] >= goals["get_ratio_min"],
          "get_p99": results["lcmd_get"]["p99_ms"] <= goals["get_p99_max_ms"],
          "post_ratio": ratios["post_vs_xadd"] >= goals["post_ratio_min"]}
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, session body {size} bytes")
    print(f"{'case':<34}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>9}")
    names = {"lcmd_get": "lcmd GET /sessions/{id}", "bare_get": "bare evhttp GET",
             "lcmd_post": "lcmd POST /sessions", "xadd_post": "evhttp + XADD POST",
             "ceiling_store": "ceiling: evhttp + session append", "ceiling_commands": "floor: evhttp + session commands"}
    for k in ("lcmd_get", "bare_get", "lcmd_post", "xadd_post", "ceiling_store", "ceiling_commands"):
        r = results[k]
        print(f"{names[k]:<34}{r['rps']:>12.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['non_2xx']:>9}")
    print(f"GET  lcmd/bare  = {ratios['get_vs_bare']:.2f} (aim ≥ 0.5, p99 ≤ 5 ms)")
    print(f"POST lcmd/XADD  = {ratios['post_vs_xadd']:.2f} (aim ≥ 0.6)")
    print(f"     ceilings/XADD: session append {ratios['ceiling_store_vs_xadd']:.2f}, "
          f"session commands {ratios['ceiling_commands_vs_xadd']:.2f}; "
          f"lcmd/session append {ratios['post_vs_ceiling_store']:.2f}")
    print(json.dumps({"bench": "api", "results": results, "ratios": ratios, "goals": goals, "met": ok,
                      "settings": vars(args), "body_bytes": size}))


if __name__ == "__main__":
    main()
