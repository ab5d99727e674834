#!/usr/bin/env python3
"""Derives request schemas from the official v3.1.2 OpenAPI files.

The request schemas of the endpoints aspen serves, with every $ref inlined,
so the server can validate bodies without the OpenAPI files at run time.
Run from the repository root:

    S=../shared/standard/openapi
    python3 crates/aspen-api/schemas/generate.py pis-requests.json \
        $S/payment-initiation-openapi.yaml OBWriteDomesticConsent3 OBWriteDomestic2 \
        OBWriteInternationalConsent3 OBWriteInternational2
    python3 crates/aspen-api/schemas/generate.py cof-requests.json \
        $S/confirmation-funds-openapi.yaml OBFundsConfirmationConsent1 OBFundsConfirmation1
    python3 crates/aspen-api/schemas/generate.py events-requests.json \
        $S/event-subscriptions-openapi.yaml OBEventSubscription1 OBEventSubscriptionResponse1 \
        $S/callback-urls-openapi.yaml OBCallbackUrl1 \
        $S/aggregated-polling-openapi.yaml OBEventPolling1

Arguments: the output file name, then each OpenAPI file followed by the
schema names to take from it. Needs PyYAML. The outputs are committed;
re-run only when the inputs change.
"""
import json
import pathlib
import sys

import yaml

def inline_from(src):
    doc = yaml.safe_load(pathlib.Path(src).read_text())
    schemas = doc["components"]["schemas"]

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(schemas[node["$ref"].rsplit("/", 1)[-1]])
            # Annotations go; a property that happens to be named
            # "description" (a schema, not a string) stays.
            return {
                k: inline(v)
                for k, v in node.items()
                if not (k in ("description", "example") and not isinstance(v, dict))
            }
        if isinstance(node, list):
            return [inline(x) for x in node]
        return node

    return lambda name: inline(schemas[name])


def main(out_name, args):
    out = {}
    take = None
    for a in args:
        if a.endswith((".yaml", ".yml")):
            take = inline_from(a)
        else:
            out[a] = take(a)
    dest = pathlib.Path(__file__).with_name(out_name)
    dest.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
