"""Helpers for the host/net tests: a tiny RESP client, a seeder that writes aggregates through
the store's own append path (tests/lcm_events_seed), the lcmd under test (build/bin/lcmd when
it links host/net, else the minimal tests/lcm_events_host), an SSE reader and a CloudEvents
receiver (a Python http.server) that records what it gets."""
import http.server
import json
import os
import socket
import subprocess
import threading
import time

from harness import BUILD_DIR, Lcmd, Proc, wait_until


class Resp:
    """Minimal blocking RESP2 client (one connection)."""

    def __init__(self, port):
        self.port = port
        self.seeder = None
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.s.makefile("rb")

    def close(self):
        if self.seeder:
            self.seeder.close()
            self.seeder = None
        self.f.close()
        self.s.close()

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode("utf-8", "replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ValueError(f"bad RESP line {line!r}")

    def __call__(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.s.sendall(b"".join(out))
        r = self._read()
        if isinstance(r, RuntimeError):
            raise r
        return r


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Seeder:
    """tests/lcm_events_seed: appends through lcm_store_append (the store's own write path)."""

    def __init__(self, port):
        self.p = subprocess.Popen([os.path.join(BUILD_DIR, "tests", "lcm_events_seed"), f"redis://127.0.0.1:{port}"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self.p.stdout.readline().strip()
        if line != "ready":
            raise AssertionError(f"lcm_events_seed did not start: {line!r}")

    def write(self, kind, agg_id, expected, events):
        req = {"kind": kind, "id": agg_id, "expected": expected,
               "events": [{"type": t, "data": d} for t, d in events]}
        self.p.stdin.write(json.dumps(req, separators=(",", ":")) + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline().strip()
        if not out.startswith("ok "):
            raise RuntimeError(out or "lcm_events_seed died")
        return int(out[3:])

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(10)
        except (OSError, subprocess.SubprocessError):
            self.p.kill()


def append(r, kind, agg_id, expected, events):
    """Appends events [(type, data dict)] to one aggregate; returns the new version. Each Resp
    connection gets its own seeder process (threads use their own Resp)."""
    if getattr(r, "seeder", None) is None:
        r.seeder = Seeder(r.port)
    return r.seeder.write(kind, agg_id, expected, events)


SESSION_CREATED = {
    "definition_id": "def-1", "definition_name": "Lab", "definition_version": "1", "owner": "alice",
    "reservation_id": None, "timeslot": {"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T12:00:00Z"},
    "boot_lead_minutes": -1, "lds_enabled": True, "grading_enabled": True,
}

WORKER_CREATED = {
    "name": "w", "region": "us-east-1", "template": "small", "instance_type": "m5.xlarge",
    "origin": "lcm", "declared": {"cpu_cores": 16, "memory_gb": 64, "storage_gb": 200, "max_nodes": 50},
    "license_type": "enterprise", "desired_status": "running", "ports_range": [2000, 2999],
}


def make_session(r, sid, lds_session_id=None, grading_session_id=None):
    evs = [("session.created", SESSION_CREATED)]
    if lds_session_id:
        evs.append(("session.user_session", {"lds_session_id": lds_session_id}))
    if grading_session_id:
        evs.append(("session.grading_updated", {"grading_session_id": grading_session_id}))
    return append(r, "session", sid, 0, evs)


def lcmd_has_net():
    try:
        out = subprocess.run(["nm", "-D", "--defined-only", os.path.join(BUILD_DIR, "bin", "lcmd")],
                             capture_output=True, text=True, timeout=30).stdout
        return " lcm_net_new" in out
    except (OSError, subprocess.SubprocessError):
        return False


def has_symbol(name):
    """Whether the binary under test defines name (e.g. an optional httpd accessor)."""
    binary = os.path.join(BUILD_DIR, "bin", "lcmd") if lcmd_has_net() else os.path.join(BUILD_DIR, "tests", "lcm_events_host")
    try:
        out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.endswith(" " + name) for line in out.splitlines())


class Host(Lcmd):
    """lcmd when it wires host/net, else the minimal events host (same config, same routes)."""

    def start(self, wait_ready=True):
        binary = os.path.join(BUILD_DIR, "bin", "lcmd")
        if os.environ.get("LCM_EVENTS_HOST") == "1" or not lcmd_has_net():
            binary = os.path.join(BUILD_DIR, "tests", "lcm_events_host")
        self.binary = binary
        self.proc = Proc("lcmd", [binary, *self.args], env=self.env, cwd=self.dir, log_dir=self.dir)
        wait_until(lambda: self.get("/healthz")[0] == 200 or not self.proc.alive(),
                   timeout=20, what="lcmd /healthz")
        if not self.proc.alive():
            raise AssertionError("lcmd exited at start:\n" + self.proc.stderr())
        if wait_ready:
            wait_until(lambda: self.get("/readyz")[0] == 200, timeout=20, what="lcmd /readyz")

    def stop(self, sig=None):
        """Stops lcmd (SIGTERM unless told otherwise) and fails on a non-zero exit or any
        sanitizer report."""
        import signal as _signal
        if not self.proc:
            return None
        proc = self.proc
        rc = Lcmd.stop(self, sig or _signal.SIGTERM)
        err = proc.stderr()
        if sig in (None, _signal.SIGTERM):
            if rc != 0 or "Sanitizer" in err or "runtime error" in err:
                raise AssertionError(f"lcmd exited {rc}:\n" + err[-4000:])
        return rc

    def metric(self, name):
        import urllib.request
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


class Sse:
    """Reads an SSE stream on a raw socket (so tests see heartbeats and can drop abruptly)."""

    def __init__(self, host, path="/api/v1/events", token=Lcmd.ADMIN, headers=None, read=True):
        self.s = socket.create_connection(("127.0.0.1", host.port), timeout=10)
        h = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        h.update(headers or {})
        req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        self.s.sendall(req.encode())
        self.buf = b""
        self.events = []
        self.comments = []
        self.status = None
        self.closed = False
        self.lock = threading.Lock()
        self._head()
        self.t = None
        if read:
            self.t = threading.Thread(target=self._loop, daemon=True)
            self.t.start()

    def _recv(self):
        try:
            d = self.s.recv(65536)
        except OSError:
            d = b""
        if not d:
            self.closed = True
        return d

    def _head(self):
        while b"\r\n\r\n" not in self.buf:
            d = self._recv()
            if not d:
                raise AssertionError("SSE connection closed before headers")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self.raw = b""

    def _dechunk(self):
        # strip HTTP/1.1 chunk framing from self.buf into self.raw
        while True:
            if not self.chunked:
                self.raw += self.buf
                self.buf = b""
                return
            i = self.buf.find(b"\r\n")
            if i < 0:
                return
            n = int(self.buf[:i].split(b";")[0], 16)
            if len(self.buf) < i + 2 + n + 2:
                return
            self.raw += self.buf[i + 2:i + 2 + n]
            self.buf = self.buf[i + 2 + n + 2:]
            if n == 0:
                self.closed = True
                return

    def _parse(self):
        while b"\n\n" in self.raw:
            block, self.raw = self.raw.split(b"\n\n", 1)
            ev = {}
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    with self.lock:
                        self.comments.append(line[1:].strip())
                    continue
                k, _, v = line.partition(":")
                ev[k] = v[1:] if v.startswith(" ") else v
            if "data" in ev:
                ev["json"] = json.loads(ev["data"])
                with self.lock:
                    self.events.append(ev)

    def _loop(self):
        while not self.closed:
            d = self._recv()
            if not d:
                break
            self.buf += d
            self._dechunk()
            self._parse()
        self.buf += b""
        self._dechunk()
        self._parse()

    def got(self):
        with self.lock:
            return list(self.events)

    def close(self):
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.s.close()


class Receiver:
    """A CloudEvents sink: records every POST (structured mode); can be told to fail."""

    def __init__(self):
        rec = self
        self.lock = threading.Lock()
        self.posts = []            # every delivery, in arrival order
        self.fail_subjects = set()  # answer 500 for these subjects
        self.fail_all = False
        self.delay = 0.0            # seconds before answering (keeps deliveries in flight)

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                ok = True
                try:
                    ev = json.loads(body)
                except ValueError:
                    ev, ok = None, False
                with rec.lock:
                    fail = rec.fail_all or (ev and ev.get("subject") in rec.fail_subjects)
                    if ok and not fail:
                        rec.posts.append({"ct": self.headers.get("Content-Type"), "auth": self.headers.get("Authorization"), "ev": ev})
                if rec.delay:
                    time.sleep(rec.delay)
                code = 500 if fail or not ok else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.srv.handle_error = lambda *a: None   # lcmd killed mid-request: expected here
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self):
        with self.lock:
            return [p["ev"] for p in self.posts]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
