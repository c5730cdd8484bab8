"""No leaks across a full lifecycle: one session booked → ready → running → graded → released
with every provider plugin loaded, then SIGTERM. In the ASan build LeakSanitizer runs at lcmd's
exit: the exit code must be 0 and stderr must hold no LeakSanitizer/AddressSanitizer/UBSan
report. (A build without ASan cannot check this: the test then exits 77, which ctest counts as
skipped.)"""
import sys

from harness import check, run_tests
from lifelib import Rig, released
from rellib import log, sanitizer_report, under_asan


def test_full_lifecycle_then_clean_exit():
    r = Rig(lcmd_env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "LCM_LOG_LEVEL": "info"})
    r.definition("def-full")
    r.worker("w1")
    r.session("s-leak", "def-full", worker="w1")
    s = r.wait_status("session", "s-leak", "ready", timeout=60)
    lds = s["user_session"]["lds_session_id"]
    r.learner(lds, "login")
    r.wait_status("session", "s-leak", "running", timeout=30)
    r.learner(lds, "finish")
    s = r.wait_status("session", "s-leak", ("stopped", "archived"), timeout=60)
    check((s.get("score") or {}).get("score") == 85, f"not graded: {s.get('score')}")
    r.wait_status("session", "s-leak", "archived", timeout=30)
    check(released(r, "s-leak", "w1"), "resources not released")
    # exercise the read paths too (SSE, lists, metrics) before shutting down
    for path in ("/api/v1/sessions?limit=10", "/api/v1/workers", "/api/v1/labs", "/metrics",
                 "/api/v1/plugins", "/api/v1/policies"):
        st = r.lcmd.call("GET", path)[0]
        check(st == 200, f"GET {path}: {st}")
    proc = r.lcmd.proc
    rc = r.close()
    err = proc.stderr()
    bad = sanitizer_report(err)
    log(f"lcmd exit code {rc}; stderr {len(err)} bytes; sanitizer reports: {bad or 'none'}")
    check(not bad, "sanitizer report at exit:\n" + err[-5000:])
    check(rc == 0, f"lcmd exited {rc}:\n{err[-3000:]}")


if __name__ == "__main__":
    if not under_asan():
        print("lcmd is not an ASan build: leak check skipped")
        sys.exit(77)
    run_tests([test_full_lifecycle_then_clean_exit])
