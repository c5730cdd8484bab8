"""Redis SIGKILLed and restarted during writes, with appendfsync everysec and always: lcmd
reports not-ready, reconnects by itself, loads its Function library again on the new
connection (FUNCTION LOAD on connect, counted in INFO commandstats), and the state is
consistent: every acknowledged write survived the kill (the AOF is in the kernel's page cache
once Redis answers, so a process kill loses nothing; docs/reliability.md covers the OS-crash
case), hashes, streams and indexes agree, and `lcmd --rebuild` into a copy compares equal."""
import threading
import time

from harness import Lcmd, Redis, check, run_tests, wait_until
from rellib import check_aggregates, exists_many, log, rcli, rebuild_equal, stop_clean

ENV = {"LCM_PLUGIN_DIR": "/nonexistent-lcm-plugins", "LCM_REDIS_BACKOFF_MAX_MS": "300"}


def function_loads(port):
    out = rcli(port, "INFO", "commandstats")
    for line in out.splitlines():
        if line.startswith("cmdstat_function|load:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def run_with(fsync):
    r = Redis(appendfsync=fsync)
    lc = Lcmd(r.url, env=ENV)
    check(function_loads(r.port) >= 1, "no FUNCTION LOAD at connect")
    acked, failed = [], []
    ready_seen = []
    stop = threading.Event()

    def writer(tag):
        i = 0
        while not stop.is_set():
            i += 1
            try:
                st, _, doc = lc.call("POST", "/api/v1/definitions", {
                    "name": f"{tag}-{i}", "version": "1.0.0", "node_count": 1, "lds_enabled": False,
                    "resource_requirements": {"cpu_cores": 1, "memory_gb": 1, "storage_gb": 1},
                    "max_duration_minutes": 60}, timeout=10)
            except Exception:  # noqa: BLE001
                st, doc = 0, None
            (acked if st == 201 else failed).append(doc.get("id") if st == 201 else st)

    def prober():
        while not stop.is_set():
            ready_seen.append((time.monotonic(), lc.get("/readyz", timeout=5)[0]))
            time.sleep(0.02)

    threads = [threading.Thread(target=writer, args=(f"w{k}",)) for k in range(4)]
    threads.append(threading.Thread(target=prober))
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        n_before = len(acked)
        t_kill = time.monotonic()
        r.stop(9)
        wait_until(lambda: ready_seen and ready_seen[-1][1] == 503, timeout=10, what="readyz 503")
        check(lc.get("/healthz")[0] == 200, "healthz must stay up while Redis is down")
        time.sleep(0.5)
        r.start()   # same dir: the AOF is replayed
        t_up = time.monotonic()
        wait_until(lambda: ready_seen[-1][1] == 200, timeout=20, what="readyz 200 after restart")
        t_ready = time.monotonic()
        n_at_ready = len(acked)
        wait_until(lambda: len(acked) > n_at_ready + 50, timeout=20, what="writes after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join()
    check(function_loads(r.port) >= 1, "the library was not loaded again on reconnect")
    check("lcm" in rcli(r.port, "FUNCTION", "LIST", "LIBRARYNAME", "lcm"), "library missing")
    ex = exists_many(r.port, [f"lcm:{{definition:{d}}}" for d in acked])
    missing = [k for k, v in ex.items() if not v]
    log(f"appendfsync {fsync}: {n_before} acked before the kill, {len(acked)} in all, "
        f"{len(failed)} failed/unanswered; acknowledged writes lost: {len(missing)}; "
        f"ready {t_ready - t_up:.2f}s after Redis was back ({t_ready - t_kill:.2f}s after the kill)")
    check(not missing, f"{len(missing)} acknowledged writes lost after kill -9 of Redis ({fsync}): {missing[:5]}")
    stop_clean(lc)
    n = check_aggregates(r.port, "definition")
    keys, line = rebuild_equal(r)
    log(f"{n} definitions consistent; rebuild equal on {keys} keys")
    r.close()


def test_kill9_redis_everysec():
    run_with("everysec")


def test_kill9_redis_always():
    run_with("always")


def test_empty_redis_gets_the_library():
    """A Redis that comes back without its data (new dir: no AOF, e.g. a replaced node):
    lcmd loads the library on the new connection, so writes work at once."""
    r = Redis()
    lc = Lcmd(r.url, env=ENV)
    r.stop(9)
    r.dir = __import__("tempfile").mkdtemp(prefix="lcm-redis-empty-")
    r.start()
    wait_until(lambda: lc.get("/readyz")[0] == 200, timeout=20, what="ready on the empty Redis")
    wait_until(lambda: lc.call("POST", "/api/v1/templates", {
        "name": "after-empty", "instance_type": "m5zn.metal", "ami_name_pattern": "cml-*",
        "region": "us-east-1", "license_type": "enterprise", "enabled": True,
        "capacity": {"cpu_cores": 8, "memory_gb": 8, "storage_gb": 8, "max_nodes": 10}})[0] == 201,
        timeout=10, what="a write on the empty Redis")
    check(function_loads(r.port) >= 1, "no FUNCTION LOAD on the new Redis")
    stop_clean(lc)
    r.close()


run_tests([test_kill9_redis_everysec, test_kill9_redis_always, test_empty_redis_gets_the_library])
