"""After Redis lost acknowledged writes (an asynchronous-replication failover), lcmd's read
model is ahead of Redis. The first write against such an aggregate is refused as a conflict
(nothing is written), lcmd re-reads the aggregate from Redis, and the retry succeeds against
what Redis really holds. Simulated on one Redis by putting an aggregate back one version."""
import json

from harness import Lcmd, Redis, check, run_tests, wait_until

TPL = {"name": "tpl-r", "instance_type": "m5zn.metal", "ami_name_pattern": "cml-*",
       "capacity": {"cpu_cores": 48, "memory_gb": 192, "storage_gb": 256, "max_nodes": 200},
       "license_type": "enterprise", "cost_per_hour": 3.96, "enabled": True, "region": "eu-west-1"}


def hgetall(r, key):
    out = r.cli("--json", "HGETALL", key)
    raw = json.loads(out)
    return raw if isinstance(raw, dict) else dict(zip(raw[0::2], raw[1::2]))


def test_resync_after_lost_write():
    r = Redis()
    lc = Lcmd(r.url)
    try:
        st, _, doc = lc.call("POST", "/api/v1/templates", TPL)
        check(st == 201, (st, doc))
        key = "lcm:{template:tpl-r}"
        before = hgetall(r, key)
        st, _, doc = lc.call("PATCH", "/api/v1/templates/tpl-r", {"description": "written, then lost"})
        check(st == 200, (st, doc))
        # the loss: Redis goes back to the state before the PATCH (hash and stream)
        evs = json.loads(r.cli("--json", "XRANGE", key + ":events", "-", "+"))
        r.cli("XDEL", key + ":events", evs[-1][0])
        r.cli("DEL", key)
        args = []
        for k, v in before.items():
            args += [k, v]
        r.cli("HSET", key, *args)
        check(hgetall(r, key)["version"] == before["version"], "simulated loss did not take")
        # lcmd still believes the lost version: the first write conflicts, nothing is written
        st, _, doc = lc.call("PATCH", "/api/v1/templates/tpl-r", {"description": "after the loss"})
        check(st == 409, (st, doc))
        check(hgetall(r, key)["version"] == before["version"], "a conflicting write changed Redis")
        # the read model re-reads Redis; a retry then succeeds on top of what Redis holds
        def retry():
            s, _, d = lc.call("PATCH", "/api/v1/templates/tpl-r", {"description": "after the loss"})
            return d if s == 200 else None
        d = wait_until(retry, timeout=5, what="retry after resync")
        check(d.get("description") == "after the loss", d)
        check(int(hgetall(r, key)["version"]) == int(before["version"]) + 1, hgetall(r, key))
        st, _, body = lc.get("/metrics")
        text = body.decode() if isinstance(body, bytes) else str(body)
        check("lcm_store_resyncs_total" in text, "resync not counted")
    finally:
        proc = lc.proc
        rc = lc.stop()
        r.close()
    check(rc == 0, proc.stderr()[-2000:])


run_tests([test_resync_after_lost_write])
