"""Redis Sentinel: a primary, a replica and three sentinels on loopback. lcmd with
LCM_REDIS_URL=sentinel://…/mymaster finds the primary through the sentinels, follows a forced
failover (SENTINEL FAILOVER) on both its command and its feed-follower connections and keeps
serving writes; the window of unavailability is measured. Then a write lost by asynchronous
replication (the worker's launch record) is repaired by the worker controller, which adopts
the instance by its tag instead of launching a second one (moto)."""
import os
import re
import threading
import time

from harness import Lcmd, check, run_tests, wait_until
from rellib import (Moto, Sentinels, check_aggregates, exists_many, log, make_definition, make_template,
                    plugin_dir, rcli, rjson, stop_clean)

NOPLUGINS = {"LCM_PLUGIN_DIR": "/nonexistent-lcm-plugins", "LCM_REDIS_BACKOFF_MAX_MS": "500",
             "LCM_LEASE_TTL_MS": "3000"}


def connected_endpoints(lcmd):
    return re.findall(r'msg="connected" url=\S+ endpoint=(\S+)', lcmd.proc.stderr())


def metric(lcmd, name):
    st, _, body = lcmd.get("/metrics")
    text = body.decode() if isinstance(body, bytes) else str(body)
    m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_discover_failover_keep_writing():
    s = Sentinels()
    a = b = None
    try:
        a = Lcmd(s.url, env=NOPLUGINS)
        b = Lcmd(s.url, env=NOPLUGINS)   # a second replica: its feed follower must follow too
        p0 = s.primary_port()
        check(f"127.0.0.1:{p0}" in connected_endpoints(a), f"lcmd A did not connect to the primary "
              f"{p0}: {connected_endpoints(a)}")
        check(rcli(p0, "FUNCTION", "LIST", "LIBRARYNAME", "lcm").count("lcm") > 0, "library not loaded")
        make_definition(a, "warmup")

        results = []   # (t_start, t_end, status, id)
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                i += 1
                t0 = time.monotonic()
                try:
                    st, _, doc = a.call("POST", "/api/v1/definitions", {
                        "name": f"fo-{i}", "version": "1.0.0", "node_count": 1, "lds_enabled": False,
                        "resource_requirements": {"cpu_cores": 1, "memory_gb": 1, "storage_gb": 1},
                        "max_duration_minutes": 60}, timeout=10)
                    did = doc.get("id") if st == 201 and isinstance(doc, dict) else None
                except Exception:  # noqa: BLE001 - a transport error counts as a failed write
                    st, did = 0, None
                results.append((t0, time.monotonic(), st, did))
                time.sleep(0.01)

        t = threading.Thread(target=writer)
        t.start()
        try:
            time.sleep(1.5)
            t_fo = time.monotonic()
            old, new = s.failover()
            t_switched = time.monotonic()
            wait_until(lambda: f"127.0.0.1:{new}" in connected_endpoints(a), timeout=20,
                       what="lcmd A connected to the new primary")
            wait_until(lambda: any(r[0] > t_switched and r[2] == 201 for r in results), timeout=20,
                       what="a write succeeding after the failover")
            time.sleep(2.0)
        finally:
            stop.set()
            t.join()
        check(f"127.0.0.1:{new}" in connected_endpoints(b), "lcmd B did not follow the failover")
        ok = [r for r in results if r[2] == 201]
        failed = [r for r in results if r[2] != 201]
        after = [r for r in ok if r[0] > t_switched]
        check(len(after) >= 20, f"only {len(after)} writes succeeded after the failover")
        # the window: the longest time without a completed successful write around the failover
        ends = sorted(r[1] for r in ok)
        gaps = [(b2 - a2, a2) for a2, b2 in zip(ends, ends[1:]) if b2 > t_fo - 0.5]
        window = max(gaps)[0] if gaps else 0.0
        # acknowledged writes missing on the new primary (asynchronous replication)
        ex = exists_many(new, [f"lcm:{{definition:{r[3]}}}" for r in ok])
        lost = [k for k, v in ex.items() if not v]
        log(f"writes ok={len(ok)} failed={len(failed)} (statuses {sorted(set(r[2] for r in failed))}) "
            f"after-failover ok={len(after)}")
        log(f"failover {old}->{new}: sentinels switched {t_switched - t_fo:.2f}s after SENTINEL FAILOVER; "
            f"unavailability window (longest gap between successful writes) {window:.2f}s; "
            f"acknowledged writes lost {len(lost)}")
        check(window < 15, f"unavailable for {window:.1f}s")
        # the failover fence: lcmd stops writing to the old primary when the promotion starts
        check(not lost, f"{len(lost)} acknowledged writes lost in a forced failover, e.g. {lost[:3]}")
        check("pausing writes" in a.proc.stderr(), "the failover fence never engaged")
        # the second replica learns a post-failover write through its feed follower
        last = after[-1][3]
        wait_until(lambda: b.get(f"/api/v1/definitions/{last}", token=Lcmd.ADMIN)[0] == 200, timeout=10,
                   what="lcmd B sees a definition written after the failover (feed follower)")
        check((metric(a, "lcm_redis_primary_changes_total") or 0) >= 1, "primary change not counted")
        check(a.get("/readyz")[0] == 200 and b.get("/readyz")[0] == 200, "not ready after failover")
        n = check_aggregates(new, "definition")
        log(f"new primary: {n} definitions, hashes and streams consistent")
        # the library is there on the new primary (replicated, and reloaded on connect)
        check("lcm" in rcli(new, "FUNCTION", "LIST", "LIBRARYNAME", "lcm"), "library missing on new primary")
        stop_clean(a)
        stop_clean(b)
        a = b = None
    finally:
        for x in (a, b):
            if x and x.proc:
                x.stop()
        s.close()


def test_sentinel_down_and_primary_killed():
    """One sentinel dead from the start (lcmd asks the next), then the primary SIGKILLed:
    the sentinels fail over on their own and lcmd follows."""
    s = Sentinels()
    a = None
    try:
        s.procs[0].stop()   # the first sentinel in the URL is unreachable
        a = Lcmd(s.url, env=NOPLUGINS)
        make_definition(a, "before-kill")
        old = s.primary_port()
        t0 = time.monotonic()
        s.node(old).stop(9)
        wait_until(lambda: s.primary_port() not in (None, old), timeout=30, what="automatic failover")
        new = s.primary_port()
        t_sw = time.monotonic()
        wait_until(lambda: a.call("POST", "/api/v1/templates", {
            "name": f"t-{int(time.monotonic() * 1000)}", "instance_type": "m5zn.metal",
            "ami_name_pattern": "cml-*", "region": "us-east-1", "license_type": "enterprise",
            "enabled": True, "capacity": {"cpu_cores": 8, "memory_gb": 8, "storage_gb": 8,
                                          "max_nodes": 10}}, timeout=5)[0] == 201,
                   timeout=30, interval=0.1, what="a write after the automatic failover")
        t_ok = time.monotonic()
        log(f"primary {old} SIGKILLed: sentinels promoted {new} after {t_sw - t0:.2f}s, first write "
            f"accepted {t_ok - t0:.2f}s after the kill")
        check(f"127.0.0.1:{new}" in connected_endpoints(a), "not connected to the new primary")
        check("sentinel unreachable" in a.proc.stderr(), "the dead sentinel was never tried")
        stop_clean(a)
        a = None
    finally:
        if a and a.proc:
            a.stop()
        s.close()


def test_lost_launch_readopted():
    """Asynchronous replication can lose acknowledged writes in a failover. Simulated here on the
    new primary: the worker's records after `worker.provisioning` (the launch result with the
    instance id) are deleted and the hashes rebuilt from the streams. The worker controller's
    launch step first describes by the tag lcm:worker_id and adopts the instance it finds: one
    instance per worker, never two."""
    s = Sentinels()
    moto = Moto()
    a = None
    try:
        ec2 = moto.client("ec2")
        base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        src = ec2.run_instances(ImageId=base, InstanceType="t3.micro", MinCount=1,
                                MaxCount=1)["Instances"][0]["InstanceId"]
        ec2.create_image(InstanceId=src, Name="cml-2.9.0-rel")
        ec2.terminate_instances(InstanceIds=[src])
        env = {"LCM_PLUGIN_DIR": plugin_dir(["lcm-aws.so"]),
               "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": moto.url, "LCM_LEASE_TTL_MS": "1500",
               "LCM_WORKER_POLL_INTERVAL_MS": "200", "LCM_DISCOVERY_INTERVAL_MS": "600000",
               "LCM_REDIS_BACKOFF_MAX_MS": "500"}
        for k in list(os.environ):
            if k.startswith("AWS_"):
                os.environ.pop(k)
        a = Lcmd(s.url, env=env)
        wait_until(lambda: a.get("/readyz")[2].get("role") == "leader", timeout=20, what="leader")
        make_template(a, "cml-rel", instance_type="t3.small", ami_name_pattern="cml-2.9*")
        st, _, doc = a.call("POST", "/api/v1/workers", {"template": "cml-rel", "region": "us-east-1"})
        check(st == 201, f"POST worker: {st} {doc}")
        wid = doc["id"]
        w = wait_until(lambda: (lambda d: d if d.get("status") == "running" else None)(
            a.call("GET", f"/api/v1/workers/{wid}")[2]), timeout=60, what="worker running")
        iid = w["instance_id"]

        old, new = s.failover()
        wait_until(lambda: f"127.0.0.1:{new}" in connected_endpoints(a), timeout=20, what="lcmd follows")
        stop_clean(a)
        a = None
        # the loss: everything after worker.provisioning never reached the new primary
        key = f"lcm:{{worker:{wid}}}"
        evs = rjson(new, "XRANGE", key + ":events", "-", "+")
        types = [dict(zip(f[0::2], f[1::2]))["type"] for _, f in evs]
        check("worker.provisioning" in types, types)
        cut = types.index("worker.provisioning") + 1
        for eid, _ in evs[cut:]:
            rcli(new, "XDEL", key + ":events", eid)
        import subprocess
        from rellib import LCMD
        r = subprocess.run([LCMD, "--rebuild"], env=dict(os.environ, LCM_REDIS_URL=s.url,
                           LCM_PLUGIN_DIR="/nonexistent-lcm-plugins"), capture_output=True, text=True,
                           timeout=120)
        check(r.returncode == 0, f"rebuild: {r.stdout} {r.stderr[-2000:]}")
        check(rcli(new, "HGET", key, "status").strip() == "provisioning"
              and not rcli(new, "HGET", key, "instance_id").strip(),
              f"simulated loss did not take: {rcli(new, 'HGETALL', key)}")
        log(f"worker {wid}: {len(evs) - cut} events after worker.provisioning dropped on the new "
            f"primary {new}; hash rebuilt to provisioning without an instance")

        a = Lcmd(s.url, env=env)
        w = wait_until(lambda: (lambda d: d if d.get("status") == "running" else None)(
            a.call("GET", f"/api/v1/workers/{wid}")[2]), timeout=60, what="worker running again")
        check(w["instance_id"] == iid, f"adopted {w['instance_id']}, expected the original {iid}")
        res = ec2.describe_instances(Filters=[{"Name": "tag:lcm:worker_id", "Values": [wid]}])
        insts = [i for r2 in res["Reservations"] for i in r2["Instances"]]
        check(len(insts) == 1, f"{len(insts)} instances tagged for {wid}: launched twice")
        types = [dict(zip(f[0::2], f[1::2]))["type"] for _, f in rjson(new, "XRANGE", key + ":events", "-", "+")]
        log(f"re-adopted {iid} by tag: one instance; events after the loss: {types[cut:]}")
        stop_clean(a)
        a = None
    finally:
        if a and a.proc:
            a.stop()
        moto.close()
        s.close()


run_tests([test_discover_failover_keep_writing, test_sentinel_down_and_primary_killed,
           test_lost_launch_readopted])
