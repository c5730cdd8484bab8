"""Process harness for LCM integration tests: free ports, real redis-server, moto's server,
lcmd, simulators. Everything binds to loopback and is stopped at exit (atexit + context
managers), so a failing test leaves nothing running."""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BUILD_DIR = os.environ.get("LCM_BUILD_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def reserve_port():
    """A free loopback port and the socket holding it: bound with SO_REUSEADDR and not
    listening, so that no other bind (port 0 included) takes the port, while a server that
    sets SO_REUSEADDR (lcmd, redis-server, the simulators) can still listen on it. Close the
    socket once that server is up. For a port that must be known before its server starts."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1], s


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Proc:
    def __init__(self, name, argv, env=None, cwd=None, log_dir=None):
        self.name = name
        self.log_dir = log_dir or tempfile.mkdtemp(prefix=f"lcm-{name}-")
        self.out_path = os.path.join(self.log_dir, f"{name}.out")
        self.err_path = os.path.join(self.log_dir, f"{name}.err")
        self.argv, self.env, self.cwd = argv, env, cwd
        self.p = None
        self.start()

    def start(self):
        full_env = dict(os.environ)
        if self.env:
            full_env.update(self.env)
        self.out = open(self.out_path, "ab")
        self.err = open(self.err_path, "ab")
        self.p = subprocess.Popen(self.argv, env=full_env, cwd=self.cwd, stdout=self.out,
                                  stderr=self.err, start_new_session=True)
        _procs.append(self)

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def send(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.p is None:
            return None
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.out.close()
        self.err.close()
        rc = self.p.returncode
        if self in _procs:
            _procs.remove(self)
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def stdout(self):
        with open(self.out_path, "r", errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.err_path, "r", errors="replace") as f:
            return f.read()


@atexit.register
def _cleanup():
    for p in list(_procs):
        try:
            p.stop(signal.SIGKILL, timeout=2)
        except Exception:  # noqa: BLE001
            pass


class Redis:
    def __init__(self, port=None, appendfsync="everysec", extra=()):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="lcm-redis-")
        self.appendfsync = appendfsync
        self.extra = list(extra)
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
                "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")] + self.extra
        self.proc = Proc("redis", argv, log_dir=self.dir)
        wait_until(lambda: self.cli("PING").strip() == "PONG", what="redis ping")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                           text=True, timeout=10)
        return r.stdout

    def stop(self, sig=signal.SIGTERM):
        if self.proc:
            self.proc.stop(sig)
            self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def http(method, url, body=None, token=None, headers=None, timeout=10):
    """Returns (status, headers dict, body bytes); never raises on HTTP errors."""
    data = None
    h = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def http_json(method, url, body=None, token=None, headers=None, timeout=10):
    st, hd, raw = http(method, url, body, token, headers, timeout)
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = raw
    return st, hd, doc


class Lcmd:
    ADMIN = "test-admin-token-0123456789"

    def __init__(self, redis_url=None, env=None, args=(), port=None, data_dir=None, wait_ready=True):
        self.port = port or free_port()
        self.dir = data_dir or tempfile.mkdtemp(prefix="lcm-lcmd-")
        e = {"LCM_LISTEN": f"127.0.0.1:{self.port}", "LCM_ADMIN_TOKEN": self.ADMIN,
             "LCM_DATA_DIR": os.path.join(self.dir, "data"), "LCM_LOG_LEVEL": "info"}
        if redis_url:
            e["LCM_REDIS_URL"] = redis_url
        if env:
            e.update(env)
        self.env = e
        self.args = list(args)
        self.proc = None
        self.start(wait_ready)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready=True):
        self.proc = Proc("lcmd", [os.path.join(BUILD_DIR, "bin", "lcmd"), *self.args],
                         env=self.env, cwd=self.dir, log_dir=self.dir)
        wait_until(lambda: self.get("/healthz")[0] == 200 or not self.proc.alive(),
                   timeout=20, what="lcmd /healthz")
        if not self.proc.alive():
            raise AssertionError("lcmd exited at start:\n" + self.proc.stderr())
        if wait_ready:
            wait_until(lambda: self.get("/readyz")[0] == 200, timeout=20, what="lcmd /readyz")

    def get(self, path, token=None, **kw):
        return http_json("GET", self.url + path, token=token, **kw)

    def call(self, method, path, body=None, token=ADMIN, **kw):
        return http_json(method, self.url + path, body, token=token, **kw)

    def stop(self, sig=signal.SIGTERM):
        rc = self.proc.stop(sig) if self.proc else None
        self.proc = None
        return rc


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def run_tests(tests):
    """Runs test functions in order; prints a summary; exits non-zero on any failure."""
    failed = 0
    for t in tests:
        t0 = time.monotonic()
        try:
            t()
            print(f"ok   {t.__name__} ({time.monotonic() - t0:.2f}s)", flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            import traceback
            traceback.print_exc()
            print(f"FAIL {t.__name__}: {e}", flush=True)
    _cleanup()
    print(f"{len(tests) - failed}/{len(tests)} passed")
    sys.exit(1 if failed else 0)
