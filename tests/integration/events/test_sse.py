"""GET /api/v1/events (SSE): live events with kind/id/type filters, exact resume with
Last-Event-ID (header or query) including while events are being written, heartbeats, auth
and input errors, many concurrent clients, and the bound on a client's replay backlog."""
import threading
import time

from evtest import Host, Resp, Sse, append, has_symbol, make_session, WORKER_CREATED
from harness import Redis, check, http_json, run_tests, wait_until

ENV = {"LCM_SSE_HEARTBEAT_MS": "300"}


def feed_ids(r, after="-"):
    start = "-" if after == "-" else "(" + after
    return [e[0] for e in r("XRANGE", "lcm:feed", start, "+")]


def test_live_and_filters():
    rd = Redis()
    h = Host(rd.url, env=ENV)
    r = Resp(rd.port)
    try:
        every = Sse(h)
        workers = Sse(h, "/api/v1/events?kind=worker")
        one = Sse(h, "/api/v1/events?kind=session&id=s2&type=session.user_*")
        check(every.status == 200 and every.headers.get("content-type") == "text/event-stream", every.headers)
        make_session(r, "s1", lds_session_id="L1")
        make_session(r, "s2", lds_session_id="L2")
        append(r, "worker", "w1", 0, [("worker.created", WORKER_CREATED)])
        wait_until(lambda: len(every.got()) == 5, timeout=5, what="5 events on the unfiltered stream")
        time.sleep(0.2)
        ids = feed_ids(r)
        got = every.got()
        check([e["id"] for e in got] == ids, (got, ids))
        check([e["event"] for e in got] == ["session.created", "session.user_session", "session.created",
                                           "session.user_session", "worker.created"], got)
        first = got[0]["json"]
        check(set(first) == {"kind", "id", "type", "version", "at", "by", "data"}, first)
        check(first["kind"] == "session" and first["id"] == "s1" and first["version"] == 1 and
              first["by"] == "test" and first["data"]["definition_id"] == "def-1", first)
        check([e["json"]["id"] for e in workers.got()] == ["w1"], workers.got())
        check([(e["json"]["id"], e["event"]) for e in one.got()] == [("s2", "session.user_session")], one.got())
        for s in (every, workers, one):
            s.close()
    finally:
        r.close()
        h.stop()
        rd.close()


def test_resume_exact():
    rd = Redis()
    h = Host(rd.url, env=ENV)
    r = Resp(rd.port)
    try:
        c = Sse(h)
        make_session(r, "a1")
        wait_until(lambda: len(c.got()) == 1, timeout=5, what="first event")
        last = c.got()[-1]["id"]
        c.close()
        time.sleep(0.2)
        # written while the client is away
        v = 1
        for i in range(5):
            v = append(r, "session", "a1", v, [("session.desired", {"desired_status": "stopped" if i % 2 else "running"})])
        make_session(r, "a2")
        missed = feed_ids(r, last)
        check(len(missed) == 6, missed)
        # header form
        c2 = Sse(h, headers={"Last-Event-ID": last})
        wait_until(lambda: len(c2.got()) >= 6, timeout=5, what="the missed events")
        time.sleep(0.3)
        check([e["id"] for e in c2.got()] == missed, (c2.got(), missed))
        # live continues after the replay, without repeats
        append(r, "session", "a2", 1, [("session.desired", {"desired_status": "stopped"})])
        wait_until(lambda: len(c2.got()) == 7, timeout=5, what="live event after the replay")
        time.sleep(0.2)
        check(len(c2.got()) == 7 and c2.got()[-1]["id"] == feed_ids(r)[-1], c2.got())
        c2.close()
        # query form with a filter: only a2's events after `last`
        c3 = Sse(h, f"/api/v1/events?last_event_id={last}&id=a2")
        wait_until(lambda: len(c3.got()) == 2, timeout=5, what="filtered replay")
        time.sleep(0.2)
        check([e["json"]["version"] for e in c3.got()] == [1, 2], c3.got())
        c3.close()
        # resuming from the newest id gives nothing old
        c4 = Sse(h, headers={"Last-Event-ID": feed_ids(r)[-1]})
        time.sleep(0.5)
        check(c4.got() == [], c4.got())
        c4.close()
    finally:
        r.close()
        h.stop()
        rd.close()


def test_resume_while_writing():
    """Reconnect with Last-Event-ID while a writer appends: the replay and the live stream
    meet without a gap or a duplicate."""
    rd = Redis()
    h = Host(rd.url, env=ENV)
    r = Resp(rd.port)
    try:
        make_session(r, "base")
        last = feed_ids(r)[-1]
        n_aggs, per = 10, 60
        for i in range(n_aggs):
            make_session(r, f"w{i}")
        done = threading.Event()

        def writer():
            w = Resp(rd.port)
            vers = {i: 1 for i in range(n_aggs)}
            for k in range(per):
                for i in range(n_aggs):
                    vers[i] = append(w, "session", f"w{i}", vers[i],
                                     [("session.desired", {"desired_status": "stopped" if k % 2 else "running"})])
            w.close()
            done.set()

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.05)
        c = Sse(h, headers={"Last-Event-ID": last})
        t.join()
        want = feed_ids(r, last)
        wait_until(lambda: len(c.got()) >= len(want), timeout=20, what=f"{len(want)} events")
        time.sleep(0.5)
        got = [e["id"] for e in c.got()]
        check(len(got) == len(set(got)), "duplicates in the stream")
        check(got == want, f"got {len(got)} want {len(want)}; first difference at "
              f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))}")
        print(f"     replay+live merge: {len(got)} events, no gap, no duplicate")
        c.close()
    finally:
        r.close()
        h.stop()
        rd.close()


def test_heartbeats_auth_errors():
    rd = Redis()
    h = Host(rd.url, env=dict(ENV, LCM_HTTP_TIMEOUT_S="1"))
    try:
        c = Sse(h)
        time.sleep(2.5)
        beats = [x for x in c.comments if x.startswith("heartbeat")]
        check(len(beats) >= 5, c.comments)
        check(not c.closed, "an idle SSE stream was cut by the HTTP timeout")
        c.close()
        st, _, doc = http_json("GET", h.url + "/api/v1/events")
        check(st == 401, (st, doc))
        st, hd, doc = http_json("GET", h.url + "/api/v1/events", token=h.ADMIN, headers={"Last-Event-ID": "nonsense"})
        check(st == 400 and doc["field"] == "last_event_id", (st, doc))
        check(hd.get("Content-Type", "").startswith("application/problem+json"), hd)
        st, _, doc = http_json("GET", h.url + "/api/v1/events?type=" + ",".join(["a"] * 20), token=h.ADMIN)
        check(st == 400, (st, doc))
    finally:
        h.stop()
        rd.close()


def test_many_clients():
    rd = Redis()
    h = Host(rd.url, env=dict(ENV, LCM_SSE_MAX_CLIENTS="300"))
    r = Resp(rd.port)
    try:
        clients = [Sse(h) for _ in range(250)]
        wait_until(lambda: h.metric("lcm_sse_clients") == 250, timeout=10, what="250 clients")
        t0 = time.monotonic()
        make_session(r, "m1", lds_session_id="Lm1")
        wait_until(lambda: all(len(c.got()) == 2 for c in clients), timeout=10, what="every client got both events")
        took = time.monotonic() - t0
        print(f"     250 clients all received 2 events within {took * 1000:.0f} ms")
        extra = [Sse(h, read=False) for _ in range(50)]
        over = Sse(h, read=False)
        check(over.status == 503, over.status)
        for c in clients + extra + [over]:
            c.close()
        wait_until(lambda: h.metric("lcm_sse_clients") == 0, timeout=10, what="clients released")
    finally:
        r.close()
        h.stop()
        rd.close()


def test_replay_backlog_bound():
    """A client replaying a long history while live events pile up is cut off at
    sse_max_buffer_bytes instead of growing without bound; it can resume later."""
    if not has_symbol("lcm_reply_stream_pending"):
        print("     SKIP: lcmd's httpd does not expose lcm_reply_stream_pending yet; slow clients "
              "are not bounded until it does")
        return
    rd = Redis()
    h = Host(rd.url, env=dict(ENV, LCM_SSE_MAX_BUFFER_BYTES="4096"))
    r = Resp(rd.port)
    try:
        make_session(r, "b0")
        last = feed_ids(r)[-1]
        big = {"desired_status": "running", "pad": "x" * 2000}
        v = 1
        for _ in range(3000):
            v = append(r, "session", "b0", v, [("session.desired", big)])
        # a non-reading client: the replay pages go to the socket, live events queue up
        c = Sse(h, headers={"Last-Event-ID": last}, read=False)
        for _ in range(20):
            v = append(r, "session", "b0", v, [("session.desired", big)])
        wait_until(lambda: h.metric("lcm_sse_dropped_total") >= 1 or h.metric("lcm_sse_clients") == 0,
                   timeout=20, what="slow client dropped")
        c.close()
        check(h.proc.alive(), "lcmd died")
    finally:
        r.close()
        h.stop()
        rd.close()


if __name__ == "__main__":
    run_tests([test_live_and_filters, test_resume_exact, test_resume_while_writing,
               test_heartbeats_auth_errors, test_many_clients, test_replay_backlog_bound])
