"""Worker controller end to end: real Redis, moto's EC2/CloudWatch behind the aws fault proxy,
cml-sim for CML, and lcmd with the aws and cml plugins. Templates and workers are created
through the HTTP API; the controller launches, adopts, polls, stops/starts, terminates,
discovers and cleans up; faults and a kill -9 between RunInstances and its record prove the
launch is idempotent (exactly one instance per worker)."""
import json
import os
import shutil
import signal
import sys
import tempfile
import time

import harness
from harness import BUILD_DIR, Lcmd, Proc, Redis, check, free_port, wait_until

REGION = "us-east-1"
AMI_NAME = "cml-2.9.0-lcm-test"
PROXY = os.path.join(harness.SOURCE_DIR, "tests", "sims", "aws-fault-proxy", "aws_fault_proxy.py")

S = {}   # the shared stack


class Moto:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="lcm-moto-")
        self.proc = Proc("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                  str(self.port)], log_dir=self.dir)
        wait_until(lambda: harness.http("GET", self.url + "/moto-api/")[0] == 200, timeout=30,
                   what="moto")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self, service):
        import boto3
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id="test", aws_secret_access_key="test")


class FaultProxy:
    def __init__(self, upstream):
        self.port = free_port()
        self.proc = Proc("aws-fault-proxy", [sys.executable, PROXY, "--port", str(self.port),
                                             "--upstream", upstream])
        wait_until(lambda: "listening" in self.proc.stdout(), timeout=15, what="fault proxy")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _call(self, method, path, body=None):
        st, _, doc = harness.http_json(method, self.url + path, body)
        check(st == 200, f"proxy admin {path}: {st}")
        return doc

    def faults(self, rules, latency_ms=0):
        self._call("POST", "/__admin/faults", {"rules": rules, "latency_ms": latency_ms})

    def reset(self):
        self._call("POST", "/__admin/reset", {})

    def log(self):
        return self._call("GET", "/__admin/log")


class CmlSim:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="lcm-cmlsim-")
        pf = os.path.join(self.dir, "port")
        self.proc = Proc("cml-sim", [os.path.join(BUILD_DIR, "bin", "cml-sim"), "--listen",
                                     "127.0.0.1:0", "--port-file", pf, "--boot-ms", "100"],
                         log_dir=self.dir)
        wait_until(lambda: os.path.exists(pf) and open(pf).read().strip(), what="cml-sim port")
        self.port = int(open(pf).read().strip())

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def controller(self, cid, **fields):
        st, _, _ = harness.http_json("POST", self.url + "/_sim/controllers", dict(id=cid, **fields))
        if st == 409:
            st, _, _ = harness.http_json("PATCH", self.url + f"/_sim/controllers/{cid}", fields)
        check(st in (200, 201), f"cml-sim controller {cid}: {st}")

    def patch(self, cid, **fields):
        st, _, doc = harness.http_json("PATCH", self.url + f"/_sim/controllers/{cid}", fields)
        check(st == 200, f"cml-sim patch {cid}: {st} {doc}")

    def get(self, cid):
        st, _, doc = harness.http_json("GET", self.url + f"/_sim/controllers/{cid}")
        check(st == 200, f"cml-sim get {cid}: {st} {doc}")
        return doc


def plugin_dir():
    d = tempfile.mkdtemp(prefix="lcm-plugins-")
    os.chmod(d, 0o755)
    for name in ("lcm-aws.so", "lcm-cml.so"):
        dst = os.path.join(d, name)
        shutil.copyfile(os.path.join(BUILD_DIR, "plugins", name), dst)
        os.chmod(dst, 0o755)
    return d


def lcmd_env(extra=None):
    e = {
        "LCM_PLUGIN_DIR": S["plugins"],
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": S["proxy"].url,
        "LCM_PLUGIN_AWS_MAX_ATTEMPTS": "3", "LCM_PLUGIN_AWS_BACKOFF_BASE_MS": "50",
        "LCM_PLUGIN_AWS_BACKOFF_MAX_MS": "200",
        "LCM_CML_ENDPOINT": S["cml"].url + "/{worker_id}",
        "LCM_CML_USERNAME": "admin", "LCM_CML_PASSWORD": "admin-sim",
        "LCM_LEASE_TTL_MS": "1000",
        "LCM_WORKER_POLL_INTERVAL_MS": "200",
        "LCM_DISCOVERY_INTERVAL_MS": "1000",
        "LCM_DISCOVERY_AMI_NAME_PATTERN": "cml-2.9*",
        "LCM_METRICS_INTERVAL_MS": "1000",
        "LCM_WORKER_BACKOFF_BASE_MS": "300",
        "LCM_WORKER_BACKOFF_MAX_MS": "1200",
        "LCM_WORKER_BOOT_TIMEOUT_S": "120",
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
    }
    for k in list(os.environ):
        if k.startswith("AWS_"):
            os.environ.pop(k)
    if extra:
        e.update(extra)
    return e


def start_lcmd(extra=None):
    return Lcmd(redis_url=S["redis"].url, env=lcmd_env(extra))


def worker(lcmd, wid):
    st, _, doc = lcmd.call("GET", f"/api/v1/workers/{wid}")
    check(st == 200, f"GET worker {wid}: {st} {doc}")
    return doc


def wait_status(lcmd, wid, status, timeout=60):
    return wait_until(lambda: (lambda w: w if w["status"] == status else None)(worker(lcmd, wid)),
                      timeout=timeout, interval=0.1, what=f"worker {wid} {status} "
                      f"(now {worker(lcmd, wid)['status']})")


def create_worker(lcmd, name=None):
    body = {"template": "cml-test", "region": REGION}
    if name:
        body["name"] = name
    st, _, doc = lcmd.call("POST", "/api/v1/workers", body)
    check(st == 201, f"POST worker: {st} {doc}")
    return doc["id"]


def instances(tag_worker=None, states=("pending", "running", "stopping", "stopped")):
    f = [{"Name": "instance-state-name", "Values": list(states)}]
    if tag_worker:
        f.append({"Name": "tag:lcm:worker_id", "Values": [tag_worker]})
    out = []
    for r in S["ec2"].describe_instances(Filters=f)["Reservations"]:
        out += r["Instances"]
    return out


def ec2_state(iid):
    r = S["ec2"].describe_instances(InstanceIds=[iid])["Reservations"]
    return r[0]["Instances"][0]["State"]["Name"]


def run_instances_log(token=None):
    return [e for e in S["proxy"].log() if e["action"] == "RunInstances" and
            (token is None or e["client_token"] == token)]


def lcmd_check_clean(lcmd):
    rc = lcmd.stop()
    err = lcmd.proc_stderr if hasattr(lcmd, "proc_stderr") else ""
    return rc, err


def stop_clean(lcmd):
    p = lcmd.proc
    rc = lcmd.stop()
    err = open(p.err_path, errors="replace").read()
    check("ERROR: AddressSanitizer" not in err and "runtime error:" not in err
          and "LeakSanitizer" not in err, "sanitizer report in lcmd:\n" + err[-4000:])
    check(rc == 0, f"lcmd exited {rc}:\n{err[-3000:]}")


# ---- tests ---------------------------------------------------------------------------------

def test_launch_readiness_running():
    L = S["lcmd"]
    wid = create_worker(L, "readiness")
    # the worker's CML (cml-sim controller named after the worker id) starts not ready and
    # unlicensed: the worker must stay `starting` until CML says both
    S["cml"].controller(wid, ready=False, registered=False)
    wait_status(L, wid, "starting", timeout=30)
    w = worker(L, wid)
    check(w["instance_id"] and w["instance_id"].startswith("i-"), w)
    time.sleep(1.5)
    w = wait_until(lambda: (lambda x: x if x["instance_id"] else None)(worker(L, wid)))
    check(w["status"] == "starting" and not w["cml"]["ready"], f"not ready yet: {w}")
    S["cml"].patch(wid, ready=True)
    time.sleep(1.5)
    w = worker(L, wid)
    check(w["status"] == "starting", f"unlicensed CML must not make a running worker: {w}")
    check(w["license"]["status"] != "registered", w)
    S["cml"].patch(wid, registered=True)
    w = wait_status(L, wid, "running", timeout=30)
    check(w["cml"]["ready"] is True and w["cml"]["version"].startswith("2.9"), w)
    check(w["license"]["type"] == "enterprise" and w["license"]["node_limit"] == 500, w)
    check(w["license"]["status"] == "registered", w)
    # the node definitions its CML offers are recorded with readiness (placement needs them)
    offered = S["cml"].get(wid)["node_definitions"]
    check(len(offered) >= 10 and sorted(w["cml"]["node_definitions"]) == sorted(offered),
          f"cml.node_definitions {w['cml']['node_definitions']} != CML's {offered}")
    check(w["private_ip"] and w["endpoint"] == "https://" + w["private_ip"], w)
    check(w["ami_id"] == S["ami"], f"ami {w['ami_id']} != {S['ami']}")
    # EC2: one instance, LCM's tags, the ClientToken derived from the worker id
    inst = instances(wid)
    check(len(inst) == 1, f"instances for {wid}: {len(inst)}")
    tags = {t["Key"]: t["Value"] for t in inst[0]["Tags"]}
    check(tags.get("lcm:worker_id") == wid and tags.get("lcm:template") == "cml-test"
          and tags.get("lcm:managed_by") == "lcm" and tags.get("team") == "lablets", tags)
    check(inst[0]["InstanceType"] == "t3.small", inst[0]["InstanceType"])
    runs = run_instances_log(f"lcm-{wid}")
    check(len(runs) == 1 and runs[0]["status"] == 200, f"RunInstances: {runs}")
    # every step is an event on the worker's stream
    types = S["redis"].cli("XRANGE", f"lcm:{{worker:{wid}}}:events", "-", "+").split()
    for t in ("worker.created", "worker.provisioning", "worker.observed", "worker.cml",
              "worker.license", "worker.running"):
        check(t in types, f"{t} missing from the stream: {types}")
    S["w1"] = wid


def test_metrics_cloudwatch_and_cml():
    L = S["lcmd"]
    wid = S["w1"]
    iid = worker(L, wid)["instance_id"]
    import datetime
    cw = S["moto"].client("cloudwatch")
    now = datetime.datetime.now(datetime.timezone.utc)
    cw.put_metric_data(Namespace="AWS/EC2", MetricData=[
        {"MetricName": "CPUUtilization", "Dimensions": [{"Name": "InstanceId", "Value": iid}],
         "Timestamp": now - datetime.timedelta(seconds=30), "Value": 37.5, "Unit": "Percent"}])
    S["cml"].patch(wid)   # no-op, controller exists
    harness.http("POST", S["cml"].url + f"/_sim/controllers/{wid}/activity", {})

    def gauge():
        st, _, raw = harness.http("GET", L.url + "/metrics")
        text = raw.decode()
        line = [ln for ln in text.splitlines() if ln.startswith("lcm_worker_cpu_percent{") and
                f'worker="{wid}"' in ln and 'source="cloudwatch"' in ln]
        return line and float(line[0].rsplit(" ", 1)[1]) == 37.5 and text
    text = wait_until(gauge, timeout=20, what="cloudwatch cpu gauge")
    check(f'lcm_worker_cpu_percent{{worker="{wid}",source="cml"}}' in text, "cml cpu gauge missing")
    check(f'lcm_worker_memory_percent{{worker="{wid}"}}' in text, "memory gauge missing")
    w = wait_until(lambda: (lambda x: x if x["metrics"]["at"] and x["last_activity_at"] else None)(
        worker(L, wid)), timeout=20, what="metrics and activity on the read model")
    check(0 <= w["metrics"]["cpu_pct"] <= 100 and 0 <= w["metrics"]["mem_pct"] <= 100, w["metrics"])
    check('lcm_workers{status="running"}' in text, "lcm_workers gauge missing")


def create_definition(lcmd, name, node_definitions, activate=True):
    body = {"name": name, "version": "1.0.0", "topology_uri": f"s3://labs/{name}.yaml",
            "node_count": 3, "lds_enabled": False,
            "resource_requirements": {"cpu_cores": 2, "memory_gb": 4, "storage_gb": 10,
                                      "cml_version_min": "2.9.0",
                                      "node_definitions": list(node_definitions)}}
    st, _, doc = lcmd.call("POST", "/api/v1/definitions", body)
    check(st == 201, f"POST definition {name}: {st} {doc}")
    if activate:
        st, _, d2 = lcmd.call("POST", f"/api/v1/definitions/{doc['id']}/activate", {})
        check(st == 200, f"activate {name}: {st} {d2}")
    return doc["id"]


def preview(lcmd, did):
    st, _, pv = lcmd.call("POST", "/api/v1/scheduler/preview", {"definition_id": did})
    check(st == 200, f"preview {did}: {st} {pv}")
    return pv["worker_id"], {r["worker_id"]: r["reason"] for r in pv["rejected"]}


def test_node_definitions_placement():
    """CML's node definitions (recorded by the worker controller) decide placement: a
    definition whose node definitions the worker's CML offers is placed there; one needing a
    node definition CML lacks is rejected with `node_definition`; the list follows CML as it
    changes (refreshed with the metrics poll)."""
    L = S["lcmd"]
    wid = S["w1"]
    offered = S["cml"].get(wid)["node_definitions"]
    check("nxosv" not in offered, offered)
    # the sample topologies' node definitions (upstream definition seeds need these)
    d_ok = create_definition(L, "nd-sample", ["ubuntu-desktop-24-04-v2", "iosv", "vmanagemock"])
    d_nx = create_definition(L, "nd-nxos", ["iosv", "nxosv"], activate=False)
    got, rejected = preview(L, d_ok)
    check(got == wid, f"{d_ok} should fit {wid}: {got} {rejected}")
    got, rejected = preview(L, d_nx)
    check(got is None and rejected.get(wid) == "node_definition", f"nxosv is not on {wid}: {got} {rejected}")

    # a real booking inside the lead window is placed on the worker (and released again)
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1800))
    st, _, sess = L.call("POST", "/api/v1/sessions", {"definition_id": d_ok, "timeslot": {"start": start}})
    check(st == 201, f"POST session: {st} {sess}")
    sid = sess["id"]
    sess = wait_until(lambda: (lambda x: x if x["status"] == "scheduled" else None)(
        L.call("GET", f"/api/v1/sessions/{sid}")[2]), timeout=20, what="session scheduled")
    check(sess["worker_id"] == wid, f"placed on {sess['worker_id']}, want {wid}")
    check(any(a["session_id"] == sid for a in worker(L, wid)["sessions"]), "capacity reserved")
    st, _, doc = L.call("POST", f"/api/v1/sessions/{sid}/terminate", {"reason": "test done"})
    check(st in (200, 202), f"terminate: {st} {doc}")
    wait_until(lambda: not worker(L, wid)["sessions"], timeout=30, what="session released")

    # CML gains nxosv: the next metrics poll records it, and the nxos definition fits
    S["cml"].patch(wid, node_definitions=offered + ["nxosv"])
    wait_until(lambda: "nxosv" in worker(L, wid)["cml"]["node_definitions"], timeout=20,
               what="nxosv recorded on the worker")
    got, rejected = preview(L, d_nx)
    check(got == wid, f"{d_nx} should fit now: {got} {rejected}")
    # and loses iosv: both definitions are rejected for that reason
    S["cml"].patch(wid, node_definitions=[n for n in offered if n != "iosv"] + ["nxosv"])
    wait_until(lambda: "iosv" not in worker(L, wid)["cml"]["node_definitions"], timeout=20,
               what="iosv dropped from the worker")
    for did in (d_ok, d_nx):
        got, rejected = preview(L, did)
        check(got is None and rejected.get(wid) == "node_definition", f"{did}: {got} {rejected}")
    S["cml"].patch(wid, node_definitions=offered)
    w = wait_until(lambda: (lambda x: x if sorted(x["cml"]["node_definitions"]) == sorted(offered) else None)(
        worker(L, wid)), timeout=20, what="list restored")
    check(w["status"] == "running" and w["cml"]["ready"] is True, w)
    got, _ = preview(L, d_ok)
    check(got == wid, f"{d_ok} fits again: {got}")
    # one worker.cml event per change, not one per poll
    types = S["redis"].cli("XRANGE", f"lcm:{{worker:{wid}}}:events", "-", "+").split()
    check(types.count("worker.cml") <= 6, f"worker.cml events: {types.count('worker.cml')}")


def test_stop_start():
    L = S["lcmd"]
    wid = S["w1"]
    iid = worker(L, wid)["instance_id"]
    st, _, doc = L.call("POST", f"/api/v1/workers/{wid}/stop", {})
    check(st == 200, f"stop: {st} {doc}")
    w = wait_status(L, wid, "stopped", timeout=60)
    check(w["desired_status"] == "stopped", w)
    check(ec2_state(iid) == "stopped", ec2_state(iid))
    hist = [h["to"] for h in w["status_history"]]
    check(hist[-3:] == ["draining", "stopping", "stopped"], hist)
    st, _, doc = L.call("POST", f"/api/v1/workers/{wid}/start", {})
    check(st == 200, f"start: {st} {doc}")
    w = wait_status(L, wid, "running", timeout=60)
    check(ec2_state(iid) == "running", ec2_state(iid))
    check(w["instance_id"] == iid, "same instance after start")
    check(len(instances(wid)) == 1, "still exactly one instance")


def test_terminate():
    L = S["lcmd"]
    wid = S["w1"]
    iid = worker(L, wid)["instance_id"]
    st, _, doc = L.call("POST", f"/api/v1/workers/{wid}/terminate", {})
    check(st == 200, f"terminate: {st} {doc}")
    w = wait_status(L, wid, "terminated", timeout=60)
    check(ec2_state(iid) == "terminated", ec2_state(iid))
    check([h["to"] for h in w["status_history"]][-2:] == ["terminating", "terminated"], w)


def test_discovery_import():
    L = S["lcmd"]
    ec2 = S["ec2"]
    # one by AMI pattern (no tags at all), one by LCM tags with no worker LCM knows
    a = ec2.run_instances(ImageId=S["ami"], InstanceType="t3.small", MinCount=1,
                          MaxCount=1)["Instances"][0]["InstanceId"]
    b = ec2.run_instances(ImageId=S["base_ami"], InstanceType="t3.small", MinCount=1, MaxCount=1,
                          TagSpecifications=[{"ResourceType": "instance", "Tags": [
                              {"Key": "lcm:managed_by", "Value": "lcm"},
                              {"Key": "lcm:worker_id", "Value": "wk-lost-1"},
                              {"Key": "lcm:template", "Value": "cml-test"}]}])["Instances"][0]["InstanceId"]
    st, _, doc = L.call("POST", "/api/v1/workers/import", {"region": REGION})
    check(st == 202, f"import: {st} {doc}")

    def found():
        st, _, doc = L.call("GET", "/api/v1/workers?origin=discovered&limit=100")
        items = doc["items"]
        by = {w["instance_id"]: w for w in items}
        return a in by and b in by and by
    by = wait_until(found, timeout=30, what="discovered workers")
    check(by[b]["id"] == "wk-lost-1", f"tagged instance keeps its worker id: {by[b]['id']}")
    check(by[a]["id"] == f"w-{a}" and by[a]["template"] == "cml-test", by[a])
    # discovered running instances go through readiness like any other
    wait_status(L, by[a]["id"], "running", timeout=30)
    wait_status(L, "wk-lost-1", "running", timeout=30)
    # LCM tags the instance it imported by AMI, so "launch once" and later sweeps see it
    tags = {t["Key"]: t["Value"] for t in instances(f"w-{a}")[0]["Tags"]}
    check(tags.get("lcm:managed_by") == "lcm", tags)
    # no instance was launched for them
    check(not run_instances_log(f"lcm-w-{a}") and not run_instances_log("lcm-wk-lost-1"), "no launch")
    S["discovered"] = by[a]["id"]


def test_drift_stopped_outside_lcm():
    L = S["lcmd"]
    wid = "wk-lost-1"
    iid = worker(L, wid)["instance_id"]
    S["ec2"].stop_instances(InstanceIds=[iid])
    st, _, doc = L.call("POST", f"/api/v1/workers/{wid}/refresh", {})
    check(st == 202, f"refresh: {st} {doc}")
    # EC2 is the truth (stopped is recorded), and desired is still running: started again
    wait_until(lambda: "stopped" in [h["to"] for h in worker(L, wid)["status_history"]], timeout=20,
               what="stop observed")
    w = wait_status(L, wid, "running", timeout=60)
    check(ec2_state(iid) == "running" and w["instance_id"] == iid, ec2_state(iid))


def test_orphan_cleanup():
    L = S["lcmd"]
    wid = S["discovered"]
    iid = worker(L, wid)["instance_id"]
    S["ec2"].terminate_instances(InstanceIds=[iid])
    w = wait_status(L, wid, "terminated", timeout=30)
    check(w["status_history"][-1]["to"] == "terminated", w)


def test_kill9_between_launch_and_record():
    L = S.pop("lcmd")
    stop_clean(L)
    L = start_lcmd()
    # RunInstances is held 3 s by the proxy before it reaches moto; lcmd is killed meanwhile,
    # so the instance is created while no lcmd can record it
    S["proxy"].faults([{"action": "RunInstances", "code": None, "latency_ms": 3000}])
    wid = create_worker(L, "kill9")
    wait_until(lambda: f'worker={wid} msg="launching"' in open(L.proc.err_path).read(), timeout=30,
               what="launch sent")
    time.sleep(0.5)
    L.proc.kill9()
    check(worker_redis_field(wid, "instance_id") in ("", None), "instance id was not recorded")
    wait_until(lambda: run_instances_log(f"lcm-{wid}") and
               run_instances_log(f"lcm-{wid}")[0]["status"] == 200, timeout=15,
               what="the held RunInstances reached moto")
    check(len(instances(wid)) == 1, "moto has the instance")
    S["proxy"].reset()
    L = start_lcmd()
    S["lcmd"] = L
    w = wait_status(L, wid, "running", timeout=60)
    inst = instances(wid)
    check(len(inst) == 1, f"exactly one instance for {wid}, got {len(inst)}")
    check(w["instance_id"] == inst[0]["InstanceId"], "adopted the instance launched before the kill")
    check(run_instances_log() == [], f"no second RunInstances after restart: {run_instances_log()}")
    log = open(L.proc.err_path).read()
    check(f'worker={wid} msg="adopting instance"' in log, "adoption logged")


def worker_redis_field(wid, field):
    return S["redis"].cli("HGET", f"lcm:{{worker:{wid}}}", field).strip()


def test_faults_backoff_same_token_no_duplicates():
    L = S["lcmd"]
    S["proxy"].reset()
    # each RunInstances burst: the plugin retries throttling/500 itself (3 attempts), capacity
    # errors go back to the controller, which backs off (capped, jittered) and tries again
    S["proxy"].faults([
        {"action": "RunInstances", "code": "RequestLimitExceeded", "status": 503, "times": 2},
        {"action": "RunInstances", "code": "InternalError", "status": 500, "times": 1},
        {"action": "RunInstances", "code": "InsufficientInstanceCapacity", "status": 500, "times": 3},
        {"action": "DescribeImages", "code": "RequestLimitExceeded", "status": 503, "times": 1},
    ])
    wid = create_worker(L, "faults")
    w = wait_status(L, wid, "running", timeout=90)
    runs = run_instances_log()
    tokens = {e["client_token"] for e in runs}
    check(tokens == {f"lcm-{wid}"}, f"same ClientToken on every attempt: {tokens}")
    check([e["status"] for e in runs].count(200) == 1, f"one success: {runs}")
    check(len(runs) == 7, f"2 throttled + 1 error + 3 capacity + 1 ok: {[e['injected'] for e in runs]}")
    check(len(instances(wid)) == 1, "no duplicate instance")
    # the controller's retries after each capacity error: jittered within [base/2, cap]
    cap_t = [e["t"] for e in runs if e["injected"] == "InsufficientInstanceCapacity"] + \
            [e["t"] for e in runs if e["status"] == 200]
    gaps = [b - a for a, b in zip(cap_t, cap_t[1:])]
    # attempts 2, 3, 4 wait [300, 600], [600, 1200], [600, 1200] ms: doubling, capped at 1.2 s
    # (uncapped the last would be [1.2, 2.4] s)
    check(len(gaps) == 3 and gaps[0] >= 0.28 and all(0.58 <= g <= 1.7 for g in gaps[1:]),
          f"controller backoff gaps {gaps}")
    log = open(L.proc.err_path).read()
    check(log.count(f'worker={wid} msg="step failed, retrying" step=launch') == 4, "four controller retries")
    check(w["status"] == "running", w)


def test_failed_after_retries():
    L = S["lcmd"]
    S["proxy"].reset()
    S["proxy"].faults([{"action": "RunInstances", "code": "InsufficientInstanceCapacity", "status": 500}])
    wid = create_worker(L, "nocapacity")
    w = wait_status(L, wid, "failed", timeout=90)
    reason = w["status_history"][-1]["reason"]
    check("InsufficientInstanceCapacity" in reason and "after 8 attempts" in reason, reason)
    check(len(instances(wid)) == 0, "nothing launched")
    S["proxy"].reset()


def main():
    S["redis"] = Redis()
    S["moto"] = Moto()
    S["ec2"] = S["moto"].client("ec2")
    base = S["ec2"].describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    S["base_ami"] = base
    src = S["ec2"].run_instances(ImageId=base, InstanceType="t3.micro", MinCount=1,
                                 MaxCount=1)["Instances"][0]["InstanceId"]
    S["ami"] = S["ec2"].create_image(InstanceId=src, Name=AMI_NAME)["ImageId"]
    S["ec2"].terminate_instances(InstanceIds=[src])
    S["proxy"] = FaultProxy(S["moto"].url)
    S["cml"] = CmlSim()
    S["plugins"] = plugin_dir()
    S["lcmd"] = start_lcmd({"LCM_WORKER_MAX_ATTEMPTS": "3"})
    wait_until(lambda: S["lcmd"].get("/readyz")[2].get("role") == "leader", timeout=20, what="leader")
    tpl = {"name": "cml-test", "instance_type": "t3.small", "ami_name_pattern": "cml-2.9*",
           "region": REGION, "capacity": {"cpu_cores": 8, "memory_gb": 32, "storage_gb": 100,
                                          "max_nodes": 200},
           "license_type": "enterprise", "cost_per_hour": 0.5, "enabled": True,
           "tags": {"team": "lablets"}}
    st, _, doc = S["lcmd"].call("POST", "/api/v1/templates", tpl)
    check(st == 201, f"POST template: {st} {doc}")
    tests = [test_launch_readiness_running, test_metrics_cloudwatch_and_cml,
             test_node_definitions_placement, test_stop_start,
             test_terminate, test_discovery_import, test_drift_stopped_outside_lcm,
             test_orphan_cleanup,
             test_kill9_between_launch_and_record, test_faults_backoff_same_token_no_duplicates,
             test_failed_after_retries, lambda_final_stop]
    harness.run_tests(tests)


def lambda_final_stop():
    stop_clean(S.pop("lcmd"))


lambda_final_stop.__name__ = "test_clean_shutdown"

if __name__ == "__main__":
    main()
