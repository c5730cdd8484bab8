"""Starts a real redis-server and lcmd (serving ui/ from the source tree) and runs the
dashboard's browser tests (dashboard.mjs, headless Chromium through playwright-core)."""
import os
import subprocess
import sys

from harness import Lcmd, Redis, SOURCE_DIR

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    r = Redis()
    # a short scale-up cooldown so the autoscaler answers the test's booking in seconds
    lc = Lcmd(r.url, env={"LCM_UI_DIR": os.path.join(SOURCE_DIR, "ui"), "LCM_SCALE_UP_COOLDOWN_S": "1",
                          "LCM_AUTOSCALER_INTERVAL_MS": "500", "LCM_SCHEDULER_INTERVAL_MS": "500"})
    rc = 1
    try:
        env = dict(os.environ, LCM_URL=lc.url, LCM_TOKEN=Lcmd.ADMIN,
                   LCM_ARTIFACTS=os.environ.get("LCM_ARTIFACTS", os.path.join(HERE, "artifacts")),
                   LCM_TOPOLOGY=os.path.join(HERE, "fixtures", "TEST-LAB-1.1.yaml"))
        rc = subprocess.run(["node", os.path.join(HERE, "dashboard.mjs")], env=env, cwd=HERE,
                            timeout=600).returncode
    finally:
        proc = lc.proc
        lrc = lc.stop()
        r.close()
        if rc != 0:
            sys.stderr.write("---- lcmd log (tail) ----\n" + proc.stderr()[-4000:])
    if lrc != 0:
        print(f"FAIL lcmd exited {lrc} (ASan/LSan?)\n" + proc.stderr()[-4000:])
        rc = 1
    sys.exit(rc)


main()
