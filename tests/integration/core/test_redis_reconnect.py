"""Redis loss: kill and restart a real redis-server while requests run. /readyz goes 503
while Redis is down and back to 200 by itself; lcmd never crashes or hangs."""
import signal
import threading
import time

from harness import Lcmd, Redis, check, run_tests, wait_until


def test_kill_and_restart():
    r = Redis()
    lc = Lcmd(r.url, env={"LCM_REDIS_BACKOFF_MAX_MS": "300"})
    stop = threading.Event()
    seen = []
    worst = [0.0]

    def poll():
        while not stop.is_set():
            t0 = time.monotonic()
            st = lc.get("/readyz", timeout=5)[0]
            worst[0] = max(worst[0], time.monotonic() - t0)
            seen.append(st)
            time.sleep(0.01)
    t = threading.Thread(target=poll)
    t.start()
    try:
        wait_until(lambda: seen and seen[-1] == 200, what="ready before kill")
        r.stop(signal.SIGKILL)
        wait_until(lambda: seen[-1] == 503, timeout=10, what="readyz 503 after redis kill")
        check(lc.get("/healthz")[0] == 200, "healthz must stay up")
        time.sleep(1.0)
        r.start()
        wait_until(lambda: seen[-1] == 200, timeout=10, what="readyz 200 after redis restart")
    finally:
        stop.set()
        t.join()
    st, _, body = lc.get("/metrics")
    text = body.decode() if isinstance(body, bytes) else str(body)
    check("lcm_redis_reconnects_total" in text, "reconnects not counted")
    check(worst[0] < 5, f"a request hung for {worst[0]:.1f}s")
    proc = lc.proc
    rc = lc.stop()
    r.close()
    check(rc == 0, proc.stderr()[-2000:])
    print(f"     readyz samples={len(seen)} 503s={seen.count(503)} worst={worst[0] * 1e3:.0f} ms")


def test_start_without_redis_then_recover():
    r = Redis()
    port = r.port
    r.stop()
    lc = Lcmd(f"redis://127.0.0.1:{port}", env={"LCM_REDIS_BACKOFF_MAX_MS": "200"}, wait_ready=False)
    time.sleep(1.0)
    check(lc.get("/readyz")[0] == 503, "ready without redis")
    r.start()
    wait_until(lambda: lc.get("/readyz")[0] == 200, timeout=10, what="ready after redis appears")
    proc = lc.proc
    rc = lc.stop()
    r.close()
    check(rc == 0, proc.stderr()[-2000:])


def test_stuck_redis_detected():
    r = Redis()
    lc = Lcmd(r.url, env={"LCM_REDIS_COMMAND_TIMEOUT_MS": "500", "LCM_REDIS_BACKOFF_MAX_MS": "200"})
    try:
        r.proc.send(signal.SIGSTOP)
        # the connection's heartbeat PING gets no answer; the command timeout drops it
        wait_until(lambda: lc.get("/readyz")[0] == 503, timeout=15, what="readyz 503 with SIGSTOPped redis")
        r.proc.send(signal.SIGCONT)
        wait_until(lambda: lc.get("/readyz")[0] == 200, timeout=15, what="recovery after SIGCONT")
    finally:
        r.proc.send(signal.SIGCONT)
    proc = lc.proc
    rc = lc.stop()
    r.close()
    check(rc == 0, proc.stderr()[-2000:])


run_tests([test_kill_and_restart, test_start_without_redis_then_recover, test_stuck_redis_detected])
