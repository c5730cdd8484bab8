"""Leader lease across replicas: exactly one leader; kill -9 of the leader hands over within
the lease TTL; a SIGSTOPped leader loses the lease and, when it wakes, knows it is no longer
leader (its fencing token is stale); a clean shutdown releases the lease at once."""
import signal
import time

from harness import Lcmd, Redis, check, run_tests, wait_until

TTL_MS = 1500


def roles(replicas):
    out = {}
    for r in replicas:
        if r.proc and r.proc.alive():
            st, _, doc = r.get("/readyz")
            out[r.port] = doc.get("role") if isinstance(doc, dict) else None
    return out


def leaders(replicas):
    return [p for p, role in roles(replicas).items() if role == "leader"]


def test_failover():
    rd = Redis()
    reps = [Lcmd(rd.url, env={"LCM_LEASE_TTL_MS": str(TTL_MS)}) for _ in range(3)]
    try:
        wait_until(lambda: len(leaders(reps)) == 1, timeout=10, what="one leader")
        token1 = rd.cli("GET", "lcm:leader").split()[0]
        leader = next(r for r in reps if r.port == leaders(reps)[0])
        t0 = time.monotonic()
        leader.stop(signal.SIGKILL)
        wait_until(lambda: len(leaders(reps)) == 1, timeout=10, what="new leader after kill -9")
        took = time.monotonic() - t0
        check(took < TTL_MS / 1000 + 1.5, f"takeover took {took:.2f}s with TTL {TTL_MS} ms")
        token2 = rd.cli("GET", "lcm:leader").split()[0]
        check(int(token2) > int(token1), (token1, token2))
        print(f"     takeover after kill -9: {took * 1000:.0f} ms (TTL {TTL_MS} ms)")

        # SIGSTOP the new leader: another takes over; when it resumes it is a follower
        leader2 = next(r for r in reps if r.port == leaders(reps)[0])
        leader2.proc.send(signal.SIGSTOP)
        others = [r for r in reps if r is not leader2 and r.proc]
        wait_until(lambda: len(leaders(others)) == 1, timeout=10, what="leader while old one is stopped")
        token3 = rd.cli("GET", "lcm:leader").split()[0]
        check(int(token3) > int(token2), (token2, token3))
        leader2.proc.send(signal.SIGCONT)
        time.sleep(TTL_MS / 1000)
        check(roles([leader2])[leader2.port] == "follower", "woken ex-leader still claims leadership")
        check(len(leaders([r for r in reps if r.proc])) == 1, roles(reps))

        # clean shutdown releases the lease immediately
        cur = next(r for r in reps if r.proc and r.port == leaders(reps)[0])
        t0 = time.monotonic()
        cur.stop()
        wait_until(lambda: len(leaders([r for r in reps if r.proc])) == 1, timeout=10, what="leader after clean stop")
        print(f"     takeover after clean stop: {(time.monotonic() - t0) * 1000:.0f} ms")
    finally:
        for r in reps:
            if r.proc:
                r.proc.send(signal.SIGCONT)
                r.stop()
        rd.close()


run_tests([test_failover])
