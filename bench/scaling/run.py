#!/usr/bin/env python3
"""bench/scaling: scaling reaction. An empty fleet, then N sessions (default 1,000) booked at
once through POST /api/v1/sessions by many concurrent clients; the autoscaler creates workers,
the workers controller launches them through the aws plugin against moto's EC2 (behind the
recording aws-fault-proxy, which timestamps every request on the same monotonic clock).

Measures, in the same run:
  - reaction per session: from its booking (201 received) until a RunInstances request was
    sent for the worker that covers it (the k-th launch covers sessions up to k × per-worker
    capacity, in booking order); p50/p99/max, aim p99 ≤ 2 s;
  - first RunInstances after the first booking;
  - launched capacity: workers created (each is launched; distinct RunInstances client tokens
    seen so far are reported too) vs the minimum needed (ceil(N / sessions per worker));
    aim ≤ 1.1×.
Baseline in the same run: the time to book the sessions (the API alone).
Prints a table and one JSON line. Use a build without sanitizers for meaningful numbers.
Usage: python3 bench/scaling/run.py [--build DIR] [--sessions N] [--clients C] [--settle S]"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))
import harness  # noqa: E402

REGION = "eu-west-1"
AMI_NAME = "cml-2.9.1-bench"
# one worker holds 12 sessions of the definition below (cpu 48/4 and storage 256/20 bind)
TEMPLATE = {"name": "bench-multi", "instance_type": "m5zn.metal", "ami_name_pattern": "cml-2.9*",
            "region": REGION, "capacity": {"cpu_cores": 48, "memory_gb": 192, "storage_gb": 256,
                                           "max_nodes": 200},
            "license_type": "enterprise", "cost_per_hour": 3.96, "enabled": True}
NEED = {"cpu_cores": 4, "memory_gb": 8, "storage_gb": 20}
NODES = 3


def per_worker():
    c = TEMPLATE["capacity"]
    return min(int(c["cpu_cores"] // NEED["cpu_cores"]), int(c["memory_gb"] // NEED["memory_gb"]),
               int(c["storage_gb"] // NEED["storage_gb"]), int(c["max_nodes"] // NODES))


def pct(v, p):
    if not v:
        return float("nan")
    s = sorted(v)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("LCM_BUILD_DIR") or os.path.join(SRC, "build"))
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--settle", type=float, default=8.0, help="seconds to watch after the last booking")
    args = ap.parse_args()
    harness.BUILD_DIR = os.path.abspath(args.build)
    import boto3

    redis = harness.Redis(appendfsync="everysec")
    # moto's EC2, an AMI the template's pattern finds, the recording proxy in front
    mport = harness.free_port()
    moto = harness.Proc("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(mport)])
    murl = f"http://127.0.0.1:{mport}"
    harness.wait_until(lambda: harness.http("GET", murl + "/moto-api/")[0] == 200, timeout=30, what="moto")
    ec2 = boto3.client("ec2", endpoint_url=murl, region_name=REGION, aws_access_key_id="test",
                       aws_secret_access_key="test")
    base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    src = ec2.run_instances(ImageId=base, InstanceType="t3.micro", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.create_image(InstanceId=src, Name=AMI_NAME)
    ec2.terminate_instances(InstanceIds=[src])
    pport = harness.free_port()
    proxy = harness.Proc("aws-fault-proxy", [sys.executable, os.path.join(SRC, "tests", "sims", "aws-fault-proxy",
                                                                          "aws_fault_proxy.py"),
                                             "--port", str(pport), "--upstream", murl])
    harness.wait_until(lambda: "listening" in proxy.stdout(), timeout=15, what="proxy")
    purl = f"http://127.0.0.1:{pport}"

    plugins = tempfile.mkdtemp(prefix="lcm-bench-plugins-")
    os.chmod(plugins, 0o755)
    dst = os.path.join(plugins, "lcm-aws.so")
    shutil.copyfile(os.path.join(harness.BUILD_DIR, "plugins", "lcm-aws.so"), dst)
    os.chmod(dst, 0o755)
    for k in list(os.environ):
        if k.startswith("AWS_"):
            os.environ.pop(k)
    env = {"LCM_LOG_LEVEL": "warn", "LCM_PLUGIN_DIR": plugins,
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": REGION,
           "AWS_ENDPOINT_URL": purl, "LCM_LEASE_TTL_MS": "1000",
           # limits out of the way: the figure is the reaction, not the limits
           "LCM_SCALE_UP_COOLDOWN_S": "0", "LCM_MAX_LAUNCHES_PER_CYCLE": "0",
           "LCM_MAX_WORKERS_PER_REGION": "0", "LCM_DISCOVERY_INTERVAL_MS": "600000",
           "LCM_METRICS_INTERVAL_MS": "600000"}
    lc = harness.Lcmd(redis.url, env=env)
    harness.wait_until(lambda: lc.get("/readyz")[2].get("role") == "leader", timeout=20, what="leader")
    st, _, doc = lc.call("POST", "/api/v1/templates", TEMPLATE)
    assert st == 201, (st, doc)
    st, _, d = lc.call("POST", "/api/v1/definitions", {
        "name": "bench-scaling", "version": "1.0.0", "node_count": NODES, "max_duration_minutes": 120,
        "resource_requirements": dict(NEED)})
    assert st == 201, (st, d)
    st, _, d2 = lc.call("POST", f"/api/v1/definitions/{d['id']}/activate")
    assert st == 200, (st, d2)
    harness.http_json("POST", purl + "/__admin/reset", {})
    start = time.time() + 5 * 60      # inside the lead window and the boot time: demand now
    ts = {"start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
          "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + 3600))}
    body = json.dumps({"definition_id": d["id"], "timeslot": ts}).encode()

    booked = []                       # monotonic time each 201 arrived
    lock = threading.Lock()
    failures = []
    todo = iter(range(args.sessions))

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", lc.port, timeout=30)
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                break
            try:
                conn.request("POST", "/api/v1/sessions", body, {"Content-Type": "application/json",
                                                                  "Authorization": "Bearer " + lc.ADMIN})
                r = conn.getresponse()
                r.read()
                t = time.monotonic()
                with lock:
                    (booked if r.status == 201 else failures).append(t if r.status == 201 else r.status)
            except OSError as e:
                with lock:
                    failures.append(str(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", lc.port, timeout=30)
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_booked = time.monotonic()
    need = math.ceil(len(booked) / per_worker())

    def launches():
        log = harness.http_json("GET", purl + "/__admin/log")[2] or []
        first = {}
        for e in log:
            if e.get("action") == "RunInstances" and e.get("client_token") and e["client_token"] not in first:
                first[e["client_token"]] = e["t"]
        return sorted(first.values())

    # watch until enough launches were sent (or settle time after the last booking)
    harness.wait_until(lambda: len(launches()) >= need or time.monotonic() - t_booked > args.settle,
                       timeout=args.settle + 60, interval=0.1, what="launches")
    time.sleep(2.0)                    # late duplicates would show up here
    runs = launches()
    wkeys = [k for k in redis.cli("KEYS", "lcm:{worker:*}").split() if k.endswith("}")]
    workers = len(wkeys)
    statuses = {}
    for k in wkeys:
        st_ = redis.cli("HGET", k, "status").strip()
        statuses[st_] = statuses.get(st_, 0) + 1
    log = harness.http_json("GET", purl + "/__admin/log")[2] or []
    ri = [e for e in log if e.get("action") == "RunInstances"]
    actions = {}
    for e in log:
        actions[e.get("action")] = actions.get(e.get("action"), 0) + 1
    codes = {}
    for e in ri:
        codes[str(e.get("status"))] = codes.get(str(e.get("status")), 0) + 1
    lc.stop()
    proxy.stop()
    moto.stop()
    redis.close()

    booked.sort()
    pw = per_worker()
    react = []
    for i, tb in enumerate(booked):
        k = i // pw                    # the (k+1)-th launch covers this session
        if k < len(runs):
            react.append(max(0.0, runs[k] - tb))
    first_run = (runs[0] - booked[0]) if runs and booked else float("nan")
    res = {
        "bench": "scaling", "sessions": args.sessions, "booked": len(booked), "booking_failures": len(failures),
        "clients": args.clients, "per_worker": pw,
        "booking_seconds": t_booked - t0, "booking_rps": len(booked) / max(1e-9, t_booked - t0),
        "first_run_instances_s": first_run,
        "reaction_p50_s": pct(react, 50), "reaction_p99_s": pct(react, 99),
        "reaction_max_s": max(react) if react else float("nan"),
        "sessions_covered": len(react),
        "run_instances": len(runs), "minimum_workers": need,
        # every worker created is launched sooner or later: count whichever is larger
        "capacity_ratio": max(len(runs), workers) / need if need else float("nan"),
        "workers_in_redis": workers, "worker_statuses": statuses,
        "run_instances_requests": len(ri), "run_instances_status": codes, "ec2_actions": actions,
        "launch_times_s": [round(t - booked[0], 3) for t in runs] if booked else [],
        "goals": {"reaction_p99_max_s": 2.0, "capacity_ratio_max": 1.1},
    }
    res["met"] = {"reaction_p99": res["reaction_p99_s"] <= 2.0 and len(react) == len(booked),
                  "capacity": res["capacity_ratio"] <= 1.1}
    print(f"{'scaling reaction':<52}{'value':>12}")
    print(f"{'sessions booked at once (clients)':<52}{len(booked):>8} ({args.clients})")
    print(f"{'booking time (baseline: the API alone), s':<52}{res['booking_seconds']:>12.3f}")
    print(f"{'first RunInstances after the first booking, s':<52}{first_run:>12.3f}")
    print(f"{'reaction per session p50 / p99 / max, s':<52}{res['reaction_p50_s']:>6.3f} / "
          f"{res['reaction_p99_s']:.3f} / {res['reaction_max_s']:.3f}")
    print(f"{'sessions whose launch was requested':<52}{len(react):>12}")
    print(f"{'RunInstances (distinct tokens) / workers created / minimum':<52}{len(runs):>6} / {workers} / {need}")
    print(f"{'launched capacity ratio (aim ≤ 1.1)':<52}{res['capacity_ratio']:>12.2f}")
    print(json.dumps(res))
    return 0 if all(res["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
