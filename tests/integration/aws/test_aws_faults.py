#!/usr/bin/env python3
"""The aws plugin's retry policy, through the fault-injecting proxy (tests/sims/aws-fault-proxy)
in front of moto in auth mode: throttling and 5xx are retried with capped, jittered
exponential backoff and the same ClientToken; capacity, auth and unsafe cases are not retried;
latency hits the per-attempt timeout; cancel, shutdown and deadlines end an op promptly."""
import awslib
from awslib import (E_AUTH, E_CANCELLED, E_THROTTLED, E_TIMEOUT, E_UNAVAIL, Driver, FaultProxy,
                    Moto)
from harness import check, run_tests, wait_until

BASE, CAP, ATTEMPTS = 100, 400, 5
SLACK = 60          # ms: process scheduling + proxy threads on a loaded CI machine
M = P = D = None
AMI = None


def setup():
    global M, P, D, AMI
    M = Moto()
    P = FaultProxy(M.url)
    D = Driver(M.key_id, M.secret, P.url,
               config={"max_attempts": ATTEMPTS, "backoff_base_ms": BASE,
                       "backoff_max_ms": CAP, "request_timeout_ms": 1500})
    AMI = M.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def entries(action):
    return [e for e in P.log() if e["action"] == action]


def gaps_ms(es):
    return [round((b["t"] - a["t"]) * 1000) for a, b in zip(es, es[1:])]


def worker_instances(worker):
    r = M.client("ec2").describe_instances(
        Filters=[{"Name": "tag:lcm:worker_id", "Values": [worker]}])["Reservations"]
    return [i for res in r for i in res["Instances"]]


def expect_band(g, n):
    """Gap before retry n (1-based): jittered in [d/2, d], d = min(CAP, BASE*2^(n-1))."""
    d = min(CAP, BASE * 2 ** (n - 1))
    check(d / 2 - 5 <= g <= d + SLACK, f"retry {n}: gap {g} ms outside [{d / 2}, {d}]")


def test_throttled_launch_retries_with_same_token():
    P.reset()
    P.faults([{"action": "RunInstances", "code": "RequestLimitExceeded", "status": 503,
               "times": 3}])
    out = D.ok("launch", "--image", AMI, "--type", "t3.small", pre=["--worker", "w-thr"])
    es = entries("RunInstances")
    check(len(es) == 4, f"expected 3 throttled + 1 ok, got {es}")
    check([e["injected"] for e in es] == ["RequestLimitExceeded"] * 3 + [None], es)
    check({e["client_token"] for e in es} == {"lcm-w-thr"}, "ClientToken changed between retries")
    for n, g in enumerate(gaps_ms(es), 1):
        expect_band(g, n)
    check(len(worker_instances("w-thr")) == 1, "duplicate launch")
    check(out["instances"][0]["client_token"] == "lcm-w-thr", out)


def test_retries_are_capped():
    P.reset()
    P.faults([{"action": "RunInstances", "code": "RequestLimitExceeded", "status": 503}])
    out = D.run("launch", "--image", AMI, "--type", "t3.small", pre=["--worker", "w-cap"])
    check(out["rc"] == E_THROTTLED and out["error"]["retryable"] is True, out)
    check(out["error"]["http_status"] == 503, out)
    es = entries("RunInstances")
    check(len(es) == ATTEMPTS, f"expected exactly {ATTEMPTS} attempts, got {len(es)}")
    gs = gaps_ms(es)
    for n, g in enumerate(gs, 1):
        expect_band(g, n)
    check(max(gs) <= CAP + SLACK, f"a delay exceeded the cap: {gs}")
    check(worker_instances("w-cap") == [], "launched although every attempt was refused")
    print(f"  capped gaps (ms): {gs}")


def test_backoff_is_jittered():
    P.reset()
    P.faults([{"action": "DescribeInstances", "code": "Throttling", "status": 400}])
    firsts, seconds = [], []
    for _ in range(6):
        out = D.run("describe", pre=["--config", '{"aws":{"max_attempts":3,"backoff_base_ms":'
                                     f'{BASE},"backoff_max_ms":{CAP}}}}}'])
        check(out["rc"] == E_THROTTLED, out)
    es = entries("DescribeInstances")
    check(len(es) == 18, f"6 ops x 3 attempts, got {len(es)}")
    for i in range(6):
        g = gaps_ms(es[3 * i:3 * i + 3])
        expect_band(g[0], 1)
        expect_band(g[1], 2)
        firsts.append(g[0])
        seconds.append(g[1])
    print(f"  first retry gaps (ms): {firsts}; second: {seconds}")
    check(max(firsts) - min(firsts) >= 5 or max(seconds) - min(seconds) >= 5,
          "no jitter: every op waited the same")


def test_5xx_retried_for_launch_with_token_only():
    P.reset()
    P.faults([{"action": "RunInstances", "code": "InternalError", "status": 500, "times": 2}])
    D.ok("launch", "--image", AMI, "--type", "t3.small", pre=["--worker", "w-5xx"])
    es = entries("RunInstances")
    check(len(es) == 3 and {e["client_token"] for e in es} == {"lcm-w-5xx"}, es)
    check(len(worker_instances("w-5xx")) == 1, "duplicate launch")
    # Without a worker id or token a 5xx may have launched something: not retried...
    P.reset()
    P.faults([{"action": "RunInstances", "code": "InternalError", "status": 500, "times": 1}])
    out = D.run("launch", "--image", AMI, "--type", "t3.small")
    check(out["rc"] == E_UNAVAIL and out["error"]["retryable"] is True, out)
    es = entries("RunInstances")
    check(len(es) == 1 and es[0]["client_token"] is None, es)
    # ...but a throttle (refused unprocessed) still is.
    P.reset()
    P.faults([{"action": "RunInstances", "code": "RequestLimitExceeded", "status": 503,
               "times": 1}])
    D.ok("launch", "--image", AMI, "--type", "t3.small")
    check(len(entries("RunInstances")) == 2, P.log())


def test_capacity_not_retried_inside_plugin():
    P.reset()
    P.faults([{"action": "RunInstances", "code": "InsufficientInstanceCapacity",
               "status": 500}])
    out = D.run("launch", "--image", AMI, "--type", "t3.small", pre=["--worker", "w-icc"])
    check(out["rc"] == E_UNAVAIL and out["error"]["retryable"] is True, out)
    check("InsufficientInstanceCapacity" in out["error"]["message"], out)
    check(len(entries("RunInstances")) == 1, P.log())
    check(worker_instances("w-icc") == [], "launched anyway")


def test_auth_errors_are_one_request():
    P.reset()
    P.faults([{"action": "*", "code": "AuthFailure", "status": 401}])
    out = D.run("describe")
    check(out["rc"] == E_AUTH and out["error"]["retryable"] is False, out)
    check(len(P.log()) == 1, P.log())
    # the real thing: moto checking a wrong secret
    P.reset()
    bad = Driver(M.key_id, "not-the-secret-at-all", P.url)
    try:
        for op in (("describe",), ("launch", "--image", AMI, "--type", "t3.small", "--tag",
                                   "a=b")):
            out = bad.run(*op, pre=["--worker", "w-auth"])
            check(out["rc"] == E_AUTH and out["error"]["retryable"] is False, out)
            check("not-the-secret" not in bad.last_stderr, "secret logged")
        log = P.log()
        check(len(log) == 2 and all(e["status"] == 401 for e in log), log)
    finally:
        bad.close()


def test_latency_and_timeouts():
    P.reset()
    P.faults([], latency_ms=300)
    out = D.ok("describe", "--tag", "lcm:worker_id=w-thr")
    check(len(out["instances"]) == 1, out)
    P.reset()
    P.faults([{"action": "DescribeInstances", "code": None, "latency_ms": 1200}])
    out = D.run("describe", pre=["--config", '{"aws":{"max_attempts":2,"backoff_base_ms":50,'
                                 '"request_timeout_ms":400}}'])
    check(out["rc"] == E_TIMEOUT and out["error"]["retryable"] is True, out)
    # the proxy logs a delayed request when its delay ends, after the plugin gave up
    wait_until(lambda: len(entries("DescribeInstances")) == 2, timeout=5, what="2 attempts")
    check(out["elapsed_ms"] < 2000, out)


def test_not_found_right_after_launch_is_retried_briefly():
    iid = D.ok("launch", "--image", AMI, "--type", "t3.small",
               pre=["--worker", "w-nf"])["instances"][0]["instance_id"]
    P.reset()
    P.faults([{"action": "DescribeInstances", "code": "InvalidInstanceID.NotFound",
               "status": 400, "times": 1}])
    out = D.ok("describe", "--id", iid)
    check(out["instances"][0]["instance_id"] == iid, out)
    check(len(entries("DescribeInstances")) == 2, P.log())


def test_cancel_shutdown_and_deadline_end_promptly():
    slow = Driver(M.key_id, M.secret, P.url,
                  config={"backoff_base_ms": 3000, "backoff_max_ms": 3000, "max_attempts": 5})
    try:
        P.reset()
        P.faults([{"action": "DescribeInstances", "code": "RequestLimitExceeded",
                   "status": 503}])
        out = slow.run("describe", pre=["--cancel-after-ms", "300"])   # waiting to retry
        check(out["rc"] == E_CANCELLED and out["elapsed_ms"] < 1500, out)
        out = slow.run("describe", pre=["--shutdown-after-ms", "300"])
        check(out["rc"] == E_CANCELLED and out["elapsed_ms"] < 1500, out)
        out = slow.run("describe", pre=["--deadline-ms", "1000"])     # next retry is past it
        check(out["rc"] == E_THROTTLED and out["elapsed_ms"] < 1000, out)
        P.reset()
        P.faults([], latency_ms=2000)                                   # request in flight
        out = slow.run("describe", pre=["--cancel-after-ms", "200"])
        check(out["rc"] == E_CANCELLED and out["elapsed_ms"] < 1500, out)
        out = slow.run("describe", pre=["--shutdown-after-ms", "200"])
        check(out["rc"] == E_CANCELLED and out["elapsed_ms"] < 1500, out)
    finally:
        slow.close()


def test_session_token_is_sent_and_signed():
    """moto in auth mode cannot verify STS session credentials, so this checks the wire:
    the token travels as X-Amz-Security-Token and is covered by the SigV4 signature."""
    P.reset()
    D.run("describe", env={"AWS_SESSION_TOKEN": "FQoGZXIvYXdzEXAMPLEtoken//+=="})
    e = P.log()[0]
    check(e["security_token"] == "FQoGZXIvYXdzEXAMPLEtoken//+==", e)
    check("x-amz-security-token" in e["signed_headers"] and "host" in e["signed_headers"], e)
    check(e["credential_scope"].endswith("/us-east-1/ec2/aws4_request"), e)
    check("FQoGZXIvYXdzEXAMPLEtoken" not in D.last_stderr, "session token logged")
    P.reset()
    D.ok("metrics", "--id", "i-1", "--start-ms", 1_700_000_000_000, "--end-ms",
         1_700_000_600_000)
    check(P.log()[0]["credential_scope"].endswith("/us-east-1/monitoring/aws4_request"),
          P.log())
    check(P.log()[0]["security_token"] is None, P.log())


def teardown():
    for x in (D, P, M):
        if x:
            x.close()


if __name__ == "__main__":
    setup()
    try:
        run_tests([test_throttled_launch_retries_with_same_token, test_retries_are_capped,
                   test_backoff_is_jittered, test_5xx_retried_for_launch_with_token_only,
                   test_capacity_not_retried_inside_plugin, test_auth_errors_are_one_request,
                   test_latency_and_timeouts, test_not_found_right_after_launch_is_retried_briefly,
                   test_cancel_shutdown_and_deadline_end_promptly,
                   test_session_token_is_sent_and_signed])
    finally:
        teardown()
