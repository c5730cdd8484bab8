"""Shared set-up for the API integration tests: one Redis and one lcmd with a token per role,
helpers to call the API, and a way to put aggregates into states only controllers reach
(events appended through the store's own Redis Function, which lcmd folds from lcm:feed)."""
import datetime as dt
import hashlib
import json
import os
import re
import subprocess

from harness import BUILD_DIR, Lcmd, Redis, check, http_json, wait_until

TOKENS = {
    "admin": Lcmd.ADMIN,
    "viewer": "viewer-token-0123456789",
    "operator": "operator-token-0123456789",
    "author": "author-token-0123456789",
    "learner-service": "learner-token-0123456789",
}
SUBJECTS = {"viewer": "dash", "operator": "ops", "author": "writer", "learner-service": "lms"}
LEARNER2 = "learner2-token-0123456789"

# role -> permissions (docs/api.md, host/core/auth.c lcm_auth_role_allows)
ROLE_PERMS = {
    "admin": {"read", "book", "author", "operate", "admin"},
    "operator": {"read", "book", "operate"},
    "author": {"read", "author"},
    "learner-service": {"read", "book"},
    "viewer": {"read"},
}


def token_env():
    items = []
    for role, tok in TOKENS.items():
        if role == "admin":
            continue
        items.append(f"{role}:{SUBJECTS[role]}:{hashlib.sha256(tok.encode()).hexdigest()}")
    items.append(f"learner-service:lms2:{hashlib.sha256(LEARNER2.encode()).hexdigest()}")
    return {"LCM_TOKEN": ";".join(items), "LCM_PLUGIN_DIR": "/nonexistent-lcm-plugins"}


def iso(t):
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now():
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def slot(start_h=2.0, minutes=45):
    s = now() + dt.timedelta(hours=start_h)
    return {"start": iso(s), "end": iso(s + dt.timedelta(minutes=minutes))}


class Api:
    def __init__(self, extra_env=None):
        self.redis = Redis()
        env = token_env()
        env.update(extra_env or {})
        self.lcmd = Lcmd(self.redis.url, env=env)

    def close(self):
        rc = self.lcmd.stop()
        err = self.lcmd.proc.stderr() if self.lcmd.proc else ""
        self.redis.close()
        return rc, err

    def call(self, method, path, body=None, role="admin", token=None, headers=None, raw=None):
        tok = token if token is not None else TOKENS.get(role)
        if raw is not None:
            h = {"Content-Type": "application/json"}
            h.update(headers or {})
            return http_json(method, self.lcmd.url + path, raw, token=tok, headers=h)
        return http_json(method, self.lcmd.url + path, body, token=tok, headers=headers)

    # ---- fixtures ----
    def template(self, name, **kw):
        body = {"name": name, "instance_type": "m5zn.metal", "ami_name_pattern": "cml-*",
                "capacity": {"cpu_cores": 48, "memory_gb": 192, "storage_gb": 256, "max_nodes": 200},
                "license_type": "enterprise", "cost_per_hour": 3.96, "enabled": True, "region": "eu-west-1"}
        body.update(kw)
        st, _, doc = self.call("POST", "/api/v1/templates", body)
        check(st == 201, (st, doc))
        return doc

    def definition(self, name, version="1.0.0", activate=True, **kw):
        body = {"name": name, "version": version, "node_count": 3, "lds_enabled": False,
                "resource_requirements": {"cpu_cores": 4, "memory_gb": 8, "storage_gb": 10},
                "max_duration_minutes": 120}
        body.update(kw)
        st, _, doc = self.call("POST", "/api/v1/definitions", body, role="author")
        check(st == 201, (st, doc))
        if activate:
            st, _, doc = self.call("POST", f"/api/v1/definitions/{doc['id']}/activate", role="author")
            check(st == 200 and doc["status"] == "active", (st, doc))
        return doc

    def session(self, definition_id, role="learner-service", headers=None, **kw):
        body = {"definition_id": definition_id, "timeslot": slot()}
        body.update(kw)
        return self.call("POST", "/api/v1/sessions", body, role=role, headers=headers)

    # ---- raw appends (states only controllers reach) ----
    def append(self, kind, agg_id, expected, events):
        """events: [(type, data dict)], committed through the event store's own commit path
        (tests/api_append, built with the tree) the way a controller would."""
        argv = [os.path.join(BUILD_DIR, "tests", "api_append"), self.redis.url, kind, agg_id, str(expected)]
        for typ, data in events:
            argv += [typ, json.dumps(data)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        check(r.returncode == 0, r.stdout + r.stderr)

    def wait_status(self, path, status, timeout=5):
        return wait_until(lambda: (lambda d: d if d and d.get("status") == status else None)(
            self.call("GET", path)[2]), timeout=timeout, what=f"{path} status {status}")
