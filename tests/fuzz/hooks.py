"""schemathesis hooks for the bounded run (loaded through `hooks` in
ais.toml / pis.toml / cof.toml / events.toml; the values come from the
environment run.sh exports).

How the specs are read (before_load_schema):
- The AIS Basic/Detail `oneOf`s are read as `anyOf`: a Detail object also
  matches its Basic schema, so no response can satisfy the `oneOf` as
  written (AIS-52; the Rust tests read the same files the same way). Only
  `oneOf`s of exactly an `…Basic` and an `…Detail` schema are changed.
- Request bodies are closed (`additionalProperties: false` on every object
  that lists its properties and does not say otherwise, so not
  SupplementaryData): aspen's strict profile refuses fields the schema lacks
  (COMMON-21), so without this nearly every generated body stops at an
  unknown field. The bodies are inlined first, so the response schemas,
  which share those components, are checked as published.
- Each consent POST gets the body setup_world.py sends as its example, so
  that the examples phase creates a consent the bank's rules accept and its
  201 is checked against the published schema (random bodies seldom pass
  those rules). So do the funds confirmation (the pinned consent, the
  account's currency) and the event APIs' writes and poll (a supported
  Version, EventTypes aspen sends, a callback URL of the required shape).

What each request gets (before_call):
- Operations that take `x-jws-signature` (the PIS POSTs, the event
  subscription and callback URL POSTs and PUTs) send their body
  as exact bytes, signed with the kit's key as an OB detached JWS, with a
  fresh `x-idempotency-key` where the operation takes one (PIS): without
  them aspen refuses the request before its body is looked at, and a
  reused key replays the first resource.
- Payment orders and funds confirmations quote the consent their PSU token
  was issued for.
- International consent GETs, funds-confirmation and payment orders use the
  authorised international consent and its PSU token (the config pins a
  bearer token per security scheme, not per operation).
- `DELETE /account-access-consents/{ConsentId}` and
  `DELETE /funds-confirmation-consents/{ConsentId}` aimed at the pinned
  consent are pointed at a fresh consent instead, so that the PSU token
  every other AIS / CoF operation uses stays valid.
- Event subscriptions and callback URLs are one per TPP (EVT-2: a second
  POST is 409, which the v3.1.2 OpenAPI does not list): each POST first
  deletes the client's current one, so that it can reach 201. A PUT or
  DELETE aimed at the pinned id goes to the client's current one (made
  afresh if a POST or DELETE took it away), and a PUT body's
  schema-valid `EventSubscriptionId` is the path's.
- `POST /events` uses the `eventpolling` token (the three event specs
  share events.toml and its one `accounts` token), and the client's event
  subscription is made again first if the fuzzing took it away: polling
  needs one (EVT-30).

Spec quirks aspen is right about (filter_failure) are listed in their own
section below. The aspen bugs this run first found (a panic on a
non-ASCII IBAN start, an unclosed AIS Risk object, an empty error Path; on
the event specs, an event-subscription PUT taking a Meta.TotalPages beyond
int32) are fixed, with regression tests in the Rust suite; nothing is
excused here.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import uuid

import schemathesis
from schemathesis.core import NOT_SET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from obtpp import Kit, Tpp  # noqa: E402
from setup_world import (  # noqa: E402
    ALL_PERMISSIONS,
    CALLBACK_URL,
    CALLBACK_URLS,
    CBPII,
    DOMESTIC,
    EVENT_SUBSCRIPTIONS,
    EVENT_TYPES,
    INTERNATIONAL,
    RISK,
    SUBSCRIPTION,
)

_KIT = Kit(os.environ["FUZZ_KIT"])
_TPP = Tpp(os.environ["FUZZ_SERVER"], _KIT, os.environ["FUZZ_CLIENT_ID"])
AISP = "/open-banking/v3.1/aisp"
ENV = os.environ.get

# ---------------------------------------------------------------- the specs


def _basic_detail(alternatives) -> bool:
    refs = sorted(a.get("$ref", "") if isinstance(a, dict) else "" for a in alternatives)
    return (
        len(refs) == 2
        and refs[0].endswith("Basic")
        and refs[1].endswith("Detail")
        and refs[0][: -len("Basic")] == refs[1][: -len("Detail")]
    )


def _one_of_to_any_of(node) -> None:
    if isinstance(node, dict):
        if "oneOf" in node and _basic_detail(node["oneOf"]):
            node["anyOf"] = node.pop("oneOf")
        for value in node.values():
            _one_of_to_any_of(value)
    elif isinstance(node, list):
        for value in node:
            _one_of_to_any_of(value)


def _closed(node, schemas: dict, stack: tuple = ()):
    """A copy of `node` with its $refs inlined and its objects closed."""
    if isinstance(node, list):
        return [_closed(v, schemas, stack) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        if name in stack or name not in schemas:
            return dict(node)
        return _closed(schemas[name], schemas, stack + (name,))
    out = {k: _closed(v, schemas, stack) for k, v in node.items()}
    if out.get("properties") and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _close_request_bodies(raw_schema) -> None:
    components = raw_schema.get("components", {})
    schemas = components.get("schemas", {})
    bodies = list(components.get("requestBodies", {}).values())
    for ops in raw_schema.get("paths", {}).values():
        for op in ops.values():
            if isinstance(op, dict) and "content" in op.get("requestBody", {}):
                bodies.append(op["requestBody"])
    for body in bodies:
        for media in body.get("content", {}).values():
            if "schema" in media:
                media["schema"] = _closed(media["schema"], schemas)


EXAMPLES = {
    ("post", "/account-access-consents"): {"Data": {"Permissions": ALL_PERMISSIONS}, "Risk": {}},
    ("post", "/domestic-payment-consents"): {"Data": {"Initiation": DOMESTIC}, "Risk": RISK},
    ("post", "/international-payment-consents"): {"Data": {"Initiation": INTERNATIONAL}, "Risk": RISK},
    ("post", "/funds-confirmation-consents"): {
        "Data": {
            "DebtorAccount": {
                "SchemeName": "UK.OBIE.SortCodeAccountNumber",
                "Identification": ENV("COF_DEBTOR_IDENTIFICATION", ""),
                "Name": "Rora",
            }
        }
    },
    ("post", "/funds-confirmations"): {
        "Data": {
            "ConsentId": ENV("COF_CONSENT_ID", ""),
            "Reference": "FUZZREF003",
            "InstructedAmount": {"Amount": "1.00", "Currency": ENV("COF_CURRENCY", "GBP")},
        }
    },
    # With a CallbackUrl, to see it echoed (tpp.example.com is a reserved
    # name: a push there reaches no one).
    ("post", "/event-subscriptions"): {
        "Data": {**SUBSCRIPTION["Data"], "CallbackUrl": CALLBACK_URL["Data"]["Url"]}
    },
    ("put", "/event-subscriptions/{EventSubscriptionId}"): {
        "Data": {
            "EventSubscriptionId": ENV("EVENT_SUBSCRIPTION_ID", ""),
            "Version": "3.1.2",
            "EventTypes": EVENT_TYPES,
        }
    },
    ("post", "/callback-urls"): CALLBACK_URL,
    ("post", "/events"): {"maxEvents": 5, "returnImmediately": True},
}


def _add_examples(raw_schema) -> None:
    bodies = raw_schema.get("components", {}).get("requestBodies", {})
    for (method, path), example in EXAMPLES.items():
        body = raw_schema.get("paths", {}).get(path, {}).get(method, {}).get("requestBody")
        if body is None:
            continue
        ref = body.get("$ref", "")
        if ref.startswith("#/components/requestBodies/"):
            body = bodies[ref.rsplit("/", 1)[1]]
        body["content"]["application/json"]["example"] = copy.deepcopy(example)


@schemathesis.hook
def before_load_schema(context, raw_schema):
    _one_of_to_any_of(raw_schema)
    _close_request_bodies(raw_schema)
    _add_examples(raw_schema)


# ------------------------------------------------------------- the requests


def _events_token() -> str:
    return os.environ["EVENTS_TPP_TOKEN"]


def _registrations(collection: str, field: str) -> list[str]:
    """The client's current event subscription or callback URL ids."""
    r = _TPP.get(collection, _events_token())
    if r.status_code != 200:
        return []
    return [item[field] for item in r.json().get("Data", {}).get(field[: -len("Id")], [])]


def _clear(collection: str, field: str) -> None:
    for rid in _registrations(collection, field):
        _TPP.delete(f"{collection}/{rid}", _events_token())


def _current(collection: str, field: str, body: dict) -> str | None:
    """The client's one registration, made again if it is gone."""
    ids = _registrations(collection, field)
    if ids:
        return ids[0]
    r = _TPP.post_signed(collection, _events_token(), body, idempotent=False)
    return r.json()["Data"][field] if r.status_code == 201 else None


# The event APIs' one-per-client resources: (collection, id field, body to
# make one again, pinned id).
REGISTRATIONS = {
    "/event-subscriptions": (EVENT_SUBSCRIPTIONS, "EventSubscriptionId", SUBSCRIPTION, "EVENT_SUBSCRIPTION_ID"),
    "/callback-urls": (CALLBACK_URLS, "CallbackUrlId", CALLBACK_URL, "CALLBACK_URL_ID"),
}


def _header_names(case) -> set[str]:
    return {p.name.lower() for p in case.operation.headers}


def _body_bytes(case) -> bytes | None:
    body = case.body
    if body is NOT_SET or (body is None and case.media_type is None):
        return None
    if isinstance(body, bytes):
        return body
    if isinstance(body, str) and not (case.media_type or "").endswith("json"):
        return body.encode()
    return json.dumps(body, separators=(",", ":")).encode()


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers if case.headers is not None else {}
    method = case.method.upper()
    path = case.operation.path

    # Payment orders quote the consent their PSU token was issued for, so
    # that they get past the token check to the consent comparison (their
    # generated Initiation never equals the consent's, so nothing is paid
    # and the pinned consents stay Authorised). Only a schema-valid
    # generated ConsentId is replaced, so negative cases stay negative.
    pinned_consent = {
        "/domestic-payments": os.environ["PIS_DOMESTIC_CONSENT_ID"],
        "/international-payments": os.environ["PIS_INTERNATIONAL_CONSENT_ID"],
        "/funds-confirmations": os.environ["COF_CONSENT_ID"],
    }.get(path)
    if pinned_consent and method == "POST" and isinstance(case.body, dict):
        data = case.body.get("Data")
        cid = data.get("ConsentId") if isinstance(data, dict) else None
        if isinstance(cid, str) and 1 <= len(cid) <= 128:
            data["ConsentId"] = pinned_consent

    # The event APIs' one registration per client (see the module doc).
    collection = "/" + path.split("/")[1]
    if collection in REGISTRATIONS:
        full, field, again, pinned_env = REGISTRATIONS[collection]
        if method == "POST":
            _clear(full, field)
        elif (case.path_parameters or {}).get(field) == os.environ[pinned_env]:
            current = _current(full, field, again)
            if current:
                case.path_parameters[field] = current
        if method == "PUT" and field == "EventSubscriptionId" and isinstance(case.body, dict):
            data = case.body.get("Data")
            sid = data.get(field) if isinstance(data, dict) else None
            if isinstance(sid, str) and 1 <= len(sid) <= 40:
                data[field] = (case.path_parameters or {}).get(field)
    if path == "/events" and method == "POST":
        _current(EVENT_SUBSCRIPTIONS, "EventSubscriptionId", SUBSCRIPTION)
        headers["Authorization"] = "Bearer " + os.environ["EVENTS_POLL_TOKEN"]

    # The body is final from here on: it is signed as sent.
    names = _header_names(case)
    if "x-jws-signature" in names:
        body = _body_bytes(case)
        if body is not None:
            kwargs["data"] = body
        headers["x-jws-signature"] = _KIT.detached(body or b"")
    if "x-idempotency-key" in names:
        headers["x-idempotency-key"] = str(uuid.uuid4())

    if (
        method == "DELETE"
        and path == "/account-access-consents/{ConsentId}"
        and case.path_parameters.get("ConsentId") == os.environ["AIS_CONSENT_ID"]
    ):
        r = _TPP.post_json(
            f"{AISP}/account-access-consents",
            os.environ["AIS_TPP_TOKEN"],
            {"Data": {"Permissions": ["ReadAccountsBasic"]}, "Risk": {}},
        )
        if r.status_code == 201:
            case.path_parameters["ConsentId"] = r.json()["Data"]["ConsentId"]
    if (
        method == "DELETE"
        and path == "/funds-confirmation-consents/{ConsentId}"
        and case.path_parameters.get("ConsentId") == os.environ["COF_CONSENT_ID"]
    ):
        r = _TPP.post_json(
            f"{CBPII}/funds-confirmation-consents",
            os.environ["COF_TPP_TOKEN"],
            EXAMPLES[("post", "/funds-confirmation-consents")],
        )
        if r.status_code == 201:
            case.path_parameters["ConsentId"] = r.json()["Data"]["ConsentId"]

    if path.startswith("/international-payment-consents/{ConsentId}"):
        if case.path_parameters.get("ConsentId") == os.environ["PIS_DOMESTIC_CONSENT_ID"]:
            case.path_parameters["ConsentId"] = os.environ["PIS_INTERNATIONAL_CONSENT_ID"]
        if path.endswith("/funds-confirmation"):
            headers["Authorization"] = "Bearer " + os.environ["PIS_INTERNATIONAL_PSU_TOKEN"]
    if path == "/international-payments" and method == "POST":
        headers["Authorization"] = "Bearer " + os.environ["PIS_INTERNATIONAL_PSU_TOKEN"]

    case.headers = headers


@schemathesis.hook
def after_call(context, case, response):
    """Tallies statuses per operation for run.sh's summary: how deep the
    generated requests got (2xx) versus refused (4xx)."""
    stats = os.environ.get("FUZZ_STATS")
    if stats:
        with open(stats, "a") as f:
            f.write(f"{case.method.upper()} {case.operation.path} {response.status_code}\n")


# ------------------------------------------------------------ spec quirks


@schemathesis.hook
def filter_failure(context, failure, case, response):
    # Spec quirk: 415 is how aspen (and OB's own error guidance) answer an
    # unsupported Content-Type, but the v3.1.2 spec lists no 415 on any
    # operation (CONFORMANCE.md).
    if failure.code == "ST103" and response.status_code == 415:
        return False
    return True
