"""Lab records against cml-sim through lcmd: ports allocated under concurrent labs on one
worker (and across a kill -9), discovery of labs LCM did not import, orphaning when a lab or
its worker disappears, and the lab actions (start/stop/wipe/delete) with their outcome."""
import json
import time

from harness import check, http_json, run_tests, wait_until
from lifelib import TOPOLOGY, Rig

RIG = None


def rig():
    global RIG
    if RIG is None:
        RIG = Rig()
        RIG.definition("def-ports", lds=False, grading=False, reuse=False)
        RIG.worker("wp")
        RIG.worker("wd")
        RIG.worker("wgone")
    return RIG


def labs_of(r, wid):
    return [r.get("lab", x) for x in r.members(f"lcm:idx:lab:worker:{wid}")]


def check_ports(r, wid):
    """No port is held twice on the worker; registry and lab records agree."""
    w = r.get("worker", wid)
    leases = w["ports"]["leases"]
    seen = {}
    for lab_id, ports in leases.items():
        for p in ports:
            check(p not in seen, f"port {p} leased to {lab_id} and {seen.get(p)}")
            seen[p] = lab_id
        lab = r.get("lab", lab_id)
        check(sorted(lab["ports"].values()) == sorted(ports), f"{lab_id}: {lab['ports']} vs {ports}")
    for lab in labs_of(r, wid):
        if lab.get("ports"):
            check(lab["id"] in leases, f"{lab['id']} owns ports the registry does not lease")
    return seen


def cml(r, ctl, method, path, body=None, raw=None):
    st, _, tok = http_json("POST", f"{r.cml.url}/{ctl}/api/v0/authenticate",
                           {"username": "admin", "password": "admin-sim"})
    h = {"Authorization": "Bearer " + tok}
    if raw is not None:
        h["Content-Type"] = "application/x-yaml"
        return http_json(method, f"{r.cml.url}/{ctl}/api/v0{path}", raw.encode(), headers=h)
    return http_json(method, f"{r.cml.url}/{ctl}/api/v0{path}", body, headers=h)


def test_ports_concurrent_labs_one_worker():
    r = rig()
    n = 6
    for i in range(n):
        r.session(f"sp-{i}", "def-ports")
    for i in range(n):
        r.schedule(f"sp-{i}", "wp")
    for i in range(n):
        r.wait_status("session", f"sp-{i}", "ready", timeout=60)
    seen = check_ports(r, "wp")
    check(sorted(seen) == list(range(2000, 2000 + 3 * n)), f"not the lowest free ports: {sorted(seen)}")
    ports = {}
    for i in range(n):
        s = r.get("session", f"sp-{i}")
        for p in s["ports"].values():
            check(p not in ports, f"port {p} given to sp-{i} and {ports.get(p)}")
            ports[p] = f"sp-{i}"
    # more labs while lcmd is killed in the middle of their allocation
    for i in range(n, n + 4):
        r.session(f"sp-{i}", "def-ports")
        r.schedule(f"sp-{i}", "wp")
    time.sleep(0.3)
    r.restart_lcmd(kill9=True)
    for i in range(n, n + 4):
        r.wait_status("session", f"sp-{i}", "ready", timeout=60)
    seen = check_ports(r, "wp")
    check(len(seen) == 3 * (n + 4), f"{len(seen)} ports leased for {n + 4} labs")
    check(sorted(seen) == list(range(2000, 2000 + 3 * (n + 4))), f"gaps: {sorted(seen)}")


def test_discovery_and_orphaning():
    r = rig()
    st, _, doc = cml(r, "i-wd", "POST", "/import?title=made-by-hand", raw=TOPOLOGY)
    check(st == 200, f"import on cml-sim: {st} {doc}")
    cml_id = doc["id"]
    lab = wait_until(lambda: next((l for l in labs_of(r, "wd") if l["cml_lab_id"] == cml_id), None),
                     timeout=15, what="discovered lab record")
    check(lab["status"] in ("discovered", "defined"), f"status: {lab['status']}")
    check(lab["title"] == "made-by-hand", f"title: {lab['title']}")
    # status follows CML for an idle record
    cml(r, "i-wd", "PUT", f"/labs/{cml_id}/start")
    wait_until(lambda: r.status("lab", lab["id"]) == "booted", timeout=15, what="booted via CML")
    cml(r, "i-wd", "PUT", f"/labs/{cml_id}/stop")
    wait_until(lambda: r.status("lab", lab["id"]) == "stopped", timeout=15, what="stopped via CML")
    # the lab disappears from CML → orphaned
    st, _, _ = cml(r, "i-wd", "DELETE", f"/labs/{cml_id}")
    check(st == 204, f"delete on cml-sim: {st}")
    r.wait_status("lab", lab["id"], "orphaned", timeout=15)
    # a lab whose worker is terminated → orphaned, its ports are not needed any more
    r.session("sg-1", "def-ports")
    r.schedule("sg-1", "wgone")
    s = r.wait_status("session", "sg-1", "ready", timeout=40)
    r.seed("desired", "sg-1", "terminated")
    r.wait_status("session", "sg-1", "terminated")
    wait_until(lambda: not r.get("lab", s["lab_record_id"]).get("active_session_id"), timeout=20,
               what="lab released")
    r.seed("worker-status", "wgone", "terminated")
    r.wait_status("lab", s["lab_record_id"], "orphaned", timeout=15)


def test_lab_actions():
    r = rig()
    st, _, doc = cml(r, "i-wd", "POST", "/import?title=for-actions", raw=TOPOLOGY)
    cml_id = doc["id"]
    lab = wait_until(lambda: next((l for l in labs_of(r, "wd") if l["cml_lab_id"] == cml_id), None),
                     timeout=15, what="discovered lab record")
    lid = lab["id"]
    wait_until(lambda: r.status("lab", lid) == "defined", timeout=10, what="defined")

    def act(action, want):
        r.seed("lab-action", lid, action)
        lab = wait_until(lambda: (lambda l: l if l["status"] == want and not l.get("pending_action")
                                  else None)(r.get("lab", lid)), timeout=20,
                         what=f"{action} → {want} (now {r.status('lab', lid)})")
        done = [e for e in r.events("lab", lid) if e["type"] == "lab.action_done"]
        check(done and json.loads(done[-1]["data"]).get("error") is None,
              f"{action}: {done[-1] if done else None}")
        return lab

    act("start", "booted")
    st, _, state = cml(r, "i-wd", "GET", f"/labs/{cml_id}")
    check(state["state"] == "STARTED", f"CML: {state}")
    act("stop", "stopped")
    act("wipe", "wiped")
    # a refused action is recorded with its error
    http_json("POST", f"{r.cml.url}/_sim/controllers/i-wd/faults",
              {"path": "/start", "method": "PUT", "status": 400, "count": 1})
    r.seed("lab-action", lid, "start")
    wait_until(lambda: not r.get("lab", lid).get("pending_action"), timeout=20, what="action over")
    done = [e for e in r.events("lab", lid) if e["type"] == "lab.action_done"]
    check(json.loads(done[-1]["data"]).get("error"), f"error not recorded: {done[-1]}")
    act("delete", "deleted")
    st, _, _ = cml(r, "i-wd", "GET", f"/labs/{cml_id}")
    check(st == 404, f"lab still on CML: {st}")


def test_shutdown_clean():
    r = rig()
    proc = r.lcmd.proc
    rc = r.close()
    check(rc == 0, f"lcmd exit {rc}")
    err = proc.stderr()
    check("AddressSanitizer" not in err and "LeakSanitizer" not in err, err[-2000:])


if __name__ == "__main__":
    run_tests([test_ports_concurrent_labs_one_worker, test_discovery_and_orphaning,
               test_lab_actions, test_shutdown_clean])
