"""HTTP API v1 resource routes against a real lcmd + redis-server over loopback: every route
and role boundary, problem+json error classes, ETag/If-Match, session idempotency,
pagination, concurrent writers (one wins, never a lost update)."""
import concurrent.futures as cf
import datetime as dt
import json
import os
import socket
import threading

from harness import SOURCE_DIR, check, run_tests, wait_until
from apilib import Api, LEARNER2, ROLE_PERMS, TOKENS, iso, now, slot

api = None


def setup():
    global api
    api = Api()


def problem(st, hd, doc, status, slug, field=None):
    check(st == status, (st, doc))
    ct = {k.lower(): v for k, v in hd.items()}.get("content-type", "")
    check(ct.startswith("application/problem+json"), (ct, doc))
    check(doc["type"] == "urn:lcm:problem:" + slug, doc)
    check(doc["status"] == status and doc.get("title") and doc.get("detail"), doc)
    if field is not None:
        check(doc.get("field") == field, doc)


# ---------------------------------------------------------------- auth
def test_every_route_every_role():
    st, _, doc = api.call("GET", "/api/v1/routes")
    check(st == 200, doc)
    routes = doc["items"]
    check(len(routes) >= 40, len(routes))
    for r in routes:
        path = r["path"].replace("{", "").replace("}", "")   # e.g. /api/v1/sessions/id
        # unauthenticated: 401 unless open
        st, hd, d = api.call(r["method"], path, token="")
        if r["permission"] is not None and st != 401:
            raise AssertionError((r, st, d))
        if r["permission"] is None:
            check(st != 401 and st != 403, (r, st))
            continue
        problem(st, hd, d, 401, "unauthenticated")
        check(any(k.lower() == "www-authenticate" for k in hd), hd)
        st, hd, d = api.call(r["method"], path, token="not-a-valid-token-000")
        problem(st, hd, d, 401, "unauthenticated")
        for role, perms in ROLE_PERMS.items():
            if r["path"] == "/api/v1/events" and r["permission"] in perms:
                continue   # an authorised SSE request streams forever
            st, hd, d = api.call(r["method"], path, role=role, raw=b"{}" if r["method"] != "GET" else None)
            if r["permission"] in perms:
                check(st not in (401, 403), (r, role, st, d))
            else:
                problem(st, hd, d, 403, "forbidden")


# ---------------------------------------------------------------- errors
def test_body_errors():
    t = "/api/v1/templates"
    problem(*api.call("POST", t, raw=b'{"name": "x",'), 400, "malformed-json")
    problem(*api.call("POST", t, raw=b'{"name": "x"} {"again": 1}'), 400, "malformed-json")
    problem(*api.call("POST", t, raw=b''), 400, "malformed-json")
    problem(*api.call("POST", t, raw=b'[1,2]'), 422, "validation")
    problem(*api.call("POST", t, raw=b'\xff\xfe{}'), 400, "malformed-json")
    problem(*api.call("POST", t, raw=b'{"name":"a"}', headers={"Content-Type": "text/plain"}), 415,
            "unsupported-media-type")
    body = {"name": "err-tpl", "instance_type": "m5", "capacity": {"cpu_cores": 1, "memory_gb": 1,
            "storage_gb": 1, "max_nodes": 1}, "license_type": "enterprise", "enabled": True}
    problem(*api.call("POST", t, dict(body, colour="red")), 422, "unknown-field", "colour")
    problem(*api.call("POST", t, dict(body, capacity=dict(body["capacity"], gpus=1))), 422, "unknown-field",
            "capacity.gpus")
    problem(*api.call("POST", t, dict(body, enabled="yes")), 422, "validation", "enabled")
    problem(*api.call("POST", t, dict(body, capacity=dict(body["capacity"], cpu_cores=1.5))), 422,
            "validation", "capacity.cpu_cores")
    problem(*api.call("POST", t, dict(body, capacity=dict(body["capacity"], cpu_cores=-4))), 422,
            "validation", "capacity.cpu_cores")
    problem(*api.call("POST", t, dict(body, license_type="gold")), 422, "validation", "license_type")
    problem(*api.call("POST", t, dict(body, name="bad name/x")), 422, "validation", "name")
    problem(*api.call("POST", t, raw=b'{"name":"a","name":"b"}'), 422, "validation", "name")
    deep = b'{"tags":' + b'{"a":' * 40 + b'1' + b'}' * 40 + b'}'
    problem(*api.call("POST", t, raw=deep), 422, "validation")
    # a body over http_max_body_bytes is refused before it is read
    with socket.create_connection(("127.0.0.1", api.lcmd.port), timeout=10) as so:
        so.sendall(b"POST /api/v1/templates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Authorization: Bearer " + TOKENS["admin"].encode() +
                   b"\r\nContent-Length: 5000000\r\n\r\n{")
        head = so.recv(200)
    check(head.startswith(b"HTTP/1.1 413"), head)
    # lists: bad limit, bad cursor, bad filters
    problem(*api.call("GET", "/api/v1/sessions?limit=0"), 400, "invalid-query", "limit")
    problem(*api.call("GET", "/api/v1/sessions?limit=501"), 400, "invalid-query", "limit")
    problem(*api.call("GET", "/api/v1/sessions?limit=abc"), 400, "invalid-query", "limit")
    problem(*api.call("GET", "/api/v1/sessions?cursor=%21%21"), 400, "invalid-cursor", "cursor")
    problem(*api.call("GET", "/api/v1/sessions?cursor=Zm9v"), 400, "invalid-cursor", "cursor")
    problem(*api.call("GET", "/api/v1/sessions?status=bogus"), 400, "invalid-query", "status")
    problem(*api.call("GET", "/api/v1/sessions?from=yesterday"), 400, "invalid-query", "from")
    problem(*api.call("GET", "/api/v1/workers/nope"), 404, "not-found")
    problem(*api.call("GET", "/api/v1/nothing-here"), 404, "not-found")
    problem(*api.call("PUT", "/api/v1/sessions"), 405, "method-not-allowed")


# ---------------------------------------------------------------- templates
def test_templates_crud_etag():
    doc = api.template("tpl-a")
    check(doc["revision"] == 1 and doc["status"] == "active", doc)
    st, hd, d = api.call("POST", "/api/v1/templates", {k: v for k, v in doc.items() if k in (
        "name", "instance_type", "capacity", "license_type", "enabled")})
    problem(st, hd, d, 409, "already-exists", "name")
    st, hd, d = api.call("GET", "/api/v1/templates/tpl-a", role="viewer")
    check(st == 200 and hd["ETag"] == '"1"', (st, hd))
    problem(*api.call("PATCH", "/api/v1/templates/tpl-a", {"description": "x"}, headers={"If-Match": '"7"'}),
            412, "precondition-failed")
    st, hd, d = api.call("PATCH", "/api/v1/templates/tpl-a", {"description": "metal", "tags": {"team": "lab"}},
                         headers={"If-Match": '"1"', "Content-Type": "application/merge-patch+json"})
    check(st == 200 and d["description"] == "metal" and d["tags"] == {"team": "lab"} and d["revision"] == 2
          and hd["ETag"] == '"2"', (st, d))
    check(d["capacity"]["cpu_cores"] == 48, d)   # untouched by the merge patch
    st, _, d = api.call("PATCH", "/api/v1/templates/tpl-a", {"tags": None}, headers={"If-Match": "*"})
    check(st == 200 and d["tags"] is None, d)
    problem(*api.call("PATCH", "/api/v1/templates/tpl-a", {"name": "other"}), 422, "validation", "name")
    st, _, d = api.call("GET", "/api/v1/templates")
    check(st == 200 and "tpl-a" in [t["name"] for t in d["items"]], d)
    problem(*api.call("DELETE", "/api/v1/templates/tpl-a", headers={"If-Match": '"1"'}), 412, "precondition-failed")
    st, _, _ = api.call("DELETE", "/api/v1/templates/tpl-a")
    check(st == 204, st)
    st, _, d = api.call("GET", "/api/v1/templates/tpl-a")
    check(st == 200 and d["status"] == "deleted", d)
    st, _, d = api.call("GET", "/api/v1/templates")
    check("tpl-a" not in [t["name"] for t in d["items"]], d)
    st, _, d = api.call("GET", "/api/v1/templates?include_deleted=true")
    check("tpl-a" in [t["name"] for t in d["items"]], d)
    problem(*api.call("PATCH", "/api/v1/templates/tpl-a", {"description": "y"}), 409, "invalid-state")


# ---------------------------------------------------------------- definitions
TOPO = open(os.path.join(SOURCE_DIR, "..", "shared", "reference", "samples", "TEST-LAB-1.1.yaml")).read() \
    if os.path.exists(os.path.join(SOURCE_DIR, "..", "shared", "reference", "samples", "TEST-LAB-1.1.yaml")) else None

TOPO_INLINE = """nodes:
  - id: n0
    label: PC
    node_definition: ubuntu
    tags:
      - serial:4567
      - vnc:4568
  - id: n1
    label: Router
    node_definition: iosv
    tags:
      - serial:4566
links: []
"""


def test_definitions_lifecycle():
    body = {"name": "lab-def", "version": "1.0.0", "form_qualified_name": "Exam LAB 1",
            "topology": TOPO_INLINE, "lds_enabled": True,
            "resource_requirements": {"cpu_cores": 4, "memory_gb": 8}}
    st, hd, d = api.call("POST", "/api/v1/definitions", body, role="author")
    check(st == 201 and d["status"] == "pending_sync" and hd["Location"].endswith(d["id"]), (st, d))
    names = sorted(p["name"] for p in d["port_template"])
    check(names == ["pc_serial", "pc_vnc", "router_serial"], names)
    check(d["node_count"] == 2 and d["topology_sha256"] and len(d["topology_sha256"]) == 64, d)
    v1 = d["id"]
    problem(*api.call("POST", "/api/v1/definitions", body, role="author"), 409, "already-exists", "version")
    problem(*api.call("POST", "/api/v1/definitions", dict(body, version="one"), role="author"), 422,
            "validation", "version")
    problem(*api.call("POST", "/api/v1/definitions", dict(body, version="1.0.1", topology="no nodes here"),
                      role="author"), 422, "validation", "topology")
    problem(*api.call("POST", "/api/v1/definitions", {"name": "x", "version": "1.0.0"}, role="author"), 422,
            "validation")
    problem(*api.call("POST", "/api/v1/definitions", dict(body, version="1.0.2", lab_yaml_hash=""), role="author"),
            422, "unknown-field", "lab_yaml_hash")
    # booking a pending_sync definition is refused
    st, hd, d = api.session(v1)
    problem(st, hd, d, 409, "invalid-state", "definition_id")
    # pending_sync: PATCH edits in place
    st, _, d = api.call("PATCH", f"/api/v1/definitions/{v1}", {"description": "first"}, role="author")
    check(st == 200 and d["id"] == v1 and d["description"] == "first" and d["version"] == "1.0.0", (st, d))
    # activate (LDS refresh is fire-and-forget: no delivery plugin here, logged)
    st, hd, d = api.call("POST", f"/api/v1/definitions/{v1}/activate", role="author")
    check(st == 200 and d["status"] == "active", d)
    st, _, d = api.call("POST", f"/api/v1/definitions/{v1}/activate", role="author")
    check(st == 200 and d["status"] == "active", d)   # idempotent
    # PATCH of an active definition creates a new version (new id)
    st, hd, d2 = api.call("PATCH", f"/api/v1/definitions/{v1}", {"max_duration_minutes": 90}, role="author")
    check(st == 201 and d2["id"] != v1 and d2["version"] == "1.0.1" and d2["status"] == "pending_sync"
          and d2["max_duration_minutes"] == 90 and hd["Location"].endswith(d2["id"]), (st, d2))
    problem(*api.call("PATCH", f"/api/v1/definitions/{v1}", {"version": "0.9.0"}, role="author"), 422,
            "validation", "version")
    st, _, d = api.call("GET", f"/api/v1/definitions/{v1}")
    check(d["status"] == "active", d)
    st, _, d = api.call("POST", f"/api/v1/definitions/{d2['id']}/activate", {"reason": "release"}, role="author")
    check(st == 200 and d["status"] == "active", d)
    st, _, d = api.call("GET", f"/api/v1/definitions/{v1}")
    check(d["status"] == "deprecated", d)
    st, _, d = api.call("GET", f"/api/v1/definitions/{v1}/versions")
    check(st == 200 and [x["version"] for x in d["items"]] == ["1.0.1", "1.0.0"], d)
    # list / filter / search
    st, _, d = api.call("GET", "/api/v1/definitions?status=active&q=LAB-D", role="viewer")
    check(st == 200 and [x["id"] for x in d["items"]] == [d2["id"]], d)
    st, _, d = api.call("GET", "/api/v1/definitions?name=lab-def")
    check(d["total"] == 2, d)
    # deactivate → booking refused; delete (soft)
    st, _, d = api.call("POST", f"/api/v1/definitions/{d2['id']}/deactivate", role="author")
    check(st == 200 and d["status"] == "inactive", d)
    problem(*api.session(d2["id"]), 409, "invalid-state", "definition_id")
    problem(*api.call("POST", f"/api/v1/definitions/{v1}/activate", role="author"), 409, "invalid-state")
    st, _, _ = api.call("DELETE", f"/api/v1/definitions/{d2['id']}", role="author")
    check(st == 204, st)
    st, _, d = api.call("GET", "/api/v1/definitions?name=lab-def")
    check(d["total"] == 1, d)
    # the deleted version may be created again
    st, _, d = api.call("POST", "/api/v1/definitions", dict(body, version="1.0.1"), role="author")
    check(st == 201, (st, d))


# ---------------------------------------------------------------- sessions
def test_session_create_validation():
    d = api.definition("sess-val")
    past = now() - dt.timedelta(hours=2)
    problem(*api.session(d["id"], timeslot={"start": iso(past), "end": iso(past + dt.timedelta(minutes=30))}),
            422, "validation", "timeslot.start")
    s = now() + dt.timedelta(hours=3)
    problem(*api.session(d["id"], timeslot={"start": iso(s), "end": iso(s)}), 422, "validation", "timeslot.end")
    problem(*api.session(d["id"], timeslot={"start": iso(s), "end": iso(s - dt.timedelta(minutes=5))}), 422,
            "validation", "timeslot.end")
    problem(*api.session(d["id"], timeslot={"start": iso(s), "end": iso(s + dt.timedelta(hours=5))}), 422,
            "validation", "timeslot.end")
    problem(*api.session(d["id"], timeslot={"start": "tomorrow"}), 422, "validation", "timeslot.start")
    problem(*api.session(d["id"], timeslot={"start": 12345}), 422, "validation", "timeslot.start")
    problem(*api.session("def-nope"), 422, "unknown-reference", "definition_id")
    problem(*api.session(d["id"], color="blue"), 422, "unknown-field", "color")
    problem(*api.session(d["id"], reservation_id=""), 422, "validation", "reservation_id")
    problem(*api.call("POST", "/api/v1/sessions", {"timeslot": slot()}, role="learner-service"), 422,
            "validation", "definition_id")
    problem(*api.session(d["id"], headers={"Idempotency-Key": "x" * 200}), 400, "invalid-header")
    # a "now" session (no timeslot) is fine
    st, _, doc = api.session(d["id"], timeslot=None)
    check(st == 201 and doc["timeslot"]["start"] is None and doc["timeslot"]["end"], doc)


def test_session_idempotency():
    d = api.definition("sess-idem")
    ts = slot(2.5)
    st, hd, a = api.session(d["id"], reservation_id="R-100", timeslot=ts)
    check(st == 201 and a["reservation_id"] == "R-100" and a["owner"] == "lms" and a["status"] == "pending", (st, a))
    check(hd["Location"] == "/api/v1/sessions/" + a["id"] and hd["ETag"] == '"1"', hd)
    st, hd, b = api.session(d["id"], reservation_id="R-100", timeslot=ts)
    check(st == 200 and b["id"] == a["id"] and hd.get("Idempotent-Replayed") == "true", (st, b))
    st, hd, b = api.session(d["id"], reservation_id="R-100", timeslot=slot(3))
    problem(st, hd, b, 409, "idempotency-mismatch")
    st, _, b = api.call("GET", "/api/v1/sessions/by-reservation/R-100", role="viewer")
    check(st == 200 and b["id"] == a["id"], b)
    problem(*api.call("GET", "/api/v1/sessions/by-reservation/R-none"), 404, "not-found")
    # Idempotency-Key, scoped to the caller
    h = {"Idempotency-Key": "key-1"}
    st, _, k1 = api.session(d["id"], headers=h, timeslot=ts)
    check(st == 201, k1)
    st, _, k2 = api.session(d["id"], headers=h, timeslot=ts)
    check(st == 200 and k2["id"] == k1["id"], k2)
    problem(*api.session(d["id"], headers=h, timeslot=slot(4)), 409, "idempotency-mismatch")
    st, _, k3 = api.call("POST", "/api/v1/sessions", {"definition_id": d["id"], "timeslot": ts}, token=LEARNER2,
                         headers=h)
    check(st == 201 and k3["id"] != k1["id"] and k3["owner"] == "lms2", k3)
    # same key with a different reservation: the key is held → 409
    problem(*api.session(d["id"], headers=h, timeslot=ts, reservation_id="R-101"), 409, "idempotency-mismatch")
    # concurrent identical requests: one session, every answer names it
    body = {"definition_id": d["id"], "timeslot": ts, "reservation_id": "R-200"}
    with cf.ThreadPoolExecutor(8) as ex:
        res = list(ex.map(lambda _: api.call("POST", "/api/v1/sessions", body, role="learner-service"), range(8)))
    ids = {r[2]["id"] for r in res}
    codes = sorted(r[0] for r in res)
    check(len(ids) == 1 and codes.count(201) == 1 and codes.count(200) == 7, (codes, ids))
    st, _, lst = api.call("GET", "/api/v1/sessions?reservation=R-200")
    check(lst["total"] == 1, lst)


def test_reservation_lookup_many_sessions():
    """3,000 sessions booked with reservation ids: by-reservation finds each one, a repeated
    booking replays it, a session whose id is not derived from its reservation (written
    through the store, as another tool could) is found too, and after a restart (the map is
    rebuilt from the read models) every lookup still answers."""
    import http.client
    import random
    d = api.definition("sess-rsv-many", max_duration_minutes=600)
    c = http.client.HTTPConnection("127.0.0.1", api.lcmd.port, timeout=30)
    h = {"Authorization": "Bearer " + TOKENS["learner-service"], "Content-Type": "application/json"}

    def call(method, path, body=None):
        c.request(method, path, json.dumps(body) if body is not None else None, h)
        resp = c.getresponse()
        return resp.status, json.loads(resp.read() or b"null")

    ts = slot(5, 60)
    ids = {}
    for i in range(3000):
        st, doc = call("POST", "/api/v1/sessions", {"definition_id": d["id"], "timeslot": ts,
                                                    "reservation_id": f"R-many-{i}"})
        check(st == 201, (i, st, doc))
        ids[f"R-many-{i}"] = doc["id"]
    sample = random.Random(7).sample(sorted(ids), 300)
    for rid in sample:
        st, doc = call("GET", f"/api/v1/sessions/by-reservation/{rid}")
        check(st == 200 and doc["id"] == ids[rid] and doc["reservation_id"] == rid, (rid, st, doc))
    for rid in sample[:50]:
        st, doc = call("POST", "/api/v1/sessions", {"definition_id": d["id"], "timeslot": ts,
                                                    "reservation_id": rid})
        check(st == 200 and doc["id"] == ids[rid], (rid, st, doc))
    st, doc = call("GET", "/api/v1/sessions/by-reservation/R-many-none")
    check(st == 404, (st, doc))
    # a session whose id says nothing about its reservation
    created = {"definition_id": d["id"], "definition_name": "sess-rsv-many", "definition_version": "1.0.0",
               "owner": "lms", "reservation_id": "R-custom-1", "timeslot": ts, "boot_lead_minutes": -1,
               "lds_enabled": False, "grading_enabled": False}
    api.append("session", "ses-custom-rsv-1", 0, [("session.created", created)])
    st, doc = wait_until(lambda: (lambda x: x if x[0] == 200 else None)(
        call("GET", "/api/v1/sessions/by-reservation/R-custom-1")), timeout=5, what="custom session")
    check(doc["id"] == "ses-custom-rsv-1", doc)
    st, doc = call("POST", "/api/v1/sessions", {"definition_id": d["id"], "timeslot": ts,
                                                "reservation_id": "R-custom-1"})
    check(st == 200 and doc["id"] == "ses-custom-rsv-1", (st, doc))
    st, doc = call("POST", "/api/v1/sessions", {"definition_id": d["id"], "timeslot": slot(6, 60),
                                                "reservation_id": "R-custom-1"})
    check(st == 409 and "ses-custom-rsv-1" in doc["detail"], (st, doc))
    c.close()
    # restart: the map is rebuilt from the read models on first use
    api.lcmd.stop()
    api.lcmd.start()
    c = http.client.HTTPConnection("127.0.0.1", api.lcmd.port, timeout=30)
    for rid in sample[:100] + ["R-custom-1"]:
        st, doc = call("GET", f"/api/v1/sessions/by-reservation/{rid}")
        check(st == 200 and doc["id"] == ids.get(rid, "ses-custom-rsv-1"), (rid, st, doc))
    c.close()


def test_session_actions():
    d = api.definition("sess-act")
    st, hd, s = api.session(d["id"], timeslot=slot(2, 30))
    sid = s["id"]
    st, hd, g = api.call("GET", f"/api/v1/sessions/{sid}", role="viewer")
    check(st == 200 and hd["ETag"] == '"1"', hd)
    for k in ("status_history", "pipeline", "user_session", "grading", "score", "timeslot"):
        check(k in g, (k, g))
    # extend
    new_end = iso(now() + dt.timedelta(hours=2, minutes=50))
    problem(*api.call("POST", f"/api/v1/sessions/{sid}/extend", {"end": new_end}, role="learner-service",
                      headers={"If-Match": '"9"'}), 412, "precondition-failed")
    st, hd, e = api.call("POST", f"/api/v1/sessions/{sid}/extend", {"end": new_end}, role="learner-service",
                         headers={"If-Match": '"1"'})
    check(st == 200 and e["timeslot"]["end"] == new_end and hd["ETag"] == '"2"', (st, e))
    problem(*api.call("POST", f"/api/v1/sessions/{sid}/extend", {"end": iso(now())}, role="learner-service"),
            422, "validation", "end")
    problem(*api.call("POST", f"/api/v1/sessions/{sid}/extend", {"end": iso(now() + dt.timedelta(hours=9))},
                      role="learner-service"), 422, "validation", "end")
    problem(*api.call("POST", f"/api/v1/sessions/{sid}/extend", {}, role="learner-service"), 422, "validation", "end")
    # collect and transitions that are not allowed now
    problem(*api.call("POST", f"/api/v1/sessions/{sid}/collect", role="learner-service"), 409, "invalid-state", "status")
    problem(*api.call("POST", f"/api/v1/sessions/{sid}/transition", {"status": "scheduled"}, role="operator"), 422,
            "transition-not-allowed", "status")
    problem(*api.call("POST", f"/api/v1/sessions/{sid}/transition", {"status": "nope"}, role="operator"), 422,
            "validation", "status")
    problem(*api.call("POST", f"/api/v1/sessions/{sid}/transition", {"status": "running"}, role="operator"), 409,
            "invalid-state", "status")
    problem(*api.call("POST", f"/api/v1/sessions/{sid}/requeue", role="operator"), 409, "invalid-state", "status")
    # terminate a pending session: at once
    st, _, t = api.call("POST", f"/api/v1/sessions/{sid}/terminate", {"reason": "learner cancelled"},
                        role="learner-service")
    check(st == 200 and t["status"] == "terminated", t)
    check(t["status_history"][-1]["reason"] == "learner cancelled" and t["status_history"][-1]["by"] == "lms", t)
    st, _, t = api.call("POST", f"/api/v1/sessions/{sid}/terminate", role="learner-service")
    check(st == 200 and t["status"] == "terminated", t)
    # requeue: a new session for the same definition and owner; repeat-safe
    st, hd, q = api.call("POST", f"/api/v1/sessions/{sid}/requeue", role="operator")
    check(st == 201 and q["id"] != sid and q["definition_id"] == d["id"] and q["owner"] == "lms"
          and q["status"] == "pending", (st, q))
    st, _, q2 = api.call("POST", f"/api/v1/sessions/{sid}/requeue", role="operator")
    check(st == 200 and q2["id"] == q["id"], q2)


def test_session_operator_transitions():
    """ready → running → collecting → stopping by the operator, on a session put into `ready`
    through the store (what the scheduler and the pipeline would have done)."""
    d = api.definition("sess-ops", grading_enabled=True)
    st, _, s = api.session(d["id"], timeslot=slot(2, 60))
    sid = s["id"]
    api.append("session", sid, 1, [
        ("session.scheduled", {"from": "pending", "reason": "test", "worker_id": "wk-test"}),
        ("session.instantiating", {"from": "scheduled", "reason": "test"}),
        ("session.ready", {"from": "instantiating", "reason": None, "login_url": "https://lds/x"}),
    ])
    api.wait_status(f"/api/v1/sessions/{sid}", "ready")
    st, _, r = api.call("POST", f"/api/v1/sessions/{sid}/transition", {"status": "running", "reason": "LDS late"},
                        role="operator", headers={"If-Match": '"4"'})
    check(st == 200 and r["status"] == "running", (st, r))
    problem(*api.call("POST", f"/api/v1/sessions/{sid}/transition", {"status": "running"}, role="learner-service"),
            403, "forbidden")
    st, _, r = api.call("POST", f"/api/v1/sessions/{sid}/collect", role="learner-service")
    check(st == 200 and r["status"] == "collecting", r)
    st, _, r = api.call("POST", f"/api/v1/sessions/{sid}/collect", role="learner-service")
    check(st == 200 and r["status"] == "collecting", r)   # idempotent
    # terminate a session that holds resources: desired_status, the controller tears down.
    # The session controller may be writing to it at the same time: a 409 version-conflict
    # is the correct answer to that race, and a client retries.
    for _ in range(20):
        st, _, r = api.call("POST", f"/api/v1/sessions/{sid}/terminate", role="learner-service")
        if st != 409:
            break
        check(r["type"] == "urn:lcm:problem:version-conflict", r)
    check((st == 202 and r["desired_status"] == "terminated") or (st == 200 and r["status"] == "terminated"),
          (st, r))
    problem(*api.call("POST", f"/api/v1/sessions/{sid}/requeue", role="operator"), 409, "invalid-state")


def test_session_lists_and_pagination():
    d = api.definition("sess-page")
    made = []
    for i in range(12):
        st, _, s = api.session(d["id"], timeslot=slot(2 + i * 0.1, 30), reservation_id=f"P-{i}")
        check(st == 201, s)
        made.append(s["id"])
    seen, cursor, pages = [], None, 0
    while True:
        q = f"/api/v1/sessions?definition={d['id']}&limit=5" + (f"&cursor={cursor}" if cursor else "")
        st, _, page = api.call("GET", q, role="viewer")
        check(st == 200 and page["total"] == 12 and len(page["items"]) <= 5, page)
        seen += [x["id"] for x in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    check(pages == 3 and sorted(seen) == sorted(made) and len(set(seen)) == 12, (pages, seen))
    # stable order: the same walk gives the same sequence; created_at then id
    st, _, full = api.call("GET", f"/api/v1/sessions?definition={d['id']}&limit=500")
    check([x["id"] for x in full["items"]] == seen, "order changed between walks")
    keys = [(x["created_at"], x["id"]) for x in full["items"]]
    check(keys == sorted(keys), keys)
    # filters
    st, _, f = api.call("GET", "/api/v1/sessions?reservation=P-3")
    check([x["id"] for x in f["items"]] == [made[3]], f)
    st, _, f = api.call("GET", f"/api/v1/sessions?owner=lms&definition={d['id']}&status=pending,scheduled&limit=1")
    check(f["total"] == 12 and len(f["items"]) == 1 and f["next_cursor"], f)
    st, _, f = api.call("GET", f"/api/v1/sessions?owner=nobody&definition={d['id']}")
    check(f["total"] == 0 and f["items"] == [] and f["next_cursor"] is None, f)
    lo = iso(now() + dt.timedelta(hours=2, minutes=40))
    hi = iso(now() + dt.timedelta(hours=3, minutes=5))
    st, _, f = api.call("GET", f"/api/v1/sessions?definition={d['id']}&from={lo}&to={hi}")
    check(0 < f["total"] < 12, f)
    st, _, f = api.call("GET", "/api/v1/sessions?worker=wk-none")
    check(f["total"] == 0, f)


# ---------------------------------------------------------------- concurrency
def test_concurrent_patches():
    api.template("tpl-race")
    # same If-Match from many writers: exactly one wins, the rest get 412 or 409
    for round_ in range(3):
        st, hd, cur = api.call("GET", "/api/v1/templates/tpl-race")
        etag = hd["ETag"]
        barrier = threading.Barrier(6)

        def patch(i):
            barrier.wait()
            return api.call("PATCH", "/api/v1/templates/tpl-race", {"description": f"r{round_}w{i}"},
                            headers={"If-Match": etag})
        with cf.ThreadPoolExecutor(6) as ex:
            res = list(ex.map(patch, range(6)))
        codes = sorted(r[0] for r in res)
        check(codes.count(200) == 1 and all(c in (200, 409, 412) for c in codes), codes)
        for st, hd, d in res:
            if st != 200:
                check(d["type"] in ("urn:lcm:problem:version-conflict", "urn:lcm:problem:precondition-failed"), d)
    # no If-Match: every 200 is a real, separate revision (no lost update)
    st, _, cur = api.call("GET", "/api/v1/templates/tpl-race")
    base = cur["revision"]
    with cf.ThreadPoolExecutor(8) as ex:
        res = list(ex.map(lambda i: api.call("PATCH", "/api/v1/templates/tpl-race", {"description": f"n{i}"}),
                          range(16)))
    ok = [r for r in res if r[0] == 200]
    check(all(r[0] in (200, 409) for r in res), [r[0] for r in res])
    st, _, end = api.call("GET", "/api/v1/templates/tpl-race")
    check(end["revision"] == base + len(ok), (end["revision"], base, len(ok)))
    check(sorted(r[2]["revision"] for r in ok) == list(range(base + 1, base + len(ok) + 1)), "revisions")


def retry(*a, **kw):
    """A call that a controller's concurrent write may answer with 409 version-conflict (the
    correct answer to that race); retried the way a client would."""
    for _ in range(20):
        st, hd, d = api.call(*a, **kw)
        if not (st == 409 and isinstance(d, dict) and d.get("type") == "urn:lcm:problem:version-conflict"):
            break
    return st, hd, d


# ---------------------------------------------------------------- workers
def test_workers():
    api.template("tpl-wk")
    api.template("tpl-off", enabled=False)
    st, hd, w = api.call("POST", "/api/v1/workers", {"template": "tpl-wk", "region": "eu-west-1", "name": "w-one"},
                         role="operator")
    check(st == 201 and w["origin"] == "manual" and w["template"] == "tpl-wk" and w["name"] == "w-one"
          and w["declared"]["cpu_cores"] == 48 and hd["Location"].endswith(w["id"]), (st, w))
    wid = w["id"]
    problem(*api.call("POST", "/api/v1/workers", {"template": "nope", "region": "eu-west-1"}, role="operator"), 422,
            "unknown-reference", "template")
    problem(*api.call("POST", "/api/v1/workers", {"template": "tpl-off", "region": "eu-west-1"}, role="operator"), 409,
            "invalid-state", "template")
    problem(*api.call("POST", "/api/v1/workers", {"template": "tpl-wk"}, role="operator"), 422, "validation", "region")
    problem(*api.call("POST", "/api/v1/workers", {"template": "tpl-wk", "region": "x", "size": 2}, role="operator"),
            422, "unknown-field", "size")
    st, _, g = api.call("GET", f"/api/v1/workers/{wid}", role="viewer")
    check(st == 200 and g["id"] == wid, g)
    for k in ("declared", "allocated", "sessions", "ports", "metrics", "license", "cml"):
        check(k in g, (k, g))
    st, _, l = api.call("GET", "/api/v1/workers?template=tpl-wk&origin=manual")
    check([x["id"] for x in l["items"]] == [wid], l)
    st, _, l = api.call("GET", "/api/v1/workers?region=ap-south-1")
    check(l["total"] == 0, l)
    st, _, r = retry("POST", f"/api/v1/workers/{wid}/stop", role="operator")
    check(st == 200 and r["desired_status"] == "stopped", r)
    st, _, r = retry("POST", f"/api/v1/workers/{wid}/start", role="operator")
    check(st == 200 and r["desired_status"] == "running", r)
    st, _, r2 = retry("POST", f"/api/v1/workers/{wid}/start", role="operator")
    check(st == 200 and r2["revision"] == r["revision"], "no-op start must not write")
    problem(*retry("POST", f"/api/v1/workers/{wid}/cancel-drain", role="operator"), 409, "invalid-state")
    problem(*retry("POST", f"/api/v1/workers/{wid}/drain", {"deadline": "soon"}, role="operator"), 422,
            "validation", "deadline")
    # drain needs a running worker: put it there the way the controller would
    cur = api.call("GET", f"/api/v1/workers/{wid}")[2]
    if cur["status"] == "pending":
        api.append("worker", wid, cur["revision"], [
            ("worker.provisioning", {"from": "pending", "reason": "t"}),
            ("worker.starting", {"from": "provisioning", "reason": "t"}),
            ("worker.running", {"from": "starting", "reason": "t"})])
        api.wait_status(f"/api/v1/workers/{wid}", "running")
    dl = iso(now() + dt.timedelta(hours=1))
    st, _, r = retry("POST", f"/api/v1/workers/{wid}/drain", {"reason": "maintenance", "deadline": dl},
                        role="operator")
    check(st == 200 and r["status"] == "draining" and r["drain"]["reason"] == "maintenance", (st, r))
    st, _, r = retry("POST", f"/api/v1/workers/{wid}/cancel-drain", role="operator")
    check(st == 200 and r["status"] == "running", r)
    st, _, r = retry("POST", f"/api/v1/workers/{wid}/terminate", role="operator")
    check(st == 200 and r["desired_status"] == "terminated", r)
    problem(*retry("POST", f"/api/v1/workers/{wid}/start", role="operator"), 409, "invalid-state")
    # requests for the worker controller
    st, _, q = retry("POST", f"/api/v1/workers/{wid}/refresh", role="operator")
    check(st == 202 and q["type"] == "worker.refresh" and q["worker_id"] == wid and q["request_id"], q)
    st, _, q = api.call("POST", "/api/v1/workers/import", {"region": "eu-west-1"}, role="operator")
    check(st == 202 and q["type"] == "worker.import" and q["region"] == "eu-west-1" and q["by"] == "ops", q)
    problem(*api.call("POST", "/api/v1/workers/import", {"region": "EU WEST"}, role="operator"), 422, "validation",
            "region")
    entries = api.redis.cli("XRANGE", "lcm:requests", "-", "+")
    check("worker.import" in entries and "worker.refresh" in entries and wid in entries, entries)


# ---------------------------------------------------------------- labs
def test_labs():
    api.append("lab", "lab-t1", 0, [("lab.created", {"worker_id": "wk-x", "cml_lab_id": "c1", "title": "t",
                                                      "definition_id": "def-x", "status": "discovered"})])
    # the labs controller may act on it at once (its worker does not exist: orphaned)
    l = wait_until(lambda: (lambda r: r[2] if r[0] == 200 else None)(api.call("GET", "/api/v1/labs/lab-t1")),
                   what="lab-t1")
    st, hd, l = api.call("GET", "/api/v1/labs/lab-t1", role="viewer")
    check(st == 200 and hd["ETag"] == '"%d"' % l["revision"] and l["worker_id"] == "wk-x", l)
    st, _, ls = api.call("GET", f"/api/v1/labs?worker=wk-x&status={l['status']}")
    check([x["id"] for x in ls["items"]] == ["lab-t1"], ls)
    st, _, ls = api.call("GET", "/api/v1/labs?worker=wk-none")
    check(ls["total"] == 0, ls)
    problem(*api.call("GET", "/api/v1/labs?status=up"), 400, "invalid-query", "status")
    st, _, runs = api.call("GET", "/api/v1/labs/lab-t1/runs")
    check(st == 200 and runs["items"] == [] and runs["lab_id"] == "lab-t1", runs)
    if l["status"] not in ("defined", "stopped", "wiped"):
        problem(*api.call("POST", "/api/v1/labs/lab-t1/actions", {"action": "start"}, role="operator"), 409,
                "invalid-state")
    problem(*api.call("POST", "/api/v1/labs/lab-t1/actions", {"action": "explode"}, role="operator"), 422,
            "validation", "action")
    problem(*api.call("POST", "/api/v1/labs/lab-t1/actions", {}, role="operator"), 422, "validation", "action")
    problem(*api.call("POST", "/api/v1/labs/lab-t1/actions", {"action": "delete"}, role="viewer"), 403, "forbidden")
    problem(*api.call("POST", "/api/v1/labs/lab-t1/actions", {"action": "delete"}, role="operator",
                      headers={"If-Match": '"99"'}), 412, "precondition-failed")
    for _ in range(20):
        st, _, r = api.call("POST", "/api/v1/labs/lab-t1/actions", {"action": "delete"}, role="operator")
        if st != 409 or r["type"] != "urn:lcm:problem:version-conflict":
            break
    check(st == 202 and r["pending_action"] == "delete", (st, r))
    problem(*api.call("GET", "/api/v1/labs/nope/runs"), 404, "not-found")


def test_clean_shutdown():
    rc, err = api.close()
    check(rc == 0, err[-3000:])
    check("ERROR: AddressSanitizer" not in err and "runtime error" not in err, err[-3000:])
    check("test-admin-token" not in err and "viewer-token" not in err, "a token was logged")


if __name__ == "__main__":
    setup()
    run_tests([test_every_route_every_role, test_body_errors, test_templates_crud_etag,
               test_definitions_lifecycle, test_session_create_validation, test_session_idempotency,
               test_reservation_lookup_many_sessions,
               test_session_actions, test_session_operator_transitions, test_session_lists_and_pagination,
               test_concurrent_patches, test_workers, test_labs, test_clean_shutdown])
