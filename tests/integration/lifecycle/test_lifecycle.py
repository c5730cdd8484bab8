"""End-to-end session lifecycle: real Redis + cml-sim + lds-sim + grading-sim + lcmd with the
cml, lds and grading plugins. Sessions are booked and scheduled through the store (lcm-seed)
when the scheduler has not placed them; everything after that is lcmd's sessions controller."""
import json
import time

from harness import check, http_json, run_tests, wait_until
from lifelib import Rig, released

RIG = None


def rig():
    global RIG
    if RIG is None:
        RIG = Rig()
        RIG.definition("def-full")                                  # LDS + grading + reuse
        RIG.definition("def-lds", grading=False)                    # LDS, no grading
        RIG.definition("def-bare", lds=False, grading=False)        # neither
        RIG.definition("def-eval", license_affinity=["evaluation"])  # no worker can take it
        for w in ("w1", "w2", "w3", "w4"):
            RIG.worker(w)
    return RIG


def pipeline(s):
    return s.get("pipeline") or {}


def test_full_lifecycle_and_reuse():
    r = rig()
    r.session("s-full-1", "def-full", worker="w1")
    s = r.wait_status("session", "s-full-1", "ready", timeout=40)
    us = s["user_session"]
    check(us.get("login_url", "").startswith(r.lds.url + "/lablet/"), f"login url: {us}")
    check(us.get("lds_session_id"), "no LDS session id")
    p = pipeline(s)
    for step in ("resolve_lab", "allocate_ports", "sync_tags", "start_lab", "lds_session",
                 "mark_ready"):
        check(p.get(step, {}).get("state") == "done", f"step {step}: {p.get(step)}")
        check(p[step].get("ended_at"), f"step {step} has no end time")
    ports = s["ports"]
    check(sorted(ports.values()) == [2000, 2001, 2002], f"lowest free ports: {ports}")
    lab = r.get("lab", s["lab_record_id"])
    check(lab["status"] == "booted" and lab["active_session_id"] == "s-full-1", f"lab: {lab}")
    check(lab["ports"] == ports, "the lab owns the session's ports")
    w = r.get("worker", "w1")
    check(sorted(w["ports"]["leases"][lab["id"]]) == sorted(ports.values()), f"registry: {w['ports']}")
    # node tags on CML: proto:port written, other tags kept
    st, _, nodes = http_json("GET", f"{r.cml.url}/i-w1/api/v0/labs/{s['cml_lab_id']}/nodes?data=true",
                             headers={"Authorization": "Bearer " + cml_token(r, "i-w1")})
    tags = {n["label"]: sorted(n["tags"]) for n in nodes}
    check(tags["desktop"] == sorted(["group:a", f"serial:{ports['desktop_serial']}",
                                     f"vnc:{ports['desktop_vnc']}"]), f"tags: {tags}")
    check(tags["router"] == [f"ssh:{ports['router_ssh']}"], f"tags: {tags}")
    # LDS got the devices with the worker's address and the lab's ports
    lds = r.lds_session(us["lds_session_id"])
    check(lds is not None, "lds-sim does not know the session")
    devs = json.dumps(lds)
    check(str(ports["router_ssh"]) in devs and "127.0.0.1" in devs, f"lds devices: {devs[:400]}")

    r.learner(us["lds_session_id"], "login")
    r.wait_status("session", "s-full-1", "running", timeout=15)
    r.learner(us["lds_session_id"], "finish")
    s = r.wait_status("session", "s-full-1", ("stopped", "archived"), timeout=40)
    hist = [h["to"] for h in s["status_history"]]
    for st_ in ("scheduled", "instantiating", "ready", "running", "collecting", "grading",
                "stopping", "stopped"):
        check(st_ in hist, f"{st_} missing from history {hist}")
    check(s["score"]["score"] == 85 and s["score"]["max_score"] == 100, f"score: {s['score']}")
    s = r.wait_status("session", "s-full-1", "archived", timeout=10)
    check(released(r, "s-full-1", "w1"), "session still holds resources")
    lab = r.get("lab", s["lab_record_id"])
    check(lab["status"] == "wiped" and not lab.get("active_session_id"), f"lab after: {lab}")
    check(r.lds_session(us["lds_session_id"]).get("state") in ("finalized", "released") or
          r.lds_session(us["lds_session_id"]).get("is_finalized"), "LDS session not released")

    # a second session of the same definition reuses the wiped lab
    labs_before = r.cml_controller("w1")["labs"]
    r.session("s-full-2", "def-full", worker="w1")
    s2 = r.wait_status("session", "s-full-2", "ready", timeout=40)
    check(s2["lab_record_id"] == lab["id"], f"not reused: {s2['lab_record_id']} vs {lab['id']}")
    check(s2["ports"] == ports, "the reused lab keeps its ports")
    check(r.cml_controller("w1")["labs"] == labs_before, "a second lab was imported")
    r.seed("desired", "s-full-2", "terminated")
    r.wait_status("session", "s-full-2", "terminated")
    wait_until(lambda: released(r, "s-full-2", "w1"), timeout=20, what="s-full-2 released")


def cml_token(r, ctl):
    st, _, tok = http_json("POST", f"{r.cml.url}/{ctl}/api/v0/authenticate",
                           {"username": "admin", "password": "admin-sim"})
    return tok


def test_expiry_of_never_started_session():
    r = rig()
    now = int(time.time())
    r.session("s-exp-1", "def-eval", start=now + 2, end=now + 600)
    s = r.wait_status("session", "s-exp-1", ("expired", "archived"), timeout=20)
    check(s["status_history"][-1]["to"] in ("expired", "archived"), "not expired")
    s = r.wait_status("session", "s-exp-1", "archived", timeout=10)
    reasons = [h.get("reason") or "" for h in s["status_history"]]
    check(any("missed" in x for x in reasons), f"reason: {reasons}")


def test_expiry_of_running_session():
    r = rig()
    # start at the next whole second: with expiry grace 0 a start of int(time.time()) left
    # anywhere between 0 and 1 s to get from scheduled to instantiating (a flaky race)
    now = int(time.time()) + 1
    r.session("s-exp-2", "def-lds", start=now, end=now + 12, worker="w2")
    s = r.wait_status("session", "s-exp-2", "ready", timeout=30)
    r.learner(s["user_session"]["lds_session_id"], "login")
    r.wait_status("session", "s-exp-2", "running", timeout=10)
    s = r.wait_status("session", "s-exp-2", ("expired", "archived"), timeout=30)
    s = r.wait_status("session", "s-exp-2", "archived", timeout=30)
    check("expired" in [h["to"] for h in s["status_history"]], "never expired")
    check(released(r, "s-exp-2", "w2"), "expired session still holds resources")
    lab = r.get("lab", s["lab_record_id"])
    check(lab["status"] == "wiped", f"lab of the expired session: {lab['status']}")


def test_session_without_lds_or_grading():
    r = rig()
    r.session("s-bare", "def-bare", worker="w3")
    s = r.wait_status("session", "s-bare", "ready", timeout=30)
    check(pipeline(s)["lds_session"]["state"] == "skipped", "lds step not skipped")
    check(not s["user_session"].get("lds_session_id"), "an LDS session was created")
    r.seed("transition", "s-bare", "running", "operator")
    r.wait_status("session", "s-bare", "running")
    r.seed("desired", "s-bare", "stopped")
    s = r.wait_status("session", "s-bare", ("stopped", "archived"), timeout=30)
    check(released(r, "s-bare", "w3"), "bare session still holds resources")


def reach(r, sid, state, timeout=40):
    return r.wait_status("session", sid, state, timeout=timeout)


def test_terminate_at_every_state():
    r = rig()
    cases = ["pending", "scheduled", "instantiating", "ready", "running", "collecting", "grading",
             "stopping"]
    # slow grading so that "grading" lasts, slow stop so that "stopping" lasts
    http_json("POST", f"{r.grd.url}/_sim/config", {"delay_ms": 6000})
    for i, state in enumerate(cases):
        sid = f"s-term-{state}"
        now = int(time.time())
        if state == "pending":
            r.session(sid, "def-eval", start=now + 600, end=now + 1200)
        elif state == "scheduled":
            r.session(sid, "def-full", start=now + 3000, end=now + 4000)
            r.schedule(sid, "w4")
            r.seed("extend", sid, str(now + 4100), ok=False)
        else:
            r.session(sid, "def-full", worker="w4")
        if state == "instantiating":
            reach(r, sid, "instantiating")
        elif state in ("ready", "running", "collecting", "grading", "stopping"):
            s = reach(r, sid, "ready")
            lds_id = s["user_session"]["lds_session_id"]
            if state != "ready":
                r.learner(lds_id, "login")
                reach(r, sid, "running")
            if state in ("collecting", "grading", "stopping"):
                if state == "stopping":
                    http_json("POST", f"{r.cml.url}/_sim/faults",
                              {"path": "/stop", "delay_ms": 3000, "count": 1})
                if state == "collecting":
                    # hold open_grading (the grading session create) so collecting lasts
                    http_json("POST", f"{r.grd.url}/_sim/faults",
                              {"path": "/api/v1/sessions", "method": "POST", "delay_ms": 4000,
                               "count": 1})
                r.learner(lds_id, "finish")
                if state == "collecting":
                    reach(r, sid, "collecting")
                elif state == "grading":
                    reach(r, sid, "grading")
                else:
                    http_json("POST", f"{r.grd.url}/_sim/sessions/{sid}/config", {"delay_ms": 50})
                    reach(r, sid, "stopping", timeout=30)
        else:
            check(r.status("session", sid) in ("pending", "scheduled"), f"{sid}: {r.status('session', sid)}")
        before = r.status("session", sid)
        check(before == state, f"{sid} is {before}, wanted {state}")
        r.seed("desired", sid, "terminated")
        s = r.wait_status("session", sid, "terminated", timeout=20)
        wait_until(lambda: released(r, sid, "w4"), timeout=30, what=f"{sid} released")
        s = r.get("session", sid)
        if s.get("lab_record_id"):
            lab = wait_until(lambda: (lambda l: l if l["status"] in ("wiped", "stopped", "defined")
                                      and not l.get("active_session_id") else None)(
                                 r.get("lab", s["lab_record_id"])),
                             timeout=20, what=f"{sid} lab given back")
        print(f"   terminated from {before}: ok", flush=True)
    http_json("POST", f"{r.grd.url}/_sim/config", {"delay_ms": 300})


def test_terminate_through_api_keeps_reason():
    """POST …/terminate {reason} on a ready session: 202 with desired_status terminated, and
    the controller's `terminated` entry in status_history names the caller and the reason."""
    r = rig()
    sid = "s-term-api"
    r.session(sid, "def-bare", worker="w3")
    reach(r, sid, "ready")
    reason = "exam proctor: learner left the room"
    for _ in range(20):   # the controller may be writing to the session: retry a 409
        st, _, doc = r.lcmd.call("POST", f"/api/v1/sessions/{sid}/terminate", {"reason": reason})
        if st != 409:
            break
        time.sleep(0.1)
    check(st in (200, 202), f"terminate: {st} {doc}")
    if st == 202:
        check(doc["desired_status"] == "terminated" and doc["desired_reason"] == reason, doc)
        check(doc["desired_by"], doc)
    s = r.wait_status("session", sid, "terminated", timeout=20)
    last = s["status_history"][-1]
    check(last["to"] == "terminated" and reason in (last.get("reason") or ""), last)
    check("terminate requested by " in last["reason"], last)
    wait_until(lambda: released(r, sid, "w3"), timeout=30, what=f"{sid} released")


def test_lds_down_during_provisioning():
    r = rig()
    http_json("POST", f"{r.lds.url}/_sim/faults",
              {"path": "/lab_session", "method": "POST", "status": 503, "count": 0})
    try:
        r.session("s-ldsdown", "def-full", worker="w2")
        s = r.wait_status("session", "s-ldsdown", "terminated", timeout=60)
        reason = s["status_history"][-1].get("reason") or ""
        check("lds_session" in reason, f"reason: {reason}")
        p = pipeline(s)["lds_session"]
        check(p["attempts"] == 3 and p["state"] == "failed", f"lds step: {p}")
        wait_until(lambda: released(r, "s-ldsdown", "w2"), timeout=30, what="released")
        lab = wait_until(lambda: (lambda l: l if l["status"] == "wiped" else None)(
            r.get("lab", s["lab_record_id"])), timeout=20, what="lab wiped")
        check(not lab.get("active_session_id"), "lab still bound")
    finally:
        http_json("DELETE", f"{r.lds.url}/_sim/faults")


def test_grading_failure():
    r = rig()
    http_json("POST", f"{r.grd.url}/_sim/config", {"fail_next": 1})
    r.session("s-gradefail", "def-full", worker="w3")
    s = r.wait_status("session", "s-gradefail", "ready", timeout=40)
    r.learner(s["user_session"]["lds_session_id"], "login")
    r.wait_status("session", "s-gradefail", "running")
    r.learner(s["user_session"]["lds_session_id"], "finish")
    s = r.wait_status("session", "s-gradefail", ("stopped", "archived"), timeout=40)
    check(s.get("score") in (None, {}), f"a score was recorded: {s.get('score')}")
    check(s["grading"]["status"] == "failed", f"grading: {s['grading']}")
    reasons = " ".join(h.get("reason") or "" for h in s["status_history"])
    check("grading failed" in reasons, f"reasons: {reasons}")
    check(released(r, "s-gradefail", "w3"), "still holds resources")


def post_ce(r, ce):
    return http_json("POST", r.lcmd.url + "/api/v1/cloudevents", ce, token=r.lcmd.ADMIN,
                     headers={"Content-Type": "application/cloudevents+json"})


def test_duplicate_and_out_of_order_cloudevents():
    r = rig()
    st, _, _ = post_ce(r, {"specversion": "1.0", "id": "probe", "source": "test",
                           "type": "com.cisco.lds.session.running.v1", "subject": "none"})
    if st in (404, 405):
        print("   SKIPPED: POST /api/v1/cloudevents is not served by this lcmd yet", flush=True)
        return
    r.session("s-ce", "def-full", worker="w1")
    s = r.wait_status("session", "s-ce", "ready", timeout=40)
    lds_id = s["user_session"]["lds_session_id"]
    base = {"specversion": "1.0", "source": "lds-test", "subject": lds_id,
            "datacontenttype": "application/json"}
    fin = dict(base, id="ce-fin-1", type="com.cisco.lds.session.user-finished.v1",
               data={"lds_session_id": lds_id, "session_id": "s-ce", "state": "user_finished"})
    run = dict(base, id="ce-run-1", type="com.cisco.lds.session.running.v1",
               data={"lds_session_id": lds_id, "session_id": "s-ce", "state": "running"})
    # "finished" before "running", then both again (duplicates)
    for ce in (fin, run, fin, run):
        st, _, doc = post_ce(r, ce)
        check(st in (200, 202, 204), f"cloudevent refused: {st} {doc}")
    s = r.wait_status("session", "s-ce", ("grading", "stopping", "stopped", "archived"), timeout=30)
    hist = [h["to"] for h in s["status_history"]]
    check(hist.count("running") == 1 and hist.count("collecting") == 1, f"history: {hist}")
    s = r.wait_status("session", "s-ce", ("stopped", "archived"), timeout=30)
    check(s["score"]["score"] == 85, "not graded")


def test_kill9_mid_instantiation():
    r = rig()
    http_json("PATCH", f"{r.cml.url}/_sim/config", {"boot_ms": 4000})
    try:
        r.session("s-kill", "def-full", worker="w2")
        wait_until(lambda: (pipeline(r.get("session", "s-kill")).get("start_lab") or {}).get("state")
                   == "started", timeout=30, what="start_lab started")
        labs_before = r.cml_controller("w2")["labs"]
        r.restart_lcmd(kill9=True)
        s = r.wait_status("session", "s-kill", "ready", timeout=40)
        check(r.cml_controller("w2")["labs"] == labs_before, "a second lab was imported")
        mine = [x for x in r.lds_sessions() if json.dumps(x).find("s-kill") >= 0]
        check(len(mine) == 1, f"LDS sessions for s-kill: {len(mine)}")
        check(pipeline(s)["resolve_lab"]["attempts"] == 1, "resolve_lab ran again")
    finally:
        http_json("PATCH", f"{r.cml.url}/_sim/config", {"boot_ms": 800})
    # and again while the import itself is in flight
    http_json("PATCH", f"{r.cml.url}/_sim/config", {"import_ms": 3000})
    try:
        labs_before = r.cml_controller("w3")["labs"]
        r.definition("def-kill2")
        r.session("s-kill2", "def-kill2", worker="w3")
        wait_until(lambda: (pipeline(r.get("session", "s-kill2")).get("resolve_lab") or {})
                   .get("state") == "started", timeout=30, what="resolve_lab started")
        time.sleep(0.5)
        r.restart_lcmd(kill9=True)
        time.sleep(3)  # the import the dead process asked for completes on CML
        http_json("PATCH", f"{r.cml.url}/_sim/config", {"import_ms": 100})
        r.wait_status("session", "s-kill2", "ready", timeout=60)
        check(r.cml_controller("w3")["labs"] == labs_before + 1,
              f"labs on w3: {r.cml_controller('w3')['labs']} (before {labs_before})")
    finally:
        http_json("PATCH", f"{r.cml.url}/_sim/config", {"import_ms": 100})


def test_lds_create_answer_lost():
    """An LDS create whose answer never arrives (the call times out; lcmd is killed while it is
    in flight) is found by the session's id afterwards: one LDS session per LCM session."""
    r = rig()

    def mine(sid):
        return [x for x in r.lds_sessions() if json.dumps(x).find(sid) >= 0]

    # 1. LDS answers only after lcmd's call has timed out (step timeout 5 s in this rig).
    st, _, doc = http_json("POST", f"{r.lds.url}/_sim/faults",
                           {"path": "/lab_session", "method": "POST", "delay_ms": 5600, "count": 1})
    check(st == 201, f"fault: {st} {doc}")
    try:
        r.session("s-ldslost", "def-lds", worker="w3")
        wait_until(lambda: (pipeline(r.get("session", "s-ldslost")).get("lds_session") or {})
                   .get("state") == "started", timeout=30, what="lds_session started")
        t0 = time.monotonic()   # the create goes out now; LDS runs it 5.6 s later
        s = r.wait_status("session", "s-ldslost", "ready", timeout=60)
        time.sleep(max(0.0, t0 + 6.5 - time.monotonic()))
        found = mine("s-ldslost")
        check(len(found) == 1, f"LDS sessions for s-ldslost: {len(found)}")
        check(s["user_session"]["lds_session_id"] == found[0]["id"],
              f"adopted {s['user_session']['lds_session_id']}, LDS has {found[0]['id']}")
        check(pipeline(s)["lds_session"]["attempts"] == 2, f"lds step: {pipeline(s)['lds_session']}")
    finally:
        http_json("DELETE", f"{r.lds.url}/_sim/faults")
    # 2. lcmd dies while LDS is still working on the create.
    st, _, doc = http_json("POST", f"{r.lds.url}/_sim/faults",
                           {"path": "/lab_session", "method": "POST", "delay_ms": 2000, "count": 1})
    try:
        r.session("s-ldskill", "def-lds", worker="w4")
        wait_until(lambda: (pipeline(r.get("session", "s-ldskill")).get("lds_session") or {})
                   .get("state") == "started", timeout=30, what="lds_session started")
        t0 = time.monotonic()
        time.sleep(0.5)
        r.restart_lcmd(kill9=True)
        s = r.wait_status("session", "s-ldskill", "ready", timeout=60)
        time.sleep(max(0.0, t0 + 2.5 - time.monotonic()))   # the held create has run by now
        found = mine("s-ldskill")
        check(len(found) == 1, f"LDS sessions for s-ldskill: {len(found)}")
        check(s["user_session"]["lds_session_id"] == found[0]["id"], "adopted another LDS session")
        check(pipeline(s)["lds_session"]["attempts"] == 1, f"lds step: {pipeline(s)['lds_session']}")
    finally:
        http_json("DELETE", f"{r.lds.url}/_sim/faults")
    for sid, wid in (("s-ldslost", "w3"), ("s-ldskill", "w4")):   # give the workers back
        for _ in range(20):
            st, _, doc = r.lcmd.call("POST", f"/api/v1/sessions/{sid}/terminate", {"reason": "test done"})
            if st != 409:
                break
            time.sleep(0.1)
        check(st in (200, 202), f"terminate {sid}: {st} {doc}")
        wait_until(lambda: released(r, sid, wid), timeout=30, what=f"{sid} released")


def controller_gauges(r):
    import urllib.request
    text = urllib.request.urlopen(f"{r.lcmd.url}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        for state in ("active", "parked"):
            if line.startswith(f'lcm_sessions_controller_sessions{{state="{state}"}}'):
                out[state] = float(line.split()[-1])
    return out


def test_many_sessions_pass_looks_at_active_only():
    """2,000 sessions booked a day ahead and 500 terminated ones: the controller files the
    booked ones as parked (looked at when their clock turns) and forgets the finished ones, so
    a pass walks only what is active; a parked session whose time comes is still acted on."""
    import http.client
    r = rig()
    did = "def-eval"   # nothing can place it: the sessions stay pending
    c = http.client.HTTPConnection("127.0.0.1", r.lcm_port, timeout=30)
    h = {"Authorization": "Bearer " + r.lcmd.ADMIN, "Content-Type": "application/json"}

    def call(method, path, body):
        c.request(method, path, json.dumps(body), h)
        resp = c.getresponse()
        return resp.status, json.loads(resp.read() or b"null")

    base = int(time.time()) + 86400
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))   # noqa: E731
    t0 = time.time()
    for i in range(2500):
        st = base + (i % 500) * 60
        code, doc = call("POST", "/api/v1/sessions", {"definition_id": did, "timeslot": {
            "start": iso(st), "end": iso(st + 3600)}})
        check(code == 201, f"book {i}: {code} {doc}")
        if i >= 2000:
            code, doc = call("POST", f"/api/v1/sessions/{doc['id']}/terminate", {})
            check(code == 200 and doc["status"] == "terminated", f"terminate: {code} {doc}")
    print(f"   booked 2000 + terminated 500 in {time.time() - t0:.1f}s", flush=True)
    # one that expires in 2 s (grace 0): parked until then, then expired by the controller
    now = int(time.time())
    code, soon = call("POST", "/api/v1/sessions", {"definition_id": did, "timeslot": {
        "start": iso(now + 2), "end": iso(now + 600)}})
    check(code == 201, f"book soon: {code} {soon}")
    g = wait_until(lambda: (lambda x: x if x.get("parked", 0) >= 2001 else None)(controller_gauges(r)),
                   timeout=20, what="sessions parked")
    check(g["active"] <= 10, f"a pass should look at the active sessions only: {g}")
    s = r.wait_status("session", soon["id"], ("expired", "archived"), timeout=20)
    check(any("missed" in (h_.get("reason") or "") for h_ in s["status_history"]), s["status_history"])
    # the restart rebuilds the index from the read models (kill -9: nothing kept in memory)
    r.restart_lcmd()
    g = wait_until(lambda: (lambda x: x if x.get("parked", 0) >= 2000 else None)(controller_gauges(r)),
                   timeout=20, what="sessions parked after restart")
    check(g["active"] <= 10, f"after restart: {g}")
    c.close()


def test_shutdown_clean():
    r = rig()
    proc = r.lcmd.proc
    rc = r.close()
    check(rc == 0, f"lcmd exit {rc}")
    err = proc.stderr()
    check("ERROR: AddressSanitizer" not in err and "LeakSanitizer" not in err, err[-2000:])


if __name__ == "__main__":
    run_tests([test_full_lifecycle_and_reuse, test_expiry_of_never_started_session,
               test_expiry_of_running_session, test_session_without_lds_or_grading,
               test_terminate_at_every_state, test_terminate_through_api_keeps_reason,
               test_lds_down_during_provisioning,
               test_grading_failure, test_duplicate_and_out_of_order_cloudevents,
               test_kill9_mid_instantiation, test_lds_create_answer_lost,
               test_many_sessions_pass_looks_at_active_only,
               test_shutdown_clean])
