"""lcmd serves its loaded plugins and policies: GET /api/v1/plugins, GET /api/v1/policies,
POST /api/v1/policies/reload (refusal keeps the last good policy), SIGHUP and file-change
reload; role boundaries on these routes."""
import hashlib
import os
import shutil
import signal
import tempfile

from harness import BUILD_DIR, Lcmd, Redis, SOURCE_DIR, check, run_tests, wait_until


def token_env():
    h = hashlib.sha256(b"viewer-token-123456").hexdigest()
    return {"LCM_TOKEN": f"viewer:dash:{h}"}


def policy_dir():
    d = tempfile.mkdtemp(prefix="lcm-policies-")
    shutil.copytree(os.path.join(SOURCE_DIR, "policies"), d, dirs_exist_ok=True)
    return d


def test_plugins_listed():
    r = Redis()
    lc = Lcmd(r.url, env=dict(token_env(), LCM_PLUGIN_DIR=os.path.join(BUILD_DIR, "plugins")))
    try:
        st, _, doc = lc.get("/api/v1/plugins", token="viewer-token-123456")
        check(st == 200, doc)
        names = sorted(p["name"] for p in doc["loaded"])
        check(names == ["aws", "cml", "grading", "lds"], names)
        check(doc["spi"]["major"] == 1, doc["spi"])
        st, _, _ = lc.get("/api/v1/plugins")
        check(st == 401, st)
    finally:
        proc = lc.proc
        rc = lc.stop()
        r.close()
    check(rc == 0, proc.stderr()[-2000:])


def test_refused_plugin_logged():
    d = tempfile.mkdtemp(prefix="lcm-plugins-")
    src = os.path.join(BUILD_DIR, "plugins", "lcm-lds.so")
    dst = os.path.join(d, "lcm-lds.so")
    shutil.copy(src, dst)
    os.chmod(dst, 0o666)   # writable by others: must be refused
    r = Redis()
    lc = Lcmd(r.url, env={"LCM_PLUGIN_DIR": d})
    try:
        st, _, doc = lc.get("/api/v1/plugins", token=Lcmd.ADMIN)
        check(st == 200 and doc["loaded"] == [], doc)
        check(any("lcm-lds.so" in (x.get("file") or "") for x in doc["refused"]), doc)
        log = lc.proc.stderr()
        line = [l for l in log.splitlines() if "refused" in l and "lcm-lds.so" in l]
        check(line, log[-2000:])
    finally:
        lc.stop()
        r.close()


def test_policies_reload():
    pd = policy_dir()
    r = Redis()
    lc = Lcmd(r.url, env=dict(token_env(), LCM_POLICY_DIR=pd, LCM_POLICY_WATCH_INTERVAL_MS="200"))
    try:
        st, _, doc = lc.get("/api/v1/policies", token="viewer-token-123456")
        check(st == 200, doc)
        pol = {p["name"]: p for p in doc["policies"]}
        check(set(pol) >= {"placement", "scale_up", "scale_down"}, pol.keys())
        gen = pol["placement"]["generation"]
        check(gen >= 1 and len(pol["placement"]["sha256"]) == 64, pol["placement"])
        # viewers may not reload
        st, _, _ = lc.call("POST", "/api/v1/policies/reload", token="viewer-token-123456")
        check(st == 403, st)
        st, _, doc = lc.call("POST", "/api/v1/policies/reload")
        check(st == 200, doc)
        gen2 = {p["name"]: p for p in doc["policies"]}["placement"]["generation"]
        check(gen2 > gen, (gen, gen2))
        # a broken script is refused; the last good one keeps serving
        with open(os.path.join(pd, "placement.lua"), "a") as f:
            f.write("\nthis is not lua (\n")
        st, _, doc = lc.call("POST", "/api/v1/policies/reload")
        check(st == 422 and doc["type"] == "urn:lcm:problem:policy-refused", doc)
        st, _, doc = lc.get("/api/v1/policies", token=Lcmd.ADMIN)
        p = {p["name"]: p for p in doc["policies"]}["placement"]
        check(p["generation"] == gen2 and p["last_error"], p)
        # fix it on disk: the file watcher picks it up
        shutil.copy(os.path.join(SOURCE_DIR, "policies", "placement.lua"), os.path.join(pd, "placement.lua"))
        with open(os.path.join(pd, "placement.lua"), "a") as f:
            f.write("\n-- edited\n")
        wait_until(lambda: {p["name"]: p for p in lc.get("/api/v1/policies", token=Lcmd.ADMIN)[2]["policies"]}
                   ["placement"]["generation"] > gen2, timeout=10, what="file-change reload")
        g3 = {p["name"]: p for p in lc.get("/api/v1/policies", token=Lcmd.ADMIN)[2]["policies"]}["placement"]["generation"]
        lc.proc.send(signal.SIGHUP)
        wait_until(lambda: {p["name"]: p for p in lc.get("/api/v1/policies", token=Lcmd.ADMIN)[2]["policies"]}
                   ["placement"]["generation"] > g3, timeout=10, what="SIGHUP reload")
    finally:
        proc = lc.proc
        rc = lc.stop()
        r.close()
        shutil.rmtree(pd, ignore_errors=True)
    check(rc == 0, proc.stderr()[-2000:])


run_tests([test_plugins_listed, test_refused_plugin_logged, test_policies_reload])
