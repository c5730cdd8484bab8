"""POST /api/v1/cloudevents: structured, binary and batch modes; the event is on the session's
stream before the 202; duplicates (source + id) ignored with a TTL; unknown types accepted and
not recorded; unmatched events not remembered (a resend matches later); validation errors as
problem+json naming the field; roles; Redis down → 503; and lds-sim posting for real."""
import base64
import hashlib
import json
import os
import time
import uuid

from evtest import Host, Resp, make_session
from harness import BUILD_DIR, Proc, Redis, check, free_port, http, http_json, run_tests, wait_until

CE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def tok(role, subject, secret):
    return f"{role}:{subject}:{hashlib.sha256(secret.encode()).hexdigest()}"


ENV = {"LCM_TOKEN": ";".join([tok("viewer", "v", "viewer-secret"), tok("learner-service", "ls", "ls-secret"),
                              tok("author", "au", "author-secret")]),
       "LCM_CLOUDEVENTS_DEDUPE_TTL_S": "600"}


def post(h, body, ctype=CE, token=Host.ADMIN, headers=None):
    hd = {"Content-Type": ctype}
    hd.update(headers or {})
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http_json("POST", h.url + "/api/v1/cloudevents", raw, token=token, headers=hd)


def lds_event(state, lds_id, **extra):
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "lds-sim",
            "type": f"com.cisco.lds.session.{state}.v1", "subject": lds_id,
            "time": "2026-01-01T10:00:00.123Z", "datacontenttype": "application/json",
            "data": dict({"lds_session_id": lds_id, "session_id": lds_id, "state": state}, **extra)}


def stream(r, sid):
    return [(e[0], dict(zip(e[1][::2], e[1][1::2]))) for e in r("XRANGE", f"lcm:{{session:{sid}}}:events", "-", "+")]


def recorded(r, sid):
    return [json.loads(f["data"])["cloudevent"] for _, f in stream(r, sid) if f["type"] == "session.cloudevent_received"]


def test_modes_and_record_before_ack():
    rd = Redis()
    h = Host(rd.url, env=ENV)
    r = Resp(rd.port)
    try:
        make_session(r, "s1", lds_session_id="LDS-1")
        make_session(r, "s2", grading_session_id="G-2")
        make_session(r, "s3")
        wait_until(lambda: h.get("/readyz")[0] == 200, what="ready")
        time.sleep(0.3)   # the read model follows the feed
        # structured: the event is on the stream when the 202 arrives
        ev = lds_event("running", "LDS-1")
        st, _, doc = post(h, ev)
        check(st == 202, (st, doc))
        check(doc["results"] == [{"id": ev["id"], "source": "lds-sim", "type": ev["type"],
                                  "status": "recorded", "session_id": "s1"}], doc)
        rec = recorded(r, "s1")
        check(len(rec) == 1 and rec[0] == ev, rec)
        fields = stream(r, "s1")[-1][1]
        check(fields["by"] == "cloudevents:lds-sim" and fields["version"] == "3", fields)
        # binary: grading completed, matched by grading_session_id in data
        data = {"grading_session_id": "G-2", "part_id": "p1", "status": "completed", "score": 85, "max_score": 100}
        st, _, doc = post(h, json.dumps(data).encode(), ctype="application/json", headers={
            "ce-specversion": "1.0", "ce-id": "g-1", "ce-source": "grading-sim",
            "ce-type": "com.cisco.grading.completed.v1", "ce-subject": "G-2", "ce-time": "2026-01-01T10:00:00Z"})
        check(st == 202 and doc["results"][0]["status"] == "recorded" and doc["results"][0]["session_id"] == "s2", (st, doc))
        rec = recorded(r, "s2")
        check(rec[0]["data"] == data and rec[0]["type"] == "com.cisco.grading.completed.v1" and
              rec[0]["datacontenttype"] == "application/json" and rec[0]["subject"] == "G-2", rec)
        # binary with a non-JSON body keeps it as data_base64
        st, _, doc = post(h, b"\x00\x01raw", ctype="application/octet-stream", headers={
            "ce-specversion": "1.0", "ce-id": "g-2", "ce-source": "grading-sim",
            "ce-type": "com.cisco.grading.failed.v1", "ce-subject": "G-2"})
        check(st == 202, (st, doc))
        check(recorded(r, "s2")[-1]["data_base64"] == base64.b64encode(b"\x00\x01raw").decode(), recorded(r, "s2"))
        # batch: by auth_id (lcm's own id), by grading subject, an unknown type
        b = [lds_event("user-finished", "LDS-X", auth_id="s3", ended_by="user"),
             {"specversion": "1.0", "id": "g-3", "source": "grading-sim", "type": "com.cisco.grading.failed",
              "subject": "G-2", "data": {"status": "failed", "reason": "x"}},
             {"specversion": "1.0", "id": "u-1", "source": "elsewhere", "type": "org.example.thing.v1"}]
        st, _, doc = post(h, b, ctype=BATCH)
        check(st == 202, (st, doc))
        check([x["status"] for x in doc["results"]] == ["recorded", "recorded", "ignored-unknown-type"], doc)
        check(doc["results"][0]["session_id"] == "s3" and doc["results"][1]["session_id"] == "s2", doc)
        check(len(recorded(r, "s3")) == 1 and len(recorded(r, "s2")) == 3, "batch not recorded")
        # an empty batch is fine
        st, _, doc = post(h, [], ctype=BATCH)
        check(st == 202 and doc["results"] == [], (st, doc))
        # the session's GET-able state still folds (read model accepted every recorded event)
        check(h.metric("lcm_cloudevents_received_total") >= 6, "metrics")
    finally:
        r.close()
        h.stop()
        rd.close()


def test_dedupe_unknown_unmatched():
    rd = Redis()
    h = Host(rd.url, env=ENV)
    r = Resp(rd.port)
    try:
        make_session(r, "d1", lds_session_id="LDS-D")
        time.sleep(0.3)
        ev = lds_event("paused", "LDS-D")
        check(post(h, ev)[2]["results"][0]["status"] == "recorded", "first")
        st, _, doc = post(h, ev)
        check(st == 202 and doc["results"][0]["status"] == "duplicate", doc)
        # same id, other source: a different event
        other = dict(ev, source="lds-eu")
        check(post(h, other)[2]["results"][0]["status"] == "recorded", "other source")
        check(len(recorded(r, "d1")) == 2, recorded(r, "d1"))
        # the dedupe memory has a TTL
        key = "lcm:uniq:ce:" + hashlib.sha256(b"lds-sim\0" + ev["id"].encode()).hexdigest()
        ttl = r("PTTL", key)
        check(0 < ttl <= 600_000, (key, ttl))
        # a duplicate inside one batch
        e2 = lds_event("running", "LDS-D")
        st, _, doc = post(h, [e2, e2], ctype=BATCH)
        check([x["status"] for x in doc["results"]] == ["recorded", "duplicate"], doc)
        # unknown types: accepted, remembered, never recorded
        u = {"specversion": "1.0", "id": "u-9", "source": "x", "type": "com.cisco.lds.session.exploded.v1",
             "subject": "LDS-D"}
        check(post(h, u)[2]["results"][0]["status"] == "ignored-unknown-type", "unknown")
        check(post(h, u)[2]["results"][0]["status"] == "duplicate", "unknown dup")
        check(len(recorded(r, "d1")) == 3, "unknown type was recorded")
        check("unknown CloudEvent type accepted" in h.proc.stderr(), "unknown type not logged")
        # unmatched: accepted, not remembered; once the session knows its LDS id a resend records
        ev3 = lds_event("ended", "LDS-LATER")
        check(post(h, ev3)[2]["results"][0]["status"] == "unmatched", "unmatched")
        make_session(r, "d2", lds_session_id="LDS-LATER")
        time.sleep(0.3)
        st, _, doc = post(h, ev3)
        check(doc["results"][0]["status"] == "recorded" and doc["results"][0]["session_id"] == "d2", doc)
        # configurable type prefix
    finally:
        r.close()
        h.stop()
        rd.close()


def test_validation_and_roles():
    rd = Redis()
    h = Host(rd.url, env=ENV)
    try:
        good = {"specversion": "1.0", "id": "v1", "source": "s", "type": "t"}
        cases = [
            (b"{", CE, 400, ""),
            (b"[]", CE, 400, ""),
            (json.dumps({k: v for k, v in good.items() if k != "specversion"}).encode(), CE, 400, "specversion"),
            (json.dumps(dict(good, specversion="0.3")).encode(), CE, 400, "specversion"),
            (json.dumps({k: v for k, v in good.items() if k != "id"}).encode(), CE, 400, "id"),
            (json.dumps(dict(good, id="")).encode(), CE, 400, "id"),
            (json.dumps(dict(good, source=5)).encode(), CE, 400, "source"),
            (json.dumps({k: v for k, v in good.items() if k != "type"}).encode(), CE, 400, "type"),
            (json.dumps(dict(good, type="a\nb")).encode(), CE, 400, "type"),
            (json.dumps(dict(good, id="x" * 300)).encode(), CE, 400, "id"),
            (json.dumps(dict(good, time="yesterday")).encode(), CE, 400, "time"),
            (json.dumps(dict(good, data=1, data_base64="AA==")).encode(), CE, 400, "data_base64"),
            (json.dumps(dict(good, BadName="x")).encode(), CE, 400, ""),
            (json.dumps(dict(good, ext={"nested": 1})).encode(), CE, 400, "ext"),
            (json.dumps(good).encode(), BATCH, 400, ""),
            (json.dumps([good, dict(good, type=None)]).encode(), BATCH, 400, "[1].type"),
            (json.dumps([good] * 101).encode(), BATCH, 413, ""),
            (json.dumps(good).encode(), "text/plain", 415, "Content-Type"),
        ]
        for body, ct, want, field in cases:
            st, hd, doc = post(h, body, ctype=ct)
            check(st == want, (body[:80], st, doc))
            check(hd.get("Content-Type", "").startswith("application/problem+json"), hd)
            check(doc.get("field", "") == field, (body[:80], field, doc))
        # binary mode missing ce-type
        st, _, doc = post(h, b"{}", ctype="application/json", headers={"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s"})
        check(st == 400 and doc["field"] == "ce-type", (st, doc))
        st, _, doc = post(h, b"{", ctype="application/json", headers={
            "ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t"})
        check(st == 400 and doc["field"] == "data", (st, doc))
        # roles: book permission (learner-service, operator, admin)
        st, _, _ = post(h, good, token=None)
        check(st == 401, st)
        for t, want in (("viewer-secret", 403), ("author-secret", 403), ("ls-secret", 202)):
            st, _, doc = post(h, dict(good, id="role-" + t), token=t)
            check(st == want, (t, st, doc))
    finally:
        h.stop()
        rd.close()


def test_redis_down():
    rd = Redis()
    h = Host(rd.url, env=ENV)
    r = Resp(rd.port)
    try:
        make_session(r, "r1", lds_session_id="LDS-R")
        time.sleep(0.3)
        r.close()
        rd.stop()
        st, hd, doc = post(h, lds_event("running", "LDS-R"))
        check(st == 503 and hd.get("Retry-After"), (st, doc))
        st, hd, doc = post(h, {"specversion": "1.0", "id": "u", "source": "s", "type": "t"})
        check(st == 503, (st, doc))
        rd.start()
        wait_until(lambda: post(h, {"specversion": "1.0", "id": "u", "source": "s", "type": "t"})[0] == 202,
                   timeout=15, what="accepting again after Redis is back")
    finally:
        h.stop()
        rd.close()


def test_lds_sim_posts():
    """lds-sim plays the learner: its CloudEvents (as the real LDS posts them) are recorded."""
    sim_bin = os.path.join(BUILD_DIR, "bin", "lds-sim")
    if not os.path.exists(sim_bin):
        print("     SKIP: build/bin/lds-sim not built")
        return
    rd = Redis()
    h = Host(rd.url, env=ENV)
    r = Resp(rd.port)
    port = free_port()
    sim = Proc("lds-sim", [sim_bin, "--listen", f"127.0.0.1:{port}", "--lcm-url", h.url, "--lcm-token", h.ADMIN,
                           "--quiet"])
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http("GET", base + "/_sim/health")[0] == 200, what="lds-sim")
        auth = {"Authorization": "Basic " + base64.b64encode(b"lds:lds").decode()}
        body = {"origin": "lcm", "auth_id": "sim-s1", "auth_id_type": "ordered_session", "candidate_id": "alice",
                "location": "us-east-1", "timezone_offset": 0, "first_name": "-", "last_name": "-",
                "rack_group": "lcm", "rack_number": "1", "scheduled_date": "2026-01-01T10:00:00Z",
                "session_parts": [{"repository_type": "minio", "form_qualified_name": "Exam CCIE TEST v1 DES 1.1"}]}
        st, _, doc = http_json("POST", base + "/reservations/v3/lab_session", body, headers=auth)
        check(st == 200, (st, doc))
        lds_id = doc["session_id"]
        make_session(r, "sim-s1", lds_session_id=lds_id)
        time.sleep(0.3)
        for action in ("login", "pause", "finish"):
            st, _, doc = http_json("POST", f"{base}/_sim/sessions/{lds_id}/{action}")
            check(st == 202, (action, st, doc))
        wait_until(lambda: len(recorded(r, "sim-s1")) == 3, timeout=10, what="three LDS events recorded")
        types = [e["type"] for e in recorded(r, "sim-s1")]
        check(types == ["com.cisco.lds.session.running.v1", "com.cisco.lds.session.paused.v1",
                        "com.cisco.lds.session.user-finished.v1"], types)
        # the sim resends an event with the same id: still recorded once
        st, _, events = http_json("GET", base + "/_sim/events")
        seq = events[0]["seq"] if isinstance(events, list) else events["events"][0]["seq"]
        http_json("POST", f"{base}/_sim/events/{seq}/resend")
        time.sleep(1)
        check(len(recorded(r, "sim-s1")) == 3, "resent event recorded twice")
    finally:
        sim.stop()
        r.close()
        h.stop()
        rd.close()


if __name__ == "__main__":
    run_tests([test_modes_and_record_before_ack, test_dedupe_unknown_unmatched, test_validation_and_roles,
               test_redis_down, test_lds_sim_posts])
