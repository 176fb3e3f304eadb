"""Generate aggregator/s3model.json from botocore's published S3 service model.

Run from the repository root with the project's virtual environment:

    .venv/bin/python packaging/gen_s3model.py            # rewrite the file
    .venv/bin/python packaging/gen_s3model.py --check    # exit 1 if stale

botocore is a build-time input only; at run time s3ops.py reads the JSON.

For every operation the file keeps what tells its requests apart on the wire:
  method    the HTTP method
  bucket    the request URI has a {Bucket} part
  key       the request URI has a {Key+} part
  literal   a fixed path instead (e.g. "/WriteGetObjectResponse"), if any
  query     query keys a request must carry: literal keys of the URI template
            (value fixed when the template fixes it, e.g. list-type=2, else
            null) plus required querystring members (value null)
  headers   required headers that distinguish it from an operation with the
            same method, path shape and query (x-amz-copy-source ...)
  accepts   optional querystring members that are another operation's marker
  deprecated / control   flags used only to break ties (control: the model
            routes it to the S3 Express control endpoint)
The template disambiguator `x-id=Name` is never stored as required.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable

OUT = Path(__file__).resolve().parent.parent / "aggregator" / "s3model.json"
SERVICE, API_VERSION = "s3", "2006-03-01"
X_ID = "x-id"


def load_model() -> dict[str, Any]:
    from botocore.loaders import Loader  # build-time only
    return Loader().load_service_model(SERVICE, "service-2", API_VERSION)


def split_uri(uri: str) -> tuple[dict[str, Any], dict[str, str | None]]:
    """'/{Bucket}/{Key+}?uploads' -> ({bucket, key[, literal]}, {'uploads': None})."""
    path, _, query = uri.partition("?")
    query_keys: dict[str, str | None] = {}
    for item in filter(None, query.split("&")):
        name, eq, value = item.partition("=")
        if name != X_ID:
            query_keys[name] = value if eq else None
    if path == "/":
        return {"bucket": False, "key": False}, query_keys
    if path == "/{Bucket}":
        return {"bucket": True, "key": False}, query_keys
    if path == "/{Bucket}/{Key+}":
        return {"bucket": True, "key": True}, query_keys
    if "{" not in path:
        return {"bucket": False, "key": False, "literal": path}, query_keys
    raise SystemExit(f"unexpected requestUri template: {uri!r}")


def input_members(model: dict[str, Any], op: dict[str, Any]) -> tuple[set, set, set]:
    """(required query keys, optional query keys, required header names)."""
    shape_name = op.get("input", {}).get("shape")
    shape = model["shapes"].get(shape_name, {}) if shape_name else {}
    required = set(shape.get("required", ()))
    req_q, opt_q, req_h = set(), set(), set()
    for name, member in shape.get("members", {}).items():
        where, wire = member.get("location"), member.get("locationName", name)
        if where == "querystring":
            (req_q if name in required else opt_q).add(wire)
        elif where == "header" and name in required:
            req_h.add(wire.lower())
    return req_q, opt_q, req_h


def raw_operations(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ops = {}
    for name, op in model["operations"].items():
        path, query = split_uri(op["http"]["requestUri"])
        req_q, opt_q, req_h = input_members(model, op)
        for key in sorted(req_q):
            query.setdefault(key, None)
        static = op.get("staticContextParams", {})
        ops[name] = {"method": op["http"]["method"], **path, "query": query,
                     "_optional": opt_q, "_headers": req_h,
                     "deprecated": bool(op.get("deprecated")),
                     "control": "UseS3ExpressControlEndpoint" in static}
    return ops


def _signature(op: dict[str, Any]) -> tuple:
    return (op["method"], op["bucket"], op["key"], op.get("literal"),
            tuple(sorted(op["query"].items(), key=lambda kv: kv[0])))


def distinguishing_headers(ops: dict[str, dict[str, Any]]) -> None:
    """Keep a required header only where a same-signature sibling lacks it."""
    for name, op in ops.items():
        siblings = [o for n, o in ops.items()
                    if n != name and _signature(o) == _signature(op)]
        op["headers"] = sorted(h for h in op["_headers"]
                               if any(h not in s["_headers"] for s in siblings))


def marker_accepts(ops: dict[str, dict[str, Any]]) -> None:
    markers = {k for op in ops.values() for k in op["query"]}
    for op in ops.values():
        op["accepts"] = sorted((op["_optional"] & markers) - set(op["query"]))


def compact(op: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in op.items() if not k.startswith("_")}
    for flag in ("deprecated", "control", "headers", "accepts"):
        if not out[flag]:
            del out[flag]
    return out


def build(only: Iterable[str] | None = None) -> dict[str, Any]:
    """The model file's content.  `only`: just these operations (those of them
    botocore has), with `headers` and `accepts` worked out among them alone --
    what an older model file would hold, had this botocore generated it."""
    import botocore
    model = load_model()
    ops = raw_operations(model)
    if only is not None:
        keep = set(only)
        ops = {n: op for n, op in ops.items() if n in keep}
    distinguishing_headers(ops)
    marker_accepts(ops)
    return {"source": {"service": SERVICE, "apiVersion": API_VERSION,
                       "botocore": botocore.__version__,
                       "generator": "packaging/gen_s3model.py"},
            "operations": {n: compact(ops[n]) for n in sorted(ops)}}


def render(doc: dict[str, Any]) -> str:
    """One operation per line: compact, yet diffs stay readable."""
    lines = ["{", f' "source": {json.dumps(doc["source"], sort_keys=True)},',
             ' "operations": {']
    items = list(doc["operations"].items())
    for i, (name, op) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"  {json.dumps(name)}: {json.dumps(op, sort_keys=True)}{comma}")
    lines += [" }", "}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the checked-in file differs")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    doc = build()
    text = render(doc)
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale; rerun {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(doc['operations'])} operations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
