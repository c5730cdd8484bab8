"""Helpers for the aws plugin integration tests: moto's server in auth mode with an IAM user
made through the first few (unauthenticated) calls, the fault proxy, and the C driver that
runs one plugin op through the real loader and host services."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import harness
from harness import BUILD_DIR, SOURCE_DIR, Proc, free_port, wait_until

REGION = "us-east-1"
DRIVER = os.path.join(BUILD_DIR, "tests", "aws_driver")
PLUGIN = os.path.join(BUILD_DIR, "plugins", "lcm-aws.so")
PROXY = os.path.join(SOURCE_DIR, "tests", "sims", "aws-fault-proxy", "aws_fault_proxy.py")

# The IAM calls below are exactly this many; every request after them is signature-checked.
NO_AUTH_CALLS = 4
POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["ec2:*", "cloudwatch:*", "monitoring:*"], "Resource": "*"}]}


class Moto:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="lcm-moto-")
        env = {"INITIAL_NO_AUTH_ACTION_COUNT": str(NO_AUTH_CALLS), "MOTO_PORT": str(self.port)}
        self.proc = Proc("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                  str(self.port)], env=env, log_dir=self.dir)
        wait_until(self._up, timeout=30, what="moto server")
        import boto3
        iam = boto3.client("iam", endpoint_url=self.url, region_name=REGION,
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="lcm")
        arn = iam.create_policy(PolicyName="lcm-ec2", PolicyDocument=json.dumps(POLICY))[
            "Policy"]["Arn"]
        iam.attach_user_policy(UserName="lcm", PolicyArn=arn)
        k = iam.create_access_key(UserName="lcm")["AccessKey"]
        self.key_id, self.secret = k["AccessKeyId"], k["SecretAccessKey"]

    def _up(self):
        if not self.proc.alive():
            raise AssertionError("moto exited:\n" + self.proc.stderr())
        with urllib.request.urlopen(self.url + "/moto-api/", timeout=2) as r:
            return r.status == 200

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self, service, secret=None):
        import boto3
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=self.key_id,
                            aws_secret_access_key=secret or self.secret)

    def close(self):
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class FaultProxy:
    def __init__(self, upstream):
        self.port = free_port()
        self.proc = Proc("aws-fault-proxy", [sys.executable, PROXY, "--port", str(self.port),
                                             "--upstream", upstream])
        wait_until(lambda: "listening" in self.proc.stdout(), timeout=15, what="fault proxy")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _call(self, method, path, body=None):
        st, _, doc = harness.http_json(method, self.url + path, body)
        harness.check(st == 200, f"proxy admin {path}: {st}")
        return doc

    def faults(self, rules, latency_ms=0):
        self._call("POST", "/__admin/faults", {"rules": rules, "latency_ms": latency_ms})

    def reset(self):
        self._call("POST", "/__admin/reset", {})

    def log(self):
        return self._call("GET", "/__admin/log")

    def close(self):
        self.proc.stop()


class Driver:
    """Runs aws_driver with the plugin copied alone into a private directory (the loader
    refuses group/other-writable files and loads every .so it finds)."""

    def __init__(self, key_id, secret, endpoint, config=None, extra_env=None):
        self.dir = tempfile.mkdtemp(prefix="lcm-awsplug-")
        os.chmod(self.dir, 0o755)
        dst = os.path.join(self.dir, "lcm-aws.so")
        shutil.copyfile(PLUGIN, dst)
        os.chmod(dst, 0o755)
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("AWS_") or k.startswith("LCM_PLUGIN_AWS_"):
                del self.env[k]
        self.env.update({"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
                         "AWS_REGION": REGION, "AWS_ENDPOINT_URL": endpoint,
                         "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0"})
        if extra_env:
            self.env.update(extra_env)
        self.config = config
        self.last_stderr = ""

    def run(self, op, *args, pre=(), timeout=120, env=None):
        argv = [DRIVER, "--dir", self.dir]
        if self.config is not None:
            argv += ["--config", json.dumps({"aws": self.config})]
        argv += list(pre) + [op] + [str(a) for a in args]
        e = dict(self.env)
        if env:
            e.update(env)
        r = subprocess.run(argv, env=e, capture_output=True, text=True, timeout=timeout)
        self.last_stderr = r.stderr
        if r.returncode != 0:
            raise AssertionError(f"aws_driver {op} exited {r.returncode}:\n{r.stderr}")
        if "ERROR: AddressSanitizer" in r.stderr or "runtime error:" in r.stderr:
            raise AssertionError(f"sanitizer report in aws_driver {op}:\n{r.stderr}")
        out = json.loads(r.stdout.strip().splitlines()[-1])
        harness.check(out["violations"] == 0, f"SPI contract violations: {out}")
        harness.check(out.get("sync") or out["done_calls"] == 1, f"done not called once: {out}")
        harness.check(out["inflight_after"] == 0, f"ops left in flight: {out}")
        return out

    def ok(self, op, *args, **kw):
        out = self.run(op, *args, **kw)
        harness.check(out["rc"] == 0, f"{op} failed: {out['error']}\n{self.last_stderr}")
        return out["result"]

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# SPI error codes (sdk/include/lcm/spi.h)
E_INVAL, E_NOTFOUND, E_CONFLICT, E_AUTH, E_TIMEOUT, E_UNAVAIL, E_THROTTLED = -1, -4, -5, -6, -7, -8, -9
E_CANCELLED = -11
