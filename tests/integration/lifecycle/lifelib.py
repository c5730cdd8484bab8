"""A rig for the session lifecycle and lab tests: Redis, cml-sim, lds-sim, grading-sim and lcmd
with the cml/lds/grading plugins (no cloud plugin, so workers are seeded running and CML-ready
through lcm-seed, which writes domain commands into the store as the API would)."""
import json
import os
import shutil
import subprocess
import tempfile
import time

from harness import (BUILD_DIR, Lcmd, Proc, Redis, check, http_json, reserve_port, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
TOPOLOGY = open(os.path.join(HERE, "lab.yaml")).read()
LDS_USER, LDS_PASS = "lds", "lds-pass"
GRD_ID, GRD_SECRET = "lcm", "lcm-secret"


def sim_proc(name, args):
    d = tempfile.mkdtemp(prefix=f"lcm-{name}-")
    pf = os.path.join(d, "port")
    p = Proc(name, [os.path.join(BUILD_DIR, "bin", name), "--listen", "127.0.0.1:0",
                    "--port-file", pf, *args], log_dir=d)
    wait_until(lambda: os.path.exists(pf) and open(pf).read().strip(), what=f"{name} port")
    p.url = f"http://127.0.0.1:{open(pf).read().strip()}"
    return p


class Rig:
    def __init__(self, cml_args=(), grading_args=(), lcmd_env=None):
        self.redis = Redis()
        # known before lcmd starts (the simulators post CloudEvents to it): held until then
        self.lcm_port, hold = reserve_port()
        lcm_url = f"http://127.0.0.1:{self.lcm_port}"
        self.cml = sim_proc("cml-sim", ["--boot-ms", "800", "--stop-ms", "150", "--wipe-ms", "150",
                                        "--import-ms", "100", *cml_args])
        self.lds = sim_proc("lds-sim", ["--lcm-url", lcm_url, "--lcm-token", Lcmd.ADMIN,
                                        "--username", LDS_USER, "--password", LDS_PASS,
                                        "--ce-retries", "2", "--ce-backoff-ms", "100", "--quiet"])
        self.grd = sim_proc("grading-sim", ["--lcm-url", lcm_url, "--lcm-token", Lcmd.ADMIN,
                                            "--client-id", GRD_ID, "--client-secret", GRD_SECRET,
                                            "--score", "85", "--delay-ms", "300", "--quiet",
                                            "--ce-retries", "2", "--ce-backoff-ms", "100",
                                            *grading_args])
        # only the three providers this rig simulates (no cloud plugin: workers are seeded)
        self.plugdir = tempfile.mkdtemp(prefix="lcm-plugins-")
        for n in ("lcm-cml.so", "lcm-lds.so", "lcm-grading.so"):
            shutil.copy(os.path.join(BUILD_DIR, "plugins", n), os.path.join(self.plugdir, n))
            os.chmod(os.path.join(self.plugdir, n), 0o755)
        env = {
            "LCM_PLUGIN_DIR": self.plugdir,
            "LCM_CML_ENDPOINT": self.cml.url + "/{instance_id}",
            "LCM_CML_USERNAME": "admin", "LCM_CML_PASSWORD": "admin-sim",
            "LCM_CML_VERIFY_TLS": "false",
            "LCM_LDS_URL": self.lds.url, "LCM_LDS_FRONTEND_URL": self.lds.url,
            "LCM_LDS_USERNAME": LDS_USER, "LCM_LDS_PASSWORD": LDS_PASS,
            "LCM_GRADING_URL": self.grd.url, "LCM_GRADING_TOKEN_URL": self.grd.url + "/oauth2/token",
            "LCM_GRADING_CLIENT_ID": GRD_ID, "LCM_GRADING_CLIENT_SECRET": GRD_SECRET,
            "LCM_LEASE_TTL_MS": "1500",
            "LCM_SESSION_POLL_MS": "100", "LCM_SESSION_LDS_POLL_MS": "500",
            "LCM_SESSION_GRADING_POLL_MS": "500", "LCM_SESSION_RETRY_BACKOFF_MS": "100",
            "LCM_SESSION_RETRY_BACKOFF_MAX_MS": "400", "LCM_SESSION_STEP_RETRIES": "2",
            "LCM_SESSION_STEP_TIMEOUT_MS": "5000", "LCM_SESSION_ARCHIVE_AFTER_S": "1",
            "LCM_EXPIRY_GRACE_MINUTES": "0", "LCM_BOOT_LEAD_MINUTES": "0",
            "LCM_LAB_DISCOVERY_INTERVAL_MS": "500", "LCM_LAB_ACTION_TIMEOUT_S": "30",
            "LCM_LOG_LEVEL": "debug",
        }
        env.update(lcmd_env or {})
        self.env = env
        try:
            self.lcmd = Lcmd(self.redis.url, env=env, port=self.lcm_port)
        finally:
            hold.close()
        wait_until(lambda: self.leader(), timeout=15, what="lcmd leader")
        self.seed("template", json.dumps({
            "name": "multi", "instance_type": "m5zn.metal", "ami_name_pattern": "cml-*",
            "region": "us-east-1", "license_type": "enterprise", "enabled": True,
            "capacity": {"cpu_cores": 48, "memory_gb": 192, "storage_gb": 256, "max_nodes": 200}}))

    def leader(self):
        st, _, doc = self.lcmd.get("/readyz")
        return st == 200 and isinstance(doc, dict) and doc.get("role") == "leader"

    def restart_lcmd(self, kill9=True):
        if kill9:
            self.lcmd.proc.kill9()
        else:
            self.lcmd.stop()
        self.lcmd.start()
        wait_until(lambda: self.leader(), timeout=20, what="lcmd leader after restart")

    def close(self):
        rc = self.lcmd.stop()
        for p in (self.cml, self.lds, self.grd):
            p.stop()
        self.redis.close()
        shutil.rmtree(self.plugdir, ignore_errors=True)
        return rc

    # ---- store access -------------------------------------------------------------------
    def seed(self, *args, ok=True):
        # lcm-seed writes like an API client: when a controller moved the aggregate on between
        # its read and its write, the store refuses with a conflict, and the client retries on
        # the new state (a fresh process reads it again).
        for _ in range(10):
            r = subprocess.run([os.path.join(BUILD_DIR, "bin", "lcm-seed"), self.redis.url, *args],
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0 or "conflict" not in r.stderr:
                break
            time.sleep(0.05)
        if ok and r.returncode != 0:
            raise AssertionError(f"lcm-seed {args[0]} failed: {r.stderr}")
        return r.returncode

    def get(self, kind, id_):
        r = subprocess.run(["redis-cli", "-p", str(self.redis.port), "--json", "HGETALL",
                            f"lcm:{{{kind}:{id_}}}"], capture_output=True, text=True)
        try:
            raw = json.loads(r.stdout)
        except ValueError:
            raw = None
        if isinstance(raw, list):
            raw = dict(zip(raw[0::2], raw[1::2]))
        if not raw:
            return None
        doc = {}
        for k, v in raw.items():
            try:
                doc[k] = json.loads(v) if v[:1] in "{[" or v in ("true", "false", "null") \
                    or v.lstrip("-").isdigit() else v
            except ValueError:
                doc[k] = v
        return doc

    def members(self, key):
        r = subprocess.run(["redis-cli", "-p", str(self.redis.port), "SMEMBERS", key],
                           capture_output=True, text=True)
        return [x for x in r.stdout.split("\n") if x]

    def events(self, kind, id_):
        r = subprocess.run(["redis-cli", "-p", str(self.redis.port), "--json", "XRANGE",
                            f"lcm:{{{kind}:{id_}}}:events", "-", "+"], capture_output=True, text=True)
        out = []
        for _, fields in json.loads(r.stdout or "[]"):
            f = dict(zip(fields[0::2], fields[1::2]))
            out.append(f)
        return out

    def status(self, kind, id_):
        d = self.get(kind, id_)
        return d and d.get("status")

    def wait_status(self, kind, id_, want, timeout=30):
        want = (want,) if isinstance(want, str) else tuple(want)
        return wait_until(lambda: self.status(kind, id_) in want and self.get(kind, id_),
                          timeout=timeout, what=f"{kind} {id_} status in {want} "
                                                f"(now {self.status(kind, id_)})")

    # ---- fixtures -----------------------------------------------------------------------
    def definition(self, id_, lds=True, grading=True, reuse=True, **extra):
        body = {"name": id_, "version": "1.0.0", "topology": TOPOLOGY,
                "resource_requirements": {"cpu_cores": 2, "memory_gb": 4, "storage_gb": 10},
                "lds_enabled": lds, "grading_enabled": grading, "lab_reuse_enabled": reuse,
                "max_duration_minutes": 120, "boot_lead_minutes": 0,
                "user_visible_devices": ["desktop", "router"]}
        if lds:
            body["form_qualified_name"] = f"Exam TEST v1 LAB {id_}"
        if grading:
            body["grading_ruleset"] = f"ruleset-{id_}"
        body.update(extra)
        self.seed("definition", id_, json.dumps(body))

    def worker(self, id_, instance_id=None):
        self.seed("worker", json.dumps({"id": id_, "template": "multi", "region": "us-east-1",
                                        "instance_id": instance_id or f"i-{id_}",
                                        "private_ip": "127.0.0.1"}))

    def session(self, id_, definition_id, start=0, end=None, owner="learner-1", worker=None):
        now = int(time.time())
        self.seed("session", json.dumps({"id": id_, "definition_id": definition_id, "owner": owner,
                                         "start": start, "end": end or (now + 3600)}))
        if worker:
            self.schedule(id_, worker)

    def schedule(self, sid, wid):
        # the scheduler may have placed it already; otherwise place it directly
        time.sleep(0.2)
        s = self.get("session", sid)
        if s["status"] == "pending":
            if self.seed("schedule", sid, wid, ok=False) != 0:
                check(self.status("session", sid) != "pending", "could not schedule " + sid)

    # ---- simulators ---------------------------------------------------------------------
    def cml_controller(self, wid):
        st, _, doc = http_json("GET", f"{self.cml.url}/_sim/controllers/i-{wid}")
        return doc if st == 200 else None

    def lds_session(self, lds_id):
        st, _, doc = http_json("GET", f"{self.lds.url}/_sim/sessions/{lds_id}")
        return doc if st == 200 else None

    def lds_sessions(self):
        st, _, doc = http_json("GET", f"{self.lds.url}/_sim/sessions")
        if isinstance(doc, dict):
            doc = doc.get("sessions", doc.get("items", []))
        return doc or []

    def learner(self, lds_id, action):
        st, _, doc = http_json("POST", f"{self.lds.url}/_sim/sessions/{lds_id}/{action}", {})
        check(st in (200, 202), f"lds-sim {action}: {st} {doc}")


def released(rig, sid, wid):
    """The session holds nothing any more: no capacity on the worker, no bound lab, LDS
    released."""
    s = rig.get("session", sid)
    w = rig.get("worker", wid)
    allocs = [a.get("session_id") for a in (w.get("sessions") or [])]
    if sid in allocs:
        return False
    if s.get("lab_record_id"):
        lab = rig.get("lab", s["lab_record_id"])
        if lab and lab.get("active_session_id") == sid:
            return False
    us = s.get("user_session") or {}
    if us.get("lds_session_id") and us.get("status") != "released":
        return False
    return True
