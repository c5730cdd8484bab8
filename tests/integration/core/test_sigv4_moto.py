"""The HTTP client's SigV4 signing (libcurl CURLOPT_AWS_SIGV4) is accepted by moto's server
in auth mode: after the first N unauthenticated calls create an IAM user and key, every
request is signature-checked. A wrong secret gets AuthFailure, in one attempt."""
import os
import subprocess
import sys

from harness import BUILD_DIR, Proc, check, free_port, run_tests, wait_until

PROBE = os.path.join(BUILD_DIR, "tests", "httpc_probe")


def start_moto(noauth):
    port = free_port()
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": str(noauth), "AWS_ACCESS_KEY_ID": "bootstrap",
           "AWS_SECRET_ACCESS_KEY": "bootstrap", "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    p = Proc("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env)
    import urllib.request
    wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).status == 200,
               timeout=30, what="moto up")
    return p, f"http://127.0.0.1:{port}"


def make_key(url):
    import boto3
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="lcm")
    pol = iam.create_policy(PolicyName="lcm", PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ec2:*","cloudwatch:*"],"Resource":"*"}]}')
    iam.attach_user_policy(UserName="lcm", PolicyArn=pol["Policy"]["Arn"])
    k = iam.create_access_key(UserName="lcm")["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


def probe(url, key, secret, body="Action=DescribeInstances&Version=2016-11-15"):
    env = dict(os.environ, PROBE_KEY=key, PROBE_SECRET=secret)
    r = subprocess.run([PROBE, "POST", url + "/", body, "aws:amz:us-east-1:ec2"], env=env,
                       capture_output=True, text=True, timeout=60)
    return r.stdout


def test_sigv4_accepted_and_rejected():
    moto, url = start_moto(4)
    try:
        key, secret = make_key(url)
        out = probe(url, key, secret)
        check(out.startswith("status=200 attempts=1"), out[:500])
        check("DescribeInstancesResponse" in out, out[:500])
        out = probe(url, key, secret + "x")
        check(out.startswith("status=401 attempts=1") or out.startswith("status=403 attempts=1"), out[:500])
        check("AuthFailure" in out or "SignatureDoesNotMatch" in out, out[:500])
        out = probe(url, "AKIAUNKNOWN000000000", secret)
        check(not out.startswith("status=200"), out[:300])
        # a POST body with characters that need form-encoding is signed correctly too
        out = probe(url, key, secret, "Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag%3Alcm%3Aworker_id&Filter.1.Value.1=w%2B1")
        check(out.startswith("status=200"), out[:500])
    finally:
        moto.stop()


run_tests([test_sigv4_accepted_and_rejected])
