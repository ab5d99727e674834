"""The TPP side of a sandbox kit, for the schemathesis run: PS256 JWTs
(client assertions, request objects) and OB detached JWS signatures made
with the kit's signing key, and an mTLS HTTP session with its transport
certificate.

The detached JWS follows crates/aspen-jose/src/detached.rs: header
`{alg: PS256, kid, b64: false, crit: [b64, …/iat, …/iss, …/tan], …/iat,
…/iss = org_id/software_id, …/tan}`, signing input `BASE64URL(header) "."
body` over the exact body bytes, serialised as `header..signature`.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

CLAIM_IAT = "http://openbanking.org.uk/iat"
CLAIM_ISS = "http://openbanking.org.uk/iss"
CLAIM_TAN = "http://openbanking.org.uk/tan"
TAN = "openbanking.org.uk"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Kit:
    """A kit written by `aspen sandbox init`."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        meta = json.loads((self.dir / "kit.json").read_text())
        self.org_id: str = meta["org_id"]
        self.software_id: str = meta["software_id"]
        self.kid: str = meta["signing_kid"]
        self.redirect_uris: list[str] = meta["redirect_uris"]
        self.key = serialization.load_pem_private_key(
            (self.dir / "signing-key.pem").read_bytes(), password=None
        )

    @property
    def iss(self) -> str:
        """The `iss` of request signatures (PIS): org_id/software_id."""
        return f"{self.org_id}/{self.software_id}"

    @property
    def cert(self) -> tuple[str, str]:
        return (str(self.dir / "transport.pem"), str(self.dir / "transport-key.pem"))

    @property
    def ca(self) -> str:
        return str(self.dir / "ca.pem")

    def ps256(self, data: bytes) -> bytes:
        # aws-lc verifies RSASSA-PSS with SHA-256, MGF1-SHA-256, salt 32.
        return self.key.sign(
            data,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        )

    def jwt(self, claims: dict) -> str:
        header = b64url(compact({"alg": "PS256", "kid": self.kid}))
        payload = b64url(compact(claims))
        signing_input = f"{header}.{payload}".encode()
        return f"{header}.{payload}.{b64url(self.ps256(signing_input))}"

    def detached(self, body: bytes, iat: int | None = None) -> str:
        header = {
            "alg": "PS256",
            "kid": self.kid,
            "b64": False,
            CLAIM_IAT: int(time.time()) if iat is None else iat,
            CLAIM_ISS: self.iss,
            CLAIM_TAN: TAN,
            "crit": ["b64", CLAIM_IAT, CLAIM_ISS, CLAIM_TAN],
        }
        encoded = b64url(compact(header))
        sig = self.ps256(encoded.encode() + b"." + body)
        return f"{encoded}..{b64url(sig)}"

    def assertion(self, client_id: str, token_url: str) -> str:
        now = int(time.time())
        return self.jwt(
            {
                "iss": client_id,
                "sub": client_id,
                "aud": token_url,
                "iat": now,
                "exp": now + 120,
                "jti": str(uuid.uuid4()),
            }
        )

    def session(self) -> requests.Session:
        s = requests.Session()
        # Not the environment's REQUESTS_CA_BUNDLE / proxies: it would
        # replace the sandbox CA set here.
        s.trust_env = False
        s.verify = self.ca
        s.cert = self.cert
        return s


class Tpp:
    """A registered private_key_jwt client of one kit on one server."""

    def __init__(self, server: str, kit: Kit, client_id: str):
        self.server = server.rstrip("/")
        self.kit = kit
        self.client_id = client_id
        self.http = kit.session()
        # The PSU's browser: no client certificate.
        self.browser = requests.Session()
        self.browser.trust_env = False
        self.browser.verify = kit.ca

    def url(self, path: str) -> str:
        return self.server + path

    def token(self, **form: str) -> dict:
        token_url = self.url("/token")
        form = dict(form)
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = self.kit.assertion(self.client_id, token_url)
        r = self.http.post(token_url, data=form, timeout=30)
        if r.status_code != 200:
            raise RuntimeError(f"POST /token ({form.get('grant_type')}): {r.status_code} {r.text}")
        return r.json()

    def cc_token(self, scope: str) -> str:
        return self.token(grant_type="client_credentials", scope=scope)["access_token"]

    def authorise(self, consent_id: str, scope: str) -> str:
        """Headless /authorize for a consent, then the code grant: a PSU token."""
        redirect = self.kit.redirect_uris[0]
        now = int(time.time())
        request_object = self.kit.jwt(
            {
                "iss": self.client_id,
                "aud": self.server,
                "client_id": self.client_id,
                "response_type": "code id_token",
                "redirect_uri": redirect,
                "scope": scope,
                "state": "fuzz-state",
                "nonce": str(uuid.uuid4()),
                "nbf": now,
                "exp": now + 300,
                "jti": str(uuid.uuid4()),
                "claims": {
                    "id_token": {
                        "openbanking_intent_id": {"value": consent_id, "essential": True},
                        "acr": {
                            "essential": True,
                            "values": ["urn:openbanking:psd2:sca", "urn:openbanking:psd2:ca"],
                        },
                    }
                },
            }
        )
        r = self.browser.get(
            self.url("/authorize"),
            params={
                "response_type": "code id_token",
                "client_id": self.client_id,
                "scope": scope,
                "redirect_uri": redirect,
                "request": request_object,
            },
            allow_redirects=False,
            timeout=30,
        )
        location = r.headers.get("location", "")
        if r.status_code != 302 or "#" not in location:
            raise RuntimeError(f"GET /authorize: {r.status_code} {location} {r.text[:500]}")
        fragment = parse_qs(location.split("#", 1)[1])
        if "code" not in fragment:
            raise RuntimeError(f"GET /authorize: no code in {location}")
        t = self.token(grant_type="authorization_code", code=fragment["code"][0], redirect_uri=redirect)
        return t["access_token"]

    def get(self, path: str, token: str) -> requests.Response:
        return self.http.get(self.url(path), headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def post_json(self, path: str, token: str, body: dict) -> requests.Response:
        return self.http.post(
            self.url(path),
            data=compact(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=30,
        )

    def post_signed(self, path: str, token: str, body: dict, idempotent: bool = True) -> requests.Response:
        """A signed POST; `idempotent` adds an x-idempotency-key (PIS, not
        the event registration APIs)."""
        data = compact(body)
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "x-jws-signature": self.kit.detached(data),
        }
        if idempotent:
            headers["x-idempotency-key"] = str(uuid.uuid4())
        return self.http.post(self.url(path), data=data, headers=headers, timeout=30)

    def delete(self, path: str, token: str) -> requests.Response:
        return self.http.delete(self.url(path), headers={"Authorization": f"Bearer {token}"}, timeout=30)
