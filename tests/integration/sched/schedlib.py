"""Shared set-up of the scheduler tests: a private redis-server, seeding through sched_seed
(aggregates written through the event store, so workers can be `running` with CML ready
without AWS), lcmd replicas, and readers of the resulting state straight from Redis."""
import json
import os
import shutil
import subprocess
import tempfile
import time

from harness import BUILD_DIR, SOURCE_DIR, Lcmd, Redis, check, wait_until

SEED = os.path.join(BUILD_DIR, "bin", "sched_seed")


def template(name, lic="enterprise", cpu=48, mem=192, storage=256, nodes=200, cost=3.96, region="eu-west-1"):
    return {"op": "template", "body": {
        "name": name, "instance_type": "m5zn.metal", "ami_name_pattern": "cml-*",
        "capacity": {"cpu_cores": cpu, "memory_gb": mem, "storage_gb": storage, "max_nodes": nodes},
        "cost_per_hour": cost, "enabled": True, "region": region, "license_type": lic}}


def definition(did, cpu=8, mem=16, storage=20, nodes=5, vmin="2.9.0", vmax=None, nds=("iosv",), affinity=None):
    rr = {"cpu_cores": cpu, "memory_gb": mem, "storage_gb": storage, "cml_version_min": vmin,
          "node_definitions": list(nds)}
    if vmax:
        rr["cml_version_max"] = vmax
    body = {"name": "lab-" + did, "version": "1.0.0", "topology_uri": "s3://labs/" + did + ".yaml",
            "node_count": nodes, "resource_requirements": rr, "lds_enabled": False}
    if affinity:
        body["license_affinity"] = list(affinity)
    return {"op": "definition", "id": did, "body": body}


def worker(wid, tpl="multi", lic="enterprise", version="2.9.1", nds=("iosv",), status="running",
           region="eu-west-1"):
    return {"op": "worker", "id": wid, "template": tpl, "region": region, "status": status,
            "cml": {"version": version, "ready": True, "node_definitions": list(nds)}, "license": lic}


def session(sid, did, start=None, end=0):
    """Starts in 30 min by default: inside the lead window (placed now) but before its boot
    lead, so the session controller leaves it `scheduled` (no CML plugin in these tests)."""
    if start is None:
        start = int(time.time()) + 1800
        end = start + 3600
    return {"op": "session", "id": sid, "definition_id": did, "start": start, "end": end}


def seed(rd, ops):
    r = subprocess.run([SEED, rd.url, json.dumps(ops)], capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, f"sched_seed failed: {r.stderr[-2000:]}")


def hget(rd, kind, aid, field):
    return rd.cli("HGET", f"lcm:{{{kind}:{aid}}}", field).strip()


def status(rd, sid):
    return hget(rd, "session", sid, "status")


def worker_of(rd, sid):
    return hget(rd, "session", sid, "worker_id")


def allocated(rd, wid):
    v = hget(rd, "worker", wid, "allocated")
    return json.loads(v) if v else None


def worker_sessions(rd, wid):
    v = hget(rd, "worker", wid, "sessions")
    return json.loads(v) if v else []


def event_types(rd, kind, aid):
    out = rd.cli("XRANGE", f"lcm:{{{kind}:{aid}}}:events", "-", "+").split("\n")
    return [out[i + 1] for i in range(len(out) - 1) if out[i] == "type"]


def keys(rd, pattern):
    return [k for k in rd.cli("--scan", "--pattern", pattern).split("\n") if k]


def policy_dir():
    """A private copy of policies/ (tests rewrite it for hot reload)."""
    d = tempfile.mkdtemp(prefix="lcm-policies-")
    shutil.copytree(os.path.join(SOURCE_DIR, "policies"), d, dirs_exist_ok=True)
    return d


def lcmd(rd, env=None, **kw):
    e = {"LCM_PLUGIN_DIR": os.path.join(tempfile.mkdtemp(prefix="lcm-noplugins-")),
         "LCM_POLICY_DIR": kw.pop("policies", None) or os.path.join(SOURCE_DIR, "policies"),
         "LCM_LEASE_TTL_MS": "1500", "LCM_SCHEDULER_INTERVAL_MS": "200", "LCM_AUTOSCALER_INTERVAL_MS": "300"}
    if env:
        e.update(env)
    return Lcmd(rd.url, env=e, **kw)


def wait_leader(reps, timeout=15):
    def one():
        ls = [r for r in reps if r.proc and r.get("/readyz")[2].get("role") == "leader"]
        return ls[0] if len(ls) == 1 else None
    return wait_until(one, timeout=timeout, what="one leader")


def metric(l, name):
    st, _, raw = l.get("/metrics")
    text = raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total
