"""Outbound CloudEvents: what a sink receives (types, ids, order), retries and dead letters,
the deliverer killed with SIGKILL again and again mid-batch (two replicas, the lease moving
between them) while events are written — the receiver sees every event at least once, in
order per aggregate, and applies each once by source + id — and lcm:feed trimming that never
drops an unacknowledged entry."""
import random
import signal
import threading
import time

from evtest import Host, Receiver, Resp, WORKER_CREATED, append, make_session
from harness import Redis, check, run_tests, wait_until

FAST = {"LCM_OUTBOX_POLL_MS": "100", "LCM_OUTBOX_BACKOFF_MS": "50", "LCM_OUTBOX_BACKOFF_MAX_MS": "400",
        "LCM_OUTBOX_LEASE_MS": "1200", "LCM_OUTBOX_CLAIM_IDLE_MS": "500", "LCM_OUTBOX_TIMEOUT_MS": "2000"}


def host(rd, rec, **extra):
    env = dict(FAST, LCM_CLOUDEVENTS_SINKS=rec.url, LCM_CLOUDEVENTS_SINK_TOKEN="sink-secret")
    env.update(extra)
    h = Host(rd.url, env=env)
    wait_until(lambda: h.metric("lcm_outbox_leader") == 1, timeout=10, what="deliverer lease")
    return h


def applied(rec):
    """Receiver-side exactly-once: first delivery of each (source, id), in arrival order."""
    seen, out = set(), []
    for ev in rec.events():
        k = (ev["source"], ev["id"])
        if k not in seen:
            seen.add(k)
            out.append(ev)
    return out


def test_delivery_shape():
    rd = Redis()
    rec = Receiver()
    h = host(rd, rec)
    r = Resp(rd.port)
    try:
        make_session(r, "s1", lds_session_id="L1")
        append(r, "worker", "w1", 0, [("worker.created", WORKER_CREATED)])
        append(r, "worker", "w1", 1, [("worker.metrics", {"cpu_pct": 5, "mem_pct": 7})])   # excluded
        append(r, "lab", "l1", 0, [("lab.created", {"x": 1})])                              # not delivered
        wait_until(lambda: len(rec.events()) == 3, timeout=10, what="3 deliveries")
        time.sleep(0.5)
        evs = rec.events()
        check(len(evs) == 3, evs)
        by = {e["id"]: e for e in evs}
        s = by["session:s1:1"]
        check(s["specversion"] == "1.0" and s["source"] == "urn:lcm" and s["type"] == "io.lablet.lcm.session.created.v1"
              and s["subject"] == "s1" and s["datacontenttype"] == "application/json" and s["lcmversion"] == 1, s)
        check(s["data"]["kind"] == "session" and s["data"]["type"] == "session.created" and
              s["data"]["data"]["definition_id"] == "def-1", s)
        check(by["session:s1:2"]["type"] == "io.lablet.lcm.session.user_session.v1", by)
        check(by["worker:w1:1"]["type"] == "io.lablet.lcm.worker.created.v1", by)
        post = rec.posts[0]
        check(post["ct"].startswith("application/cloudevents+json") and post["auth"] == "Bearer sink-secret", post)
        wait_until(lambda: r("XPENDING", "lcm:feed", "lcm-outbox")[0] == 0, timeout=5, what="everything acked")
        check(h.metric("lcm_outbox_delivered_total") == 3, h.metric("lcm_outbox_delivered_total"))
    finally:
        r.close()
        h.stop()
        rec.close()
        rd.close()


def test_retries_and_dead_letters():
    rd = Redis()
    rec = Receiver()
    h = host(rd, rec, LCM_OUTBOX_MAX_ATTEMPTS="3")
    r = Resp(rd.port)
    try:
        rec.fail_subjects.add("bad")
        make_session(r, "bad", lds_session_id="LB")        # 2 events, both dead-lettered
        make_session(r, "good", lds_session_id="LG")
        wait_until(lambda: h.metric("lcm_outbox_dead_letters_total") == 2, timeout=15, what="2 dead letters")
        check(r("XLEN", "lcm:outbox:dead") == 2, r("XLEN", "lcm:outbox:dead"))
        dead = r("XRANGE", "lcm:outbox:dead", "-", "+")
        f = dict(zip(dead[0][1][::2], dead[0][1][1::2]))
        check(f["aggregate"] == "session:bad" and f["attempts"] == "3" and '"session:bad:1"' in f["cloudevent"], f)
        check([e["id"] for e in applied(rec)] == ["session:good:1", "session:good:2"], rec.events())
        check(h.metric("lcm_outbox_failed_attempts_total") >= 4, "attempts not counted")
        m = h.get("/metrics")
        check("lcm_outbox_dead_letters_total 2" in (m[2] if isinstance(m[2], str) else m[2].decode()), "metric text")
        # a sink that is down for a while (with attempts to spare): events wait and arrive in
        # order once it is back
        h.stop()
        h = host(rd, rec, LCM_OUTBOX_MAX_ATTEMPTS="1000")
        rec.fail_all = True
        v = 2
        for i in range(5):
            v = append(r, "session", "good", v, [("session.desired", {"desired_status": "stopped" if i % 2 else "running"})])
        time.sleep(1.0)
        rec.fail_all = False
        wait_until(lambda: len(applied(rec)) == 7, timeout=15, what="delivery after the sink came back")
        check([e["lcmversion"] for e in applied(rec)] == [1, 2, 3, 4, 5, 6, 7], applied(rec))
    finally:
        r.close()
        h.stop()
        rec.close()
        rd.close()


def test_kill9_mid_batch():
    """Two replicas; the one holding the lease is SIGKILLed every 0.3-1.0 s and restarted while
    a writer appends to 30 aggregates. Nothing may be lost, order per aggregate must hold."""
    rd = Redis()
    rec = Receiver()
    env = dict(LCM_OUTBOX_BATCH="20", LCM_OUTBOX_CONCURRENCY="8")
    rec.delay = 0.01      # deliveries stay in flight, so kills land mid-batch
    reps = [host(rd, rec, **env)]
    reps.append(Host(rd.url, env=dict(FAST, LCM_CLOUDEVENTS_SINKS=rec.url, **env)))
    r = Resp(rd.port)
    n_aggs, rounds = 30, 25
    expected = {}
    done = threading.Event()

    def writer():
        w = Resp(rd.port)
        vers = {}
        for k in range(rounds):
            for i in range(n_aggs):
                kind = "session" if i % 3 else "worker"
                aid = f"{kind[0]}{i}"
                v = vers.get(aid, 0)
                if v == 0:
                    evs = [("session.created", __import__("evtest").SESSION_CREATED)] if kind == "session" \
                        else [("worker.created", WORKER_CREATED)]
                else:
                    evs = [(f"{kind}.desired", {"desired_status": "stopped" if k % 2 else "running"})]
                vers[aid] = append(w, kind, aid, v, evs)
                expected[f"{kind}:{aid}"] = vers[aid]
            time.sleep(0.02)
        w.close()
        done.set()

    kills = 0
    try:
        t = threading.Thread(target=writer)
        t.start()
        while not done.is_set() or kills < 6:
            time.sleep(random.uniform(0.3, 1.0))
            leader = None
            for x in reps:
                try:
                    if x.proc and x.metric("lcm_outbox_leader") == 1:
                        leader = x
                except OSError:
                    pass
            victim = leader or random.choice(reps)
            victim.stop(signal.SIGKILL)
            kills += 1
            victim.start()
            if kills > 40:
                break
        t.join()
        total = sum(expected.values())
        wait_until(lambda: len(applied(rec)) >= total, timeout=60, what=f"all {total} events delivered")
        time.sleep(1)
        got = applied(rec)
        raw = rec.events()
        check(len(got) == total, (len(got), total))
        per = {}
        for e in got:
            per.setdefault(f'{e["lcmkind"]}:{e["subject"]}', []).append(e["lcmversion"])
        for agg, n in expected.items():
            check(per.get(agg) == list(range(1, n + 1)), (agg, per.get(agg)))
        # raw deliveries (duplicates included) never go back before an applied version
        last = {}
        for e in raw:
            k = f'{e["lcmkind"]}:{e["subject"]}'
            check(e["lcmversion"] >= last.get(k, 0) - 1 and e["lcmversion"] <= last.get(k, 0) + 1,
                  f"{k}: delivered v{e['lcmversion']} after v{last.get(k)}")
            last[k] = max(last.get(k, 0), e["lcmversion"])
        wait_until(lambda: r("XPENDING", "lcm:feed", "lcm-outbox")[0] == 0, timeout=20, what="nothing pending")
        lost = sum(x.metric("lcm_outbox_lost_total") for x in reps if x.proc)
        check(lost == 0, lost)
        print(f"     {kills} kill -9s, {total} events over {n_aggs} aggregates: all delivered in order; "
              f"{len(raw) - total} duplicate deliveries, removed by the receiver's source+id dedupe")
    finally:
        r.close()
        for x in reps:
            if x.proc:
                x.stop()
        rec.close()
        rd.close()


def test_trim_never_past_unacked():
    rd = Redis()
    rec = Receiver()
    h = host(rd, rec, LCM_FEED_RETENTION_S="1", LCM_FEED_TRIM_INTERVAL_MS="200", LCM_OUTBOX_MAX_ATTEMPTS="100000",
             LCM_OUTBOX_BACKOFF_MAX_MS="200")
    r = Resp(rd.port)
    try:
        for i in range(50):
            make_session(r, f"t{i}")
        wait_until(lambda: len(applied(rec)) == 50, timeout=10, what="first 50 delivered")
        rec.fail_subjects.add("stuck")
        make_session(r, "stuck")                     # pending: its sink keeps failing
        stuck_id = r("XRANGE", "lcm:feed", "-", "+")[-1][0]
        for i in range(50):
            make_session(r, f"u{i}")                 # delivered, but newer than the stuck entry
        time.sleep(3)
        # old, delivered entries are gone; the stuck one and everything after it stay
        ids = [e[0] for e in r("XRANGE", "lcm:feed", "-", "+")]
        check(stuck_id in ids, "an unacknowledged entry was trimmed")
        check(len(ids) <= 51 + 50, len(ids))   # approximate trimming may keep a node's worth
        check(h.metric("lcm_feed_trimmed_total") >= 1, "nothing trimmed")
        first_before = len(ids)
        rec.fail_subjects.clear()
        wait_until(lambda: any(e["subject"] == "stuck" for e in rec.events()), timeout=10, what="stuck delivered")
        wait_until(lambda: stuck_id not in [e[0] for e in r("XRANGE", "lcm:feed", "-", "+")] or
                   r("XLEN", "lcm:feed") < first_before, timeout=10, what="trimmed after delivery")
        check(h.metric("lcm_outbox_lost_total") == 0, "lost entries")
        # without sinks, retention alone decides
    finally:
        r.close()
        h.stop()
        rec.close()
        rd.close()


if __name__ == "__main__":
    run_tests([test_delivery_shape, test_retries_and_dead_letters, test_kill9_mid_batch,
               test_trim_never_past_unacked])
