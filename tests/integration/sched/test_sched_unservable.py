"""A session that a new worker of the only template would not fix must not make the autoscaler
launch one worker per cooldown. Rig: real Redis, moto's EC2 behind the aws fault proxy, cml-sim
whose controllers offer no `iosv`, lcmd with the aws and cml plugins (helpers of the workers
suite), scale-up cooldown 1 s.

  - a definition needing `iosv` is booked: the template has no worker yet, so one launch is
    allowed (its capabilities are unknown until one runs); the worker runs and its CML node
    definitions are recorded without `iosv`; from then on the autoscaler refuses with the
    reason ("template … cannot serve definition …: node_definition iosv missing …") and
    launches nothing more for 20 s (before the fix: one launch per cooldown);
  - the launch made for the session is on record in Redis (lcm:sched:launched), so a new
    leader knows it; after a restart of lcmd still nothing is launched;
  - cml-sim then offers `iosv` on that worker's controller (admin route): the node
    definitions are re-read and the session is placed on the existing worker, with no new
    launch, and its launch record is dropped."""
import json
import os
import sys
import time

import harness
from harness import BUILD_DIR, Proc, check, wait_until

import test_workers as tw
from test_workers import S
from schedlib import definition, seed, session

DEF = "d-iosv"
SID = "s-iosv"


class CmlSimNoIosv(tw.CmlSim):
    """cml-sim whose new controllers offer a list without iosv."""

    def __init__(self):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="lcm-cmlsim-")
        pf = os.path.join(self.dir, "port")
        self.proc = Proc("cml-sim", [os.path.join(BUILD_DIR, "bin", "cml-sim"), "--listen",
                                     "127.0.0.1:0", "--port-file", pf, "--boot-ms", "100",
                                     "--node-definitions", "alpine,ubuntu,unmanaged_switch"],
                         log_dir=self.dir)
        wait_until(lambda: os.path.exists(pf) and open(pf).read().strip(), what="cml-sim port")
        self.port = int(open(pf).read().strip())


def workers(L):
    st, _, doc = L.call("GET", "/api/v1/workers?limit=500")
    check(st == 200, f"GET workers: {st} {doc}")
    return doc["items"]


def decisions(L):
    st, _, doc = L.call("GET", "/api/v1/scheduler?limit=200")
    check(st == 200, f"GET scheduler: {st} {doc}")
    return doc["fleet_decisions"]


def launches_ok():
    return [e for e in S["proxy"].log() if e["action"] == "RunInstances" and e["status"] == 200]


def session_field(field):
    return S["redis"].cli("HGET", f"lcm:{{session:{SID}}}", field).strip()


def start_lcmd():
    return tw.start_lcmd({"LCM_SCALE_UP_COOLDOWN_S": "1", "LCM_AUTOSCALER_INTERVAL_MS": "300",
                          "LCM_SCHEDULER_INTERVAL_MS": "200", "LCM_METRICS_INTERVAL_MS": "1000",
                          "LCM_MAX_WORKERS_PER_REGION": "50", "LCM_DISCOVERY_INTERVAL_MS": "0",
                          "LCM_POLICY_DIR": os.path.join(harness.SOURCE_DIR, "policies")})


def test_one_launch_then_refused_with_reason():
    L = S["lcmd"]
    seed(S["redis"], [definition(DEF, cpu=2, mem=4, storage=10, nodes=2, nds=("iosv",)),
                      session(SID, DEF)])
    ws = wait_until(lambda: workers(L) or None, timeout=30, what="first launch")
    check(len(ws) == 1, f"one worker launched: {ws}")
    wid = ws[0]["id"]
    w = wait_until(lambda: (lambda x: x if x["status"] == "running" and x["cml"]["node_definitions"]
                            else None)(tw.worker(L, wid)), timeout=90, what="worker running with node definitions")
    check("iosv" not in w["cml"]["node_definitions"], w["cml"])
    check(w["origin"] == "scale_up" and w["template"] == "cml-test", w)
    want = f"template cml-test cannot serve definition {DEF}: node_definition iosv missing on its workers"
    wait_until(lambda: any(d["result"] == "refused" and want in d.get("reason", "") for d in decisions(L)),
               timeout=20, what="refusal naming the missing node definition")
    # the scheduler says why too
    st, _, pv = L.call("POST", "/api/v1/scheduler/preview", {"session_id": SID})
    check(st == 200 and pv["worker_id"] is None and pv["rejections"].get("node_definition") == 1, pv)
    # no runaway: cooldown 1 s, 20 s of cycles
    t0 = time.time()
    while time.time() - t0 < 20:
        n = len(workers(L))
        check(n == 1, f"runaway: {n} workers after {time.time() - t0:.1f} s: {[x['id'] for x in workers(L)]}")
        time.sleep(0.5)
    check(len(launches_ok()) == 1, f"RunInstances: {launches_ok()}")
    check(session_field("status") == "pending", session_field("status"))
    taken = [d for d in decisions(L) if d["decision"] == "scale_up" and d["result"] == "taken"]
    check(len(taken) == 1 and taken[0]["count"] == 1, taken)
    refused = [d for d in decisions(L) if d["result"] == "refused" and want in d.get("reason", "")]
    check(len(refused) >= 2, f"refusals keep coming (rate-limited to one per 10 s): {len(refused)}")
    # the launch made for the session is in Redis for the next leader
    rec = S["redis"].cli("HGET", "lcm:sched:launched", SID).strip()
    check(rec == f"1 {wid}", f"lcm:sched:launched {SID}: {rec!r}")
    S["wid"] = wid


def test_restart_keeps_refusing():
    tw.stop_clean(S.pop("lcmd"))
    S["lcmd"] = L = start_lcmd()
    wait_until(lambda: L.get("/readyz")[2].get("role") == "leader", timeout=20, what="leader")
    time.sleep(6)
    check(len(workers(L)) == 1, [x["id"] for x in workers(L)])
    check(len(launches_ok()) == 1, f"RunInstances: {launches_ok()}")
    st, _, sc = L.call("GET", "/api/v1/scheduler")
    a = sc["autoscaler"]
    check(a["sessions_with_launches"] == 1 and a["limits"]["max_launches_per_session"] == 2, a)


def test_node_definition_added_placed_on_existing_worker():
    L = S["lcmd"]
    wid = S["wid"]
    offered = S["cml"].get(wid)["node_definitions"]
    S["cml"].patch(wid, node_definitions=offered + ["iosv"])
    wait_until(lambda: "iosv" in tw.worker(L, wid)["cml"]["node_definitions"], timeout=30,
               what="iosv recorded on the worker")
    wait_until(lambda: session_field("status") == "scheduled", timeout=30, what="session placed")
    check(session_field("worker_id") == wid, f"placed on {session_field('worker_id')}, not {wid}")
    time.sleep(2)
    check(len(workers(L)) == 1 and len(launches_ok()) == 1, f"no new launch: {workers(L)}")
    wait_until(lambda: S["redis"].cli("HEXISTS", "lcm:sched:launched", SID).strip() == "0", timeout=10,
               what="launch record dropped once placed")


def test_clean_shutdown():
    tw.stop_clean(S.pop("lcmd"))


def main():
    S["redis"] = harness.Redis()
    S["moto"] = tw.Moto()
    S["ec2"] = S["moto"].client("ec2")
    base = S["ec2"].describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    src = S["ec2"].run_instances(ImageId=base, InstanceType="t3.micro", MinCount=1,
                                 MaxCount=1)["Instances"][0]["InstanceId"]
    S["ami"] = S["ec2"].create_image(InstanceId=src, Name=tw.AMI_NAME)["ImageId"]
    S["ec2"].terminate_instances(InstanceIds=[src])
    S["proxy"] = tw.FaultProxy(S["moto"].url)
    S["cml"] = CmlSimNoIosv()
    S["plugins"] = tw.plugin_dir()
    S["lcmd"] = start_lcmd()
    wait_until(lambda: S["lcmd"].get("/readyz")[2].get("role") == "leader", timeout=20, what="leader")
    tpl = {"name": "cml-test", "instance_type": "t3.small", "ami_name_pattern": "cml-2.9*",
           "region": tw.REGION, "capacity": {"cpu_cores": 8, "memory_gb": 32, "storage_gb": 100,
                                             "max_nodes": 200},
           "license_type": "enterprise", "cost_per_hour": 0.5, "enabled": True}
    st, _, doc = S["lcmd"].call("POST", "/api/v1/templates", tpl)
    check(st == 201, f"POST template: {st} {doc}")
    S["proxy"].reset()
    return harness.run_tests([test_one_launch_then_refused_with_reason, test_restart_keeps_refusing,
                              test_node_definition_added_placed_on_existing_worker, test_clean_shutdown])


if __name__ == "__main__":
    sys.exit(main())
