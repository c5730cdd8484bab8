"""Worker actions from the API, on the workers suite's rig (real Redis, moto behind the aws
fault proxy, cml-sim, lcmd with the aws and cml plugins; helpers from test_workers.py):
  - POST /workers/{id}/start on a `failed` worker retries it (failed → pending): the worker
    controller launches again, with the next ClientToken generation, and the worker runs;
  - POST /workers/{id}/refresh goes through lcm:requests (consumer group lcm-workers) to the
    leader and also runs lab discovery on that worker: a lab made on CML by hand becomes a
    `discovered` record at once, not at the next discovery period (set to an hour here)."""
import sys
import time

import harness
from harness import check, http_json, wait_until

import test_workers as tw
from test_workers import S, create_worker, instances, run_instances_log, wait_status

TOPOLOGY = """lab:
  title: by-hand
  version: 0.2.2
nodes:
  - id: n0
    label: r1
    node_definition: iosv
    x: 0
    y: 0
    interfaces: []
links: []
"""


def test_failed_worker_retried_from_api():
    L = S["lcmd"]
    S["proxy"].reset()
    S["proxy"].faults([{"action": "RunInstances", "code": "InsufficientInstanceCapacity", "status": 500}])
    wid = create_worker(L, "retry")
    w = wait_status(L, wid, "failed", timeout=90)
    check("InsufficientInstanceCapacity" in w["status_history"][-1]["reason"], w["status_history"][-1])
    check(len(instances(wid)) == 0, "nothing launched while EC2 had no capacity")
    S["proxy"].reset()
    # stop is not a retry: the worker stays failed
    st, _, doc = L.call("POST", f"/api/v1/workers/{wid}/stop")
    check(st == 200 and doc["status"] == "failed", f"stop on failed: {st} {doc}")
    st, _, doc = L.call("POST", f"/api/v1/workers/{wid}/start", {"reason": "capacity is back"})
    check(st == 200, f"start on failed: {st} {doc}")
    check(doc["status"] in ("pending", "provisioning", "starting", "running"), doc)
    check(doc["desired_status"] == "running", doc)
    retry = next(h for h in doc["status_history"] if h["from"] == "failed")
    check(retry["to"] == "pending" and retry["reason"] == "retry requested" and retry["by"], retry)
    w = wait_status(L, wid, "running", timeout=90)
    inst = instances(wid)
    check(len(inst) == 1 and w["instance_id"] == inst[0]["InstanceId"], f"one instance: {inst}")
    ok = [e for e in run_instances_log() if e["status"] == 200]
    check([e["client_token"] for e in ok] == [f"lcm-{wid}-2"],
          f"the retry launches with the next ClientToken generation: {ok}")
    hist = [h["to"] for h in w["status_history"]]
    check(hist[-5:] == ["failed", "pending", "provisioning", "starting", "running"], hist)
    # start on a running worker changes nothing (the revision may move: metrics keep coming)
    st, _, again = L.call("POST", f"/api/v1/workers/{wid}/start")
    check(st == 200 and again["status"] == "running" and
          again["status_history"] == w["status_history"], f"start on running: {st} {again}")
    S["retried"] = wid


def cml(wid, method, path, raw=None):
    base = f"{S['cml'].url}/{wid}/api/v0"
    st, _, tok = http_json("POST", base + "/authenticate", {"username": "admin", "password": "admin-sim"})
    check(st == 200, f"cml-sim authenticate: {st} {tok}")
    h = {"Authorization": "Bearer " + tok}
    if raw is not None:
        h["Content-Type"] = "application/x-yaml"
        return http_json(method, base + path, raw.encode(), headers=h)
    return http_json(method, base + path, headers=h)


def lab_records(L, wid):
    st, _, doc = L.call("GET", f"/api/v1/labs?worker={wid}&limit=500")
    check(st == 200, f"GET labs: {st} {doc}")
    return [l for l in doc["items"] if l["worker_id"] == wid]


def test_refresh_discovers_labs():
    L = S["lcmd"]
    wid = S["retried"]
    time.sleep(1.5)   # the discovery run when the worker became running is over
    st, _, doc = cml(wid, "POST", "/import?title=made-by-hand", raw=TOPOLOGY)
    check(st == 200, f"import on cml-sim: {st} {doc}")
    cml_id = doc["id"]
    time.sleep(2)
    check(not any(l["cml_lab_id"] == cml_id for l in lab_records(L, wid)),
          "found before any refresh: the periodic discovery (1 h here) should not have run")
    st, _, req = L.call("POST", f"/api/v1/workers/{wid}/refresh")
    check(st == 202 and req["type"] == "worker.refresh" and req["worker_id"] == wid, f"{st} {req}")
    lab = wait_until(lambda: next((l for l in lab_records(L, wid) if l["cml_lab_id"] == cml_id), None),
                     timeout=10, what="lab discovered after refresh")
    check(lab["status"] in ("discovered", "defined") and lab["title"] == "made-by-hand", lab)
    log = open(L.proc.err_path).read()
    check(f'worker={wid} msg="refresh requested"' in log, "refresh consumed by the worker controller")
    # the request was acknowledged in the consumer group: nothing pending for lcm-workers
    pending = S["redis"].cli("XPENDING", "lcm:requests", "lcm-workers").split()
    check(pending and pending[0] == "0", f"XPENDING: {pending}")


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
    S["cml"] = tw.CmlSim()
    S["plugins"] = tw.plugin_dir()
    S["lcmd"] = tw.start_lcmd({"LCM_WORKER_MAX_ATTEMPTS": "3", "LCM_DISCOVERY_INTERVAL_MS": "0",
                               "LCM_LAB_DISCOVERY_INTERVAL_MS": "3600000"})
    wait_until(lambda: S["lcmd"].get("/readyz")[2].get("role") == "leader", timeout=20, what="leader")
    tpl = {"name": "cml-test", "instance_type": "t3.small", "ami_name_pattern": "cml-2.9*",
           "region": tw.REGION, "capacity": {"cpu_cores": 8, "memory_gb": 32, "storage_gb": 100,
                                             "max_nodes": 200},
           "license_type": "enterprise", "cost_per_hour": 0.5, "enabled": True}
    st, _, doc = S["lcmd"].call("POST", "/api/v1/templates", tpl)
    check(st == 201, f"POST template: {st} {doc}")
    harness.run_tests([test_failed_worker_retried_from_api, test_refresh_discovers_labs,
                       test_clean_shutdown])


def test_clean_shutdown():
    tw.stop_clean(S.pop("lcmd"))


if __name__ == "__main__":
    sys.exit(main())
