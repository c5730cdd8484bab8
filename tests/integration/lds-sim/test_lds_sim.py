#!/usr/bin/env python3
"""Integration tests for lds-sim: the LDS Reservations API v3 flow checked against the spec's
schemas, the learner's CloudEvents as lcmd receives them, auth, faults, delivery retries, a
1,000-session run, and clean (sanitizer-quiet) shutdown. Usage: test_lds_sim.py PATH/TO/lds-sim"""
import json
import signal
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from simtest import (Failure, Receiver, Sim, Validator, check, check_cloudevent, http, load_spec,
                     run, wait_for)

BIN = sys.argv[1]
SPEC, SPEC_PATH = load_spec("lds/LDS_openapi.abridged.json")
V = Validator(SPEC)
TOKEN = "lcm-ingest-token"
USER, PASSWORD = "lcm", "s3cret"
AUTH = (USER, PASSWORD)
FQN = "Exam CCIE TEST v1 DES 1.1"
P_SESSIONS = "/reservations/v3/lab_session"
P_SESSION = "/reservations/v3/lab_session/{ldssession_id}"
P_DEVICES = "/reservations/v3/lab_session/{ldssession_id}/part/{part_num}/devices"
P_LAUNCH = "/reservations/v3/lab_session/{ldssession_id}/lablet_launch_url"
P_RELEASE = "/reservations/v3/lab_session/{ldssession_id}/release"
P_FOLDER = "/reservations/v3/lab_folder/minio/{form_qualified_name}"
P_REPORT = "/reservations/v3/reporting/lab_session"


def session_body(auth_id="lcm-session-1"):
    return {
        "origin": "lcm", "auth_id": auth_id, "auth_id_type": "ordered_session",
        "candidate_id": "learner-42", "location": "eu-west-1", "timezone_offset": 0,
        "first_name": "Ada", "last_name": "Lovelace", "rack_group": "lcm", "rack_number": "1",
        "scheduled_date": "2026-01-01T10:00:00Z", "email_address": "ada@example.test",
        "session_parts": [{"repository_type": "minio", "form_qualified_name": FQN}],
    }


DEVICES = [
    {"device_label": "R1", "protocol": "telnet", "host": "10.0.0.7", "port": 2001},
    {"device_label": "ubuntu-desktop", "protocol": "vnc", "host": "10.0.0.7", "port": 2002,
     "password": "pw"},
]


def start(receiver=None, *extra):
    args = ["--username", USER, "--password", PASSWORD, "--lcm-token", TOKEN,
            "--ce-backoff-ms", "50", "--quiet"] + list(extra)
    if receiver:
        args += ["--lcm-url", receiver.url]
    return Sim(BIN, args)


def create(sim, body=None):
    body = body or session_body()
    V.check_request(body, P_SESSIONS, "POST")
    r = http("POST", sim.url + P_SESSIONS, body, basic=AUTH)
    out = V.check_response(r, P_SESSIONS, "POST", 200)
    check(out["location"].endswith("/lab_session/" + out["session_id"]), "location")
    return out["session_id"]


def path(sim, p, sid, part=1):
    return sim.url + p.replace("{ldssession_id}", sid).replace("{part_num}", str(part))


def t_full_flow():
    rec = Receiver()
    try:
        with start(rec, "--frontend-url", "https://lablets.example.test/") as sim:
            sid = create(sim)
            # devices
            V.check_request(DEVICES, P_DEVICES, "PUT")
            r = http("PUT", path(sim, P_DEVICES, sid), DEVICES, basic=AUTH)
            devs = V.check_response(r, P_DEVICES, "PUT", 200)
            check([d["device_label"] for d in devs] == ["R1", "ubuntu-desktop"], "devices echoed")
            check(devs[0]["port"] == 2001 and devs[0]["host"] == "10.0.0.7", "device fields")
            r = http("GET", path(sim, P_DEVICES, sid), basic=AUTH)
            check(V.check_response(r, P_DEVICES, "GET", 200) == devs, "GET devices = PUT result")
            # replacing the devices replaces, not appends
            r = http("PUT", path(sim, P_DEVICES, sid), DEVICES[:1], basic=AUTH)
            check(len(V.check_response(r, P_DEVICES, "PUT", 200)) == 1, "PUT replaces devices")
            # session
            s = V.check_response(http("GET", path(sim, P_SESSION, sid), basic=AUTH), P_SESSION,
                                 "GET", 200)
            check(s["id"] == sid and s["state"] == "created" and not s["is_finalized"], "new state")
            check(s["session_parts"][0]["form_qualified_name"] == FQN, "part FQN")
            check(s["auth_id"] == "lcm-session-1" and s["active_reservation"], "echoed fields")
            check("password" not in s, "password never echoed")
            # launch URL on the configured frontend
            r = http("GET", path(sim, P_LAUNCH, sid), basic=AUTH)
            url = V.check_response(r, P_LAUNCH, "GET", 200)["url"]
            check(url.startswith("https://lablets.example.test/lablet/%s?token=" % sid), url)
            check(rec.attempts == 0, "no event before the learner acts")
            # learner logs in -> running event
            r = http("POST", sim.url + "/_sim/sessions/%s/login" % sid)
            check(r.status == 202, r)
            ev_id = r.json()["event_id"]
            evs = rec.wait_events(1)
            path0, headers, _ = rec.events[0]
            check(path0 == "/api/v1/cloudevents", "posted to %s" % path0)
            check_cloudevent(evs[0], headers, TOKEN, "com.cisco.lds.session.running.v1", sid, "lds-sim")
            check(evs[0]["id"] == ev_id, "event id reported by the admin route")
            d = evs[0]["data"]
            check(d["lds_session_id"] == sid and d["state"] == "running", "running data %r" % d)
            check(d["auth_id"] == "lcm-session-1" and d["form_qualified_name"] == FQN, "data ids")
            s = http("GET", path(sim, P_SESSION, sid), basic=AUTH).json()
            check(s["state"] == "running", "state after login %r" % s["state"])
            # pause, finish, end: in order, each its own id
            for action in ("pause", "finish", "end"):
                check(http("POST", sim.url + "/_sim/sessions/%s/%s" % (sid, action)).status == 202,
                      action)
            evs = rec.wait_events(4)
            check([e["type"] for e in evs] == [
                "com.cisco.lds.session.running.v1", "com.cisco.lds.session.paused.v1",
                "com.cisco.lds.session.user-finished.v1", "com.cisco.lds.session.ended.v1"],
                "event order %r" % [e["type"] for e in evs])
            check(len({e["id"] for e in evs}) == 4, "unique ids")
            check(evs[2]["data"]["ended_by"] == "user", "user-finished data")
            # release: 204, idempotent, then the session refuses learner actions
            for _ in range(2):
                r = http("POST", path(sim, P_RELEASE, sid), {}, basic=AUTH)
                V.check_response(r, P_RELEASE, "POST", 204)
            s = V.check_response(http("GET", path(sim, P_SESSION, sid), basic=AUTH), P_SESSION,
                                 "GET", 200)
            check(s["is_finalized"] and not s["active_reservation"] and s["state"] == "finalized",
                  "released state %r" % s)
            check(http("POST", sim.url + "/_sim/sessions/%s/login" % sid).status == 409,
                  "login after release")
            check(http("GET", path(sim, P_LAUNCH, sid), basic=AUTH).status == 409, "launch after release")
            # content refresh
            fp = sim.url + P_FOLDER.replace("{form_qualified_name}", urllib.request.quote(FQN))
            for n in (1, 2):
                folder = V.check_response(http("PUT", fp, basic=AUTH), P_FOLDER, "PUT", 200)
                check(folder["FormName"] == FQN, "folder name %r" % folder["FormName"])
            content = http("GET", sim.url + "/_sim/content").json()
            check(content[FQN]["refreshes"] == 2, "refresh count %r" % content)
            # admin listing
            lst = http("GET", sim.url + "/_sim/sessions").json()
            check(lst["count"] == 1 and lst["sessions"][0]["id"] == sid, "admin list")
            check(lst["sessions"][0]["session_parts"][0]["devices"][0]["device_label"] == "R1",
                  "admin list shows devices")
            stats = http("GET", sim.url + "/_sim/stats").json()
            check(stats["cloudevents"]["delivered"] == 4 and stats["lds"]["released"] == 1, stats)
    finally:
        rec.stop()


def t_auth():
    with start() as sim:
        r = http("POST", sim.url + P_SESSIONS, session_body())
        check(r.status == 401, "no credentials: %r" % r)
        check(r.headers.get("www-authenticate", "").startswith("Basic"), "WWW-Authenticate")
        check(http("POST", sim.url + P_SESSIONS, session_body(), basic=(USER, "wrong")).status == 401,
              "wrong password")
        check(http("GET", sim.url + P_SESSIONS + "/x", basic=("lds", "lds")).status == 401,
              "default credentials are not accepted when others are configured")
        for p in (P_SESSION, P_DEVICES, P_LAUNCH):
            check(http("GET", path(sim, p, "00000000-0000-4000-8000-000000000000")).status == 401, p)
        fp = sim.url + P_FOLDER.replace("{form_qualified_name}", "x")
        check(http("PUT", fp).status == 401, "content refresh needs auth")
        check(http("GET", sim.url + "/_sim/health").status == 200, "admin routes are open")
        check(http("GET", sim.url + "/_sim/stats").json()["lds"]["auth_failures"] == 7, "counted")


def t_validation():
    with start() as sim:
        for field in ("auth_id", "candidate_id", "scheduled_date", "timezone_offset", "rack_number"):
            b = session_body()
            del b[field]
            r = http("POST", sim.url + P_SESSIONS, b, basic=AUTH)
            check(r.status == 400 and field in r.json()["errors"], "missing %s: %r" % (field, r))
        b = session_body()
        b["session_parts"] = [{"repository_type": "minio"}]
        check(http("POST", sim.url + P_SESSIONS, b, basic=AUTH).status == 400, "minio part w/o FQN")
        b["session_parts"] = [{"repository_type": "git", "form_qualified_name": FQN}]
        check(http("POST", sim.url + P_SESSIONS, b, basic=AUTH).status == 400, "bad repository_type")
        check(http("POST", sim.url + P_SESSIONS, "not json", basic=AUTH).status == 400, "not JSON")
        # the spec's own example sends rack_number as an integer: accepted, answered as a string
        b = session_body()
        b["rack_number"] = 7
        r = http("POST", sim.url + P_SESSIONS, b, basic=AUTH)
        sid = V.check_response(r, P_SESSIONS, "POST", 200)["session_id"]
        s = http("GET", path(sim, P_SESSION, sid), basic=AUTH).json()
        check(s["rack_number"] == "7", "rack_number as string")
        for bad in ([{"protocol": "ssh", "host": "h"}], [{"device_label": "R1", "protocol": "ssh"}],
                    [{"device_label": "R1", "protocol": "ssh", "host": "h", "port": "22"}],
                    [{"device_label": "R1", "protocol": "ssh", "host": "h", "port": 70000}],
                    {"device_label": "R1"}):
            r = http("PUT", path(sim, P_DEVICES, sid), bad, basic=AUTH)
            check(r.status == 400, "bad devices %r -> %r" % (bad, r))
        check(http("PUT", path(sim, P_DEVICES, sid, 2), DEVICES, basic=AUTH).status == 404, "part 2")
        check(http("PUT", path(sim, P_DEVICES, sid, 0), DEVICES, basic=AUTH).status == 404, "part 0")
        unknown = "00000000-0000-4000-8000-000000000000"
        for m, p in (("GET", P_SESSION), ("GET", P_LAUNCH)):
            r = http(m, path(sim, p, unknown), basic=AUTH)
            check(r.status == 404 and "message" in r.json(), "unknown session %s" % p)
        check(http("POST", path(sim, P_RELEASE, unknown), {}, basic=AUTH).status == 404, "release ?")
        r = http("POST", path(sim, P_RELEASE, sid), None, basic=AUTH)
        check(r.status == 400, "release needs a body: %r" % r)
        check(http("POST", path(sim, P_RELEASE, sid), "[]", basic=AUTH).status == 400, "array body")
        check(http("POST", path(sim, P_RELEASE, sid), "{}", basic=AUTH).status == 204, "{} body")
        check(http("POST", sim.url + "/_sim/sessions/%s/dance" % sid).status == 404, "bad action")


def report(sim, status=200, **params):
    """GET the session report with params; the answer checked against LabSessionsReport."""
    url = sim.url + P_REPORT
    if params:
        url += "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    r = http("GET", url, basic=AUTH)
    if status != 200:
        check(r.status == status, "report %r: expected %d, got %r" % (params, status, r))
        return r.json()
    return V.check_response(r, P_REPORT, "GET", 200)["lab_sessions"]


def t_reporting():
    with start() as sim:
        check(report(sim) == [], "empty report")
        a = create(sim, session_body("lcm-r-1"))
        time.sleep(0.002)
        b_body = session_body("lcm-r-2")
        b_body["location"] = "us-east-1"
        b_body["session_parts"] = [{"repository_type": "minio",
                                    "form_qualified_name": "Exam CCIE TEST v2 ENT 1.0"}]
        b = create(sim, b_body)
        time.sleep(0.002)
        c_body = session_body("lcm-r-1")
        c_body["session_parts"].append({"repository_type": "svn", "track": "CCIE",
                                        "exam_version": "v2"})
        c = create(sim, c_body)
        created = {sid: http("GET", path(sim, P_SESSION, sid), basic=AUTH).json()["created"]
                   for sid in (a, b, c)}
        # every session, oldest first, with the report's field names
        rows = report(sim)
        check([x["id"] for x in rows] == [a, b, c], "sorted by created: %r" % rows)
        ra = rows[0]
        check(ra["auth_id"] == "lcm-r-1" and ra["auth_id_type"] == "ordered_session", "ids %r" % ra)
        check(ra["session_state"] == "created" and ra["session_finalized"] is False and
              ra["active_reservation"] is True, "state %r" % ra)
        check(ra["created"] == created[a] and ra["origin_id"] == "lcm", "created/origin %r" % ra)
        check(ra["location"] == "eu-west-1" and ra["rack_number"] == "1", "echoed %r" % ra)
        check(all(v == 0 for k, v in ra.items() if k.startswith("rpt_")), "rpt_* counters 0")
        check(ra["session_parts"][0]["form_qualified_name"] == FQN and
              ra["session_parts"][0]["session_part_state"] == "created", "part %r" % ra)
        check(len(rows[2]["session_parts"]) == 2 and rows[2]["session_parts"][1]["track"] == "CCIE",
              "every part reported")
        # filters: fqn (any part), location, track/exam_version (any part), state
        check([x["id"] for x in report(sim, fqn=FQN)] == [a, c], "fqn")
        check([x["id"] for x in report(sim, fqn="Exam CCIE TEST v2 ENT 1.0")] == [b], "fqn 2")
        check(report(sim, fqn="no such form") == [], "unknown fqn")
        check([x["id"] for x in report(sim, location="us-east-1")] == [b], "location")
        check([x["id"] for x in report(sim, track="CCIE", exam_version="v2")] == [c], "track")
        check(report(sim, track="CCIE", exam_version="v1") == [], "exam_version")
        http("POST", sim.url + "/_sim/sessions/%s/login" % b)
        check([x["id"] for x in report(sim, state="running")] == [b], "state running")
        check([x["id"] for x in report(sim, state="created", fqn=FQN)] == [a, c], "state + fqn")
        # from / to on created, both inclusive; offsets and fractions as RFC 3339 allows
        check([x["id"] for x in report(sim, **{"from": created[b]})] == [b, c], "from")
        check([x["id"] for x in report(sim, to=created[b])] == [a, b], "to")
        check([x["id"] for x in report(sim, **{"from": created[b], "to": created[b]})] == [b],
              "from = to")
        check(len(report(sim, **{"from": "2000-01-01T01:00:00+01:00"})) == 3, "offset from")
        check(report(sim, to="2000-01-01T00:59:59.999999+01:00") == [], "offset to")
        check(report(sim, **{"from": "2999-01-01T00:00:00Z"}) == [], "future from")
        check(len(report(sim, **{"from": "", "fqn": ""})) == 3, "empty values filter nothing")
        check(len(report(sim, foo="bar", page="2")) == 3, "unknown parameters ignored")
        for bad in ("yesterday", "2026-01-01", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                    "2026-01-01T10:00:00", "2026-01-01T10:00:00+01:0", "2026-01-01T25:00:00Z"):
            e = report(sim, 400, **{"from": bad})
            check("from" in e["errors"] and e["message"], "bad from %r: %r" % (bad, e))
        check("to" in report(sim, 400, to="2026-01-01T10:00:00.Z")["errors"], "bad to")
        # released sessions stay in the report, finalized
        http("POST", path(sim, P_RELEASE, a), {}, basic=AUTH)
        ra = report(sim, fqn=FQN)[0]
        check(ra["id"] == a and ra["session_finalized"] is True and
              ra["session_state"] == "finalized" and ra["active_reservation"] is False,
              "finalized %r" % ra)
        # HTTP Basic like every API route; GET only; counted
        af0 = http("GET", sim.url + "/_sim/stats").json()["lds"]["auth_failures"]
        check(http("GET", sim.url + P_REPORT).status == 401, "report needs auth")
        check(http("GET", sim.url + "/_sim/stats").json()["lds"]["auth_failures"] == af0 + 1,
              "auth failure counted")
        check(http("POST", sim.url + P_REPORT, {}, basic=AUTH).status == 405, "POST report")
        check(http("GET", sim.url + "/reservations/v3/reporting/feedback", basic=AUTH).status
              == 404, "other reports not simulated")
        n = http("GET", sim.url + "/_sim/stats").json()["lds"]["reports"]
        check(n == 19, "answered reports counted: %r" % n)


def t_frontend_login():
    rec = Receiver()
    try:
        with start(rec) as sim:
            sid = create(sim)
            url = http("GET", path(sim, P_LAUNCH, sid), basic=AUTH).json()["url"]
            check(url.startswith(sim.url + "/lablet/"), "default frontend is the sim itself: " + url)
            check(http("GET", url.split("?")[0] + "?token=forged").status == 403, "forged token")
            check(rec.attempts == 0, "no login with a forged token")
            r = http("GET", url)
            check(r.status == 200 and "text/html" in r.headers.get("content-type", ""), r)
            evs = rec.wait_events(1)
            check(evs[0]["type"] == "com.cisco.lds.session.running.v1" and evs[0]["subject"] == sid,
                  "running on opening the launch URL")
            http("GET", url)  # a reload while running is not a second login
            time.sleep(0.2)
            check(len(rec.events) == 1, "reload emitted again")
    finally:
        rec.stop()


def t_type_prefix_and_source():
    rec = Receiver()
    try:
        with start(rec, "--type-prefix", "io.lablet", "--source", "https://lds.example.test") as sim:
            sid = create(sim)
            http("POST", sim.url + "/_sim/sessions/%s/finish" % sid)
            ev = rec.wait_events(1)[0]
            check(ev["type"] == "io.lablet.lds.session.user-finished.v1", ev["type"])
            check(ev["source"] == "https://lds.example.test", ev["source"])
    finally:
        rec.stop()


def t_faults():
    with start() as sim:
        r = http("POST", sim.url + "/_sim/faults",
                 {"path": "/lab_session", "method": "POST", "status": 503, "count": 2})
        check(r.status == 201, r)
        for _ in range(2):
            r = http("POST", sim.url + P_SESSIONS, session_body(), basic=AUTH)
            check(r.status == 503 and r.json()["message"], "injected 503: %r" % r)
        sid = create(sim)  # the fault is spent
        check(http("GET", sim.url + "/_sim/faults").json()["faults"] == [], "spent fault removed")
        # a fault only matches its method and path
        http("POST", sim.url + "/_sim/faults", {"path": "/release", "status": 500, "count": 1})
        check(http("GET", path(sim, P_SESSION, sid), basic=AUTH).status == 200, "other path")
        check(http("POST", path(sim, P_RELEASE, sid), {}, basic=AUTH).status == 500, "release 500")
        # delay
        http("POST", sim.url + "/_sim/faults", {"path": "lablet_launch_url", "delay_ms": 400})
        t0 = time.time()
        r = http("GET", path(sim, P_LAUNCH, sid), basic=AUTH)
        dt = time.time() - t0
        check(r.status == 200 and dt >= 0.38, "delayed %.3fs %r" % (dt, r))
        # delay then error
        http("POST", sim.url + "/_sim/faults", {"path": "devices", "delay_ms": 200, "status": 504})
        t0 = time.time()
        r = http("PUT", path(sim, P_DEVICES, sid), DEVICES, basic=AUTH)
        check(r.status == 504 and time.time() - t0 >= 0.18, "delayed 504 %r" % r)
        # drop: the connection closes without an answer
        http("POST", sim.url + "/_sim/faults", {"path": "/lab_session/", "method": "GET", "drop": True})
        try:
            r = http("GET", path(sim, P_SESSION, sid), basic=AUTH)
            raise Failure("dropped request answered: %r" % r)
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            if isinstance(e, Failure):
                raise
        check(http("GET", path(sim, P_SESSION, sid), basic=AUTH).status == 200, "after drop")
        # count 0 = until cleared; DELETE clears; admin routes are never faulted
        http("POST", sim.url + "/_sim/faults", {"path": "", "status": 502, "count": 0})
        for _ in range(3):
            check(http("GET", path(sim, P_SESSION, sid), basic=AUTH).status == 502, "sticky fault")
        check(http("GET", sim.url + "/_sim/faults").json()["faults"][0]["hits"] == 3, "hits")
        check(http("DELETE", sim.url + "/_sim/faults").status == 204, "clear")
        check(http("GET", path(sim, P_SESSION, sid), basic=AUTH).status == 200, "cleared")
        check(http("POST", sim.url + "/_sim/faults", {"status": 99}).status == 400, "bad fault")
        check(http("POST", sim.url + "/_sim/faults", {"path": "x"}).status == 400, "empty fault")
        # a client that gives up on a delayed request does not upset the sim
        http("POST", sim.url + "/_sim/faults", {"path": "/lab_session/", "delay_ms": 500})
        try:
            http("GET", path(sim, P_SESSION, sid), basic=AUTH, timeout=0.1)
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.6)
        check(http("GET", path(sim, P_SESSION, sid), basic=AUTH).status == 200, "after abandon")


def t_delivery_retries():
    rec = Receiver()
    rec.script = [503, 500]
    try:
        with start(rec) as sim:
            sid = create(sim)
            http("POST", sim.url + "/_sim/sessions/%s/login" % sid)
            http("POST", sim.url + "/_sim/sessions/%s/finish" % sid)
            evs = rec.wait_events(2)
            check(rec.attempts == 4, "attempts %d" % rec.attempts)
            check([e["type"].rsplit(".", 2)[-2] for e in evs] == ["running", "user-finished"],
                  "order kept across retries: %r" % [e["type"] for e in evs])
            ring = http("GET", sim.url + "/_sim/events").json()["events"]
            check(ring[0]["attempts"] == 3 and ring[0]["state"] == "delivered", ring[0])
            # a 4xx is final: not retried
            rec.script = [400]
            http("POST", sim.url + "/_sim/sessions/%s/end" % sid)
            wait_for(lambda: http("GET", sim.url + "/_sim/events").json()["events"][2]["state"]
                     == "failed", 5, "event to fail")
            check(rec.attempts == 5, "4xx retried")
            # resend: same id and body again (what lcmd must deduplicate)
            r = http("POST", sim.url + "/_sim/events/1/resend")
            check(r.status == 202, r)
            evs = rec.wait_events(3)
            check(evs[2]["id"] == evs[0]["id"] and evs[2] == evs[0], "resent event identical")
            check(http("POST", sim.url + "/_sim/events/99/resend").status == 404, "unknown seq")
    finally:
        rec.stop()


def t_lcm_down_then_up():
    rec = Receiver()
    rec.stop()  # lcmd is down when the learner logs in
    try:
        with start(rec, "--ce-retries", "20", "--ce-backoff-ms", "100") as sim:
            sid = create(sim)
            http("POST", sim.url + "/_sim/sessions/%s/login" % sid)
            wait_for(lambda: http("GET", sim.url + "/_sim/events").json()["events"][0]["attempts"] >= 2,
                     5, "retries against a closed port")
            rec.restart()
            evs = rec.wait_events(1, timeout=15)
            check(evs[0]["subject"] == sid, "delivered after lcmd came back")
            st = http("GET", sim.url + "/_sim/stats").json()["cloudevents"]
            check(st["delivered"] == 1 and st["failed"] == 0, st)
    finally:
        rec.stop()


def t_gives_up():
    rec = Receiver()
    rec.stop()
    with start(rec, "--ce-retries", "2", "--ce-backoff-ms", "20") as sim:
        sid = create(sim)
        http("POST", sim.url + "/_sim/sessions/%s/login" % sid)
        wait_for(lambda: http("GET", sim.url + "/_sim/stats").json()["cloudevents"]["failed"] == 1,
                 5, "give up")
        ev = http("GET", sim.url + "/_sim/events").json()["events"][0]
        check(ev["attempts"] == 3 and ev["state"] == "failed", ev)


def t_thousand_sessions():
    rec = Receiver()
    n = 1000
    try:
        with start(rec, "--ce-retries", "10") as sim:
            rss0 = sim.rss_kb()
            t0 = time.time()
            ids = []
            for i in range(n):
                sid = create(sim, session_body("lcm-%d" % i))
                r = http("PUT", path(sim, P_DEVICES, sid), DEVICES, basic=AUTH)
                check(r.status == 200, r)
                ids.append(sid)
            t_create = time.time() - t0
            t1 = time.time()
            for sid in ids:
                check(http("POST", sim.url + "/_sim/sessions/%s/login" % sid).status == 202, "login")
            evs = rec.wait_unique(n, timeout=60)
            t_events = time.time() - t1
            check(sorted(e["subject"] for e in evs) == sorted(ids), "one running event per session")
            lst = http("GET", sim.url + "/_sim/sessions").json()
            check(lst["count"] == n, "listed %d" % lst["count"])
            rss1 = sim.rss_kb()
            print("     figures: %d sessions create+devices %.2fs (%.2f ms each), %d events "
                  "delivered in %.2fs, RSS %d -> %d KiB"
                  % (n, t_create, 1000 * t_create / n, n, t_events, rss0, rss1))
    finally:
        rec.stop()


def t_shutdown_with_work_in_flight():
    """SIGINT while a request is held by a delay fault and events wait for a down lcmd."""
    rec = Receiver()
    rec.stop()
    sim = start(rec, "--ce-retries", "50")
    try:
        sid = create(sim)
        for _ in range(3):
            http("POST", sim.url + "/_sim/sessions/%s/login" % sid)
        http("POST", sim.url + "/_sim/faults", {"path": "/lab_session/", "delay_ms": 60000})
        s = socket.create_connection(("127.0.0.1", sim.port))
        s.sendall(("GET /reservations/v3/lab_session/%s HTTP/1.1\r\nHost: x\r\n\r\n" % sid).encode())
        time.sleep(0.2)
        sim.stop(signal.SIGINT)
        s.settimeout(5)
        reply = s.recv(4096).decode(errors="replace")
        check(reply.startswith("HTTP/1.1 503"), "held request answered 503 at shutdown: %r" % reply[:60])
        s.close()
    except Exception:
        if sim.proc.poll() is None:
            sim.proc.kill()
        raise


if __name__ == "__main__":
    print("spec: " + SPEC_PATH)
    run([
        ("full flow", t_full_flow),
        ("auth", t_auth),
        ("validation", t_validation),
        ("reporting", t_reporting),
        ("frontend login", t_frontend_login),
        ("type prefix and source", t_type_prefix_and_source),
        ("faults", t_faults),
        ("delivery retries", t_delivery_retries),
        ("lcmd down then up", t_lcm_down_then_up),
        ("gives up", t_gives_up),
        ("1000 sessions", t_thousand_sessions),
        ("shutdown with work in flight", t_shutdown_with_work_in_flight),
    ])
