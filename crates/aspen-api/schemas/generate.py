#!/usr/bin/env python3
"""Derives pis-requests.json from the official v3.1.2 OpenAPI file.

The request schemas of the PIS endpoints aspen serves, with every $ref
inlined, so the server can validate bodies without the OpenAPI file at run
time. Run from the repository root:

    python3 crates/aspen-api/schemas/generate.py \
        ../shared/standard/openapi/payment-initiation-openapi.yaml

Needs PyYAML. The output is committed; re-run only when the input changes.
"""
import json
import pathlib
import sys

import yaml

NAMES = [
    "OBWriteDomesticConsent3",
    "OBWriteDomestic2",
    "OBWriteInternationalConsent3",
    "OBWriteInternational2",
]


def main(src):
    doc = yaml.safe_load(pathlib.Path(src).read_text())
    schemas = doc["components"]["schemas"]

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(schemas[node["$ref"].rsplit("/", 1)[-1]])
            out = {k: inline(v) for k, v in node.items() if k not in ("description", "example")}
            return out
        if isinstance(node, list):
            return [inline(x) for x in node]
        return node

    out = {name: inline(schemas[name]) for name in NAMES}
    dest = pathlib.Path(__file__).with_name("pis-requests.json")
    dest.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main(sys.argv[1])
