"""Prepares a running sandbox aspen for the schemathesis run and prints the
values the configs pin, as `export NAME=value` lines for run.sh to source.

  AIS: a client-credentials token (`accounts`), an account-access consent
       with every permission, authorised headlessly, and the PSU token from
       its code; a real AccountId and StatementId of that consent.
  PIS: a client-credentials token (`payments`); an authorised domestic and
       an authorised international consent, each with its PSU token (for
       the consent GETs and funds-confirmation); one domestic and one
       international payment made through their own consents, for the
       payment GETs.
  CoF: a client-credentials token (`fundsconfirmations`); a funds
       confirmation consent for rora's first sort-code account (found
       through the AIS consent), authorised headlessly, and its PSU token.
  Events: a client-credentials token (`accounts`) for the registration
       APIs and one (`eventpolling`) for aggregated polling; the client's
       one event subscription (polling only: no CallbackUrl, and it
       overrides the callback URL, EVT-4, so nothing is pushed) and its one
       callback URL. They are made first, so that the PIS payments below
       already raise events to poll.

usage: setup_world.py SERVER_URL KIT_DIR CLIENT_ID
"""

from __future__ import annotations

import shlex
import sys

from obtpp import Kit, Tpp

AISP = "/open-banking/v3.1/aisp"
PISP = "/open-banking/v3.1/pisp"
CBPII = "/open-banking/v3.1/cbpii"
EVENT_SUBSCRIPTIONS = "/open-banking/v3.1/event-subscriptions"
CALLBACK_URLS = "/open-banking/v3.1/callback-urls"

ALL_PERMISSIONS = [
    "ReadAccountsDetail",
    "ReadBalances",
    "ReadBeneficiariesDetail",
    "ReadDirectDebits",
    "ReadOffers",
    "ReadPAN",
    "ReadParty",
    "ReadPartyPSU",
    "ReadProducts",
    "ReadScheduledPaymentsDetail",
    "ReadStandingOrdersDetail",
    "ReadStatementsDetail",
    "ReadTransactionsCredits",
    "ReadTransactionsDebits",
    "ReadTransactionsDetail",
]

# Payments that satisfy the default (Stripe) bank rules, as in
# crates/aspen/tests/pis.rs.
DOMESTIC = {
    "InstructionIdentification": "FUZZ001",
    "EndToEndIdentification": "FUZZ.E2E.001",
    "InstructedAmount": {"Amount": "1.00", "Currency": "GBP"},
    "CreditorAccount": {
        "SchemeName": "UK.OBIE.SortCodeAccountNumber",
        "Identification": "08080021325698",
        "Name": "ACME Inc",
    },
    "RemittanceInformation": {"Reference": "FUZZREF001", "Unstructured": "schemathesis setup"},
    "SupplementaryData": {
        "CreditorAccount": {
            "Email": "ops@acme.example",
            "EntityType": "company",
            "BusinessDetails": {"Name": "ACME Inc"},
        }
    },
}
INTERNATIONAL = {
    "InstructionIdentification": "FUZZ002",
    "EndToEndIdentification": "FUZZ.E2E.002",
    "InstructionPriority": "Normal",
    "CurrencyOfTransfer": "EUR",
    "InstructedAmount": {"Amount": "1.00", "Currency": "EUR"},
    "CreditorAccount": {
        "SchemeName": "UK.OBIE.IBAN",
        "Identification": "DE89370400440532013000",
        "Name": "Muster GmbH",
    },
    "RemittanceInformation": {"Reference": "FUZZREF002"},
    "SupplementaryData": {
        "CreditorAccount": {
            "Email": "kasse@muster.example",
            "EntityType": "individual",
            "Individual": {"Name": "Max Muster", "DateOfBirth": "1980-04-01"},
        }
    },
}
RISK = {"PaymentContextCode": "PartyToParty"}

# The event types aspen sends (crates/aspen-api/src/events.rs SUPPORTED).
EVENT_TYPES = [
    "urn:uk:org:openbanking:events:resource-update",
    "urn:uk:org:openbanking:events:consent-authorization-revoked",
]
# A polling-only subscription and a callback URL of the shape aspen takes
# (EVT-4): https, ending /<version>/event-notifications.
SUBSCRIPTION = {"Data": {"Version": "3.1.2", "EventTypes": EVENT_TYPES}}
CALLBACK_URL = {"Data": {"Url": "https://tpp.example.com/open-banking/v3.1/event-notifications", "Version": "3.1.2"}}


def expect(r, status: int, what: str) -> dict:
    if r.status_code != status:
        raise SystemExit(f"setup: {what}: expected {status}, got {r.status_code}: {r.text[:800]}")
    return r.json() if r.content else {}


def ais(tpp: Tpp) -> dict[str, str]:
    cc = tpp.cc_token("accounts")
    consent = expect(
        tpp.post_json(f"{AISP}/account-access-consents", cc, {"Data": {"Permissions": ALL_PERMISSIONS}, "Risk": {}}),
        201,
        "POST account-access-consents",
    )["Data"]["ConsentId"]
    psu = tpp.authorise(consent, "openid accounts")
    accounts = expect(tpp.get(f"{AISP}/accounts", psu), 200, "GET accounts")["Data"]["Account"]
    if not accounts:
        raise SystemExit("setup: the consent sees no accounts")
    # The first account that has a statement, so that the statement paths
    # reach a real one.
    account, statement = accounts[0]["AccountId"], None
    for a in accounts:
        st = expect(tpp.get(f"{AISP}/accounts/{a['AccountId']}/statements", psu), 200, "GET statements")
        items = st.get("Data", {}).get("Statement", [])
        if items:
            account, statement = a["AccountId"], items[0]["StatementId"]
            break
    if statement is None:
        raise SystemExit("setup: no account of the consent has a statement")
    # The first account with a sort code, for the funds-confirmation
    # consent (the headless PSU, rora, is the one who authorised above).
    debtor = next(
        (
            (a, i)
            for a in accounts
            for i in a.get("Account", [])
            if i.get("SchemeName") == "UK.OBIE.SortCodeAccountNumber"
        ),
        None,
    )
    if debtor is None:
        raise SystemExit("setup: no account of the consent has a sort code and account number")
    return {
        "AIS_TPP_TOKEN": cc,
        "AIS_PSU_TOKEN": psu,
        "AIS_CONSENT_ID": consent,
        "AIS_ACCOUNT_ID": account,
        "AIS_STATEMENT_ID": statement,
        "COF_DEBTOR_IDENTIFICATION": debtor[1]["Identification"],
        "COF_CURRENCY": debtor[0]["Currency"],
    }


def pis_consent(tpp: Tpp, cc: str, kind: str, initiation: dict) -> tuple[str, str]:
    """An authorised payment consent and the PSU token for it."""
    body = {"Data": {"Initiation": initiation}, "Risk": RISK}
    consent = expect(tpp.post_signed(f"{PISP}/{kind}-payment-consents", cc, body), 201, f"POST {kind}-payment-consents")
    cid = consent["Data"]["ConsentId"]
    return cid, tpp.authorise(cid, "openid payments")


def pis_payment(tpp: Tpp, cc: str, kind: str, initiation: dict) -> str:
    cid, psu = pis_consent(tpp, cc, kind, initiation)
    order = {"Data": {"ConsentId": cid, "Initiation": initiation}, "Risk": RISK}
    paid = expect(tpp.post_signed(f"{PISP}/{kind}-payments", psu, order), 201, f"POST {kind}-payments")
    field = "DomesticPaymentId" if kind == "domestic" else "InternationalPaymentId"
    return paid["Data"][field]


def pis(tpp: Tpp) -> dict[str, str]:
    cc = tpp.cc_token("payments")
    dom_consent, dom_psu = pis_consent(tpp, cc, "domestic", DOMESTIC)
    intl_consent, intl_psu = pis_consent(tpp, cc, "international", INTERNATIONAL)
    return {
        "PIS_TPP_TOKEN": cc,
        "PIS_DOMESTIC_CONSENT_ID": dom_consent,
        "PIS_DOMESTIC_PSU_TOKEN": dom_psu,
        "PIS_INTERNATIONAL_CONSENT_ID": intl_consent,
        "PIS_INTERNATIONAL_PSU_TOKEN": intl_psu,
        "PIS_DOMESTIC_PAYMENT_ID": pis_payment(tpp, cc, "domestic", DOMESTIC),
        "PIS_INTERNATIONAL_PAYMENT_ID": pis_payment(tpp, cc, "international", INTERNATIONAL),
    }


def cof(tpp: Tpp, identification: str) -> dict[str, str]:
    cc = tpp.cc_token("fundsconfirmations")
    debtor = {"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": identification}
    body = {"Data": {"DebtorAccount": debtor}}
    consent = expect(
        tpp.post_json(f"{CBPII}/funds-confirmation-consents", cc, body), 201, "POST funds-confirmation-consents"
    )["Data"]["ConsentId"]
    return {
        "COF_TPP_TOKEN": cc,
        "COF_CONSENT_ID": consent,
        "COF_PSU_TOKEN": tpp.authorise(consent, "openid fundsconfirmations"),
    }


def events(tpp: Tpp) -> dict[str, str]:
    cc = tpp.cc_token("accounts")
    # No idempotency on the event APIs (EVT-1).
    sub = tpp.post_signed(EVENT_SUBSCRIPTIONS, cc, SUBSCRIPTION, idempotent=False)
    sub = expect(sub, 201, "POST event-subscriptions")
    cb = tpp.post_signed(CALLBACK_URLS, cc, CALLBACK_URL, idempotent=False)
    cb = expect(cb, 201, "POST callback-urls")
    return {
        "EVENTS_TPP_TOKEN": cc,
        "EVENTS_POLL_TOKEN": tpp.cc_token("eventpolling"),
        "EVENT_SUBSCRIPTION_ID": sub["Data"]["EventSubscriptionId"],
        "CALLBACK_URL_ID": cb["Data"]["CallbackUrlId"],
    }


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    server, kit_dir, client_id = sys.argv[1:]
    tpp = Tpp(server, Kit(kit_dir), client_id)
    values = events(tpp)
    values.update(ais(tpp))
    values.update(pis(tpp))
    values.update(cof(tpp, values["COF_DEBTOR_IDENTIFICATION"]))
    for k, v in values.items():
        print(f"export {k}={shlex.quote(v)}")


if __name__ == "__main__":
    main()
