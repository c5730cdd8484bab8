"""Shared rig for the reliability suite: a Redis Sentinel deployment on loopback (primary,
replica, three sentinels), moto, the C simulators, API fixtures and the store consistency
check (hash ↔ stream ↔ indexes, and `lcmd --rebuild` into a copy compares equal).
Everything binds to 127.0.0.1 and is stopped by the harness at exit."""
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile

import harness
from harness import BUILD_DIR, Proc, Redis, check, free_port, wait_until

LCMD = os.path.join(BUILD_DIR, "bin", "lcmd")


def log(msg):
    print(f"     {msg}", flush=True)


def under_asan():
    """The ASan build is several times slower: thresholds that are functional checks of
    responsiveness get a wider margin there (they stay able to fail on a real stall)."""
    try:
        out = subprocess.run(["nm", "-D", LCMD], capture_output=True, text=True, timeout=20).stdout
        return "__asan_init" in out
    except (OSError, subprocess.SubprocessError):
        return False


def sanitizer_report(text):
    return [m for m in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                        "ERROR: LeakSanitizer") if m in text]


def stop_clean(lcmd):
    p = lcmd.proc
    rc = lcmd.stop()
    err = open(p.err_path, errors="replace").read()
    bad = sanitizer_report(err)
    check(not bad, f"sanitizer report ({bad}) in lcmd:\n" + err[-4000:])
    check(rc == 0, f"lcmd exited {rc}:\n{err[-3000:]}")
    return err


# ---- Redis Sentinel --------------------------------------------------------------------------

class Sentinels:
    """A primary, a replica and three sentinels (quorum 2) monitoring `mymaster`."""
    NAME = "mymaster"

    def __init__(self, down_after_ms=1000, failover_timeout_ms=4000, n=3):
        self.primary = Redis()
        self.replica = Redis(extra=["--replicaof", "127.0.0.1", str(self.primary.port)])
        wait_until(lambda: "master_link_status:up" in self.replica.cli("INFO", "replication"),
                   timeout=20, what="replica in sync")
        self.nodes = {self.primary.port: self.primary, self.replica.port: self.replica}
        self.ports, self.procs, self.dirs = [], [], []
        for _ in range(n):
            port = free_port()
            d = tempfile.mkdtemp(prefix="lcm-sentinel-")
            conf = os.path.join(d, "sentinel.conf")
            with open(conf, "w") as f:
                f.write(f"port {port}\nbind 127.0.0.1\ndir {d}\ndaemonize no\n"
                        f"logfile {os.path.join(d, 'sentinel.log')}\n"
                        f"sentinel monitor {self.NAME} 127.0.0.1 {self.primary.port} 2\n"
                        f"sentinel down-after-milliseconds {self.NAME} {down_after_ms}\n"
                        f"sentinel failover-timeout {self.NAME} {failover_timeout_ms}\n"
                        f"sentinel parallel-syncs {self.NAME} 1\n")
            self.procs.append(Proc("redis-sentinel", ["redis-sentinel", conf], log_dir=d))
            self.ports.append(port)
            self.dirs.append(d)
        for p in self.ports:
            wait_until(lambda p=p: self.scli(p, "PING").strip() == "PONG", what="sentinel ping")
        # every sentinel knows the replica and the other sentinels before anything fails over
        wait_until(lambda: all(self.scli(p, "SENTINEL", "replicas", self.NAME).count(
            str(self.replica.port)) for p in self.ports), timeout=30, what="sentinels see the replica")
        wait_until(lambda: all(self._num_other(p) >= n - 1 for p in self.ports), timeout=30,
                   what="sentinels see each other")

    def _num_other(self, port):
        out = self.scli(port, "SENTINEL", "master", self.NAME).split("\n")
        kv = dict(zip(out[0::2], out[1::2]))
        return int(kv.get("num-other-sentinels", "0") or 0)

    @property
    def url(self):
        return "sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/" + self.NAME

    @staticmethod
    def scli(port, *args):
        r = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                           timeout=10)
        return r.stdout

    def primary_port(self):
        """The primary as the sentinels see it (majority answer)."""
        seen = {}
        for p in self.ports:
            out = self.scli(p, "SENTINEL", "get-master-addr-by-name", self.NAME).split()
            if len(out) == 2:
                seen[int(out[1])] = seen.get(int(out[1]), 0) + 1
        return max(seen, key=seen.get) if seen else None

    def node(self, port):
        return self.nodes[port]

    def current(self):
        return self.node(self.primary_port())

    def failover(self):
        """SENTINEL FAILOVER; returns the new primary's port once every sentinel names it and it
        answers ROLE master."""
        old = self.primary_port()
        out = self.scli(self.ports[0], "SENTINEL", "FAILOVER", self.NAME)
        check(out.strip() == "OK", f"SENTINEL FAILOVER: {out!r}")
        wait_until(lambda: all(self.scli(p, "SENTINEL", "get-master-addr-by-name", self.NAME).split()[1:2]
                               != [str(old)] for p in self.ports), timeout=30,
                   what="all sentinels name the new primary")
        new = self.primary_port()
        wait_until(lambda: self.node(new).cli("ROLE").split("\n")[0] == "master", timeout=10,
                   what="new primary answers ROLE master")
        return old, new

    def close(self):
        for p in self.procs:
            p.stop()
        for n in self.nodes.values():
            n.close()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


# ---- other processes -----------------------------------------------------------------------

class Moto:
    def __init__(self, region="us-east-1"):
        self.port = free_port()
        self.region = region
        self.dir = tempfile.mkdtemp(prefix="lcm-moto-")
        self.proc = Proc("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                  str(self.port)], log_dir=self.dir)
        wait_until(lambda: harness.http("GET", self.url + "/moto-api/")[0] == 200, timeout=30,
                   what="moto")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self, service):
        import boto3
        return boto3.client(service, endpoint_url=self.url, region_name=self.region,
                            aws_access_key_id="test", aws_secret_access_key="test")

    def close(self):
        self.proc.stop()


def sim_proc(name, args=()):
    d = tempfile.mkdtemp(prefix=f"lcm-{name}-")
    pf = os.path.join(d, "port")
    p = Proc(name, [os.path.join(BUILD_DIR, "bin", name), "--listen", "127.0.0.1:0",
                    "--port-file", pf, *args], log_dir=d)
    wait_until(lambda: os.path.exists(pf) and open(pf).read().strip(), what=f"{name} port")
    p.url = f"http://127.0.0.1:{open(pf).read().strip()}"
    return p


def plugin_dir(names):
    d = tempfile.mkdtemp(prefix="lcm-plugins-")
    os.chmod(d, 0o755)
    for n in names:
        dst = os.path.join(d, n)
        shutil.copyfile(os.path.join(BUILD_DIR, "plugins", n), dst)
        os.chmod(dst, 0o755)
    return d


# ---- API fixtures --------------------------------------------------------------------------

def iso(t):
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def slot(start_h=2.0, minutes=45):
    s = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(hours=start_h)
    return {"start": iso(s), "end": iso(s + dt.timedelta(minutes=minutes))}


def make_template(lcmd, name="rel", **kw):
    body = {"name": name, "instance_type": "m5zn.metal", "ami_name_pattern": "cml-*",
            "capacity": {"cpu_cores": 48, "memory_gb": 192, "storage_gb": 256, "max_nodes": 200},
            "license_type": "enterprise", "cost_per_hour": 3.96, "enabled": True,
            "region": "us-east-1"}
    body.update(kw)
    st, _, doc = lcmd.call("POST", "/api/v1/templates", body)
    check(st == 201, f"POST template: {st} {doc}")
    return doc


def make_definition(lcmd, name="rel-def", activate=True, **kw):
    body = {"name": name, "version": "1.0.0", "node_count": 3, "lds_enabled": False,
            "resource_requirements": {"cpu_cores": 1, "memory_gb": 1, "storage_gb": 1},
            "max_duration_minutes": 120}
    body.update(kw)
    st, _, doc = lcmd.call("POST", "/api/v1/definitions", body)
    check(st == 201, f"POST definition: {st} {doc}")
    if activate:
        st, _, d2 = lcmd.call("POST", f"/api/v1/definitions/{doc['id']}/activate")
        check(st == 200, f"activate: {st} {d2}")
    return doc


# ---- store consistency ---------------------------------------------------------------------

class Resp:
    """A minimal RESP2 client (no redis-py on these machines): pipelined commands, so the
    consistency checks over thousands of keys take a second, not minutes."""

    def __init__(self, port):
        import socket
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.s.makefile("rb")

    def close(self):
        self.f.close()
        self.s.close()

    @staticmethod
    def _enc(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"bad RESP line {line!r}")

    def pipe(self, cmds, chunk=500):
        res = []
        for i in range(0, len(cmds), chunk):
            part = cmds[i:i + chunk]
            self.s.sendall(b"".join(self._enc(c) for c in part))
            res += [self._read() for _ in part]
        return res

    def call(self, *args):
        return self.pipe([args])[0]


def resp(port):
    return Resp(port)


def rcli(port, *args):
    r = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                       timeout=60)
    return r.stdout


def rjson(port, *args):
    r = subprocess.run(["redis-cli", "-p", str(port), "--json", *args], capture_output=True,
                       text=True, timeout=60)
    return json.loads(r.stdout or "null")


def hgetall(port, key):
    raw = rjson(port, "HGETALL", key)
    if isinstance(raw, list):
        raw = dict(zip(raw[0::2], raw[1::2]))
    return raw or {}


def scan(port, pattern, typ=None):
    """Keys matching pattern (and of type typ)."""
    c = Resp(port)
    try:
        keys, cur = [], "0"
        while True:
            cur, batch = c.call("SCAN", cur, "MATCH", pattern, "COUNT", 1000)
            keys += batch
            if cur == "0":
                break
        if typ:
            types = c.pipe([("TYPE", k) for k in keys])
            keys = [k for k, t in zip(keys, types) if t == typ]
        return sorted(set(keys))
    finally:
        c.close()


def hgetall_many(port, keys):
    c = Resp(port)
    try:
        return {k: dict(zip(v[0::2], v[1::2])) for k, v in zip(keys, c.pipe([("HGETALL", k) for k in keys]))}
    finally:
        c.close()


def exists_many(port, keys):
    c = Resp(port)
    try:
        return dict(zip(keys, (x == 1 for x in c.pipe([("EXISTS", k) for k in keys]))))
    finally:
        c.close()


def dump_state(port):
    """Every aggregate hash and index key, as comparable Python values."""
    out = dict(hgetall_many(port, scan(port, "lcm:{*}", "hash")))
    idx = scan(port, "lcm:idx:*")
    c = Resp(port)
    try:
        types = c.pipe([("TYPE", k) for k in idx])
        cmds = [("SMEMBERS", k) if t == "set" else ("ZRANGE", k, 0, -1, "WITHSCORES") for k, t in zip(idx, types)]
        for k, t, v in zip(idx, types, c.pipe(cmds)):
            out[k] = sorted(v) if t == "set" else v
    finally:
        c.close()
    return out


def check_aggregates(port, kind):
    """Each hash's version equals its stream's length and last event version; every stream
    has a hash. Returns the number of aggregates checked."""
    hashes = scan(port, f"lcm:{{{kind}:*}}", "hash")
    streams = scan(port, f"lcm:{{{kind}:*}}:events", "stream")
    check(len(hashes) == len(streams), f"{kind}: {len(hashes)} hashes vs {len(streams)} streams")
    c = Resp(port)
    try:
        vers = c.pipe([("HGET", h, "version") for h in hashes])
        lens = c.pipe([("XLEN", h + ":events") for h in hashes])
        lasts = c.pipe([("XREVRANGE", h + ":events", "+", "-", "COUNT", 1) for h in hashes])
    finally:
        c.close()
    for h, ver, n, last in zip(hashes, vers, lens, lasts):
        check(ver == str(n) and n > 0, f"{h}: version {ver} but {n} events")
        fields = dict(zip(last[0][1][0::2], last[0][1][1::2]))
        check(fields.get("version") == ver, f"{h}: last event version {fields.get('version')} != {ver}")
    return len(hashes)


def rebuild_equal(redis):
    """Copies the dataset into a fresh redis-server (through an RDB snapshot), runs
    `lcmd --rebuild` there, and compares every hash and index with the original. Returns
    (keys compared, rebuild's summary line)."""
    before = dump_state(redis.port)
    check(redis.cli("SAVE").strip() == "OK", "SAVE failed")
    d = tempfile.mkdtemp(prefix="lcm-redis-copy-")
    shutil.copy(os.path.join(redis.dir, "dump.rdb"), os.path.join(d, "dump.rdb"))
    port = free_port()
    proc = Proc("redis-copy", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
                               "--appendonly", "no", "--save", "", "--daemonize", "no"], log_dir=d)
    try:
        wait_until(lambda: rcli(port, "PING").strip() == "PONG", what="copy ping")
        check(rcli(port, "DBSIZE").strip() == redis.cli("DBSIZE").strip(), "copy has a different DBSIZE")
        r = subprocess.run([LCMD, "--rebuild"], env=dict(os.environ, LCM_REDIS_URL=f"redis://127.0.0.1:{port}",
                           LCM_DATA_DIR=os.path.join(d, "data"), LCM_PLUGIN_DIR="/nonexistent-lcm-plugins"),
                           capture_output=True, text=True, timeout=600)
        check(r.returncode == 0, f"lcmd --rebuild failed: {r.stdout}\n{r.stderr[-3000:]}")
        check(not sanitizer_report(r.stderr), "sanitizer report in lcmd --rebuild:\n" + r.stderr[-3000:])
        after = dump_state(port)
        diff = [k for k in set(before) | set(after) if before.get(k) != after.get(k)]
        check(not diff, f"rebuild differs on {len(diff)} keys, e.g. "
              + "; ".join(f"{k}: {before.get(k)!r} vs {after.get(k)!r}" for k in sorted(diff)[:3]))
        return len(before), r.stdout.strip()
    finally:
        proc.stop()
        shutil.rmtree(d, ignore_errors=True)
