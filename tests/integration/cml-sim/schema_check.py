"""Checks JSON responses against the response schemas of an OpenAPI 3.1 document.

Standard library only. Covers the JSON Schema keywords the CML 2.9 spec uses for the operations
cml-sim serves: $ref, type, enum, const, anyOf/oneOf/allOf (with discriminator), properties,
required, additionalProperties, patternProperties, items, min/maxLength, pattern, minimum/maximum,
min/maxItems and format date-time.
"""
import datetime
import re

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


class Spec:
    def __init__(self, doc):
        self.doc = doc
        self.base = doc.get("servers", [{}])[0].get("url", "")
        self._routes = []
        for tmpl, ops in doc["paths"].items():
            rx = "^" + re.sub(r"\{[^}]+\}", "[^/]+", re.escape(tmpl).replace(r"\{", "{").replace(r"\}", "}")) + "$"
            self._routes.append((re.compile(rx), tmpl, ops))
        # Templates with fewer parameters win (/labs/import-like literals before /labs/{id}).
        self._routes.sort(key=lambda r: r[1].count("{"))

    def operation(self, method, path):
        """Returns (template, operation) for a concrete API path (without the base)."""
        path = path.split("?", 1)[0]
        for rx, tmpl, ops in self._routes:
            if rx.match(path) and method.lower() in ops:
                return tmpl, ops[method.lower()]
        return None, None

    def resolve(self, schema):
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            assert ref.startswith("#/"), ref
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part]
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = dict(node, **extra) if extra else node
        return schema

    def response_schema(self, op, status):
        """(declared, schema-or-None): whether the status is declared (or covered by default)."""
        responses = op.get("responses", {})
        r = responses.get(str(status))
        declared = r is not None
        if r is None:
            r = responses.get("default")
        if r is None:
            return False, None
        content = r.get("content", {}).get("application/json")
        return declared, (content or {}).get("schema")

    def validate(self, value, schema, where="$"):
        """Returns a list of error strings (empty when valid)."""
        errors = []
        self._v(value, schema, where, errors)
        return errors

    def _v(self, v, s, at, errs):
        s = self.resolve(s)
        if s is True or s is None or s == {}:
            return
        if s is False:
            errs.append(f"{at}: no value allowed")
            return
        if "allOf" in s:
            for sub in s["allOf"]:
                self._v(v, sub, at, errs)
        if "anyOf" in s:
            if not any(not self.validate(v, sub, at) for sub in s["anyOf"]):
                details = "; ".join(e for sub in s["anyOf"] for e in self.validate(v, sub, at)[:1])
                errs.append(f"{at}: matches none of anyOf ({details})")
        if "oneOf" in s:
            disc = s.get("discriminator")
            if disc and isinstance(v, dict) and v.get(disc["propertyName"]) in disc.get("mapping", {}):
                self._v(v, {"$ref": disc["mapping"][v[disc["propertyName"]]]}, at, errs)
            else:
                n = sum(1 for sub in s["oneOf"] if not self.validate(v, sub, at))
                if n != 1:
                    errs.append(f"{at}: matches {n} of oneOf (want exactly 1)")
        t = s.get("type")
        if t is not None:
            types = t if isinstance(t, list) else [t]
            if not any(_TYPES[x](v) for x in types):
                errs.append(f"{at}: expected {t}, got {type(v).__name__} {str(v)[:60]!r}")
                return
        if "enum" in s and v not in s["enum"]:
            errs.append(f"{at}: {v!r} not in {s['enum']}")
        if "const" in s and v != s["const"]:
            errs.append(f"{at}: {v!r} != const {s['const']!r}")
        if isinstance(v, str):
            if "minLength" in s and len(v) < s["minLength"]:
                errs.append(f"{at}: shorter than {s['minLength']}")
            if "maxLength" in s and len(v) > s["maxLength"]:
                errs.append(f"{at}: longer than {s['maxLength']}")
            if "pattern" in s and not re.search(s["pattern"], v):
                errs.append(f"{at}: {v[:60]!r} does not match {s['pattern']}")
            if s.get("format") == "date-time":
                try:
                    datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
                    if not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", v):
                        raise ValueError
                except ValueError:
                    errs.append(f"{at}: {v!r} is not an RFC 3339 date-time")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if "minimum" in s and v < s["minimum"]:
                errs.append(f"{at}: {v} < minimum {s['minimum']}")
            if "maximum" in s and v > s["maximum"]:
                errs.append(f"{at}: {v} > maximum {s['maximum']}")
        if isinstance(v, list):
            if "minItems" in s and len(v) < s["minItems"]:
                errs.append(f"{at}: fewer than {s['minItems']} items")
            if "maxItems" in s and len(v) > s["maxItems"]:
                errs.append(f"{at}: more than {s['maxItems']} items")
            if "items" in s:
                for i, item in enumerate(v):
                    self._v(item, s["items"], f"{at}[{i}]", errs)
        if isinstance(v, dict):
            props = s.get("properties", {})
            for req in s.get("required", []):
                if req not in v:
                    errs.append(f"{at}: missing required property {req!r}")
            pprops = s.get("patternProperties", {})
            addl = s.get("additionalProperties", True)
            for k, item in v.items():
                matched = False
                if k in props:
                    matched = True
                    self._v(item, props[k], f"{at}.{k}", errs)
                for pat, sub in pprops.items():
                    if re.search(pat, k):
                        matched = True
                        self._v(item, sub, f"{at}.{k}", errs)
                if not matched:
                    if addl is False:
                        errs.append(f"{at}: unexpected property {k!r}")
                    elif isinstance(addl, dict):
                        self._v(item, addl, f"{at}.{k}", errs)
