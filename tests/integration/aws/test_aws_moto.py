#!/usr/bin/env python3
"""The aws plugin against moto's EC2/CloudWatch in auth mode: every request the plugin makes
is SigV4-checked by moto with the IAM user's key. Launch with tags, user data and ClientToken;
describe by id and by tags with pagination; stop/start/terminate; newest image by pattern;
create tags; CloudWatch CPU; a wrong secret is one non-retryable auth error."""
import base64
import datetime
import time

import awslib
from awslib import E_AUTH, E_INVAL, E_NOTFOUND, Driver, Moto
from harness import check, run_tests

M = None
D = None
AMI = None


def setup():
    global M, D, AMI
    M = Moto()
    D = Driver(M.key_id, M.secret, M.url)
    ec2 = M.client("ec2")
    AMI = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def tags_of(inst):
    return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}


def boto_instance(iid):
    r = M.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"]
    return r[0]["Instances"][0]


def test_launch_with_tags_client_token_and_user_data():
    ud = "#!/bin/bash\necho 'hello & <lcm>'\n"
    res = D.ok("launch", "--image", AMI, "--type", "t3.small", "--tag", "lcm:template=cml-small",
               "--user-data", ud, "--root-gb", "64", pre=["--worker", "w-launch-1"])
    check(len(res["instances"]) == 1, res)
    inst = res["instances"][0]
    check(inst["instance_id"].startswith("i-"), inst)
    check(inst["client_token"] == "lcm-w-launch-1", inst)
    check(inst["tags"] == {"lcm:template": "cml-small", "lcm:worker_id": "w-launch-1",
                           "lcm:managed_by": "lcm"}, inst["tags"])
    b = boto_instance(inst["instance_id"])
    check(b["ClientToken"] == "lcm-w-launch-1", b["ClientToken"])
    check(tags_of(b)["lcm:worker_id"] == "w-launch-1", tags_of(b))
    check(b["ImageId"] == AMI and b["InstanceType"] == "t3.small", b)
    attr = M.client("ec2").describe_instance_attribute(InstanceId=inst["instance_id"],
                                                       Attribute="userData")
    check(base64.b64decode(attr["UserData"]["Value"]).decode() == ud, attr)
    # An explicit token wins over the derived one.
    res = D.ok("launch", "--image", AMI, "--type", "t3.micro", "--token", "lcm-w-2-gen3",
               pre=["--worker", "w-launch-2"])
    check(res["instances"][0]["client_token"] == "lcm-w-2-gen3", res)


def test_moto_ignores_client_token():
    """Documented moto limitation: the same ClientToken launches a second instance (real EC2
    returns the first). The controller therefore looks the worker up by tag first."""
    a = D.ok("launch", "--image", AMI, "--type", "t3.micro", pre=["--worker", "w-dup"])
    b = D.ok("launch", "--image", AMI, "--type", "t3.micro", pre=["--worker", "w-dup"])
    ia, ib = a["instances"][0], b["instances"][0]
    check(ia["client_token"] == ib["client_token"] == "lcm-w-dup", (ia, ib))
    found = D.ok("describe", "--tag", "lcm:worker_id=w-dup")["instances"]
    print(f"  moto: same ClientToken gave {len(found)} instance(s) "
          f"({'ignored' if ia['instance_id'] != ib['instance_id'] else 'honoured'})")
    check({i["instance_id"] for i in found} == {ia["instance_id"], ib["instance_id"]}, found)


def test_describe_by_id_tags_ami_and_pagination():
    ids = set()
    for i in range(7):
        r = D.ok("launch", "--image", AMI, "--type", "t3.nano", "--tag", "lcm:pool=page",
                 pre=["--worker", f"w-page-{i}"])
        ids.add(r["instances"][0]["instance_id"])
    one = sorted(ids)[0]
    r = D.ok("describe", "--id", one)
    check([i["instance_id"] for i in r["instances"]] == [one], r)
    check(r["instances"][0]["tags"]["lcm:pool"] == "page", r)
    check(r["next_token"] is None, r)

    seen, pages, token = [], 0, None
    while True:
        args = ["--tag", "lcm:pool=page", "--max", "5"] + (["--next", token] if token else [])
        r = D.ok("describe", *args)
        pages += 1
        seen += [i["instance_id"] for i in r["instances"]]
        token = r["next_token"]
        if not token:
            break
        check(pages < 10, "pagination does not end")
    check(pages == 2, f"expected 2 pages of <=5, got {pages}")
    check(sorted(seen) == sorted(ids), (seen, ids))

    # tag present ("*"), state filter, and an EC2 filter passed through (image-id)
    r = D.ok("describe", "--tag", "lcm:pool=*", "--state", "pending", "--state", "running")
    check({i["instance_id"] for i in r["instances"]} == ids, r)
    r = D.ok("describe", "--tag", "lcm:pool=page", "--tag", f"filter:image-id={AMI}")
    check(len(r["instances"]) == 7, r)
    r = D.ok("describe", "--tag", "lcm:pool=page", "--tag", "filter:image-id=ami-00000000")
    check(r["instances"] == [], r)


def test_stop_start_terminate():
    iid = D.ok("launch", "--image", AMI, "--type", "t3.small",
               pre=["--worker", "w-life"])["instances"][0]["instance_id"]
    r = D.ok("stop", "--id", iid)
    check(r["changes"][0]["instance_id"] == iid and r["changes"][0]["current"] in
          ("stopping", "stopped"), r)
    check(boto_instance(iid)["State"]["Name"] in ("stopping", "stopped"), "not stopped")
    r = D.ok("start", "--id", iid)
    check(r["changes"][0]["previous"] in ("stopped", "stopping") and
          r["changes"][0]["current"] in ("pending", "running"), r)
    r = D.ok("stop", "--id", iid, "--force")
    r = D.ok("terminate", "--id", iid)
    check(r["changes"][0]["current"] in ("shutting-down", "terminated"), r)
    check(boto_instance(iid)["State"]["Name"] in ("shutting-down", "terminated"), "alive")
    r = D.ok("describe", "--id", iid)
    check(r["instances"][0]["state"] in ("shutting-down", "terminated"), r)


def test_find_image_newest_by_pattern():
    ec2 = M.client("ec2")
    src = D.ok("launch", "--image", AMI, "--type", "t3.small",
               pre=["--worker", "w-img"])["instances"][0]["instance_id"]
    old = ec2.create_image(InstanceId=src, Name="cml-2.9.0-old")["ImageId"]
    time.sleep(1.1)              # moto's CreationDate has one-second resolution
    new = ec2.create_image(InstanceId=src, Name="cml-2.9.1-new")["ImageId"]
    ec2.create_image(InstanceId=src, Name="other-2.9.9")
    r = D.ok("find-image", "--pattern", "cml-2.9*")
    names = [i["name"] for i in r["images"]]
    check([i["image_id"] for i in r["images"]] == [new, old], r)
    check(names == ["cml-2.9.1-new", "cml-2.9.0-old"], names)
    check(r["images"][0]["creation_date"] > r["images"][1]["creation_date"], r)
    check(r["images"][0]["state"] == "available", r)
    r = D.ok("find-image", "--pattern", "no-such-image-*")
    check(r["images"] == [], r)


def test_create_tags():
    iid = D.ok("launch", "--image", AMI, "--type", "t3.small",
               pre=["--worker", "w-tags"])["instances"][0]["instance_id"]
    check(D.ok("create-tags", "--id", iid, "--tag", "lcm:status=draining", "--tag",
               "Name=cml worker & co") is None, "create-tags has no result")
    t = tags_of(boto_instance(iid))
    check(t["lcm:status"] == "draining" and t["Name"] == "cml worker & co", t)


def test_metrics_cpu():
    iid = D.ok("launch", "--image", AMI, "--type", "t3.small",
               pre=["--worker", "w-cpu"])["instances"][0]["instance_id"]
    now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    pts = [(now - datetime.timedelta(minutes=m), v) for m, v in ((15, 10.0), (10, 20.0),
                                                                 (5, 40.0))]
    M.client("cloudwatch").put_metric_data(Namespace="AWS/EC2", MetricData=[
        {"MetricName": "CPUUtilization", "Dimensions": [{"Name": "InstanceId", "Value": iid}],
         "Timestamp": t, "Value": v, "Unit": "Percent"} for t, v in pts])
    end = int((now + datetime.timedelta(minutes=1)).timestamp() * 1000)
    start = end - 30 * 60 * 1000
    r = D.ok("metrics", "--id", iid, "--start-ms", start, "--end-ms", end, "--period", 60)
    vals = [p["value"] for p in r["points"]]
    check(vals == [10.0, 20.0, 40.0], r)
    check(r["points"] == sorted(r["points"], key=lambda p: p["at_ms"]), "not oldest first")
    check(r["points"][0]["at_ms"] == int(pts[0][0].timestamp() * 1000), r)
    check(r["unit"] == "Percent", r)
    r = D.ok("metrics", "--id", "i-0000000000000dead", "--start-ms", start, "--end-ms", end)
    check(r["points"] == [], r)


def test_wrong_secret_is_one_auth_error():
    bad = Driver(M.key_id, "wrong-secret-0123456789", M.url)
    try:
        out = bad.run("describe", env={"AWS_DRIVER_LOG": "debug"})
        check(out["rc"] == E_AUTH, out)
        check(out["error"]["retryable"] is False, out)
        check(out["error"]["http_status"] == 401, out)
        check("AuthFailure" in out["error"]["message"], out)
        check("attempt 1" in out["error"]["message"], out)
        check("wrong-secret" not in bad.last_stderr and M.secret not in bad.last_stderr,
              "secret in log")
        check(bad.last_stderr.count("aws refused the credentials") == 1, bad.last_stderr)
        out = bad.run("metrics", "--id", "i-1", "--start-ms", 1_700_000_000_000,
                      "--end-ms", 1_700_000_600_000)
        check(out["rc"] == E_AUTH and not out["error"]["retryable"], out)
        check("SignatureDoesNotMatch" in out["error"]["message"], out)
    finally:
        bad.close()
    # an unknown key id is refused the same way
    unk = Driver("AKIAUNKNOWNKEY000000", M.secret, M.url)
    try:
        out = unk.run("describe")
        check(out["rc"] == E_AUTH and not out["error"]["retryable"], out)
    finally:
        unk.close()


def test_secrets_never_logged():
    D.ok("describe", env={"AWS_DRIVER_LOG": "debug"})
    check(M.secret not in D.last_stderr, "secret access key in the log")
    check("aws call" in D.last_stderr, "debug log missing: " + D.last_stderr[-500:])


def test_bad_arguments_are_synchronous():
    out = D.run("launch", "--type", "t3.small")
    check(out["rc"] == E_INVAL and out.get("sync"), out)
    out = D.run("start")
    check(out["rc"] == E_INVAL and out.get("sync"), out)
    out = D.run("launch", "--image", AMI, "--type", "t3.small", "--token", "x" * 65)
    check(out["rc"] == E_INVAL and out.get("sync"), out)
    nocred = Driver("", "", M.url)
    try:
        out = nocred.run("describe", env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
        check(out["rc"] == -13 and out.get("sync"), out)   # LCM_E_CONFIG
    finally:
        nocred.close()


def test_config_keys_instead_of_env():
    d = Driver("", "", "", config={"aws_region": awslib.REGION, "aws_endpoint_url_ec2": M.url,
                                   "aws_access_key_id": M.key_id,
                                   "aws_secret_access_key": M.secret})
    try:
        env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_ENDPOINT_URL": ""}
        r = d.ok("describe", "--tag", "lcm:pool=page", env=env)
        check(len(r["instances"]) == 7, r)
    finally:
        d.close()


def test_unknown_instance_is_not_found():
    out = D.run("describe", "--id", "i-0123456789abcdef0")
    check(out["rc"] == E_NOTFOUND and out["error"]["retryable"] is True, out)
    check("InvalidInstanceID.NotFound" in out["error"]["message"], out)
    check("attempt 3" in out["error"]["message"], out)   # 1 + notfound_retries (2)


def teardown():
    if D:
        D.close()
    if M:
        M.close()


if __name__ == "__main__":
    setup()
    try:
        run_tests([test_launch_with_tags_client_token_and_user_data, test_moto_ignores_client_token,
                   test_describe_by_id_tags_ami_and_pagination, test_stop_start_terminate,
                   test_find_image_newest_by_pattern, test_create_tags, test_metrics_cpu,
                   test_wrong_secret_is_one_auth_error, test_secrets_never_logged,
                   test_bad_arguments_are_synchronous, test_config_keys_instead_of_env,
                   test_unknown_instance_is_not_found])
    finally:
        teardown()
