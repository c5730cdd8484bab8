"""lcmctl against a live lcmd and a real redis-server: every noun/verb the operators use,
tables and -o json, exit codes (0 ok, 1 API error with the problem detail, 2 usage,
3 unreachable), and `events watch` following the SSE feed live and resuming."""
import json
import os
import subprocess
import time

from harness import BUILD_DIR, SOURCE_DIR, Lcmd, Redis, check, free_port, run_tests, wait_until

LCMCTL = os.path.join(BUILD_DIR, "bin", "lcmctl")
TOPOLOGY = os.path.join(SOURCE_DIR, "tests", "browser", "fixtures", "TEST-LAB-1.1.yaml")
STACK = {}


def ctl(*args, env=None, timeout=30, input_=None):
    e = dict(os.environ, LCM_URL=STACK["lc"].url, LCM_TOKEN=Lcmd.ADMIN)
    if env is not None:
        e.update(env)
    r = subprocess.run([LCMCTL, *args], capture_output=True, text=True, env=e, timeout=timeout, input=input_)
    return r.returncode, r.stdout, r.stderr


def ctl_json(*args):
    rc, out, err = ctl("-o", "json", *args)
    check(rc == 0, f"lcmctl {' '.join(args)} -> {rc}: {err}")
    return json.loads(out)


def start():
    STACK["redis"] = Redis()
    STACK["lc"] = Lcmd(STACK["redis"].url)


def stop():
    lc = STACK["lc"]
    proc = lc.proc
    rc = lc.stop()
    STACK["redis"].close()
    check(rc == 0, "lcmd exit " + str(rc) + "\n" + proc.stderr()[-3000:])


def test_usage_and_connection_errors():
    rc, out, err = ctl("--help")
    check(rc == 0 and "exit codes" in out, out)
    rc, _, err = ctl("frobnicate")
    check(rc == 2 and "unknown noun" in err, (rc, err))
    rc, _, err = ctl("workers", "get")
    check(rc == 2 and "needs an id" in err, (rc, err))
    rc, _, err = ctl("workers", "list", "--bogus", "1")
    check(rc == 2 and "unknown option --bogus" in err, (rc, err))
    rc, _, err = ctl("-o", "yaml", "plugins", "list")
    check(rc == 2, (rc, err))
    rc, _, err = ctl("--url", f"http://127.0.0.1:{free_port()}", "plugins", "list")
    check(rc == 3 and "cannot reach" in err, (rc, err))
    rc, _, err = ctl("--url", f"http://127.0.0.1:{free_port()}", "events", "watch")
    check(rc == 3 and "cannot reach" in err, (rc, err))


def test_auth_problem_detail():
    rc, _, err = ctl("plugins", "list", env={"LCM_TOKEN": "wrong-token"})
    check(rc == 1 and "HTTP 401" in err and "urn:lcm:problem:" in err, (rc, err))
    # --token wins over the environment
    rc, out, _ = ctl("--token", Lcmd.ADMIN, "plugins", "list", env={"LCM_TOKEN": "wrong-token"})
    check(rc == 0, rc)


def test_plugins_policies_health():
    rc, out, err = ctl("plugins", "list")
    doc = ctl_json("plugins", "list")
    check("loaded" in doc and "spi" in doc, doc)
    check(rc == 0 and out.startswith("host SPI ") and all(p["name"] in out for p in doc["loaded"]), (rc, out, err))
    if doc["loaded"]:
        check("NAME" in out and "KIND" in out, out)
    rc, out, err = ctl("policies", "status")
    check(rc == 0 and "placement" in out and "GENERATION" in out, (rc, out, err))
    before = {p["name"]: p["generation"] for p in ctl_json("policies", "status")["policies"]}
    rc, out, err = ctl("policies", "reload")
    check(rc == 0 and "reloaded" in out, (rc, out, err))
    after = {p["name"]: p["generation"] for p in ctl_json("policies", "status")["policies"]}
    check(after["placement"] > before["placement"], (before, after))
    rc, out, _ = ctl("health")
    check(rc == 0 and "status: ready" in out, out)


def seed_definition():
    with open(TOPOLOGY) as f:
        topo = f.read()
    body = {"name": "TEST-LAB", "version": "1.1.0", "form_qualified_name": "Exam Associate AUTO v1.1 LAB TEST-LAB-1.1",
            "topology": topo, "resource_requirements": {"cpu_cores": 4, "memory_gb": 8, "storage_gb": 10},
            "node_count": 3, "lds_enabled": False}
    rc, out, err = ctl("-o", "json", "definitions", "create", "-f", "-", input_=json.dumps(body))
    check(rc == 0, (rc, err))
    return json.loads(out)


def test_resources():
    tpl = {"name": "multi-sessions", "instance_type": "m5zn.metal", "region": "us-east-1",
           "capacity": {"cpu_cores": 48, "memory_gb": 192, "storage_gb": 256, "max_nodes": 200},
           "license_type": "enterprise", "cost_per_hour": 3.9641, "enabled": True}
    rc, out, err = ctl("templates", "create", "--json", json.dumps(tpl))
    check(rc == 0 and "name: multi-sessions" in out, (rc, out, err))
    # creating it again: the API's problem detail, exit 1
    rc, out, err = ctl("templates", "create", "--json", json.dumps(tpl))
    check(rc == 1 and "HTTP 409" in err, (rc, err))
    # a body the API refuses names the field
    rc, _, err = ctl("templates", "create", "--json", json.dumps(dict(tpl, name="x", capacity="big")))
    check(rc == 1 and "HTTP 4" in err and "capacity" in err, (rc, err))
    rc, _, err = ctl("templates", "create", "--json", "{not json")
    check(rc == 2 and "not valid JSON" in err, (rc, err))
    rc, out, _ = ctl("templates", "list")
    check(rc == 0 and "multi-sessions" in out and "INSTANCE" in out, out)
    d = seed_definition()
    rc, out, err = ctl("definitions", "activate", d["id"])
    check(rc == 0, (rc, err))
    got = ctl_json("definitions", "get", d["id"])
    check(got["status"] == "active", got)
    rc, out, _ = ctl("definitions", "list", "status=active")
    check(d["id"] in out, out)
    rc, _, err = ctl("definitions", "get", "no-such-definition")
    check(rc == 1 and "HTTP 404" in err, (rc, err))
    STACK["def"] = d


def test_workers():
    w = ctl_json("workers", "create", "--template", "multi-sessions", "--region", "us-east-1", "--name", "ctl-w1")
    check(w["name"] == "ctl-w1" and w["region"] == "us-east-1", w)
    rc, out, _ = ctl("workers", "list")
    check(rc == 0 and "ctl-w1" in out and "0/48" in out, out)
    lst = ctl_json("workers", "list", "--all")
    check(any(x["id"] == w["id"] for x in lst), lst)
    rc, out, err = ctl("workers", "get", w["id"])
    check(rc == 0 and f"id: {w['id']}" in out and "declared.cpu_cores: 48" in out, (out, err))
    # a pending worker cannot be drained: the API says why
    rc, _, err = ctl("workers", "drain", w["id"], "--reason", "test")
    check(rc in (0, 1), (rc, err))
    if rc == 1:
        check("HTTP 409" in err or "HTTP 422" in err, err)
    STACK["worker"] = w


def test_sessions():
    d = STACK["def"]
    rc, out, err = ctl("-o", "json", "sessions", "book", "--definition", d["id"], "--minutes", "45",
                       "--reservation", "R-ctl-1", "--idempotency-key", "k-ctl-1")
    check(rc == 0, (rc, err))
    s = json.loads(out)
    check(s["definition_id"] == d["id"] and s["reservation_id"] == "R-ctl-1", s)
    got = ctl_json("sessions", "by-reservation", "R-ctl-1")
    check(got["id"] == s["id"], got)
    rc, out, _ = ctl("sessions", "list", "status=" + s["status"])
    check(rc == 0 and s["id"] in out, out)
    rc, out, _ = ctl("sessions", "list", "status=archived")
    check(rc == 0 and s["id"] not in out, out)
    rc, _, err = ctl("sessions", "book")
    check(rc == 2, rc)
    rc, _, err = ctl("sessions", "transition", s["id"], "--status", "archived")
    check(rc == 1 and "HTTP 409" in err or "HTTP 422" in err, (rc, err))
    STACK["session"] = s


def test_scheduler_availability_labs():
    d = STACK["def"]
    rc, out, err = ctl("scheduler", "status")
    check(rc == 0 and "queue_depth" in out, (rc, out, err))
    doc = ctl_json("scheduler", "preview", "--definition", d["id"])
    check(doc["definition_id"] == d["id"] and "rejected" in doc, doc)
    rc, out, err = ctl("availability", "--definition", d["id"])
    check(rc == 0, (rc, err))
    rc, out, err = ctl("labs", "list")
    check(rc == 0, (rc, err))


def test_events_watch():
    s = STACK["session"]
    # everything so far, from the start of the feed, as NDJSON; --count ends it
    rc, out, err = ctl("-o", "json", "events", "watch", "--since", "0-0", "--count", "3", timeout=20)
    check(rc == 0, (rc, err))
    evs = [json.loads(x) for x in out.splitlines()]
    check(len(evs) == 3 and all(e["id"] for e in evs), evs)
    # live: start watching sessions only, then extend the session and see the event arrive
    e = dict(os.environ, LCM_URL=STACK["lc"].url, LCM_TOKEN=Lcmd.ADMIN)
    p = subprocess.Popen([LCMCTL, "events", "watch", "--kind", "session", "--id", s["id"], "--count", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    time.sleep(1.0)
    new_end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 55 * 60))
    rc2, _, err2 = ctl("sessions", "extend", s["id"], "--end", new_end)
    try:
        out, err = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    check(rc2 == 0, err2)
    check(p.returncode == 0 and "session.extended" in out and f"session/{s['id']}" in out, (p.returncode, out, err))
    # resume: --since the last id we saw gives only what came after it
    last = evs[-1]["id"]
    rc, out, err = ctl("-o", "json", "events", "watch", "--since", last, "--count", "1", timeout=20)
    check(rc == 0 and json.loads(out)["id"] != last, (out, err))


def test_events_reconnect():
    """The stream breaks (lcmd restarted): lcmctl reconnects with Last-Event-ID and gets the
    events it missed, none twice."""
    lc = STACK["lc"]
    # no pending demand: the autoscaler must not add workers of its own meanwhile
    rc, _, err = ctl("sessions", "terminate", STACK["session"]["id"], "--reason", "test done")
    check(rc == 0, err)
    time.sleep(1.5)
    e = dict(os.environ, LCM_URL=lc.url, LCM_TOKEN=Lcmd.ADMIN)
    p = subprocess.Popen([LCMCTL, "-o", "json", "events", "watch", "--type", "worker.created", "--count", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    time.sleep(1.0)
    ctl("workers", "create", "--template", "multi-sessions", "--region", "us-east-1", "--name", "ctl-w2")
    time.sleep(1.0)
    lc.stop()
    lc.start()
    ctl("workers", "create", "--template", "multi-sessions", "--region", "us-east-1", "--name", "ctl-w3")
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    check(p.returncode == 0, (p.returncode, out, err))
    evs = [json.loads(x) for x in out.splitlines()]
    names = [x["data"].get("data", {}).get("name") for x in evs]
    check(len(evs) == 2 and len({x["id"] for x in evs}) == 2, evs)
    check("reconnecting" in err, err)
    check(names == ["ctl-w2", "ctl-w3"], names)


def with_stack(tests):
    def first():
        start()
    first.__name__ = "start_stack"

    def last():
        stop()
    last.__name__ = "stop_stack_clean_exit"
    return [first, *tests, last]


run_tests(with_stack([test_usage_and_connection_errors, test_auth_problem_detail, test_plugins_policies_health,
                      test_resources, test_workers, test_sessions, test_scheduler_availability_labs,
                      test_events_watch, test_events_reconnect]))
