#!/usr/bin/env python3
"""Integration tests of cml-sim, the CML 2.9 simulator (tests/sims/cml-sim).

Each case starts its own cml-sim on a free loopback port, drives it over HTTP, and checks every
CML API response against the OpenAPI spec (status code declared for the operation, body valid
against the response schema). At the end the simulator gets SIGTERM and must exit 0 without any
AddressSanitizer/LeakSanitizer report.

usage: cml_sim_test.py --sim PATH --spec cml_v2.9_openapi.json --samples DIR CASE
"""
import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from schema_check import Spec  # noqa: E402

USER, PASSWORD = "admin", "admin-sim"


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


class Response:
    def __init__(self, status, body, headers, elapsed):
        self.status, self.raw, self.headers, self.elapsed = status, body, headers, elapsed
        self.json = None
        if body:
            try:
                self.json = json.loads(body)
            except ValueError:
                pass


class Sim:
    """A running cml-sim and a small HTTP client that validates CML responses against the spec."""

    def __init__(self, args, *extra):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="cml-sim-test-")
        self.port_file = os.path.join(self.tmp, "port")
        self.stderr_path = os.path.join(self.tmp, "stderr")
        self.stderr = open(self.stderr_path, "w")
        cmd = [args.sim, "--listen", "127.0.0.1:0", "--port-file", self.port_file, *extra]
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        deadline = time.time() + 10
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise Failure(f"cml-sim did not start: {open(self.stderr_path).read()}")
            time.sleep(0.02)
        self.port = int(open(self.port_file).read())
        self.tokens = {}
        self.checked = 0

    def stop(self):
        """SIGTERM; must exit 0 and be sanitizer clean."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure("cml-sim did not exit within 15 s of SIGTERM")
        self.stderr.close()
        err = open(self.stderr_path).read()
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            check(marker not in err, f"sanitizer report in cml-sim stderr:\n{err[-4000:]}")
        check(self.proc.returncode == 0, f"cml-sim exit status {self.proc.returncode}\n{err[-2000:]}")

    # ---- raw HTTP ----
    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            else:
                data = body if isinstance(body, bytes) else body.encode()
        t0 = time.monotonic()
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            raw = r.read()
            return Response(r.status, raw, dict(r.getheaders()), time.monotonic() - t0)
        finally:
            conn.close()

    def admin(self, method, path, body=None, expect=None):
        r = self.request(method, "/_sim" + path, body)
        if expect is not None:
            check(r.status == expect, f"admin {method} {path}: {r.status} {r.raw[:300]!r}, want {expect}")
        return r

    # ---- CML API with schema validation ----
    def api(self, ctrl, method, path, body=None, token=True, expect=None, headers=None, timeout=10):
        """Calls /<ctrl>/api/v0<path>; validates the response against the spec operation."""
        hdrs = dict(headers or {})
        if token is True:
            hdrs["Authorization"] = "Bearer " + self.token(ctrl)
        elif isinstance(token, str):
            hdrs["Authorization"] = "Bearer " + token
        prefix = f"/{ctrl}/api/v0" if ctrl else "/api/v0"
        r = self.request(method, prefix + path, body, hdrs, timeout=timeout)
        self.validate(method, path, r)
        if expect is not None:
            check(r.status == expect,
                  f"{method} {path} on {ctrl}: status {r.status} {r.raw[:300]!r}, want {expect}")
        return r

    def validate(self, method, path, r):
        spec = self.args.spec_obj
        tmpl, op = spec.operation(method, path)
        check(op is not None, f"{method} {path}: not an operation of the spec")
        declared, schema = spec.response_schema(op, r.status)
        check(declared or r.status >= 400,
              f"{method} {tmpl}: success status {r.status} is not declared by the spec")
        if r.status == 204:
            check(r.raw == b"", f"{method} {tmpl}: 204 with a body {r.raw[:100]!r}")
            self.checked += 1
            return
        if schema is None:
            check(r.status >= 400, f"{method} {tmpl}: status {r.status} has no schema")
            schema = {"$ref": "#/components/schemas/Error"}
        check(r.headers.get("Content-Type", "").startswith("application/json"),
              f"{method} {tmpl}: Content-Type {r.headers.get('Content-Type')}")
        check(r.json is not None or r.raw == b"null", f"{method} {tmpl}: body is not JSON: {r.raw[:200]!r}")
        errors = spec.validate(r.json, schema)
        check(not errors, f"{method} {tmpl} -> {r.status}: schema errors:\n  " + "\n  ".join(errors[:20]))
        if r.status >= 400:
            check(r.json.get("code") == r.status, f"{method} {tmpl}: error code {r.json} != {r.status}")
        self.checked += 1

    def authenticate(self, ctrl, user=USER, password=PASSWORD, expect=200):
        r = self.api(ctrl, "POST", "/authenticate", {"username": user, "password": password},
                     token=False, expect=expect)
        if r.status == 200:
            self.tokens[ctrl] = r.json
        return r

    def token(self, ctrl):
        if ctrl not in self.tokens:
            self.authenticate(ctrl)
        return self.tokens[ctrl]

    # ---- helpers ----
    def import_lab(self, ctrl, topology, title=None, expect=200):
        q = "?title=" + urllib.parse.quote(title) if title else ""
        r = self.api(ctrl, "POST", "/import" + q, topology, expect=expect,
                     headers={"Content-Type": "application/x-yaml"})
        return r.json["id"] if r.status == 200 else r

    def lab(self, ctrl, lab_id):
        return self.api(ctrl, "GET", f"/labs/{lab_id}", expect=200).json

    def wait_state(self, ctrl, lab_id, state, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.lab(ctrl, lab_id)["state"] == state:
                return
            time.sleep(0.03)
        raise Failure(f"lab {lab_id} on {ctrl} did not reach {state}: {self.lab(ctrl, lab_id)['state']}")

    def wait_converged(self, ctrl, lab_id, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api(ctrl, "GET", f"/labs/{lab_id}/check_if_converged", expect=200).json is True:
                return
            time.sleep(0.03)
        raise Failure(f"lab {lab_id} on {ctrl} did not converge")

    def nodes(self, ctrl, lab_id, query="?data=true"):
        return self.api(ctrl, "GET", f"/labs/{lab_id}/nodes{query}", expect=200).json


def topology(n_nodes, node_definition="iosv", extra=None, title="generated"):
    """A small YAML topology with n nodes (plus `extra` nodes as (label, definition))."""
    lines = ["lab:", f"  title: {title}", "  version: 0.3.0", "  description: ''", "nodes:"]
    nodes = [(f"r{i}", node_definition) for i in range(n_nodes)] + list(extra or [])
    for i, (label, definition) in enumerate(nodes):
        lines += [f"  - id: n{i}", f"    label: {label}", f"    node_definition: {definition}",
                  f"    x: {i * 10}", "    y: 0", "    tags:", f"      - serial:{4000 + i}"]
    lines += ["links: []", ""]
    return "\n".join(lines)


def read_sample(args, name):
    with open(os.path.join(args.samples, name)) as f:
        return f.read()


# =============================================================================== cases

def case_flow(args):
    """Import -> start -> converged -> nodes/tags -> extract -> stop -> wipe -> delete."""
    sim = Sim(args, "--boot-ms", "300", "--stop-ms", "150", "--wipe-ms", "100", "--import-ms", "50")
    try:
        w = "worker-1"
        info = sim.api(w, "GET", "/system_information", token=False, expect=200).json
        check(info["version"] == "2.9.0" and info["ready"] is True, f"system_information {info}")
        tok = sim.authenticate(w).json
        check(isinstance(tok, str) and tok.count(".") == 2, f"token {tok!r}")

        check(sim.api(w, "GET", "/labs", expect=200).json == [], "fresh controller has labs")
        lab_id = sim.import_lab(w, read_sample(args, "sample_cml_lab.yaml"), title="flow lab")
        check(sim.api(w, "GET", "/labs", expect=200).json == [lab_id], "lab list after import")
        lab = sim.lab(w, lab_id)
        check(lab["lab_title"] == "flow lab" and lab["state"] == "DEFINED_ON_CORE", f"lab {lab}")
        check(lab["node_count"] == 2 and lab["link_count"] == 1, f"counts {lab}")
        check(sim.api(w, "GET", f"/labs/{lab_id}/state", expect=200).json == "DEFINED_ON_CORE", "state")

        ids = sim.nodes(w, lab_id, "")
        check(len(ids) == 2 and all(isinstance(i, str) for i in ids), f"node ids {ids}")
        nodes = {n["label"]: n for n in sim.nodes(w, lab_id)}
        check(set(nodes) == {"vmanage-mock", "ubuntu-desktop"}, f"labels {list(nodes)}")
        check(nodes["vmanage-mock"]["tags"] == ["serial:5041"], f"tags {nodes['vmanage-mock']}")
        check(nodes["ubuntu-desktop"]["tags"] == ["serial:5042", "vnc:5044"], "desktop tags")
        check(nodes["ubuntu-desktop"]["node_definition"] == "ubuntu-desktop-24-04-v2", "definition")
        check(all(n["state"] == "DEFINED_ON_CORE" for n in nodes.values()), "initial node states")
        cfg = nodes["ubuntu-desktop"]["configuration"]
        check(isinstance(cfg, list) and cfg[0]["name"] == "user-data"
              and cfg[0]["content"].startswith("#cloud-config\n"), f"configuration {str(cfg)[:200]}")
        check(cfg[1]["content"].endswith("dhcp4: true"), "block scalar |- keeps no trailing newline")
        sim.nodes(w, lab_id, "?data=true&operational=true&exclude_configurations=true")

        # converged is false before start; convergence takes about boot-ms
        check(sim.api(w, "GET", f"/labs/{lab_id}/check_if_converged", expect=200).json is False, "converged early")
        t0 = time.monotonic()
        sim.api(w, "PUT", f"/labs/{lab_id}/start", expect=204)
        check(sim.lab(w, lab_id)["state"] == "STARTED", "state after start")
        states = {n["state"] for n in sim.nodes(w, lab_id)}
        check(states <= {"QUEUED", "STARTED"}, f"node states while booting {states}")
        sim.api(w, "PUT", f"/labs/{lab_id}/start", expect=204)  # idempotent
        sim.wait_converged(w, lab_id)
        took = time.monotonic() - t0
        check(0.25 <= took < 3, f"boot took {took:.3f}s with --boot-ms 300")
        check({n["state"] for n in sim.nodes(w, lab_id)} == {"BOOTED"}, "nodes booted")

        # tags: a PATCH replaces the whole list
        nid = nodes["vmanage-mock"]["id"]
        r = sim.api(w, "PATCH", f"/labs/{lab_id}/nodes/{nid}", {"tags": ["serial:2000", "keep:me"]}, expect=200)
        check(r.json == nid, f"patch returns the node id: {r.json}")
        node = sim.api(w, "GET", f"/labs/{lab_id}/nodes/{nid}", expect=200).json
        check(node["tags"] == ["serial:2000", "keep:me"], f"tags after patch {node['tags']}")
        check(node["state"] == "BOOTED" and node["boot_progress"] == "Booted", "node get")
        sim.api(w, "PATCH", f"/labs/{lab_id}/nodes/{nid}", {"tags": "serial:1"}, expect=422)
        sim.api(w, "PATCH", f"/labs/{lab_id}/nodes/{nid}", {"bogus": 1}, expect=422)
        sim.api(w, "PATCH", f"/labs/{lab_id}/nodes/{nid}", {"configuration": "x"}, expect=400)
        sim.api(w, "PATCH", f"/labs/{lab_id}/nodes/00000000-0000-4000-8000-000000000000", {"tags": []}, expect=404)
        sim.api(w, "GET", f"/labs/{lab_id}/nodes/00000000-0000-4000-8000-000000000000", expect=400)

        ex = sim.api(w, "PUT", f"/labs/{lab_id}/nodes/{nid}/extract_configuration", expect=200).json
        check("extracted by cml-sim" in ex["configuration"], f"extract {ex}")
        node = sim.api(w, "GET", f"/labs/{lab_id}/nodes/{nid}", expect=200).json
        check("extracted by cml-sim" in node["configuration"][0]["content"], "extracted config stored")

        # stats, health, licensing, telemetry reflect the running lab
        stats = sim.api(w, "GET", "/system_stats", expect=200).json
        dom = next(iter(stats["computes"].values()))["stats"]["dominfo"]
        check(dom["running_nodes"] == 2 and dom["total_nodes"] == 2, f"dominfo {dom}")
        check(dom["allocated_memory"] > 0 and stats["all"]["cpu"]["percent"] > 2.0, f"stats {stats['all']}")
        health = sim.api(w, "GET", "/system_health", expect=200).json
        check(health["valid"] is True and health["is_licensed"] is True, f"health {health}")
        lic = sim.api(w, "GET", "/licensing", expect=200).json
        check(lic["features"][0]["in_use"] == 2 and lic["product_license"]["is_enterprise"], f"licensing {lic}")
        cats = [e["category"] for e in sim.api(w, "GET", "/telemetry/events", expect=200).json]
        check(cats[:3] == ["import_lab", "start_lab", "boot_node"], f"telemetry {cats}")

        # wipe/delete refused while running
        sim.api(w, "PUT", f"/labs/{lab_id}/wipe", expect=400)
        sim.api(w, "DELETE", f"/labs/{lab_id}", expect=400)

        sim.api(w, "PUT", f"/labs/{lab_id}/stop", expect=204)
        sim.wait_state(w, lab_id, "STOPPED")
        check(sim.api(w, "GET", f"/labs/{lab_id}/check_if_converged", expect=200).json is False, "converged after stop")
        check({n["state"] for n in sim.nodes(w, lab_id)} == {"STOPPED"}, "nodes stopped")
        sim.api(w, "PUT", f"/labs/{lab_id}/nodes/{nid}/extract_configuration", expect=400)
        sim.api(w, "PUT", f"/labs/{lab_id}/stop", expect=204)  # idempotent
        sim.api(w, "PUT", f"/labs/{lab_id}/wipe", expect=204)
        sim.wait_state(w, lab_id, "DEFINED_ON_CORE")
        node = sim.api(w, "GET", f"/labs/{lab_id}/nodes/{nid}", expect=200).json
        check(node["tags"] == ["serial:2000", "keep:me"], "tags survive stop/wipe (reuse)")

        # reuse: a wiped lab starts again
        sim.api(w, "PUT", f"/labs/{lab_id}/start", expect=204)
        sim.wait_converged(w, lab_id)
        sim.api(w, "PUT", f"/labs/{lab_id}/stop", expect=204)
        sim.wait_state(w, lab_id, "STOPPED")
        sim.api(w, "PUT", f"/labs/{lab_id}/wipe", expect=204)
        sim.wait_state(w, lab_id, "DEFINED_ON_CORE")

        sim.api(w, "DELETE", f"/labs/{lab_id}", expect=204)
        sim.api(w, "GET", f"/labs/{lab_id}", expect=404)
        sim.api(w, "GET", f"/labs/{lab_id}/nodes", expect=404)
        sim.api(w, "PUT", f"/labs/{lab_id}/start", expect=404)
        sim.api(w, "DELETE", f"/labs/{lab_id}", expect=404)
        check(sim.api(w, "GET", "/labs", expect=200).json == [], "labs after delete")
        cats = [e["category"] for e in sim.api(w, "GET", "/telemetry/events", expect=200).json]
        check("stop_lab" in cats and "wipe_node" in cats, f"telemetry {cats}")
        print(f"flow: {sim.checked} responses schema-checked")
    finally:
        sim.stop()


def case_transitions(args):
    """Actions in the middle of transitions: stop while booting, start while stopping, wipe/start
    while wiping, delete while wiping, empty labs."""
    sim = Sim(args, "--boot-ms", "400", "--stop-ms", "300", "--wipe-ms", "300", "--import-ms", "0")
    try:
        w = "w-tr"
        lab = sim.import_lab(w, topology(2))
        sim.api(w, "PUT", f"/labs/{lab}/wipe", expect=204)  # wiping a defined lab: no-op
        check(sim.lab(w, lab)["state"] == "DEFINED_ON_CORE", "wipe no-op")
        sim.api(w, "PUT", f"/labs/{lab}/start", expect=204)
        sim.api(w, "PUT", f"/labs/{lab}/stop", expect=204)  # while QUEUED
        check(sim.lab(w, lab)["state"] == "STARTED", "still started while stopping")
        sim.api(w, "PUT", f"/labs/{lab}/wipe", expect=400)  # not stopped yet
        sim.wait_state(w, lab, "STOPPED")
        time.sleep(0.5)  # the cancelled boot timer must not fire later
        check({n["state"] for n in sim.nodes(w, lab)} == {"STOPPED"}, "boot cancelled by stop")
        sim.api(w, "PUT", f"/labs/{lab}/start", expect=204)
        sim.wait_converged(w, lab)
        sim.api(w, "PUT", f"/labs/{lab}/stop", expect=204)
        sim.api(w, "PUT", f"/labs/{lab}/start", expect=204)  # start while stopping: boots again
        sim.wait_converged(w, lab)
        time.sleep(0.4)
        check(sim.lab(w, lab)["state"] == "STARTED", "the cancelled stop did not fire")
        sim.api(w, "PUT", f"/labs/{lab}/stop", expect=204)
        sim.wait_state(w, lab, "STOPPED")
        sim.api(w, "PUT", f"/labs/{lab}/wipe", expect=204)
        check(sim.lab(w, lab)["state"] == "STOPPED", "STOPPED while wiping")
        sim.api(w, "PUT", f"/labs/{lab}/start", expect=400)  # being wiped
        sim.api(w, "PUT", f"/labs/{lab}/wipe", expect=204)  # already wiping: no-op
        sim.api(w, "DELETE", f"/labs/{lab}", expect=204)  # delete cancels the wipe timer
        time.sleep(0.4)
        check(sim.api(w, "GET", "/labs", expect=200).json == [], "deleted")
        empty = sim.import_lab(w, "lab: {title: empty, version: 0.3.0}\nnodes: []\nlinks: []\n")
        sim.api(w, "PUT", f"/labs/{empty}/start", expect=204)
        sim.wait_converged(w, empty)
        check(sim.lab(w, empty)["node_count"] == 0, "empty lab")
    finally:
        sim.stop()


def case_auth(args):
    """Bearer auth, bad credentials, token expiry (401) and the client's re-authenticate retry."""
    sim = Sim(args, "--token-ttl-ms", "400")
    try:
        w = "w-auth"
        sim.api(w, "GET", "/labs", token=False, expect=401)
        sim.api(w, "GET", "/labs", token="not.a.token", expect=401)
        sim.api(w, "GET", "/system_information", token=False, expect=200)
        sim.authenticate(w, password="wrong", expect=403)
        sim.authenticate(w, user="nobody", expect=403)
        r = sim.api(w, "POST", "/authenticate", {"username": "admin"}, token=False)
        check(r.status == 422, f"missing password -> {r.status}")
        ext = sim.api(w, "POST", "/auth_extended", {"username": USER, "password": PASSWORD},
                      token=False, expect=200).json
        check(ext["username"] == USER and ext["token"].count(".") == 2, f"auth_extended {ext}")

        tok = sim.authenticate(w).json
        sim.api(w, "GET", "/labs", token=tok, expect=200)
        time.sleep(0.5)
        r = sim.api(w, "GET", "/labs", token=tok, expect=401)
        check("expired" in r.json["description"], f"expiry reason {r.json}")
        # what the cml plugin does on 401: authenticate again once and retry
        tok2 = sim.authenticate(w).json
        check(tok2 != tok, "a fresh token")
        sim.api(w, "GET", "/labs", token=tok2, expect=200)
        # tokens are per controller
        sim.api("w-other", "GET", "/labs", token=tok2, expect=401)
        # the admin route expires tokens at once (mid-flow expiry in lcmd tests)
        sim.admin("PATCH", f"/controllers/{w}", {"token_ttl_ms": 60000}, expect=200)
        tok3 = sim.authenticate(w).json
        sim.api(w, "GET", "/labs", token=tok3, expect=200)
        sim.admin("POST", f"/controllers/{w}/expire_tokens", expect=204)
        sim.api(w, "GET", "/labs", token=tok3, expect=401)
        # not ready: system_information says so, the rest is 503
        sim.admin("PATCH", f"/controllers/{w}", {"ready": False}, expect=200)
        check(sim.api(w, "GET", "/system_information", token=False, expect=200).json["ready"] is False, "ready flag")
        sim.authenticate(w, expect=503)
        sim.admin("PATCH", f"/controllers/{w}", {"ready": True}, expect=200)
        sim.authenticate(w, expect=200)
    finally:
        sim.stop()


def case_import(args):
    """Sample topologies import with their nodes and tags; non-topologies are refused with 400."""
    sim = Sim(args, "--import-ms", "0")
    try:
        w = "w-import"
        lab_id = sim.import_lab(w, read_sample(args, "TEST-LAB-1.1.yaml"))
        lab = sim.lab(w, lab_id)
        check(lab["lab_title"] == "Lab at Wed 19:40 PM", f"title from the file: {lab['lab_title']}")
        got = {n["label"]: (n["node_definition"], n["tags"]) for n in sim.nodes(w, lab_id)}
        want = {"PC": ("ubuntu-desktop-24-04-v2", ["serial:4567", "vnc:4568"]),
                "iosv-0": ("iosv", ["serial:4566"]),
                "vManageMockAPI": ("vmanagemock", ["serial:4569"])}
        check(got == want, f"TEST-LAB-1.1 nodes {got}")
        check(lab["link_count"] == 2, f"links {lab['link_count']}")

        # JSON topology (the spec's content type) works too
        topo = {"lab": {"title": "json lab", "version": "0.3.0"}, "links": [],
                "nodes": [{"id": "n0", "label": "a", "node_definition": "alpine", "x": 0, "y": 0,
                           "tags": ["ssh:2222"]}]}
        r = sim.api(w, "POST", "/import", topo, expect=200)
        check(r.json["warnings"] == [], f"warnings {r.json}")
        n = sim.nodes(w, r.json["id"])
        check(n[0]["tags"] == ["ssh:2222"] and n[0]["label"] == "a", f"json import {n}")

        # flow-style lists, quoted scalars, comments, CRLF line ends
        y = ("# exported\r\nlab: {title: 'quoted ''title''', version: \"0.3.0\"}\r\n"
             "nodes:\r\n- id: n0  # first\r\n  label: \"r 1\"\r\n  node_definition: iosv\r\n"
             "  x: 1\r\n  y: -2\r\n  tags: [serial:1, 'vnc:2']\r\nlinks: []\r\n")
        lid = sim.import_lab(w, y)
        check(sim.lab(w, lid)["lab_title"] == "quoted 'title'", "quoted title")
        n = sim.nodes(w, lid)[0]
        check((n["label"], n["tags"], n["x"], n["y"]) == ("r 1", ["serial:1", "vnc:2"], 1, -2), f"node {n}")

        bad = {
            "definition, not a topology": read_sample(args, "exam-associate-auto-v1.1-lab-2.5.1.yaml"),
            "worker template": read_sample(args, "single-session.yaml"),
            "mapping without nodes": "foo: bar\n",
            "plain text": "hello world\n",
            "json array": "[1, 2, 3]",
            "broken json": "{\"nodes\": [",
            "empty body": "",
            "unterminated quote": "lab:\n  title: 'oops\nnodes: []\n",
            "bad indentation": "lab:\n  title: x\n    version: 0.3.0\n nodes: []\n",
            "node without label": "lab: {title: x}\nnodes:\n  - id: n0\n    node_definition: iosv\nlinks: []\n",
            "tags not a list": "lab: {title: x}\nnodes:\n  - id: n0\n    label: a\n    node_definition: iosv\n    tags: serial:1\n",
            "duplicate node ids": "lab: {title: x}\nnodes:\n  - {id: n0, label: a, node_definition: iosv}\n  - {id: n0, label: b, node_definition: iosv}\n",
            "bad schema version": "lab: {title: x, version: 9.9.9}\nnodes: []\nlinks: []\n",
        }
        for what, body in bad.items():
            r = sim.api(w, "POST", "/import", body if body else b"", expect=400,
                        headers={"Content-Type": "application/x-yaml"})
            check(r.json["description"].startswith("Import failed"), f"{what}: {r.json}")
        r = sim.api(w, "POST", "/import?title=" + "x" * 65, "lab: {title: x}\nnodes: []\n")
        check(r.status == 422, f"title too long -> {r.status}")
        check(len(sim.api(w, "GET", "/labs", expect=200).json) == 3, "only the good imports exist")

        # import time is modelled: the reply comes after --import-ms / the controller's import_ms
        sim.admin("PATCH", f"/controllers/{w}", {"import_ms": 300}, expect=200)
        r = sim.api(w, "POST", "/import", topology(2), expect=200)
        check(r.elapsed >= 0.28, f"import took {r.elapsed:.3f}s with import_ms 300")
    finally:
        sim.stop()


def case_license(args):
    """Personal node limit enforced at start; unmanaged switches free; registration."""
    sim = Sim(args, "--license", "personal", "--boot-ms", "50", "--stop-ms", "50", "--wipe-ms", "10")
    try:
        w = "w-personal"
        lic = sim.api(w, "GET", "/licensing", expect=200).json
        check(lic["product_license"] == {"active": "CML_Personal", "is_enterprise": False}, f"licence {lic}")
        check(lic["features"][0]["max"] == 20, f"personal limit {lic['features'][0]}")
        a = sim.import_lab(w, topology(12, extra=[("sw", "unmanaged_switch"), ("ext", "external_connector")]))
        b = sim.import_lab(w, topology(9))
        c = sim.import_lab(w, topology(8))
        sim.api(w, "PUT", f"/labs/{a}/start", expect=204)  # 12 billable (+2 free)
        r = sim.api(w, "PUT", f"/labs/{b}/start", expect=400)  # 12 + 9 > 20
        check("limit" in r.json["description"], f"refusal reason {r.json}")
        check(sim.lab(w, b)["state"] == "DEFINED_ON_CORE", "refused lab stays defined")
        sim.api(w, "PUT", f"/labs/{c}/start", expect=204)  # 12 + 8 = 20 fits exactly
        lic = sim.api(w, "GET", "/licensing", expect=200).json
        check(lic["features"][0]["in_use"] == 20, f"in_use {lic['features'][0]}")
        sim.api(w, "PUT", f"/labs/{a}/stop", expect=204)
        sim.wait_state(w, a, "STOPPED")
        sim.api(w, "PUT", f"/labs/{b}/start", expect=204)  # 8 + 9 fits now
        sim.wait_converged(w, b)

        # enterprise with an explicit node limit, set through the admin API
        sim.admin("POST", "/controllers", {"id": "w-ent", "license": "enterprise", "node_limit": 5}, expect=201)
        sim.admin("POST", "/controllers", {"id": "w-ent"}, expect=409)
        e = sim.import_lab("w-ent", topology(6))
        sim.api("w-ent", "PUT", f"/labs/{e}/start", expect=400)
        sim.admin("PATCH", "/controllers/w-ent", {"node_limit": 6}, expect=200)
        sim.api("w-ent", "PUT", f"/labs/{e}/start", expect=204)

        # unregistered controller: health says unlicensed, starting refused until registration
        sim.admin("POST", "/controllers", {"id": "w-unreg", "registered": False}, expect=201)
        u = "w-unreg"
        h = sim.api(u, "GET", "/system_health", expect=200).json
        check(h["is_licensed"] is False and h["valid"] is False, f"health {h}")
        check(sim.api(u, "GET", "/licensing", expect=200).json["registration"]["status"] == "UNREGISTERED", "status")
        lab = sim.import_lab(u, topology(1))
        sim.api(u, "PUT", f"/labs/{lab}/start", expect=400)
        sim.api(u, "POST", "/licensing/registration", {"token": "bad token!"}, expect=400)
        sim.api(u, "POST", "/licensing/registration", {"token": "ODYwNjVm-abc%3D"}, expect=204)
        sim.api(u, "POST", "/licensing/registration", {"token": "ODYwNjVm"}, expect=409)
        sim.api(u, "POST", "/licensing/registration", {"token": "ODYwNjVm", "reregister": True}, expect=204)
        check(sim.api(u, "GET", "/system_health", expect=200).json["is_licensed"] is True, "licensed")
        sim.api(u, "PUT", f"/labs/{lab}/start", expect=204)
    finally:
        sim.stop()


def case_strict(args):
    """--strict: unknown controllers are 404 until created through the admin API."""
    sim = Sim(args, "--strict")
    try:
        r = sim.api("w1", "GET", "/system_information", token=False, expect=404)
        check("Unknown controller" in r.json["description"], f"{r.json}")
        sim.api(None, "GET", "/system_information", token=False, expect=404)
        check(sim.admin("GET", "/controllers", expect=200).json == [], "nothing auto-created")
        sim.admin("POST", "/controllers", {"id": "w1", "version": "2.9.1"}, expect=201)
        check(sim.api("w1", "GET", "/system_information", token=False, expect=200).json["version"] == "2.9.1", "version")
        sim.admin("DELETE", "/controllers/w1", expect=204)
        sim.api("w1", "GET", "/system_information", token=False, expect=404)
        sim.admin("DELETE", "/controllers/w1", expect=404)
        # turning strict off at runtime
        sim.admin("PATCH", "/config", {"strict": False}, expect=200)
        sim.api("w2", "GET", "/system_information", token=False, expect=200)
        r = sim.request("GET", "/bad%20id!/api/v0/system_information")
        check(r.status in (400, 404), f"invalid controller id -> {r.status}")
        r = sim.request("GET", "/w2/not-api/labs")
        check(r.status == 404, f"bad prefix -> {r.status}")
    finally:
        sim.stop()


def case_faults(args):
    """Injected error codes, delays, dropped connections, latency; per controller and global."""
    sim = Sim(args)
    try:
        a, b = "w-a", "w-b"
        sim.token(a), sim.token(b)
        f = sim.admin("POST", "/faults", {"path": "/labs", "status": 503, "count": 2}, expect=201).json
        for _ in range(2):
            r = sim.api(a, "GET", "/labs", expect=503)
            check("Injected" in r.json["description"], f"{r.json}")
        sim.api(a, "GET", "/labs", expect=200)
        check(sim.admin("GET", "/faults", expect=200).json == [], f"rule {f['id']} used up")

        # per controller: only b is affected; method filter
        sim.admin("POST", f"/controllers/{b}/faults", {"path": "/labs", "method": "GET", "status": 500,
                                                        "count": -1}, expect=201)
        sim.api(a, "GET", "/labs", expect=200)
        sim.api(b, "GET", "/labs", expect=500)
        sim.api(b, "GET", "/labs", expect=500)
        sim.api(b, "POST", "/import", topology(1), expect=200)
        rules = sim.admin("GET", "/faults", expect=200).json
        check(len(rules) == 1 and rules[0]["hits"] == 2 and rules[0]["controller"] == b, f"rules {rules}")
        sim.admin("DELETE", f"/faults/{rules[0]['id']}", expect=204)
        sim.admin("DELETE", f"/faults/{rules[0]['id']}", expect=404)
        sim.api(b, "GET", "/labs", expect=200)

        # delay
        sim.admin("POST", "/faults", {"controller": a, "path": "/system_stats", "delay_ms": 600}, expect=201)
        r = sim.api(a, "GET", "/system_stats", expect=200)
        check(r.elapsed >= 0.58, f"delayed reply after {r.elapsed:.3f}s")
        r = sim.api(a, "GET", "/system_stats", expect=200)
        check(r.elapsed < 0.4, f"delay applies once: {r.elapsed:.3f}s")

        # dropped connection: no HTTP response at all
        sim.admin("POST", "/faults", {"path": "/licensing", "drop": True}, expect=201)
        try:
            r = sim.request("GET", f"/{a}/api/v0/licensing", headers={"Authorization": "Bearer " + sim.token(a)})
            raise Failure(f"expected a dropped connection, got {r.status}")
        except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine):
            pass
        sim.api(a, "GET", "/licensing", expect=200)
        # dropped after a delay (a client timeout case)
        sim.admin("POST", "/faults", {"path": "/licensing", "drop": True, "delay_ms": 200}, expect=201)
        t0 = time.monotonic()
        try:
            sim.request("GET", f"/{a}/api/v0/licensing", headers={"Authorization": "Bearer " + sim.token(a)})
            raise Failure("expected a dropped connection")
        except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine):
            check(time.monotonic() - t0 >= 0.18, "drop after delay")
        # a client that gives up while a delayed reply is pending does not hurt the simulator
        sim.admin("POST", "/faults", {"path": "/telemetry", "delay_ms": 400}, expect=201)
        try:
            sim.request("GET", f"/{a}/api/v0/telemetry/events", timeout=0.1,
                        headers={"Authorization": "Bearer " + sim.token(a)})
        except (TimeoutError, OSError):
            pass
        time.sleep(0.5)
        sim.api(a, "GET", "/telemetry/events", expect=200)

        # latency at runtime: globally for all controllers, then back to 0
        sim.admin("PATCH", "/config", {"latency_ms": 500}, expect=200)
        r = sim.api(b, "GET", "/labs", expect=200)
        check(r.elapsed >= 0.48, f"latency {r.elapsed:.3f}s")
        sim.admin("PATCH", f"/controllers/{b}", {"latency_ms": 0}, expect=200)
        check(sim.api(b, "GET", "/labs", expect=200).elapsed < 0.35, "per-controller latency override")
        check(sim.api("w-new", "GET", "/system_information", token=False, expect=200).elapsed >= 0.48,
              "new controllers get the default latency")
        st = sim.admin("GET", "/stats", expect=200).json
        check(st["faults_hit"] >= 8 and st["dropped"] == 2, f"stats {st}")
        # bad fault definitions
        sim.admin("POST", "/faults", {"path": "/labs"}, expect=400)
        sim.admin("POST", "/faults", {"status": 42}, expect=400)
        sim.admin("POST", "/faults", {"status": 500, "count": 0}, expect=400)
        sim.admin("POST", "/faults", {"status": 500, "nope": 1}, expect=400)
        # reset: everything back to the command line's state
        sim.admin("POST", "/reset", expect=204)
        check(sim.admin("GET", "/controllers", expect=200).json == [], "reset removes controllers")
        check(sim.admin("GET", "/config", expect=200).json["latency_ms"] == 0, "reset restores latency")
    finally:
        sim.stop()


def case_fleet(args):
    """1,000 virtual controllers in one process: cheap, isolated, removable."""
    sim = Sim(args, "--boot-ms", "100", "--import-ms", "0")
    try:
        n = 1000
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)  # keep-alive
        for i in range(n):
            conn.request("GET", f"/worker-{i:04d}/api/v0/system_information")
            r = conn.getresponse()
            body = r.read()
            check(r.status == 200 and json.loads(body)["ready"] is True, f"worker-{i}: {r.status}")
        conn.close()
        create_s = time.monotonic() - t0
        ctrls = sim.admin("GET", "/controllers", expect=200).json
        check(len(ctrls) == n, f"{len(ctrls)} controllers")
        # labs on a few workers, isolated from each other
        labs = {}
        for i in range(0, n, 100):
            w = f"worker-{i:04d}"
            labs[w] = sim.import_lab(w, topology(3))
            sim.api(w, "PUT", f"/labs/{labs[w]}/start", expect=204)
        for w, lab in labs.items():
            sim.wait_converged(w, lab)
            check(sim.api(w, "GET", "/labs", expect=200).json == [lab], f"{w} sees only its lab")
        sim.api("worker-0001", "GET", f"/labs/{labs['worker-0000']}", expect=404)
        # requests on an idle controller stay fast with 1,000 of them around
        t1 = time.monotonic()
        for _ in range(200):
            sim.api("worker-0500", "GET", "/labs", expect=200)
        per_req_ms = (time.monotonic() - t1) / 200 * 1000
        rss_kb = 0
        with open(f"/proc/{sim.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
        # removing a controller with a running lab frees it; a later request starts a fresh one
        sim.admin("DELETE", "/controllers/worker-0100", expect=204)
        sim.tokens.pop("worker-0100", None)
        check(sim.api("worker-0100", "GET", "/labs", expect=200).json == [], "recreated controller is empty")
        print(f"fleet: {n} controllers created in {create_s:.2f}s "
              f"({create_s / n * 1000:.2f} ms each incl. HTTP), GET /labs {per_req_ms:.2f} ms/req, "
              f"RSS {rss_kb / 1024:.1f} MiB")
    finally:
        sim.stop()


def case_shutdown(args):
    """SIGTERM with labs mid-transition, delayed replies pending and faults set: exits 0, ASan clean."""
    sim = Sim(args, "--boot-ms", "5000", "--import-ms", "0")
    try:
        w = "w-down"
        lab = sim.import_lab(w, topology(2))
        sim.api(w, "PUT", f"/labs/{lab}/start", expect=204)  # boot timer pending
        sim.admin("POST", "/faults", {"path": "/labs", "delay_ms": 10000, "count": -1}, expect=201)
        sim.admin("PATCH", "/config", {"import_ms": 10000}, expect=200)
        # leave a delayed request and a slow import in flight
        socks = []
        for path, body in (("/labs", None), ("/import", topology(1))):
            c = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=30)
            c.request("GET" if body is None else "POST", f"/{w}/api/v0{path}", body=body,
                      headers={"Authorization": "Bearer " + sim.token(w)})
            socks.append(c)
        time.sleep(0.3)
        st = sim.admin("GET", "/stats", expect=200).json
        check(st["pending"] == 2, f"pending {st}")
        t0 = time.monotonic()
        sim.stop()
        check(time.monotonic() - t0 < 5, "shutdown is prompt")
        for c in socks:
            c.close()
    finally:
        if sim.proc.poll() is None:
            sim.stop()


def sample_node_definitions(args):
    """Every node_definition value of the sample topologies (*.yaml with a nodes: list)."""
    import re
    found = set()
    for name in sorted(os.listdir(args.samples)):
        if name.endswith(".yaml"):
            for m in re.finditer(r"^\s*node_definition:\s*['\"]?([^\s'\"#]+)", read_sample(args, name), re.M):
                if m.group(1) != "null":
                    found.add(m.group(1))
    return found


def case_node_definitions(args):
    """GET /node_definitions: the spec's NodeDefinitionResponse list; the default covers the
    reference platform and the samples; --node-definitions and the admin API change it."""
    sim = Sim(args)
    try:
        w = "w-nd"
        r = sim.api(w, "GET", "/node_definitions", expect=200)   # schema-checked in api()
        ids = [d["id"] for d in r.json]
        check(len(ids) == len(set(ids)), f"ids unique: {ids}")
        samples = sample_node_definitions(args)
        check(samples and samples <= set(ids), f"samples need {sorted(samples - set(ids))} (have {ids})")
        for nd in ("iosv", "iosvl2", "ubuntu", "alpine", "server", "desktop", "external_connector",
                   "unmanaged_switch", "ubuntu-desktop-24-04-v2", "vmanagemock", "mock-server"):
            check(nd in ids, f"default list lacks {nd}: {ids}")
        by = {d["id"]: d for d in r.json}
        check(by["iosv"]["general"]["nature"] == "router" and by["iosv"]["sim"]["linux_native"]["driver"] == "iosv",
              by["iosv"])
        check(by["external_connector"]["sim"]["linux_native"]["libvirt_domain_driver"] == "none", by["external_connector"])
        # a token is needed like every other non-system call
        sim.api(w, "GET", "/node_definitions", token=False, expect=401)
        sim.api(w, "PUT", "/node_definitions", token=True, expect=405)
        # the admin API replaces one controller's list; others keep theirs
        st = sim.admin("PATCH", f"/controllers/{w}", {"node_definitions": ["iosv", "nxosv", "iosv"]}, expect=200)
        check(st.json["node_definitions"] == ["iosv", "nxosv"], f"admin view: {st.json['node_definitions']}")
        check([d["id"] for d in sim.api(w, "GET", "/node_definitions", expect=200).json] == ["iosv", "nxosv"], "patched")
        check(len(sim.api("w-other", "GET", "/node_definitions", expect=200).json) == len(ids), "other controller unchanged")
        sim.admin("PATCH", f"/controllers/{w}", {"node_definitions": []}, expect=200)
        check(sim.api(w, "GET", "/node_definitions", expect=200).json == [], "empty list")
        for bad in ("iosv", ["a/b"], [".hidden"], ["x" * 251], [""], [1]):
            sim.admin("PATCH", f"/controllers/{w}", {"node_definitions": bad}, expect=400)
        check(sim.admin("GET", f"/controllers/{w}", expect=200).json["node_definitions"] == [], "bad patch changed nothing")
        sim.admin("POST", "/controllers", {"id": "w-new", "node_definitions": ["alpine"]}, expect=201)
        check([d["id"] for d in sim.api("w-new", "GET", "/node_definitions", expect=200).json] == ["alpine"], "created")
        sim.admin("PATCH", "/config", {"node_definitions": ["iosv"]}, expect=400)
        check(set(sim.admin("GET", "/config", expect=200).json["node_definitions"]) == set(ids), "defaults")
        # a custom id longer than a UI label still renders within the schema
        long_id = "custom-" + "x" * 60
        sim.admin("PATCH", f"/controllers/{w}", {"node_definitions": [long_id]}, expect=200)
        check(sim.api(w, "GET", "/node_definitions", expect=200).json[0]["id"] == long_id, "long id")
        # /_sim/reset brings back the command line's list
        sim.admin("POST", "/reset", expect=204)
        sim.tokens.clear()
        check(len(sim.api(w, "GET", "/node_definitions", expect=200).json) == len(ids), "after reset")
    finally:
        sim.stop()
    sim = Sim(args, "--node-definitions", "iosv,alpine,iosv")
    try:
        got = [d["id"] for d in sim.api("w1", "GET", "/node_definitions", expect=200).json]
        check(got == ["iosv", "alpine"], f"--node-definitions: {got}")
    finally:
        sim.stop()
    sim = Sim(args, "--node-definitions", "")
    try:
        check(sim.api("w1", "GET", "/node_definitions", expect=200).json == [], "--node-definitions ''")
    finally:
        sim.stop()
    r = subprocess.run([args.sim, "--listen", "127.0.0.1:0", "--node-definitions", "iosv,bad/id"],
                       capture_output=True, text=True, timeout=10)
    check(r.returncode == 2 and "node-definitions" in r.stderr, f"bad flag: {r.returncode} {r.stderr}")
    print(f"node_definitions: default list of {len(ids)} schema-checked; samples need {sorted(samples)}")


def case_schema(args):
    """The schema checker itself: it must reject what the spec forbids (so the other cases can fail)."""
    spec = args.spec_obj
    tmpl, op = spec.operation("GET", "/labs/90f84e38-a71c-4d57-8d90-00fa8a197385")
    check(tmpl == "/labs/{lab_id}", f"template {tmpl}")
    tmpl, _ = spec.operation("PUT", "/labs/a/nodes/b/extract_configuration")
    check(tmpl == "/labs/{lab_id}/nodes/{node_id}/extract_configuration", f"template {tmpl}")
    check(spec.operation("GET", "/nonexistent") == (None, None), "unknown path")
    declared, schema = spec.response_schema(spec.operation("POST", "/import")[1], 200)
    check(declared and schema == {"$ref": "#/components/schemas/ImportLabResponse"}, f"{schema}")
    check(spec.response_schema(spec.operation("POST", "/import")[1], 201)[0] is False, "201 undeclared")
    lab_schema = {"$ref": "#/components/schemas/LabResponse"}
    good = {"id": "90f84e38-a71c-4d57-8d90-00fa8a197385", "created": "2025-01-02T03:04:05+00:00",
            "lab_title": "t", "state": "STARTED", "node_count": 1, "link_count": 0,
            "effective_permissions": ["lab_admin"], "groups": []}
    check(spec.validate(good, lab_schema) == [], f"good lab: {spec.validate(good, lab_schema)}")
    bad = [dict(good, state="BOOTED"), dict(good, extra=1), dict(good, id="not-a-uuid"),
           dict(good, created="yesterday"), dict(good, node_count=-1), dict(good, lab_title=""),
           dict(good, lab_title=7), {k: v for k, v in good.items() if k != "lab_title"},
           dict(good, effective_permissions=["root"])]
    for b in bad:
        check(spec.validate(b, lab_schema) != [], f"accepted a bad lab: {b}")
    node = {"$ref": "#/components/schemas/Node"}
    check(spec.validate({"x": 0, "y": 0, "label": "a", "node_definition": "iosv",
                         "id": good["id"], "cpus": None}, node) == [], "minimal node")
    check(spec.validate({"x": 0, "y": 0, "label": "a", "node_definition": "iosv",
                         "id": good["id"], "cpus": "1"}, node) != [], "cpus must be int or null")
    check(spec.validate("a.b.c", spec.response_schema(spec.operation("POST", "/authenticate")[1], 200)[1]) == [],
          "JWT-shaped token")
    check(spec.validate("x", spec.response_schema(spec.operation("POST", "/authenticate")[1], 200)[1]) != [],
          "token pattern enforced")
    check(spec.validate({"code": 1}, {"$ref": "#/components/schemas/Error"}) != [], "Error needs description")
    nd_list = spec.response_schema(spec.operation("GET", "/node_definitions")[1], 200)[1]
    check(nd_list and nd_list.get("type") == "array", f"node_definitions schema {nd_list}")
    check(spec.validate([{"id": "iosv"}], nd_list) != [], "a node definition needs boot, sim, general, ...")
    check(spec.validate([], nd_list) == [], "an empty list is a list")


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", required=True)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("case", choices=sorted(CASES))
    args = ap.parse_args()
    with open(args.spec) as f:
        args.spec_obj = Spec(json.load(f))
    try:
        CASES[args.case](args)
    except Failure as e:
        print(f"FAIL {args.case}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # an unexpected client-side error is a failure too, with its trace
        import traceback
        traceback.print_exc()
        print(f"FAIL {args.case}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"ok {args.case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
