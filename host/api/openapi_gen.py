#!/usr/bin/env python3
"""Generates host/api/openapi.json (OpenAPI 3.1), the document lcmd serves at GET /openapi.json.
Edit this file, run `python3 host/api/openapi_gen.py`, commit both. The route list here must
equal lcmd's router (tests/integration/api/test_openapi_routes.py checks it)."""
import json
import os

P = "#/components/schemas/"


def ref(name):
    return {"$ref": P + name}


def nullable(t):
    return {"type": [t, "null"]}


STR, INT, NUM, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
TIME = {"type": ["string", "null"], "format": "date-time"}
STRS = {"type": "array", "items": STR}


def obj(props, required=(), extra=False):
    o = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        o["required"] = list(required)
    return o


def hist():
    return {"type": "array", "items": obj({"from": STR, "to": STR, "at": TIME, "by": STR,
                                             "reason": nullable("string")})}


capacity = obj({"cpu_cores": INT, "memory_gb": INT, "storage_gb": INT, "max_nodes": INT})
region_settings = obj({"subnet_id": nullable("string"), "security_group_ids": STRS,
                       "key_name": nullable("string"),
                       "tags": {"type": ["object", "null"], "additionalProperties": STR}})
template_in = obj({
    "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
    "description": nullable("string"), "instance_type": STR, "ami_name_pattern": nullable("string"),
    "region": nullable("string"), "capacity": capacity,
    "license_type": {"enum": ["personal", "enterprise", "evaluation"]},
    "cost_per_hour": nullable("number"), "cost_per_hour_usd": nullable("number"), "enabled": BOOL,
    "subnet_id": nullable("string"), "security_group_ids": STRS, "key_name": nullable("string"),
    "tags": {"type": ["object", "null"], "additionalProperties": STR},
    "regions": {"type": ["object", "null"], "additionalProperties": region_settings},
}, ["name", "instance_type", "capacity"])
template = {"allOf": [template_in, obj({"id": STR, "status": {"enum": ["active", "deleted"]},
                                        "created_at": TIME, "created_by": STR, "updated_at": TIME,
                                        "revision": INT}, extra=True)]}
port = obj({"name": STR, "protocol": {"enum": ["serial", "vnc", "ssh", "telnet", "tcp", "http", "https"]},
            "node_label": nullable("string"), "description": nullable("string")}, ["name"])
reqs = obj({"cpu_cores": INT, "memory_gb": INT, "storage_gb": INT, "nested_virt": BOOL,
            "cml_version_min": nullable("string"), "cml_version_max": nullable("string"),
            "node_definitions": STRS,
            "ami_requirements": {"type": "array", "description": "upstream seed alias",
                                 "items": obj({"cml_version_min": STR, "cml_version_max": STR,
                                               "node_definitions_required": STRS})}},
           ["cpu_cores", "memory_gb"])
definition_in = obj({
    "name": STR, "version": {"type": "string", "description": "semantic version, e.g. 1.0.0"},
    "form_qualified_name": nullable("string"), "description": nullable("string"),
    "topology": {"type": ["string", "null"], "description": "CML lab YAML (≤ 4 MiB)"},
    "topology_uri": nullable("string"), "topology_sha256": nullable("string"),
    "resource_requirements": reqs, "node_count": nullable("integer"),
    "license_affinity": {"type": "array", "items": {"enum": ["personal", "enterprise", "evaluation"]}},
    "port_template": {"oneOf": [{"type": "array", "items": port},
                                obj({"ports": {"type": "array", "items": port}})],
                      "description": "derived from the topology's node tags `proto:port` when absent"},
    "user_visible_devices": STRS, "lds_enabled": BOOL, "grading_enabled": BOOL,
    "grading_ruleset": nullable("string"), "max_duration_minutes": INT, "boot_lead_minutes": INT,
    "lab_reuse_enabled": BOOL, "warm_pool_depth": INT,
}, ["name", "version", "resource_requirements"])
definition = {"allOf": [definition_in, obj({
    "id": STR, "status": {"enum": ["pending_sync", "active", "inactive", "deprecated", "deleted"]},
    "status_history": hist(), "created_at": TIME, "created_by": STR, "updated_at": TIME,
    "revision": INT}, extra=True)]}
worker = obj({
    "id": STR, "name": STR, "region": STR, "template": STR, "instance_id": nullable("string"),
    "instance_type": nullable("string"), "ami_id": nullable("string"), "private_ip": nullable("string"),
    "public_ip": nullable("string"), "endpoint": nullable("string"),
    "status": {"enum": ["pending", "provisioning", "starting", "running", "draining", "stopping",
                        "stopped", "terminating", "terminated", "failed"]},
    "desired_status": {"enum": ["running", "stopped", "terminated"]},
    "origin": {"enum": ["scale_up", "manual", "discovered"]},
    "license": {"type": "object"}, "cml": {"type": "object"}, "declared": {"type": "object"},
    "allocated": {"type": "object"}, "sessions": {"type": "array"}, "ports": {"type": "object"},
    "metrics": {"type": "object"}, "last_activity_at": TIME, "drain": {"type": ["object", "null"]},
    "status_history": hist(), "created_at": TIME, "created_by": STR, "updated_at": TIME,
    "revision": INT}, extra=True)
timeslot = obj({"start": TIME, "end": TIME})
session_statuses = ["pending", "scheduled", "instantiating", "ready", "running", "collecting",
                    "grading", "stopping", "stopped", "expired", "archived", "terminated"]
session = obj({
    "id": STR, "definition_id": STR, "definition_name": STR, "definition_version": STR,
    "owner": STR, "reservation_id": nullable("string"), "timeslot": timeslot,
    "status": {"enum": session_statuses}, "desired_status": {"enum": session_statuses},
    "desired_reason": nullable("string"), "desired_by": nullable("string"),
    "boot_lead_minutes": INT, "lds_enabled": BOOL, "grading_enabled": BOOL,
    "worker_id": nullable("string"), "lab_record_id": nullable("string"), "cml_lab_id": nullable("string"),
    "ports": {"type": "object", "additionalProperties": INT},
    "pipeline": {"type": "object", "additionalProperties": obj({
        "state": STR, "attempts": INT, "started_at": TIME, "ended_at": TIME, "error": nullable("string")})},
    "user_session": obj({"lds_session_id": nullable("string"), "login_url": nullable("string"),
                         "devices": {"type": ["array", "null"]}, "status": nullable("string")}),
    "grading": obj({"grading_session_id": nullable("string"), "status": nullable("string")}),
    "score": {"oneOf": [{"type": "null"}, obj({
        "score": NUM, "max_score": NUM, "cut_score": NUM, "passed": nullable("boolean"),
        "sections": {"type": ["array", "null"]}, "submitted_at": TIME})]},
    "status_history": hist(), "created_at": TIME, "created_by": STR, "updated_at": TIME,
    "revision": INT}, extra=True)
session_create = obj({"definition_id": STR, "timeslot": timeslot,
                      "reservation_id": {"type": ["string", "null"], "maxLength": 128},
                      "owner": nullable("string")}, ["definition_id"])
lab_statuses = ["discovered", "importing", "defined", "starting", "queued", "booted", "paused",
                "stopping", "stopped", "wiping", "wiped", "deleting", "deleted", "error", "orphaned",
                "archived"]
run = obj({"session_id": STR, "started_at": TIME, "ended_at": TIME})
lab = obj({"id": STR, "worker_id": STR, "cml_lab_id": nullable("string"), "title": nullable("string"),
           "definition_id": nullable("string"), "status": {"enum": lab_statuses},
           "active_session_id": nullable("string"),
           "pending_action": {"enum": ["start", "stop", "wipe", "delete", None]},
           "ports": {"type": "object"}, "runs": {"type": "array", "items": run},
           "status_history": hist(), "created_at": TIME, "created_by": STR, "updated_at": TIME,
           "revision": INT}, extra=True)
problem = obj({"type": {"type": "string", "description": "urn:lcm:problem:<slug>"}, "title": STR,
               "status": INT, "detail": STR, "field": {"type": "string", "description":
                                                       "offending input field (JSON path) for validation errors"},
               "instance": STR, "request_id": STR}, ["type", "title", "status"], extra=True)
accepted = obj({"request_id": STR, "type": STR, "by": STR, "requested_at": TIME,
                "worker_id": STR, "region": STR})


def page(item):
    return obj({"items": {"type": "array", "items": ref(item)},
                "next_cursor": {"type": ["string", "null"], "description": "pass as ?cursor= for the next page"},
                "total": {"type": "integer", "description": "items matching the filters"}})


schemas = {
    "Problem": problem, "TemplateInput": template_in, "Template": template,
    "DefinitionInput": definition_in, "Definition": definition, "Worker": worker,
    "WorkerCreate": obj({"template": STR, "region": STR, "name": nullable("string")}, ["template", "region"]),
    "WorkerDrain": obj({"reason": nullable("string"), "deadline": TIME}),
    "Reason": obj({"reason": nullable("string")}),
    "Session": session, "SessionCreate": session_create,
    "SessionExtend": obj({"end": {"type": "string", "format": "date-time"}}, ["end"]),
    "SessionTransition": obj({"status": {"enum": ["running", "collecting", "stopping", "archived", "terminated"]},
                              "reason": nullable("string")}, ["status"]),
    "SessionRequeue": obj({"timeslot": timeslot}),
    "Lab": lab, "LabAction": obj({"action": {"enum": ["start", "stop", "wipe", "delete"]}}, ["action"]),
    "Accepted": accepted,
    "TemplatePage": page("Template"), "DefinitionPage": page("Definition"),
    "WorkerPage": page("Worker"), "SessionPage": page("Session"), "LabPage": page("Lab"),
}

ERR = {
    "400": "malformed JSON, bad query parameter or cursor (urn:lcm:problem:malformed-json, invalid-query, invalid-cursor, invalid-header)",
    "401": "no or invalid bearer token (unauthenticated)",
    "403": "the token's role lacks the route's permission (forbidden)",
    "404": "no such aggregate (not-found)",
    "409": "not allowed in the current state (invalid-state), concurrent writer (version-conflict), duplicate, already-exists, idempotency-mismatch, exhausted",
    "412": "If-Match does not match the current ETag (precondition-failed)",
    "413": "body larger than http_max_body_bytes",
    "415": "body is not application/json (unsupported-media-type)",
    "422": "validation, unknown-field, unknown-reference, transition-not-allowed; `field` names the input",
    "503": "store loading or Redis unreachable (store-unavailable), shutting down",
}


def errors(*codes):
    return {c: {"description": ERR[c], "content": {"application/problem+json": {"schema": ref("Problem")}}}
            for c in codes}


def ok(code, schema, desc="OK", etag=False, location=False):
    r = {"description": desc}
    if schema:
        r["content"] = {"application/json": {"schema": ref(schema) if isinstance(schema, str) else schema}}
    h = {}
    if etag:
        h["ETag"] = {"description": "the aggregate's revision, quoted", "schema": STR}
    if location:
        h["Location"] = {"description": "URL of the created resource", "schema": STR}
    if h:
        r["headers"] = h
    return {code: r}


def param(name, where="path", desc=None, schema=STR):
    p = {"name": name, "in": where, "required": where == "path", "schema": schema}
    if desc:
        p["description"] = desc
    return p


IF_MATCH = {"name": "If-Match", "in": "header", "required": False, "schema": STR,
            "description": "ETag from a GET; the change is refused with 412 when the aggregate changed"}
LIMIT = param("limit", "query", "page size, 1-500 (default 50)", {"type": "integer", "minimum": 1, "maximum": 500})
CURSOR = param("cursor", "query", "opaque cursor from next_cursor")


def body(schema, required=True, media="application/json"):
    return {"required": required, "content": {media: {"schema": ref(schema)}}}


def op(summary, perm, responses, params=(), req=None, tags=None, desc=None):
    o = {"summary": summary, "responses": responses}
    if tags:
        o["tags"] = tags
    if desc:
        o["description"] = desc
    if params:
        o["parameters"] = list(params)
    if req:
        o["requestBody"] = req
    if perm is None:
        o["security"] = []
    else:
        o["x-lcm-permission"] = perm
    return o


paths = {}


def add(method, path, o):
    paths.setdefault(path, {})[method.lower()] = o


R = ("401", "403")
# ---- operations (lead) ----
add("GET", "/healthz", op("Liveness", None, ok("200", {"type": "object"}), tags=["operations"]))
add("GET", "/readyz", op("Readiness (Redis reachable, read models loaded)", None,
                         {**ok("200", {"type": "object"}), "503": {"description": "not ready"}}, tags=["operations"]))
add("GET", "/metrics", op("Prometheus metrics (open unless metrics_open=false; then read)", None,
                          {"200": {"description": "text/plain; version=0.0.4",
                                   "content": {"text/plain": {"schema": STR}}}}, tags=["operations"]))
add("GET", "/openapi.json", op("This document", None, ok("200", {"type": "object"}), tags=["operations"]))
add("GET", "/api/v1/routes", op("The router's table (method, path, permission)", "read",
                                {**ok("200", {"type": "object"}), **errors(*R)}, tags=["operations"]))
add("GET", "/api/v1/plugins", op("Loaded and refused plugins", "read", {**ok("200", {"type": "object"}), **errors(*R)},
                                 tags=["plugins"]))
add("GET", "/api/v1/policies", op("Policy status", "read", {**ok("200", {"type": "object"}), **errors(*R)},
                                  tags=["policies"]))
add("POST", "/api/v1/policies/reload", op("Reload the Lua policies", "operate",
                                          {**ok("200", {"type": "object"}), **errors(*R),
                                           "422": {"description": "a policy was refused; the last good one keeps serving",
                                                           "content": {"application/problem+json": {"schema": ref("Problem")}}}},
                                          tags=["policies"]))
# ---- events (apievents) ----
add("GET", "/api/v1/events", op("Server-sent events: every domain event from lcm:feed", "read", {
    "200": {"description": "text/event-stream; resume with Last-Event-ID",
            "content": {"text/event-stream": {"schema": STR}}}, **errors(*R, "503")},
    params=[param("kind", "query"), param("id", "query"), param("type", "query"),
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": STR}], tags=["events"]))
add("POST", "/api/v1/cloudevents", op("CloudEvents ingestion (structured, binary, batch)", "book", {
    "202": {"description": "accepted (recorded before acknowledged; duplicates ignored)"},
    "200": {"description": "accepted"}, **errors("400", *R, "413", "415", "422", "503")},
    req={"required": True, "content": {m: {"schema": {"type": ["object", "array"]}} for m in
                                       ("application/cloudevents+json", "application/cloudevents-batch+json",
                                        "application/json")}}, tags=["events"]))

# ---- scheduler (host/ctl/sched_api.c) ----
add("GET", "/api/v1/scheduler", op("Scheduler and autoscaler status (leader, queue, last cycle, rejections, decisions)", "read",
                                   {**ok("200", {"type": "object", "properties": {"scheduler": {"type": "object"},
                                                                                  "autoscaler": {"type": "object"}}}),
                                    **errors(*R, "503")}, [param("limit", "query", "decision log entries", INT)],
                                   tags=["scheduler"]))
add("POST", "/api/v1/scheduler/preview", op(
    "Dry-run placement: the worker a session would get, ranked candidates with scores, each rejected worker's reason",
    "read", {**ok("200", {"type": "object"}), **errors("400", *R, "404", "422", "503")},
    req={"required": True, "content": {"application/json": {"schema": obj(
        {"session_id": STR, "definition_id": STR}, extra=False)}}}, tags=["scheduler"]))
add("GET", "/api/v1/availability", op(
    "Sessions of a definition still bookable in a window (current fleet plus what the autoscaler may add), and why not",
    "read", {**ok("200", {"type": "object", "properties": {
        "definition_id": STR, "start": STR, "end": STR, "available": INT, "fits_now": INT,
        "why": {"type": "array", "items": STR}, "rejections": {"type": "object"}}}), **errors(*R, "404", "422")},
    [param("definition_id", "query", schema=STR), param("start", "query", "RFC 3339"),
     param("end", "query", "RFC 3339")], tags=["scheduler"]))

# ---- templates ----
T = ["templates"]
add("GET", "/api/v1/templates", op("List worker templates", "read", {**ok("200", "TemplatePage"), **errors("400", *R, "503")},
                                   [LIMIT, CURSOR, param("region", "query"), param("enabled", "query", schema=BOOL),
                                    param("include_deleted", "query", schema=BOOL)], tags=T))
add("POST", "/api/v1/templates", op("Create a worker template", "admin",
                                    {**ok("201", "Template", "created", True, True),
                                     **errors("400", *R, "409", "413", "415", "422", "503")}, req=body("TemplateInput"), tags=T))
NAME = param("name")
add("GET", "/api/v1/templates/{name}", op("Get a worker template", "read", {**ok("200", "Template", etag=True), **errors(*R, "404")},
                                          [NAME], tags=T))
add("PATCH", "/api/v1/templates/{name}", op("Update a template (JSON merge patch over its spec)", "admin",
                                            {**ok("200", "Template", etag=True), **errors("400", *R, "404", "409", "412", "415", "422", "503")},
                                            [NAME, IF_MATCH], body("TemplateInput", media="application/merge-patch+json"), tags=T))
add("DELETE", "/api/v1/templates/{name}", op("Delete a template (soft)", "admin",
                                             {"204": {"description": "deleted"}, **errors(*R, "404", "409", "412", "503")},
                                             [NAME, IF_MATCH, param("reason", "query")], tags=T))
# ---- definitions ----
D = ["definitions"]
ID = param("id")
add("GET", "/api/v1/definitions", op("List/search definitions", "read", {**ok("200", "DefinitionPage"), **errors("400", *R, "503")},
                                     [LIMIT, CURSOR, param("status", "query", "comma-separated statuses"),
                                      param("name", "query"), param("form_qualified_name", "query"),
                                      param("q", "query", "case-insensitive substring of name, FQN, description or id"),
                                      param("include_deleted", "query", schema=BOOL)], tags=D))
add("POST", "/api/v1/definitions", op("Create a definition (pending_sync)", "author",
                                      {**ok("201", "Definition", "created", True, True),
                                       **errors("400", *R, "409", "413", "415", "422", "503")}, req=body("DefinitionInput"), tags=D))
add("GET", "/api/v1/definitions/{id}", op("Get a definition", "read", {**ok("200", "Definition", etag=True), **errors(*R, "404")}, [ID], tags=D))
add("PATCH", "/api/v1/definitions/{id}", op(
    "Update a definition (merge patch); an active or deprecated one gets a new version (201, new id)", "author",
    {**ok("200", "Definition", "updated in place (pending_sync/inactive)", True),
     **ok("201", "Definition", "new version created", True, True),
     **errors("400", *R, "404", "409", "412", "415", "422", "503")},
    [ID, IF_MATCH], body("DefinitionInput", media="application/merge-patch+json"), tags=D))
add("DELETE", "/api/v1/definitions/{id}", op("Delete a definition (soft)", "author",
                                             {"204": {"description": "deleted"}, **errors(*R, "404", "409", "412", "503")},
                                             [ID, IF_MATCH, param("reason", "query")], tags=D))
add("POST", "/api/v1/definitions/{id}/activate", op(
    "Activate (deprecates older active versions; asks the delivery plugin to refresh LDS content)", "author",
    {**ok("200", "Definition", etag=True), **errors("400", *R, "404", "409", "412", "422", "503")},
    [ID, IF_MATCH], body("Reason", False), tags=D))
add("POST", "/api/v1/definitions/{id}/deactivate", op("Deactivate", "author",
                                                      {**ok("200", "Definition", etag=True), **errors("400", *R, "404", "409", "412", "422", "503")},
                                                      [ID, IF_MATCH], body("Reason", False), tags=D))
add("GET", "/api/v1/definitions/{id}/versions", op("Every version of this definition's name, highest first", "read",
                                                   {**ok("200", {"type": "object", "properties": {
                                                       "name": STR, "items": {"type": "array", "items": ref("Definition")}}}),
                                                    **errors(*R, "404")}, [ID, param("include_deleted", "query", schema=BOOL)], tags=D))
# ---- workers ----
W = ["workers"]
add("GET", "/api/v1/workers", op("List workers", "read", {**ok("200", "WorkerPage"), **errors("400", *R, "503")},
                                 [LIMIT, CURSOR, param("status", "query", "comma-separated statuses"),
                                  param("region", "query"), param("template", "query"), param("origin", "query")], tags=W))
add("POST", "/api/v1/workers", op("Create a worker from a template (origin manual)", "operate",
                                  {**ok("201", "Worker", "created", True, True), **errors("400", *R, "409", "415", "422", "503")},
                                  req=body("WorkerCreate"), tags=W))
add("POST", "/api/v1/workers/import", op("Ask the worker controller to discover instances launched outside LCM", "operate",
                                         {**ok("202", "Accepted", "recorded on lcm:requests"), **errors("400", *R, "415", "422", "503")},
                                         req={"required": True, "content": {"application/json": {"schema": obj({"region": STR}, ["region"])}}}, tags=W))
add("GET", "/api/v1/workers/{id}", op("Get a worker (capacity, sessions, ports, metrics, licence, CML)", "read",
                                      {**ok("200", "Worker", etag=True), **errors(*R, "404")}, [ID], tags=W))
for act, what in (("start", "desired_status running"), ("stop", "desired_status stopped"),
                  ("terminate", "desired_status terminated"), ("cancel-drain", "draining → running")):
    add("POST", "/api/v1/workers/{id}/" + act, op("Set " + what, "operate",
                                                   {**ok("200", "Worker", etag=True), **errors("400", *R, "404", "409", "412", "422", "503")},
                                                   [ID, IF_MATCH], body("Reason", False), tags=W))
add("POST", "/api/v1/workers/{id}/drain", op("Drain gracefully (no new placements; running sessions finish)", "operate",
                                             {**ok("200", "Worker", etag=True), **errors("400", *R, "404", "409", "412", "422", "503")},
                                             [ID, IF_MATCH], body("WorkerDrain", False), tags=W))
add("POST", "/api/v1/workers/{id}/refresh", op("Ask the worker controller to observe the worker now", "operate",
                                               {**ok("202", "Accepted", "recorded on lcm:requests"), **errors("400", *R, "404", "503")},
                                               [ID], body("Reason", False), tags=W))
# ---- sessions ----
S = ["sessions"]
add("GET", "/api/v1/sessions", op("List sessions", "read", {**ok("200", "SessionPage"), **errors("400", *R, "503")},
                                  [LIMIT, CURSOR, param("status", "query", "comma-separated statuses"),
                                   param("worker", "query"), param("definition", "query"), param("owner", "query"),
                                   param("reservation", "query"),
                                   param("from", "query", "RFC 3339; timeslot overlaps [from, to)"),
                                   param("to", "query", "RFC 3339")], tags=S))
add("POST", "/api/v1/sessions", op("Book a session (idempotent by reservation_id or Idempotency-Key)", "book", {
    **ok("201", "Session", "created", True, True),
    **ok("200", "Session", "the same request was made before: the existing session (Idempotent-Replayed: true)", True, True),
    **errors("400", *R, "409", "413", "415", "422", "503")},
    [{"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 128}}],
    body("SessionCreate"), tags=S))
add("GET", "/api/v1/sessions/{id}", op("Get a session (status history, pipeline, user session, grading, score)", "read",
                                       {**ok("200", "Session", etag=True), **errors(*R, "404")}, [ID], tags=S))
add("GET", "/api/v1/sessions/by-reservation/{reservation_id}", op("Find the session of a reservation", "read",
                                                                  {**ok("200", "Session", etag=True), **errors(*R, "404")},
                                                                  [param("reservation_id")], tags=S))
add("POST", "/api/v1/sessions/{id}/terminate", op(
    "Terminate: a pending session at once (200); otherwise desired_status terminated and the controller tears down (202)",
    "book", {**ok("200", "Session", etag=True), **ok("202", "Session", "teardown requested", True),
             **errors("400", *R, "404", "409", "412", "422", "503")}, [ID, IF_MATCH], body("Reason", False), tags=S))
add("POST", "/api/v1/sessions/{id}/extend", op("Move the end of the timeslot later", "book",
                                               {**ok("200", "Session", etag=True), **errors("400", *R, "404", "409", "412", "422", "503")},
                                               [ID, IF_MATCH], body("SessionExtend"), tags=S))
add("POST", "/api/v1/sessions/{id}/collect", op("Start collection and grading (running → collecting)", "book",
                                                {**ok("200", "Session", etag=True), **errors("400", *R, "404", "409", "412", "422", "503")},
                                                [ID, IF_MATCH], body("Reason", False), tags=S))
add("POST", "/api/v1/sessions/{id}/transition", op("Operator transition (running, collecting, stopping, archived, terminated)",
                                                   "operate", {**ok("200", "Session", etag=True), **ok("202", "Session", "teardown requested", True),
                                                               **errors("400", *R, "404", "409", "412", "422", "503")},
                                                   [ID, IF_MATCH], body("SessionTransition"), tags=S))
add("POST", "/api/v1/sessions/{id}/requeue", op(
    "Book again a session that expired or was terminated before it was ever ready (new session; repeat-safe)", "operate",
    {**ok("201", "Session", "the new session", True, True), **ok("200", "Session", "already requeued: the same new session", True),
     **errors("400", *R, "404", "409", "412", "422", "503")}, [ID, IF_MATCH], body("SessionRequeue", False), tags=S))
# ---- labs ----
L = ["labs"]
add("GET", "/api/v1/labs", op("List lab records", "read", {**ok("200", "LabPage"), **errors("400", *R, "503")},
                              [LIMIT, CURSOR, param("status", "query", "comma-separated statuses"), param("worker", "query"),
                               param("definition", "query"), param("session", "query")], tags=L))
add("GET", "/api/v1/labs/{id}", op("Get a lab record", "read", {**ok("200", "Lab", etag=True), **errors(*R, "404")}, [ID], tags=L))
add("GET", "/api/v1/labs/{id}/runs", op("The lab's runs (sessions it served, newest 16)", "read",
                                        {**ok("200", {"type": "object", "properties": {"lab_id": STR, "items": {"type": "array", "items": run}}}),
                                         **errors(*R, "404")}, [ID], tags=L))
add("POST", "/api/v1/labs/{id}/actions", op("Request an action (recorded as pending_action for the labs controller)", "operate",
                                            {**ok("202", "Lab", "recorded", True), **errors("400", *R, "404", "409", "412", "415", "422", "503")},
                                            [ID, IF_MATCH], body("LabAction"), tags=L))

doc = {
    "openapi": "3.1.0",
    "info": {"title": "LCM — Lablet Cloud Manager API", "version": "1.0.0",
             "description": "Resources of lcmd. Errors are application/problem+json (RFC 9457) with type "
                            "urn:lcm:problem:<slug>. Permissions per route are in x-lcm-permission; the role "
                            "table is in docs/api.md."},
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": paths,
    "components": {"schemas": schemas,
                   "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                  "description": "API token or OIDC JWT (RS256)"}}},
}

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {out}: {sum(len(v) for v in paths.values())} operations")
