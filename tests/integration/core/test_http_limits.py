"""HTTP server limits: a 64 MiB body is refused with 413 without being buffered, oversized
headers are refused, slow or idle clients are cut off, and 2,000 idle connections do not
stop /healthz from answering."""
import resource
import socket
import time

from harness import Lcmd, Redis, check, run_tests

redis = Redis()
lc = Lcmd(redis.url, env={"LCM_HTTP_TIMEOUT_S": "2", "LCM_HTTP_MAX_BODY_BYTES": "1048576"})


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raw(data, read_timeout=5.0):
    s = socket.create_connection(("127.0.0.1", lc.port))
    s.settimeout(read_timeout)
    try:
        s.sendall(data)
    except OSError:
        pass
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                break
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return out


def status_of(resp):
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.") else None


def test_body_too_large_declared():
    before = rss_kb(lc.proc.p.pid)
    resp = raw(b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 67108864\r\n\r\n" + b"x" * 65536)
    check(status_of(resp) == 413, resp[:200])
    after = rss_kb(lc.proc.p.pid)
    check(after - before < 32 * 1024, f"RSS grew by {after - before} kB: body was buffered")


def test_body_too_large_chunked():
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(40))
    resp = raw(b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    check(status_of(resp) == 413, resp[:200])


def test_headers_too_large():
    resp = raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
    check(status_of(resp) in (400, 413, 431), resp[:200])
    check(status_of(resp) != 200, "oversized headers accepted")


def test_slow_client_cut_off():
    s = socket.create_connection(("127.0.0.1", lc.port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    s.settimeout(15)
    t0 = time.monotonic()
    try:
        data = s.recv(100)
    except ConnectionResetError:
        data = b""
    took = time.monotonic() - t0
    s.close()
    check(data == b"" or status_of(data) in (400, 408), data)
    check(took < 10, f"half-sent request kept open {took:.1f}s with a 2 s timeout")
    print(f"     half-sent request closed after {took:.2f}s (timeout 2 s)")


def test_idle_connections():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    # a longer timeout so the idle connections stay open while we measure
    lc2 = Lcmd(redis.url, env={"LCM_HTTP_TIMEOUT_S": "60"})
    socks = []
    try:
        for _ in range(2000):
            socks.append(socket.create_connection(("127.0.0.1", lc2.port)))
        worst = 0.0
        for _ in range(20):
            t0 = time.monotonic()
            st, _, _ = lc2.get("/healthz")
            worst = max(worst, time.monotonic() - t0)
            check(st == 200, st)
        print(f"     /healthz with 2000 idle connections: worst of 20 = {worst * 1e3:.1f} ms")
        check(lc2.proc.alive(), "lcmd died")
    finally:
        for s in socks:
            s.close()
        proc = lc2.proc
        rc = lc2.stop()
    check(rc == 0, proc.stderr()[-2000:])


def test_still_healthy_and_clean_exit():
    check(lc.get("/healthz")[0] == 200, "lcmd unhealthy after abuse")
    proc = lc.proc
    rc = lc.stop()
    redis.close()
    check(rc == 0, proc.stderr()[-2000:])


run_tests([test_body_too_large_declared, test_body_too_large_chunked, test_headers_too_large,
           test_slow_client_cut_off, test_idle_connections, test_still_healthy_and_clean_exit])
