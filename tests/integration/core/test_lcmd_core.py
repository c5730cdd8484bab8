"""lcmd as a process: flags, config validation, embedded Redis (AOF on, stopped on exit),
operational endpoints, auth on protected routes, clean shutdown with no leaks."""
import os
import signal
import subprocess
import tempfile

from harness import BUILD_DIR, Lcmd, Redis, SOURCE_DIR, check, free_port, http_json, run_tests, wait_until

LCMD = os.path.join(BUILD_DIR, "bin", "lcmd")


def run_lcmd(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("LCM_")}
    e.update(env or {})
    return subprocess.run([LCMD, *args], capture_output=True, text=True, env=e, timeout=30)


def test_version_and_help():
    r = run_lcmd("--version")
    check(r.returncode == 0 and r.stdout.startswith("lcmd "), r.stdout)
    r = run_lcmd("--bogus")
    check(r.returncode == 2, "unknown flag must fail")


def test_check_config_defaults_file_env():
    r = run_lcmd("--check-config")
    check(r.returncode == 0, r.stderr)
    check("listen = 127.0.0.1:8080   # default" in r.stdout, r.stdout)
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("listen = 127.0.0.1:9001\nlog_level = debug\nredis_url = redis://127.0.0.1:7777/2\n")
    r = run_lcmd("--check-config", "--config", f.name, env={"LCM_LISTEN": "127.0.0.1:9002"})
    check(r.returncode == 0, r.stderr)
    check("listen = 127.0.0.1:9002   # env" in r.stdout, r.stdout)
    check("log_level = debug   # file" in r.stdout, r.stdout)
    os.unlink(f.name)


def test_check_config_rejects_invalid():
    cases = [
        ({"LCM_LISTEN": "nope"}, "listen: 'nope' is not host:port"),
        ({"LCM_HTTP_TIMEOUT_S": "0"}, "out of range"),
        ({"LCM_REDIS_URL": "http://x"}, "redis_url"),
        ({"LCM_LOG_LEVEL": "chatty"}, "not one of"),
        ({"LCM_TOKEN": "root:x:abc"}, "unknown role"),
    ]
    for env, needle in cases:
        r = run_lcmd("--check-config", env=env)
        check(r.returncode == 2, f"{env}: exit {r.returncode}")
        check(needle in r.stderr, f"{env}: stderr {r.stderr!r} lacks {needle!r}")
    r = run_lcmd("--check-config", env={"LCM_ADMIN_TOKEN": "a-secret-admin-token-xyz"})
    check("a-secret-admin-token-xyz" not in r.stdout + r.stderr, "secret printed")


def test_config_docs_current():
    r = run_lcmd("--config-docs")
    with open(os.path.join(SOURCE_DIR, "docs", "config.md")) as f:
        check(f.read() == r.stdout, "docs/config.md is stale: regenerate with `build/bin/lcmd --config-docs > docs/config.md`")


def test_operator_guide_lists_every_key():
    import re
    keys = re.findall(r"^\| `([a-z0-9_]+)` \| `(LCM_[A-Z0-9_]+)`", run_lcmd("--config-docs").stdout, re.M)
    check(len(keys) > 10, keys)
    with open(os.path.join(SOURCE_DIR, "docs", "operator-guide.md")) as f:
        guide = f.read()
    for k, env in keys:
        check(f"| `{k}` | `{env}` |" in guide, f"docs/operator-guide.md does not list {k} / {env}")


def test_embedded_redis_and_token():
    d = tempfile.mkdtemp(prefix="lcm-embedded-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LCM_")}
    env.update({"LCM_LISTEN": f"127.0.0.1:{port}", "LCM_DATA_DIR": os.path.join(d, "data")})
    out = open(os.path.join(d, "out"), "w+")
    p = subprocess.Popen([LCMD], env=env, cwd=d, stdout=out, stderr=subprocess.PIPE, text=True)
    try:
        def token():
            out.seek(0)
            for line in out.read().splitlines():
                if line.startswith("admin token"):
                    return line.split(": ", 1)[1]
            return None
        tok = wait_until(token, what="admin token line")
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_json("GET", url + "/readyz")[0] == 200, what="ready")
        sock = os.path.join(d, "data", "redis.sock")
        r = subprocess.run(["redis-cli", "-s", sock, "CONFIG", "GET", "appendonly"], capture_output=True, text=True)
        check("yes" in r.stdout, "AOF must be on: " + r.stdout)
        # the generated token works and only appears once, on stdout
        env2 = dict(env)
        check(tok.startswith("lcm_") and len(tok) > 30, tok)
        st, _, _ = http_json("GET", url + "/api/v1/nonexistent", token=tok)
        check(st == 404, f"authenticated unknown route: {st}")
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=20)
    check(p.returncode == 0, f"exit {p.returncode}: {err[-2000:]}")
    check(tok not in err, "token leaked into the log")
    check(not os.path.exists(os.path.join(d, "data", "redis.sock")) or
          subprocess.run(["redis-cli", "-s", os.path.join(d, "data", "redis.sock"), "PING"],
                         capture_output=True, text=True).stdout.strip() != "PONG",
          "embedded redis still running after lcmd exit")
    del env2


def test_endpoints_and_auth():
    r = Redis()
    lc = Lcmd(r.url, env={"LCM_METRICS_OPEN": "false"})
    try:
        st, hd, doc = lc.get("/healthz")
        check(st == 200 and doc["status"] == "ok", doc)
        check("X-Request-Id" in hd, hd)
        st, _, doc = lc.get("/readyz")
        check(st == 200 and doc["checks"]["redis"] == "ok", doc)
        st, hd, doc = lc.get("/metrics")
        check(st == 401 and hd["Content-Type"] == "application/problem+json", (st, hd))
        check(doc["type"] == "urn:lcm:problem:unauthenticated" and doc["status"] == 401, doc)
        st, _, _ = lc.get("/metrics", token="wrong-token")
        check(st == 401, st)
        st, hd, body = lc.get("/metrics", token=Lcmd.ADMIN)
        check(st == 200 and hd["Content-Type"].startswith("text/plain"), (st, hd))
        check(b"lcm_http_requests_total" in body if isinstance(body, bytes) else "lcm_http_requests_total" in body, "metrics body")
        st, _, doc = lc.get("/nope", token=Lcmd.ADMIN)
        check(st == 404 and doc["type"] == "urn:lcm:problem:not-found", doc)
        st, _, doc = lc.call("POST", "/healthz")
        check(st == 405, st)
    finally:
        proc = lc.proc
        rc = lc.stop()
        r.close()
    check(rc == 0, f"lcmd exit code {rc} (ASan/LSan report?):\n{proc.stderr()[-3000:]}")


def test_static_files():
    import socket
    d = tempfile.mkdtemp(prefix="lcm-ui-")
    os.makedirs(os.path.join(d, "js"))
    with open(os.path.join(d, "index.html"), "w") as f:
        f.write("<!doctype html><title>LCM</title>")
    with open(os.path.join(d, "js", "app.js"), "w") as f:
        f.write("export const x = 1;")
    outside = os.path.join(os.path.dirname(d), "secret.txt")
    with open(outside, "w") as f:
        f.write("TOPSECRET-CONTENT-42")
    r = Redis()
    lc = Lcmd(r.url, env={"LCM_UI_DIR": d})
    try:
        st, hd, body = http_json("GET", lc.url + "/")
        check(st == 200 and hd["Content-Type"].startswith("text/html"), (st, hd))
        st, hd, _ = http_json("GET", lc.url + "/js/app.js")
        check(st == 200 and hd["Content-Type"].startswith("text/javascript"), hd)
        for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/js/../../secret.txt", "/nope.js"]:
            s = socket.create_connection(("127.0.0.1", lc.port))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            resp = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                resp += chunk
            s.close()
            check(b"TOPSECRET-CONTENT-42" not in resp.split(b"\r\n\r\n", 1)[-1], f"{path} escaped the ui dir")
            check(resp.startswith(b"HTTP/1.1 404") or resp.startswith(b"HTTP/1.1 400"), (path, resp[:60]))
        st, _, _ = http_json("GET", lc.url + "/api/v1/unknown")
        check(st == 404, "API paths are never served as files")
    finally:
        lc.stop()
        r.close()


def test_clean_shutdown_with_traffic():
    import threading
    r = Redis()
    lc = Lcmd(r.url)
    stop = threading.Event()
    codes = []

    def hammer():
        while not stop.is_set():
            try:
                codes.append(lc.get("/readyz", timeout=2)[0])
            except Exception:  # noqa: BLE001 - connection refused once lcmd is gone
                codes.append(-1)
    ts = [threading.Thread(target=hammer) for _ in range(4)]
    for t in ts:
        t.start()
    wait_until(lambda: len(codes) > 200, what="traffic")
    proc = lc.proc
    rc = lc.stop()
    stop.set()
    for t in ts:
        t.join()
    r.close()
    check(rc == 0, f"exit {rc}; stderr tail:\n{proc.stderr()[-3000:]}")
    check("stopped" in proc.stderr(), "no 'stopped' log line")


run_tests([test_version_and_help, test_check_config_defaults_file_env, test_check_config_rejects_invalid,
           test_config_docs_current, test_operator_guide_lists_every_key, test_embedded_redis_and_token, test_endpoints_and_auth, test_static_files,
           test_clean_shutdown_with_traffic])
