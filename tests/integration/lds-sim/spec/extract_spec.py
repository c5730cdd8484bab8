#!/usr/bin/env python3
"""Writes the parts of the reference specs the simulator tests validate against (the operations
used and every schema they reach), so the tests run where ../shared/reference is absent.
Usage: extract_spec.py REFERENCE_DIR   (rewrites the .json files next to this script)"""
import json
import os
import sys

OPS = {
    "lds/LDS_openapi.abridged.json": [
        ("/reservations/v3/lab_session", "post"),
        ("/reservations/v3/lab_session/{ldssession_id}", "get"),
        ("/reservations/v3/lab_session/{ldssession_id}/part/{part_num}/devices", "put"),
        ("/reservations/v3/lab_session/{ldssession_id}/part/{part_num}/devices", "get"),
        ("/reservations/v3/lab_session/{ldssession_id}/lablet_launch_url", "get"),
        ("/reservations/v3/lab_session/{ldssession_id}/release", "post"),
        ("/reservations/v3/lab_folder/minio/{form_qualified_name}", "put"),
        ("/reservations/v3/reporting/lab_session", "get"),
    ],
    "grading/grading-engine_openapi.json": [
        ("/api/v1/sessions", "post"),
        ("/api/v1/sessions/{sessionId}", "get"),
        ("/api/v1/sessions/{sessionId}/parts/{partId}/grade", "post"),
    ],
}


def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v.split("/")[-1]
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def main():
    ref_dir = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    for name, ops in OPS.items():
        spec = json.load(open(os.path.join(ref_dir, name)))
        out = {k: spec[k] for k in ("openapi", "info") if k in spec}
        out["x-extracted-from"] = name
        out["paths"] = {}
        for path, method in ops:
            out["paths"].setdefault(path, {})[method] = spec["paths"][path][method]
        schemas = spec["components"]["schemas"]
        todo, keep = list(refs(out["paths"])), {}
        while todo:
            n = todo.pop()
            if n not in keep:
                keep[n] = schemas[n]
                todo.extend(refs(schemas[n]))
        out["components"] = {"schemas": dict(sorted(keep.items()))}
        if "securitySchemes" in spec["components"]:
            out["components"]["securitySchemes"] = spec["components"]["securitySchemes"]
        with open(os.path.join(here, os.path.basename(name)), "w") as f:
            json.dump(out, f, indent=1, sort_keys=False)
            f.write("\n")


if __name__ == "__main__":
    main()
