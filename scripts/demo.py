#!/usr/bin/env python3
"""The LCM demo: a real run of the product on loopback.

Starts Redis, moto's EC2/CloudWatch server, cml-sim, lds-sim, grading-sim and lcmd (with the
dashboard), loads the sample worker templates and two definitions from demo/data/, books a
wave of sessions, plays the learners (log in, finish) through lds-sim, and shows live
progress read from lcmd's API. At the end it prints a summary and keeps the stack up for
inspection until Ctrl-C, which stops everything it started.

Every number shown comes from lcmd's API (or, for the redis-cli hints, from Redis itself)."""
import argparse
import datetime as dt
import json
import os
import random
import secrets
import signal
import statistics
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from harness import Proc, Redis, free_port, wait_until  # noqa: E402

import yaml  # PyYAML ships with moto's dependencies  # noqa: E402

DATA = os.path.join(ROOT, "demo", "data")
TERMINAL = {"archived", "terminated"}


def iso(t):
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(s):
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


class Api:
    def __init__(self, url, token):
        self.url, self.token = url, token

    def call(self, method, path, body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def ok(self, method, path, body=None):
        st, doc = self.call(method, path, body)
        if st >= 300:
            raise SystemExit(f"demo: {method} {path} -> {st}: {doc}")
        return doc

    def items(self, path):
        out, cursor = [], None
        while True:
            sep = "&" if "?" in path else "?"
            st, doc = self.call("GET", f"{path}{sep}limit=500" + (f"&cursor={cursor}" if cursor else ""))
            if st != 200 or not isinstance(doc, dict):
                return out
            out += doc.get("items", [])
            cursor = doc.get("next_cursor") or doc.get("cursor")
            if not cursor:
                return out


def sim(name, args, logs):
    pf = os.path.join(logs, f"{name}.port")
    if os.path.exists(pf):
        os.unlink(pf)
    p = Proc(name, [os.path.join(ROOT, "build", "bin", name), "--listen", "127.0.0.1:0",
                    "--port-file", pf, *args], log_dir=logs)
    wait_until(lambda: os.path.exists(pf) and open(pf).read().strip(), what=f"{name} port")
    p.url = f"http://127.0.0.1:{open(pf).read().strip()}"
    return p


def start_moto(logs):
    port = free_port()
    p = Proc("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log_dir=logs)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: urllib.request.urlopen(url + "/moto-api/", timeout=1).status == 200,
               timeout=60, what="moto")
    p.url = url
    return p


def register_amis(moto_url, names):
    import boto3
    ec2 = boto3.client("ec2", endpoint_url=moto_url, region_name="us-east-1",
                       aws_access_key_id="demo", aws_secret_access_key="demo")
    for n in names:
        ec2.register_image(Name=n, Architecture="x86_64", RootDeviceName="/dev/sda1",
                           VirtualizationType="hvm", Description="CML demo image")


def template_body(path, license_type):
    y = yaml.safe_load(open(path))
    return {"name": y["name"], "instance_type": y["instance_type"],
            "ami_name_pattern": y["ami_name_pattern"], "region": "us-east-1",
            "license_type": license_type, "capacity": y["capacity"],
            "cost_per_hour": y.get("cost_per_hour_usd", 0), "enabled": True,
            "description": y.get("description", "")}


def definition_bodies():
    seed = yaml.safe_load(open(os.path.join(DATA, "exam-associate-auto-v1.1-lab-2.5.1.yaml")))
    rr = seed["resource_requirements"]
    ami = (rr.get("ami_requirements") or [{}])[0]
    exam = {
        "name": seed["name"], "version": str(seed["version"]),
        "form_qualified_name": seed["form_qualified_name"],
        "topology": open(os.path.join(DATA, "TEST-LAB-1.1.yaml")).read(),
        "resource_requirements": {"cpu_cores": rr["cpu_cores"], "memory_gb": rr["memory_gb"],
                                  "storage_gb": rr["storage_gb"],
                                  "cml_version_min": ami.get("cml_version_min", "2.7.0")},
        "node_count": seed["node_count"], "license_affinity": ["enterprise"],
        "max_duration_minutes": seed.get("max_duration_minutes", 60), "boot_lead_minutes": 0,
        "lds_enabled": True, "grading_enabled": True, "grading_ruleset": "exam-associate-auto-2.5.1",
        "lab_reuse_enabled": True, "user_visible_devices": ["pc", "router"],
    }
    sample = {
        "name": "sd-wan-mock-practice", "version": "1.0.0",
        "form_qualified_name": "Practice SDWAN Mock v1 LAB 1.0",
        "topology": open(os.path.join(DATA, "sample_cml_lab.yaml")).read(),
        "resource_requirements": {"cpu_cores": 4, "memory_gb": 8, "storage_gb": 40},
        "license_affinity": ["personal"], "max_duration_minutes": 60, "boot_lead_minutes": 0,
        "lds_enabled": True, "grading_enabled": False, "lab_reuse_enabled": True,
    }
    return [exam, sample]


class Demo:
    def __init__(self, a):
        self.a = a
        self.logs = os.path.join(ROOT, ".run", "demo")
        os.makedirs(self.logs, exist_ok=True)
        self.procs = []
        self.booked = {}       # session id -> booking time
        self.learner_next = {}  # session id -> (action, at)
        self.errors = []
        self.t0 = time.time()

    def start(self):
        a = self.a
        say(f"logs in {os.path.relpath(self.logs, ROOT)}/")
        self.redis = Redis()
        say(f"redis     {self.redis.url} (AOF on)")
        self.moto = start_moto(self.logs)
        self.procs.append(self.moto)
        pats = [yaml.safe_load(open(os.path.join(DATA, f)))["ami_name_pattern"]
                for f in ("multi-sessions.yaml", "single-session.yaml")]
        register_amis(self.moto.url, pats)
        say(f"moto      {self.moto.url} (EC2 + CloudWatch; AMIs {', '.join(pats)})")
        self.lcm_port = a.port or free_port()
        lcm_url = f"http://127.0.0.1:{self.lcm_port}"
        self.token = "demo-" + secrets.token_hex(16)
        self.cml = sim("cml-sim", ["--import-ms", "300", "--boot-ms", "2000", "--stop-ms", "300",
                                   "--wipe-ms", "300", "--license", "enterprise"], self.logs)
        self.lds = sim("lds-sim", ["--lcm-url", lcm_url, "--lcm-token", self.token, "--username", "lds",
                                   "--password", "lds-demo", "--frontend-url", "http://127.0.0.1:9/lds",
                                   "--quiet"], self.logs)
        self.grd = sim("grading-sim", ["--lcm-url", lcm_url, "--lcm-token", self.token, "--client-id", "lcm",
                                       "--client-secret", "grading-demo", "--delay-ms", "1500",
                                       "--score", "82", "--max-score", "100", "--cut-score", "70",
                                       "--quiet"], self.logs)
        self.procs += [self.cml, self.lds, self.grd]
        say(f"cml-sim   {self.cml.url}   lds-sim {self.lds.url}   grading-sim {self.grd.url}")
        env = {
            "LCM_LISTEN": f"127.0.0.1:{self.lcm_port}", "LCM_REDIS_URL": self.redis.url,
            "LCM_ADMIN_TOKEN": self.token, "LCM_DATA_DIR": os.path.join(self.logs, "lcmd-data"),
            "LCM_PLUGIN_DIR": os.path.join(ROOT, "build", "plugins"),
            "LCM_POLICY_DIR": os.path.join(ROOT, "policies"), "LCM_UI_DIR": os.path.join(ROOT, "ui"),
            "AWS_ENDPOINT_URL": self.moto.url, "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo", "AWS_REGION": "us-east-1",
            "LCM_CML_ENDPOINT": self.cml.url + "/{instance_id}", "LCM_CML_USERNAME": "admin",
            "LCM_CML_PASSWORD": "admin-sim", "LCM_CML_VERIFY_TLS": "false",
            "LCM_LDS_URL": self.lds.url, "LCM_LDS_FRONTEND_URL": self.lds.url,
            "LCM_LDS_USERNAME": "lds", "LCM_LDS_PASSWORD": "lds-demo",
            "LCM_GRADING_URL": self.grd.url, "LCM_GRADING_TOKEN_URL": self.grd.url + "/oauth2/token",
            "LCM_GRADING_CLIENT_ID": "lcm", "LCM_GRADING_CLIENT_SECRET": "grading-demo",
            # a day's timings compressed into minutes
            "LCM_BOOT_LEAD_MINUTES": "0", "LCM_IDLE_MINUTES": "0", "LCM_SCALE_UP_COOLDOWN_S": "3",
            "LCM_SCALE_DOWN_COOLDOWN_S": "10", "LCM_AUTOSCALER_INTERVAL_MS": "1000",
            "LCM_SCHEDULER_INTERVAL_MS": "500", "LCM_WORKER_POLL_INTERVAL_MS": "500",
            "LCM_MAX_WORKERS_PER_REGION": str(a.max_workers), "LCM_MAX_LAUNCHES_PER_CYCLE": "3",
            "LCM_SESSION_ARCHIVE_AFTER_S": "5", "LCM_STOPPED_RETENTION_MINUTES": "1",
            "LCM_SESSION_POLL_MS": "300", "LCM_SESSION_GRADING_POLL_MS": "1000",
            "LCM_METRICS_INTERVAL_MS": "5000", "LCM_LOG_LEVEL": "info",
        }
        self.lcmd = Proc("lcmd", [os.path.join(ROOT, "build", "bin", "lcmd")], env=env, log_dir=self.logs)
        self.procs.append(self.lcmd)
        self.api = Api(lcm_url, self.token)
        wait_until(lambda: self.api.call("GET", "/readyz")[0] == 200 or not self.lcmd.alive(),
                   timeout=30, what="lcmd ready")
        if not self.lcmd.alive():
            raise SystemExit("lcmd exited:\n" + self.lcmd.stderr()[-3000:])
        say(f"lcmd      {lcm_url}   admin token: {self.token}")

    def load(self):
        for f, lic in (("multi-sessions.yaml", "enterprise"), ("single-session.yaml", "personal")):
            body = template_body(os.path.join(DATA, f), lic)
            self.api.ok("POST", "/api/v1/templates", body)
            say(f"template  {body['name']} ({lic}, {body['capacity']['cpu_cores']} cpu, "
                f"{body['capacity']['max_nodes']} nodes, ${body['cost_per_hour']}/h)")
        self.defs = []
        for body in definition_bodies():
            d = self.api.ok("POST", "/api/v1/definitions", body)
            self.api.ok("POST", f"/api/v1/definitions/{d['id']}/activate")
            self.defs.append(d["id"])
            say(f"definition {d['id']}: {body['form_qualified_name']} "
                f"(grading {'on' if body['grading_enabled'] else 'off'}, {body['license_affinity'][0]} licence)")

    def book(self, i):
        now = time.time()
        d = self.defs[0] if i % 3 else self.defs[1]
        body = {"definition_id": d, "owner": f"learner-{i:03d}", "reservation_id": f"demo-{int(self.t0)}-{i}",
                "timeslot": {"start": iso(now + 5), "end": iso(now + 5 + self.a.slot_minutes * 60)}}
        st, doc = self.api.call("POST", "/api/v1/sessions", body)
        if st in (200, 201):
            self.booked[doc["id"]] = now
        else:
            self.errors.append(f"booking {i}: {st} {doc}")

    def play_learners(self, sessions):
        now = time.time()
        for s in sessions:
            sid, status = s["id"], s["status"]
            lds_id = (s.get("user_session") or {}).get("lds_session_id")
            if status == "ready" and lds_id and sid not in self.learner_next:
                self.learner_next[sid] = ("login", now + random.uniform(1, 4))
            elif status == "running" and self.learner_next.get(sid, ("",))[0] == "login-done":
                self.learner_next[sid] = ("finish", now + random.uniform(4, 12))
            act = self.learner_next.get(sid)
            if act and act[0] in ("login", "finish") and now >= act[1] and lds_id:
                urllib.request.urlopen(urllib.request.Request(
                    f"{self.lds.url}/_sim/sessions/{lds_id}/{act[0]}", data=b"{}", method="POST",
                    headers={"Content-Type": "application/json"}), timeout=5).read()
                self.learner_next[sid] = (act[0] + "-done", now)

    def snapshot(self):
        workers = self.api.items("/api/v1/workers")
        sessions = [s for s in self.api.items("/api/v1/sessions") if s["id"] in self.booked]
        st, sched = self.api.call("GET", "/api/v1/scheduler")
        return workers, sessions, sched if st == 200 else {}

    def draw(self, workers, sessions, sched, final=False):
        def count(items, key="status"):
            out = {}
            for x in items:
                out[x.get(key)] = out.get(x.get(key), 0) + 1
            return ", ".join(f"{k} {v}" for k, v in sorted(out.items(), key=lambda kv: str(kv[0]))) or "none"
        lines = [f"[{time.time() - self.t0:6.1f}s] booked {len(self.booked)}/{self.a.sessions}",
                 f"  workers : {count(workers)}",
                 f"  sessions: {count(sessions)}"]
        decisions = (sched or {}).get("decisions") or (sched or {}).get("recent_decisions") or []
        for d in decisions[-3:]:
            lines.append("  decision: " + (d if isinstance(d, str) else json.dumps(d)[:150]))
        bad = [s for s in sessions if s["status"] == "terminated"]
        for s in bad[-2:]:
            hist = s.get("status_history") or [{}]
            lines.append(f"  error   : {s['id']} terminated: {hist[-1].get('reason', '?')}")
        for e in self.errors[-2:]:
            lines.append("  error   : " + e[:150])
        if sys.stdout.isatty() and not final:
            sys.stdout.write("\x1b[2K" + "\n\x1b[2K".join(lines) + "\n" + f"\x1b[{len(lines)}A")
        else:
            print("\n".join(lines))
        sys.stdout.flush()

    def run(self):
        a = self.a
        interval = (a.minutes * 60) / max(a.sessions, 1)
        next_booking, i = time.time(), 0
        last_print = 0
        done_at = None
        while True:
            now = time.time()
            while i < a.sessions and now >= next_booking:
                self.book(i)
                i += 1
                next_booking += interval
            workers, sessions, sched = self.snapshot()
            self.play_learners(sessions)
            if sys.stdout.isatty() or now - last_print > 5:
                self.draw(workers, sessions, sched)
                last_print = now
            if i >= a.sessions and sessions and all(s["status"] in TERMINAL for s in sessions):
                done_at = done_at or now
                busy = [w for w in workers if w["status"] in ("running", "draining", "stopping", "starting", "provisioning", "pending")]
                if not busy or now - done_at > a.scale_down_wait:
                    break
            if now - self.t0 > a.timeout:
                self.errors.append("demo timeout reached")
                break
            time.sleep(1)
        if sys.stdout.isatty():
            sys.stdout.write("\n" * 8)
        self.draw(*self.snapshot(), final=True)
        self.summary()

    def summary(self):
        workers, sessions, _ = self.snapshot()
        ready_lat, scores = [], []
        for s in sessions:
            for h in s.get("status_history") or []:
                if h.get("to") == "ready":
                    ready_lat.append(parse_iso(h["at"]) - self.booked[s["id"]])
                    break
            sc = (s.get("score") or {}).get("score")
            if sc is not None:
                scores.append(sc)

        def pct(xs, p):
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")
        launched = [w for w in workers if w.get("origin") == "scale_up"]
        drained = [w for w in workers if any(h.get("to") == "draining" for h in w.get("status_history") or [])
                   or w["status"] in ("stopping", "stopped", "terminating", "terminated")]
        by = {}
        for s in sessions:
            by[s["status"]] = by.get(s["status"], 0) + 1
        print("\n==== LCM demo summary ====")
        print(f"sessions booked      : {len(self.booked)}  final: {by}")
        print(f"workers launched     : {len(launched)} (scale-up)   drained/stopped: {len(drained)}")
        if ready_lat:
            print(f"booking -> ready     : p50 {pct(ready_lat, 50):.1f} s   p95 {pct(ready_lat, 95):.1f} s   (n={len(ready_lat)})")
        if scores:
            print(f"scores               : n={len(scores)} mean {statistics.mean(scores):.1f} min {min(scores)} max {max(scores)}")
        for e in self.errors:
            print("error                : " + e[:200])
        u = self.api.url
        print(f"\nAPI        {u}/api/v1/sessions   (Authorization: Bearer {self.token})")
        print(f"dashboard  {u}/   (paste the token when asked)")
        print(f"metrics    {u}/metrics")
        print(f"OpenAPI    {u}/openapi.json")
        p = self.redis.port
        sid = next(iter(self.booked), "ID")
        print("\nInspect state with redis-cli:")
        print(f"  redis-cli -p {p} XREVRANGE lcm:feed + - COUNT 20")
        print(f"  redis-cli -p {p} HGETALL 'lcm:{{session:{sid}}}'")
        print(f"  redis-cli -p {p} XRANGE 'lcm:{{session:{sid}}}:events' - +")
        print(f"  redis-cli -p {p} SMEMBERS lcm:idx:session:status:archived")
        if not self.a.exit:
            print("\nThe stack keeps running for you to look around. Ctrl-C stops everything.")

    def stop(self):
        for p in reversed(self.procs):
            try:
                p.stop(timeout=10)
            except Exception:  # noqa: BLE001
                pass
        if getattr(self, "redis", None):
            self.redis.close()


def say(msg):
    print(msg, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=40, help="sessions to book (default 40)")
    ap.add_argument("--minutes", type=float, default=2.0, help="spread bookings over this many minutes")
    ap.add_argument("--slot-minutes", type=float, default=5.0, help="timeslot length of each session")
    ap.add_argument("--max-workers", type=int, default=8, help="max workers in the region")
    ap.add_argument("--port", type=int, default=8080, help="lcmd port (0 = any free port)")
    ap.add_argument("--scale-down-wait", type=float, default=90, help="seconds to wait for scale-down at the end")
    ap.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    ap.add_argument("--exit", action="store_true", help="exit after the summary instead of waiting for Ctrl-C")
    a = ap.parse_args()
    if a.port:
        import socket
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", a.port))
        except OSError:
            say(f"port {a.port} is busy; using a free one")
            a.port = 0
        finally:
            s.close()
    demo = Demo(a)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    rc = 0
    try:
        demo.start()
        demo.load()
        demo.run()
        if not a.exit:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping everything the demo started…", flush=True)
    except SystemExit as e:
        print(e, file=sys.stderr)
        rc = 1
    finally:
        demo.stop()
    sys.exit(rc)


if __name__ == "__main__":
    main()
