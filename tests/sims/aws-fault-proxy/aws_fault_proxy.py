#!/usr/bin/env python3
"""Fault-injecting reverse proxy for AWS Query API endpoints (EC2, CloudWatch), put between the
aws plugin and moto's server. moto never throttles or fails, so this injects what real AWS
does: RequestLimitExceeded (503), InternalError (500), InsufficientInstanceCapacity (500),
auth failures, and latency; and records every request (time, Action, ClientToken, outcome) so
tests can check retry counts, backoff spacing and ClientToken reuse.

Requests are forwarded byte for byte with their original Host header, so SigV4 signatures
computed for the proxy's address still verify at moto.

Admin API (never forwarded), JSON:
  POST /__admin/faults  {"rules":[{"action":"RunInstances","code":"RequestLimitExceeded",
                          "status":503,"times":3,"latency_ms":0}], "latency_ms":0}
                        rules are matched in order; "times" (default: forever) counts down;
                        action "*" matches any; code null = pass through (latency only).
  GET  /__admin/log     [{"t":mono_s,"action","client_token","status","injected",
                          "security_token","signed_headers","credential_scope"}, ...]
                        (credential_scope omits the access key id)
  POST /__admin/reset   clears rules, latency and the log
CLI: --port, --upstream http://127.0.0.1:PORT, --fault ACTION:CODE:STATUS[:TIMES],
     --latency-ms N. Prints "listening <port>" once ready.
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
       "trailers", "transfer-encoding", "upgrade", "content-length"}

MESSAGES = {
    "RequestLimitExceeded": "Request limit exceeded.",
    "InternalError": "An internal error has occurred.",
    "InsufficientInstanceCapacity": "We currently do not have sufficient capacity in the "
                                    "Availability Zone you requested.",
    "AuthFailure": "AWS was not able to validate the provided access credentials",
    "Throttling": "Rate exceeded",
    "InvalidInstanceID.NotFound": "The instance ID does not exist",
}


def error_body(code, action):
    msg = MESSAGES.get(code, "injected by aws-fault-proxy")
    if action == "GetMetricData":  # CloudWatch's Query error shape
        return (f'<?xml version="1.0" encoding="UTF-8"?><ErrorResponse><Error><Type>Sender</Type>'
                f'<Code>{code}</Code><Message>{msg}</Message></Error>'
                f'<RequestId>fault-proxy</RequestId></ErrorResponse>').encode()
    return (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
            f'<Message>{msg}</Message></Error></Errors><RequestID>fault-proxy</RequestID>'
            f'</Response>').encode()


class State:
    def __init__(self, upstream):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.lock = threading.Lock()
        self.rules = []
        self.latency_ms = 0
        self.log = []

    def match(self, action):
        """Returns (rule or None, latency_ms) and counts the rule down."""
        with self.lock:
            latency = self.latency_ms
            for r in self.rules:
                if r.get("action", "*") not in ("*", action):
                    continue
                times = r.get("times")
                if times is not None and times <= 0:
                    continue
                if times is not None:
                    r["times"] = times - 1
                return r, latency + int(r.get("latency_ms", 0))
            return None, latency


def make_handler(state):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet
            pass

        def reply(self, status, body, ctype="text/xml"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def admin(self, body):
            path = self.path.split("?")[0]
            if path == "/__admin/log" and self.command == "GET":
                with state.lock:
                    return self.reply(200, json.dumps(state.log).encode(), "application/json")
            if path == "/__admin/reset" and self.command == "POST":
                with state.lock:
                    state.rules, state.latency_ms, state.log = [], 0, []
                return self.reply(200, b"{}", "application/json")
            if path == "/__admin/faults" and self.command == "POST":
                doc = json.loads(body or b"{}")
                with state.lock:
                    state.rules = list(doc.get("rules", []))
                    state.latency_ms = int(doc.get("latency_ms", 0))
                return self.reply(200, b"{}", "application/json")
            return self.reply(404, b"{}", "application/json")

        def handle_any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            if self.path.startswith("/__admin/"):
                return self.admin(body)
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            action = (form.get("Action") or [""])[0]
            token = (form.get("ClientToken") or [None])[0]
            t = time.monotonic()
            rule, latency = state.match(action)
            if latency:
                time.sleep(latency / 1000.0)
            auth = self.headers.get("Authorization") or ""
            signed = auth.partition("SignedHeaders=")[2].partition(",")[0]
            entry = {"t": t, "action": action, "client_token": token, "injected": None,
                     "security_token": self.headers.get("X-Amz-Security-Token"),
                     "signed_headers": signed.split(";") if signed else [],
                     "credential_scope": auth.partition("Credential=")[2].partition(",")[0]
                     .partition("/")[2]}
            if rule and rule.get("code"):
                status = int(rule.get("status", 503))
                entry.update(status=status, injected=rule["code"])
                with state.lock:
                    state.log.append(entry)
                return self.reply(status, error_body(rule["code"], action))
            try:
                up = state.upstream
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                status, rheaders = r.status, r.getheaders()
                conn.close()
            except OSError as e:
                entry.update(status=502, injected="upstream-error")
                with state.lock:
                    state.log.append(entry)
                return self.reply(502, str(e).encode(), "text/plain")
            entry["status"] = status
            with state.lock:
                state.log.append(entry)
            self.send_response(status)
            for k, v in rheaders:
                if k.lower() not in HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = handle_any
        do_GET = handle_any

    return H


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--fault", action="append", default=[],
                    help="ACTION:CODE:STATUS[:TIMES], e.g. RunInstances:RequestLimitExceeded:503:3")
    ap.add_argument("--latency-ms", type=int, default=0)
    a = ap.parse_args()
    state = State(a.upstream)
    state.latency_ms = a.latency_ms
    for f in a.fault:
        parts = f.split(":")
        rule = {"action": parts[0], "code": parts[1], "status": int(parts[2])}
        if len(parts) > 3:
            rule["times"] = int(parts[3])
        state.rules.append(rule)
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(state))
    srv.daemon_threads = True
    print(f"listening {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
