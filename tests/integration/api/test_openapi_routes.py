"""GET /openapi.json (open, OpenAPI 3.1) documents exactly the routes lcmd's router serves:
the test walks the router through GET /api/v1/routes and fails on a route missing from the
document or a documented route that does not exist; it also checks each operation's
permission, responses and error bodies."""
from harness import check, run_tests
from apilib import Api

api = None


def test_document_matches_router():
    global api
    api = Api()
    st, hd, doc = api.call("GET", "/openapi.json", token="")
    check(st == 200 and hd["Content-Type"].startswith("application/json"), (st, hd))
    check(doc["openapi"].startswith("3.1"), doc.get("openapi"))
    st, _, routes = api.call("GET", "/api/v1/routes")
    check(st == 200, routes)
    served = {(r["method"].lower(), r["path"]): r["permission"] for r in routes["items"]}
    documented = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            documented[(method, path)] = op
    missing = sorted(set(served) - set(documented))
    extra = sorted(set(documented) - set(served))
    check(not missing, f"routes not in openapi.json: {missing}")
    check(not extra, f"openapi.json documents routes lcmd does not serve: {extra}")
    schemas = doc["components"]["schemas"]
    for key, op in documented.items():
        perm = served[key]
        if perm is None:
            check(op.get("security") == [], (key, "open route must have security: []"))
        else:
            check(op.get("x-lcm-permission") == perm, (key, op.get("x-lcm-permission"), perm))
            check("401" in op["responses"] and "403" in op["responses"], (key, "401/403 documented"))
        check(any(c.startswith("2") for c in op["responses"]), (key, "a success response"))
        for code, resp in op["responses"].items():
            if code.startswith("4") or code.startswith("5"):
                content = resp.get("content")
                if content:
                    check("application/problem+json" in content, (key, code))
        # every {param} of the path is declared
        for seg in key[1].split("/"):
            if seg.startswith("{"):
                names = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
                check(seg[1:-1] in names, (key, seg, names))
    # every $ref resolves
    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "$ref":
                    check(v.startswith("#/components/schemas/") and v.split("/")[-1] in schemas, v)
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(doc)


def test_stop():
    rc, err = api.close()
    check(rc == 0, err[-2000:])


if __name__ == "__main__":
    run_tests([test_document_matches_router, test_stop])
