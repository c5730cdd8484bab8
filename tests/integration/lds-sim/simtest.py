"""Helpers for the lds-sim and grading-sim integration tests (python3 standard library only):
a CloudEvent receiver standing in for lcmd, a simulator launcher that checks for a clean
(ASan/LSan-quiet) shutdown, a tiny HTTP client, and an OpenAPI 3.0 schema validator."""
import base64
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def wait_for(pred, timeout=10.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise Failure("timed out waiting for " + what)


# ------------------------------------------------------------------ CloudEvent receiver

class Receiver:
    """Records every POST; answers `script` statuses in order (then 202)."""

    def __init__(self, port=0):
        self.events = []      # (path, headers dict lower-case, body text)
        self.attempts = 0
        self.script = []      # statuses to answer before accepting
        self.lock = threading.Lock()
        self._start(port)

    def _start(self, port):
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode()
                with rec.lock:
                    rec.attempts += 1
                    status = rec.script.pop(0) if rec.script else 202
                    if status < 300:
                        rec.events.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True
            request_queue_size = 256  # the default 5 makes bursts of events fail to connect

        self.server = Server(("127.0.0.1", port), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def restart(self):
        self._start(self.port)

    def bodies(self):
        with self.lock:
            return [json.loads(b) for (_, _, b) in self.events]

    def wait_events(self, n, timeout=10.0):
        wait_for(lambda: len(self.events) >= n, timeout, "%d CloudEvents" % n)
        return self.bodies()

    def unique(self):
        """Events de-duplicated by id (delivery is at least once: a lost answer means a resend)."""
        seen, out = set(), []
        for e in self.bodies():
            if e["id"] not in seen:
                seen.add(e["id"])
                out.append(e)
        return out

    def wait_unique(self, n, timeout=10.0):
        wait_for(lambda: len(self.unique()) >= n, timeout, "%d distinct CloudEvents" % n)
        return self.unique()


# ------------------------------------------------------------------ simulator process

class Sim:
    def __init__(self, binary, args):
        self.tmp = tempfile.mkdtemp(prefix="ldsgrdsim-")
        self.port_file = os.path.join(self.tmp, "port")
        self.log_path = os.path.join(self.tmp, "stderr.log")
        self.log = open(self.log_path, "w")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--port-file",
                                      self.port_file] + list(args),
                                     stdout=self.log, stderr=self.log, env=env)
        try:
            wait_for(lambda: os.path.exists(self.port_file) or self.proc.poll() is not None,
                     15, "simulator to listen")
        except Failure:
            self.proc.kill()
            raise
        if self.proc.poll() is not None:
            raise Failure("simulator exited at start:\n" + self.stderr())
        self.port = int(open(self.port_file).read())
        self.url = "http://127.0.0.1:%d" % self.port

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        elif self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            sys.stderr.write("--- simulator log (tail) ---\n" + self.stderr()[-3000:])
        return False

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stderr(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM):
        """Stops the sim and fails unless it exits 0 with no sanitizer report."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure("simulator did not exit on signal %d" % sig)
        out = self.stderr()
        self.log.close()
        check(self.proc.returncode == 0, "simulator exit code %d\n%s" % (self.proc.returncode, out[-4000:]))
        check("Sanitizer" not in out and "runtime error" not in out,
              "sanitizer report:\n" + out[-8000:])
        return out


# ------------------------------------------------------------------ HTTP client

class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Resp(%d, %r)" % (self.status, self.body[:300])


def http(method, url, body=None, headers=None, basic=None, bearer=None, form=None, timeout=10):
    h = dict(headers or {})
    data = None
    if form is not None:
        data = "&".join("%s=%s" % (urllib.request.quote(k), urllib.request.quote(v))
                        for k, v in form.items()).encode()
        h.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif body is not None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        h.setdefault("Content-Type", "application/json")
    if basic:
        h["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % basic).encode()).decode()
    if bearer:
        h["Authorization"] = "Bearer " + bearer
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Resp(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode())
    except urllib.error.HTTPError as e:
        return Resp(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode())


# ------------------------------------------------------------------ OpenAPI 3.0 validation

def load_spec(name):
    """The reference spec from LCM_REFERENCE_DIR (default ../shared/reference next to the repo);
    falls back to the vendored extract in spec/ (same structure, only what the tests use)."""
    ref = os.environ.get("LCM_REFERENCE_DIR") or os.path.join(HERE, "..", "..", "..", "..",
                                                              "shared", "reference")
    full = os.path.join(ref, name)
    if os.path.exists(full):
        with open(full) as f:
            return json.load(f), full
    extract = os.path.join(HERE, "spec", os.path.basename(name))
    with open(extract) as f:
        return json.load(f), extract


UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class Validator:
    def __init__(self, spec):
        self.spec = spec

    def resolve(self, s):
        while "$ref" in s:
            node = self.spec
            for part in s["$ref"].lstrip("#/").split("/"):
                node = node[part]
            s = node
        return s

    def validate(self, value, schema, path="$", response=True):
        """Raises Failure on the first violation. response=True: writeOnly members must be absent."""
        s = self.resolve(schema)
        if value is None:
            check(s.get("nullable", False) or not s, "%s: null not allowed" % path)
            return
        for sub in s.get("allOf", []):
            self.validate(value, sub, path, response)
        t = s.get("type")
        if t == "object" or (t is None and "properties" in s):
            check(isinstance(value, dict), "%s: expected object, got %r" % (path, value))
            props = s.get("properties", {})
            for r in s.get("required", []):
                rs = self.resolve(props.get(r, {}))
                if response and rs.get("writeOnly"):
                    continue
                check(r in value, "%s: missing required %r" % (path, r))
            for k, v in value.items():
                if k in props:
                    ps = self.resolve(props[k])
                    if response:
                        check(not ps.get("writeOnly"), "%s.%s: writeOnly in a response" % (path, k))
                    self.validate(v, props[k], "%s.%s" % (path, k), response)
                else:
                    ap = s.get("additionalProperties", True)
                    check(ap is not False, "%s: unexpected member %r" % (path, k))
                    if isinstance(ap, dict) and ap:
                        self.validate(v, ap, "%s.%s" % (path, k), response)
        elif t == "array":
            check(isinstance(value, list), "%s: expected array" % path)
            check(len(value) >= s.get("minItems", 0), "%s: too few items" % path)
            for i, it in enumerate(value):
                self.validate(it, s.get("items", {}), "%s[%d]" % (path, i), response)
        elif t == "string":
            check(isinstance(value, str), "%s: expected string, got %r" % (path, value))
            check(len(value) >= s.get("minLength", 0), "%s: too short" % path)
            fmt = s.get("format")
            if fmt == "uuid":
                check(UUID_RE.match(value), "%s: not a uuid: %r" % (path, value))
            if fmt == "date-time":
                check(DT_RE.match(value), "%s: not a date-time: %r" % (path, value))
        elif t == "integer":
            check(isinstance(value, int) and not isinstance(value, bool),
                  "%s: expected integer, got %r" % (path, value))
        elif t == "number":
            check(isinstance(value, (int, float)) and not isinstance(value, bool),
                  "%s: expected number" % path)
        elif t == "boolean":
            check(isinstance(value, bool), "%s: expected boolean" % path)
        if "enum" in s:
            check(value in s["enum"], "%s: %r not in %r" % (path, value, s["enum"]))

    def response_schema(self, path, method, status, ctype="application/json"):
        op = self.spec["paths"][path][method.lower()]
        r = op["responses"][str(status)]
        return r["content"][ctype]["schema"]

    def request_schema(self, path, method, ctype="application/json"):
        op = self.spec["paths"][path][method.lower()]
        return op["requestBody"]["content"][ctype]["schema"]

    def check_response(self, resp, path, method, status=None):
        """Asserts the status is one the operation documents and the body matches its schema."""
        op = self.spec["paths"][path][method.lower()]
        check(str(resp.status) in op["responses"],
              "%s %s: status %d not in the spec's %s" % (method, path, resp.status,
                                                        list(op["responses"])))
        if status is not None:
            check(resp.status == status, "%s %s: expected %d, got %r" % (method, path, status, resp))
        content = op["responses"][str(resp.status)].get("content")
        if not content:
            return None
        body = resp.json()
        self.validate(body, content["application/json"]["schema"], "%s %s" % (method, path))
        return body

    def check_request(self, body, path, method):
        self.validate(body, self.request_schema(path, method), "request " + path, response=False)


# ------------------------------------------------------------------ CloudEvent checks

def check_cloudevent(ev, headers, token, type_, subject, source):
    check(headers.get("content-type", "").startswith("application/cloudevents+json"),
          "CloudEvent content type: %r" % headers.get("content-type"))
    check(headers.get("authorization") == "Bearer " + token, "bearer token to lcmd missing or wrong")
    check(ev.get("specversion") == "1.0", "specversion")
    check(isinstance(ev.get("id"), str) and UUID_RE.match(ev["id"]), "event id")
    check(ev.get("type") == type_, "event type %r != %r" % (ev.get("type"), type_))
    check(ev.get("source") == source, "event source %r" % ev.get("source"))
    check(ev.get("subject") == subject, "event subject %r != %r" % (ev.get("subject"), subject))
    check(DT_RE.match(ev.get("time", "")), "event time")
    check(ev.get("datacontenttype") == "application/json", "datacontenttype")
    check(isinstance(ev.get("data"), dict), "event data")


def run(tests):
    """Runs (name, fn) pairs; prints a line per test; exits non-zero on any failure."""
    failed = 0
    for name, fn in tests:
        t0 = time.time()
        try:
            fn()
            print("ok   %-40s %.2fs" % (name, time.time() - t0), flush=True)
        except Exception as e:  # noqa: BLE001 - report every kind of failure the same way
            failed += 1
            print("FAIL %-40s %s: %s" % (name, type(e).__name__, e), flush=True)
    print("%d/%d passed" % (len(tests) - failed, len(tests)))
    sys.exit(1 if failed else 0)
