#!/usr/bin/env python3
"""Integration tests for grading-sim: OAuth2 client credentials (expiry and refresh), the grading
flow checked against the engine spec's schemas, the completed/failed CloudEvents as lcmd receives
them, faults, 1,000 concurrent gradings, clean shutdown. Usage: test_grading_sim.py PATH/TO/grading-sim"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lds-sim"))
from simtest import (Failure, Receiver, Sim, Validator, check, check_cloudevent, http,  # noqa: E402
                     load_spec, run, wait_for)

BIN = sys.argv[1]
SPEC, SPEC_PATH = load_spec("grading/grading-engine_openapi.json")
V = Validator(SPEC)
TOKEN = "lcm-ingest-token"
CLIENT, SECRET = "lcm-client", "grading-secret"
KEYCLOAK = "/auth/realms/mozart/protocol/openid-connect/token"
P_SESSIONS = "/api/v1/sessions"
P_SESSION = "/api/v1/sessions/{sessionId}"
P_GRADE = "/api/v1/sessions/{sessionId}/parts/{partId}/grade"
PART = "Exam CCIE TEST v1 DES 1.1"


def start(receiver=None, *extra):
    args = ["--client-id", CLIENT, "--client-secret", SECRET, "--lcm-token", TOKEN,
            "--ce-backoff-ms", "50", "--quiet"] + list(extra)
    if receiver:
        args += ["--lcm-url", receiver.url]
    return Sim(BIN, args)


def token(sim, path="/oauth2/token"):
    r = http("POST", sim.url + path, form={"grant_type": "client_credentials",
                                           "client_id": CLIENT, "client_secret": SECRET})
    check(r.status == 200, "token: %r" % r)
    return r.json()


def create_body(lds_id="lds-1", sid=None):
    b = {
        "candidateId": "learner-42",
        "lds": {"id": lds_id, "environment": "eu-west-1"},
        "parts": [{
            "id": PART,
            "pod": {"id": "pod-1", "devices": [
                {"label": "R1", "hostname": "r1", "collector": "ios",
                 "interfaces": [{"name": "console", "protocol": "telnet", "host": "10.0.0.7",
                                 "port": 2001,
                                 "authentication": {"scheme": "basic",
                                                    "properties": {"username": "cisco"}}}]},
                {"label": "ubuntu-desktop", "hostname": "desk", "collector": "linux",
                 "interfaces": [{"name": "ssh", "protocol": "ssh", "host": "10.0.0.7",
                                 "port": 2002}]},
            ]},
        }],
    }
    if sid:
        b["id"] = sid
    return b


def create(sim, tok, body=None):
    body = body or create_body()
    V.check_request(body, P_SESSIONS, "POST")
    r = http("POST", sim.url + P_SESSIONS, body, bearer=tok)
    return V.check_response(r, P_SESSIONS, "POST", 200)


def sp(sim, p, sid, pid=PART):
    import urllib.parse
    return sim.url + p.replace("{sessionId}", sid).replace("{partId}", urllib.parse.quote(pid))


def t_token():
    with start(None, "--token-ttl", "123") as sim:
        for path in ("/oauth2/token", KEYCLOAK):
            t = token(sim, path)
            check(t["token_type"] == "Bearer" and t["expires_in"] == 123 and
                  len(t["access_token"]) >= 32, "token %r" % t)
        # client_secret_basic
        r = http("POST", sim.url + "/oauth2/token", form={"grant_type": "client_credentials"},
                 basic=(CLIENT, SECRET))
        check(r.status == 200, "basic client auth %r" % r)
        r = http("POST", sim.url + "/oauth2/token", form={"grant_type": "client_credentials",
                                                          "client_id": CLIENT, "client_secret": "no"})
        check(r.status == 401 and r.json()["error"] == "invalid_client", "bad secret %r" % r)
        r = http("POST", sim.url + "/oauth2/token", form={"grant_type": "password",
                                                          "client_id": CLIENT, "client_secret": SECRET})
        check(r.status == 400 and r.json()["error"] == "unsupported_grant_type", "grant %r" % r)
        r = http("POST", sim.url + "/oauth2/token", form={"client_id": CLIENT})
        check(r.status == 400 and r.json()["error"] == "invalid_request", "no grant %r" % r)
        check(http("GET", sim.url + "/oauth2/token").status == 405, "GET token")
        two = {token(sim)["access_token"] for _ in range(2)}
        check(len(two) == 2, "tokens are distinct")


def t_api_auth():
    with start(None, "--token-ttl", "1") as sim:
        r = http("GET", sp(sim, P_SESSION, "x"))
        V.check_response(r, P_SESSION, "GET", 401)
        check(r.body == "" and "Bearer" in r.headers.get("www-authenticate", ""), "401 shape %r" % r)
        check(http("POST", sim.url + P_SESSIONS, create_body(), bearer="garbage").status == 401,
              "garbage token")
        tok = token(sim)["access_token"]
        s = create(sim, tok)
        time.sleep(1.3)  # the token's TTL passes: a client must refresh
        r = http("GET", sp(sim, P_SESSION, s["id"]), bearer=tok)
        check(r.status == 401, "expired token accepted: %r" % r)
        tok = token(sim)["access_token"]
        check(http("GET", sp(sim, P_SESSION, s["id"]), bearer=tok).status == 200, "refreshed token")
        # forced expiry through the admin route
        check(http("POST", sim.url + "/_sim/tokens/expire").status == 204, "expire")
        check(http("GET", sp(sim, P_SESSION, s["id"]), bearer=tok).status == 401, "revoked")
        # the token endpoint's TTL can change at run time
        http("POST", sim.url + "/_sim/config", {"token_ttl": 3600})
        check(token(sim)["expires_in"] == 3600, "runtime TTL")


def t_flow():
    rec = Receiver()
    try:
        with start(rec, "--score", "77", "--max-score", "90", "--cut-score", "60",
                   "--delay-ms", "300", "--sections", "3") as sim:
            tok = token(sim)["access_token"]
            s = create(sim, tok)
            sid = s["id"]
            check(s["candidateId"] == "learner-42" and s["lds"]["id"] == "lds-1", "echo %r" % s)
            part = s["parts"][0]
            check(part["id"] == PART and part["status"] == "Pending" and "scoreReport" not in part,
                  "new part %r" % part)
            check(part["pod"]["devices"][0]["interfaces"][0]["port"] == 2001, "pod echoed")
            got = V.check_response(http("GET", sp(sim, P_SESSION, sid), bearer=tok), P_SESSION,
                                   "GET", 200)
            check(got["id"] == sid, "GET session")
            t0 = time.time()
            r = http("POST", sp(sim, P_GRADE, sid) + "?recollect=true", bearer=tok)
            V.check_response(r, P_GRADE, "POST", 202)
            got = http("GET", sp(sim, P_SESSION, sid), bearer=tok).json()
            check(got["parts"][0]["status"] == "Grading" and got["status"] == "Grading",
                  "grading status %r" % got["parts"][0]["status"])
            # a second request while grading joins the first
            V.check_response(http("POST", sp(sim, P_GRADE, sid), bearer=tok), P_GRADE, "POST", 202)
            evs = rec.wait_events(1)
            dt = time.time() - t0
            check(dt >= 0.28, "graded after %.3fs, before --delay-ms" % dt)
            _, headers, _ = rec.events[0]
            check_cloudevent(evs[0], headers, TOKEN, "com.cisco.grading.completed.v1", sid,
                             "grading-sim")
            d = evs[0]["data"]
            check(d["grading_session_id"] == sid and d["part_id"] == PART and
                  d["lds_session_id"] == "lds-1", "ids %r" % d)
            check(d["status"] == "completed" and d["score"] == 77 and d["max_score"] == 90 and
                  d["cut_score"] == 60 and d["passed"] is True, "score data %r" % d)
            check(len(d["sections"]) == 3 and sum(x["score"] for x in d["sections"]) == 77 and
                  sum(x["max_score"] for x in d["sections"]) == 90, "sections %r" % d["sections"])
            got = V.check_response(http("GET", sp(sim, P_SESSION, sid), bearer=tok), P_SESSION,
                                   "GET", 200)
            p = got["parts"][0]
            rep = p["scoreReport"]
            check(p["status"] == "Graded" and got["status"] == "Graded" and p["firstGraded"],
                  "graded part %r" % p)
            check(rep["score"] == 77 and rep["maxScore"] == 90 and
                  sum(x["score"] for x in rep["sections"]) == 77, "report %r" % rep)
            check(rep["variables"]["cutScore"] == 60 and rep["variables"]["passed"] is True, "vars")
            time.sleep(0.4)
            check(len(rec.events) == 1, "joined grade request graded twice")
            # grading again is a new generation
            http("POST", sp(sim, P_GRADE, sid), bearer=tok)
            evs = rec.wait_events(2)
            check(evs[1]["data"]["generation"] == 2 and evs[1]["id"] != evs[0]["id"], "regrade")
            adm = http("GET", sim.url + "/_sim/sessions/" + sid).json()
            check(adm["sim"]["grade_requests"][PART] == 3, "grade requests %r" % adm["sim"])
    finally:
        rec.stop()


def t_failure_modes():
    rec = Receiver()
    try:
        with start(rec, "--delay-ms", "20", "--fail-reason", "collector timed out") as sim:
            tok = token(sim)["access_token"]
            # configured at run time: fail every grading
            r = http("POST", sim.url + "/_sim/config", {"fail": True})
            check(r.status == 200 and r.json()["fail"] is True, r)
            sid = create(sim, tok)["id"]
            http("POST", sp(sim, P_GRADE, sid), bearer=tok)
            ev = rec.wait_events(1)[0]
            check(ev["type"] == "com.cisco.grading.failed.v1" and ev["subject"] == sid, ev["type"])
            check(ev["data"]["status"] == "failed" and ev["data"]["reason"] == "collector timed out",
                  "failed data %r" % ev["data"])
            got = V.check_response(http("GET", sp(sim, P_SESSION, sid), bearer=tok), P_SESSION,
                                   "GET", 200)
            check(got["parts"][0]["status"] == "Faulted" and
                  got["parts"][0]["statusReason"] == "collector timed out" and
                  "scoreReport" not in got["parts"][0] and got["status"] == "Faulted", got)
            # fail the next one only, then succeed (what a retrying lcmd sees)
            http("POST", sim.url + "/_sim/config", {"fail": False, "fail_next": 1, "score": 12})
            http("POST", sp(sim, P_GRADE, sid), bearer=tok)
            http("POST", sim.url + "/_sim/config", {})  # no-op keeps settings
            check(rec.wait_events(2)[1]["type"].endswith("grading.failed.v1"), "fail_next")
            http("POST", sp(sim, P_GRADE, sid), bearer=tok)
            ev = rec.wait_events(3)[2]
            check(ev["type"].endswith("grading.completed.v1") and ev["data"]["score"] == 12 and
                  ev["data"]["passed"] is False, "then completed %r" % ev["data"])
            # per-session overrides
            sid2 = create(sim, tok, create_body("lds-2"))["id"]
            check(http("POST", sim.url + "/_sim/sessions/%s/config" % sid2,
                       {"score": 99, "delay_ms": 0}).status == 204, "session config")
            http("POST", sp(sim, P_GRADE, sid2), bearer=tok)
            ev = rec.wait_events(4)[3]
            check(ev["subject"] == sid2 and ev["data"]["score"] == 99, "override %r" % ev["data"])
            check(http("POST", sim.url + "/_sim/config", {"score": -1}).status == 400, "bad config")
        # the --fail option
        with start(rec, "--fail", "--delay-ms", "0") as sim:
            tok = token(sim)["access_token"]
            sid = create(sim, tok)["id"]
            http("POST", sp(sim, P_GRADE, sid), bearer=tok)
            check(rec.wait_events(5)[4]["type"].endswith("grading.failed.v1"), "--fail")
    finally:
        rec.stop()


def t_validation():
    with start() as sim:
        tok = token(sim)["access_token"]

        def bad(body, field):
            r = http("POST", sim.url + P_SESSIONS, body, bearer=tok)
            out = V.check_response(r, P_SESSIONS, "POST", 400)
            check(any(field in k for k in out.get("errors", {})), "errors %r lack %s" % (out, field))
            check(r.headers.get("content-type", "").startswith("application/problem+json"), "ctype")

        bad({"candidateId": "ab"}, "candidateId")
        bad({}, "candidateId")
        b = create_body()
        b["parts"][0]["id"] = "x"
        bad(b, "parts[0].id")
        b = create_body()
        b["parts"][0]["pod"]["devices"][0]["interfaces"] = []
        bad(b, "interfaces")
        b = create_body()
        del b["parts"][0]["pod"]["devices"][1]["collector"]
        bad(b, "collector")
        b = create_body()
        b["parts"][0]["pod"]["devices"][0]["interfaces"][0]["port"] = "2001"
        bad(b, "port")
        b = create_body()
        b["lds"] = {"id": "x"}
        bad(b, "lds")
        b = create_body()
        b["parts"].append(dict(b["parts"][0]))
        bad(b, "parts[1].id")
        r = http("POST", sim.url + P_SESSIONS, "nope", bearer=tok)
        V.check_response(r, P_SESSIONS, "POST", 400)
        # sessions without parts and with a caller-chosen id
        s = create(sim, tok, {"id": "lcm-session-7", "candidateId": "abc"})
        check(s["id"] == "lcm-session-7" and s["parts"] == [] and "lds" not in s, "minimal %r" % s)
        r = http("POST", sim.url + P_SESSIONS, {"id": "lcm-session-7", "candidateId": "abc"}, bearer=tok)
        V.check_response(r, P_SESSIONS, "POST", 422)
        r = http("GET", sp(sim, P_SESSION, "nope"), bearer=tok)
        check(V.check_response(r, P_SESSION, "GET", 404)["status"] == 404, "404 problem")
        r = http("POST", sp(sim, P_GRADE, "lcm-session-7", "no-such-part"), bearer=tok)
        V.check_response(r, P_GRADE, "POST", 404)
        r = http("POST", sp(sim, P_GRADE, "nope"), bearer=tok)
        V.check_response(r, P_GRADE, "POST", 404)


def t_faults():
    rec = Receiver()
    try:
        with start(rec, "--delay-ms", "0") as sim:
            tok = token(sim)["access_token"]
            sid = create(sim, tok)["id"]
            http("POST", sim.url + "/_sim/faults", {"path": "/grade", "status": 500, "count": 1})
            r = http("POST", sp(sim, P_GRADE, sid), bearer=tok)
            body = V.check_response(r, P_GRADE, "POST", 500)
            check(body["status"] == 500, "problem %r" % body)
            time.sleep(0.2)
            check(len(rec.events) == 0, "a faulted grade request must not grade")
            V.check_response(http("POST", sp(sim, P_GRADE, sid), bearer=tok), P_GRADE, "POST", 202)
            rec.wait_events(1)
            # the token endpoint can be faulted too (lcmd's token refresh path)
            http("POST", sim.url + "/_sim/faults", {"path": "/oauth2/token", "status": 503})
            check(http("POST", sim.url + "/oauth2/token",
                       form={"grant_type": "client_credentials", "client_id": CLIENT,
                             "client_secret": SECRET}).status == 503, "token 503")
            token(sim)
            # delayed answer
            http("POST", sim.url + "/_sim/faults", {"path": "/api/v1/sessions/", "delay_ms": 300,
                                                    "method": "GET"})
            t0 = time.time()
            check(http("GET", sp(sim, P_SESSION, sid), bearer=tok).status == 200, "delayed GET")
            check(time.time() - t0 >= 0.28, "delay applied")
            # lcmd answering 503 twice: delivered on the third attempt
            rec.script = [503, 503]
            http("POST", sp(sim, P_GRADE, sid), bearer=tok)
            rec.wait_events(2)
            ring = http("GET", sim.url + "/_sim/events").json()["events"]
            check(ring[1]["attempts"] == 3 and ring[1]["state"] == "delivered", ring[1])
    finally:
        rec.stop()


def t_thousand_concurrent():
    rec = Receiver()
    n = 1000
    try:
        with start(rec, "--delay-ms", "1500", "--ce-retries", "10") as sim:
            tok = token(sim)["access_token"]
            rss0 = sim.rss_kb()
            t0 = time.time()
            ids = [create(sim, tok, create_body("lds-%d" % i))["id"] for i in range(n)]
            for sid in ids:
                check(http("POST", sp(sim, P_GRADE, sid), bearer=tok).status == 202, "grade")
            t_req = time.time() - t0
            grading = http("GET", sim.url + "/_sim/sessions").json()
            busy = sum(1 for s in grading["sessions"] if s["status"] == "Grading")
            check(t_req < 1.5 or busy > 0, "sanity")
            evs = rec.wait_unique(n, timeout=60)
            t_all = time.time() - t0
            check(sorted(e["subject"] for e in evs) == sorted(ids), "one completed event per session")
            dups = len(rec.events) - n
            rss1 = sim.rss_kb()
            print("     figures: %d sessions created and graded (%d concurrently grading) in %.2fs, "
                  "all %d completed events in %.2fs (%d redelivered), RSS %d -> %d KiB"
                  % (n, busy, t_req, n, t_all, dups, rss0, rss1))
    finally:
        rec.stop()


def t_shutdown_with_pending_gradings():
    rec = Receiver()
    rec.stop()
    sim = start(rec, "--delay-ms", "60000", "--ce-retries", "50")
    try:
        tok = token(sim)["access_token"]
        for i in range(20):
            sid = create(sim, tok, create_body("lds-%d" % i))["id"]
            http("POST", sp(sim, P_GRADE, sid), bearer=tok)
        http("POST", sim.url + "/_sim/config", {"delay_ms": 0})
        sid = create(sim, tok)["id"]
        http("POST", sp(sim, P_GRADE, sid), bearer=tok)  # an event waiting for a down lcmd
        wait_for(lambda: http("GET", sim.url + "/_sim/stats").json()["cloudevents"]["emitted"] == 1,
                 5, "event emitted")
        sim.stop(signal.SIGTERM)
    except Exception:
        if sim.proc.poll() is None:
            sim.proc.kill()
        raise


if __name__ == "__main__":
    print("spec: " + SPEC_PATH)
    run([
        ("token endpoint", t_token),
        ("api auth, expiry, refresh", t_api_auth),
        ("grading flow", t_flow),
        ("failure modes", t_failure_modes),
        ("validation", t_validation),
        ("faults", t_faults),
        ("1000 concurrent gradings", t_thousand_concurrent),
        ("shutdown with pending gradings", t_shutdown_with_pending_gradings),
    ])
