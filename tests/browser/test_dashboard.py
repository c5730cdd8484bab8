"""Starts the stack the dashboard is tested against: a real redis-server, moto's EC2 server
(with a CML AMI registered), cml-sim and lds-sim, and lcmd with the aws, cml and lds plugins,
serving ui/ from the source tree. Then runs the browser tests (dashboard.mjs: headless
Chromium through playwright-core). A booking there goes the whole way: the autoscaler adds a
worker, the worker controller launches it in moto and sees CML ready in cml-sim, the
scheduler places the session, the pipeline builds the lab and gets the login URL from LDS."""
import os
import subprocess
import sys
import tempfile

import harness
from harness import BUILD_DIR, Lcmd, Proc, Redis, SOURCE_DIR, free_port, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
AMI = "cisco-cml2.9-lablet-browser-test"


def sim(name, args, logs):
    pf = os.path.join(logs, f"{name}.port")
    p = Proc(name, [os.path.join(BUILD_DIR, "bin", name), "--listen", "127.0.0.1:0", "--port-file", pf, *args],
             log_dir=logs)
    wait_until(lambda: os.path.exists(pf) and open(pf).read().strip(), what=f"{name} port")
    p.url = f"http://127.0.0.1:{open(pf).read().strip()}"
    return p


def main():
    logs = tempfile.mkdtemp(prefix="lcm-browser-")
    r = Redis()
    port = free_port()
    lcm_url = f"http://127.0.0.1:{port}"
    moto_port = free_port()
    moto = Proc("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)], log_dir=logs)
    moto.url = f"http://127.0.0.1:{moto_port}"
    wait_until(lambda: harness.http("GET", moto.url + "/moto-api/")[0] == 200, timeout=60, what="moto")
    import boto3
    boto3.client("ec2", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").register_image(
        Name=AMI, Architecture="x86_64", RootDeviceName="/dev/sda1", VirtualizationType="hvm")
    cml = sim("cml-sim", ["--import-ms", "200", "--boot-ms", "1500", "--stop-ms", "200", "--wipe-ms", "200",
                          "--license", "enterprise"], logs)
    lds = sim("lds-sim", ["--lcm-url", lcm_url, "--lcm-token", Lcmd.ADMIN, "--username", "lds",
                          "--password", "lds-browser", "--frontend-url", "http://127.0.0.1:9/lds", "--quiet"], logs)
    env = {
        "LCM_UI_DIR": os.path.join(SOURCE_DIR, "ui"),
        "AWS_ENDPOINT_URL": moto.url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "LCM_CML_ENDPOINT": cml.url + "/{instance_id}", "LCM_CML_USERNAME": "admin",
        "LCM_CML_PASSWORD": "admin-sim", "LCM_CML_VERIFY_TLS": "false",
        "LCM_LDS_URL": lds.url, "LCM_LDS_FRONTEND_URL": lds.url, "LCM_LDS_USERNAME": "lds",
        "LCM_LDS_PASSWORD": "lds-browser",
        # the autoscaler and controllers answer in seconds, not minutes
        "LCM_BOOT_LEAD_MINUTES": "0", "LCM_SCALE_UP_COOLDOWN_S": "1", "LCM_AUTOSCALER_INTERVAL_MS": "500",
        "LCM_SCHEDULER_INTERVAL_MS": "500", "LCM_WORKER_POLL_INTERVAL_MS": "300", "LCM_SESSION_POLL_MS": "300",
    }
    lc = Lcmd(r.url, env=env, port=port)
    rc = 1
    try:
        e = dict(os.environ, LCM_URL=lc.url, LCM_TOKEN=Lcmd.ADMIN, LCM_AMI_PATTERN=AMI,
                 LCM_ARTIFACTS=os.environ.get("LCM_ARTIFACTS", os.path.join(HERE, "artifacts")),
                 LCM_TOPOLOGY=os.path.join(HERE, "fixtures", "TEST-LAB-1.1.yaml"))
        e.setdefault("LCM_WAIT_PIPELINE_MS", "60000")
        rc = subprocess.run(["node", os.path.join(HERE, "dashboard.mjs")], env=e, cwd=HERE, timeout=600).returncode
    finally:
        proc = lc.proc
        lrc = lc.stop()
        for p in (lds, cml, moto):
            p.stop()
        r.close()
        if rc != 0:
            sys.stderr.write(f"---- logs in {logs}; lcmd log (tail) ----\n" + proc.stderr()[-4000:])
    if lrc != 0:
        print(f"FAIL lcmd exited {lrc} (ASan/LSan?)\n" + proc.stderr()[-4000:])
        rc = 1
    sys.exit(rc)


main()
