//! Payment Initiation (issue 6) against a real server on loopback, as a
//! PISP drives it: signed consent, headless authorisation, funds
//! confirmation, signed payment order, status, and the debit seen through
//! AIS. Every body is checked against the official OpenAPI and every
//! response signature against `/jwks`.

mod common;

use common::*;
use serde_json::{Value, json};

const PISP: &str = "/open-banking/v3.1/pisp";
const AISP: &str = "/open-banking/v3.1/aisp";

struct Pisp {
    c: Client,
    cc: String,
}

fn international_initiation(amount: &str, rate: Option<Value>) -> Value {
    let mut i = json!({
        "InstructionIdentification": "ACME413",
        "EndToEndIdentification": "FRESCO.21302.GFX.21",
        "InstructionPriority": "Normal",
        "CurrencyOfTransfer": "EUR",
        "InstructedAmount": { "Amount": amount, "Currency": "EUR" },
        "CreditorAccount": {
            "SchemeName": "UK.OBIE.IBAN",
            "Identification": "DE89370400440532013000",
            "Name": "Muster GmbH",
        },
        "RemittanceInformation": { "Reference": "INV2026-4471" },
        "SupplementaryData": { "CreditorAccount": {
            "Email": "kasse@muster.example", "EntityType": "individual",
            "Individual": { "Name": "Max Muster", "DateOfBirth": "1980-04-01" },
        }},
    });
    if let Some(r) = rate {
        i["ExchangeRateInformation"] = r;
    }
    i
}

/// A sandbox with the Stripe payment rules (`payments.profile = "stripe"`).
async fn start_stripe() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    cfg.payments.profile = "stripe".into();
    start_with(dir, cfg).await
}

impl TestServer {
    async fn pisp(&self, name: &str) -> Pisp {
        self.pisp_with(name, true).await
    }

    async fn pisp_with(&self, name: &str, headless: bool) -> Pisp {
        let c = self
            .client_with(name, json!({"aspen_headless": headless}))
            .await;
        let cc = self.cc_token(&c.tpp, &c.id, "payments").await;
        Pisp { c, cc }
    }

    /// A signed POST with a fresh idempotency key unless one is given.
    async fn signed_post(
        &self,
        p: &Pisp,
        token: &str,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> reqwest::Response {
        let bytes = serde_json::to_vec(body).unwrap();
        let key = key
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.kit_client(&p.c.tpp.dir)
            .post(self.url(&format!("{PISP}{path}")))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("x-idempotency-key", key)
            .header("x-jws-signature", sign(&p.c, &bytes))
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    async fn pis_get(&self, p: &Pisp, token: &str, path: &str) -> reqwest::Response {
        self.kit_client(&p.c.tpp.dir)
            .get(self.url(&format!("{PISP}{path}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Headless authorisation of a consent; the access token from the code.
    async fn authorise(&self, c: &Client, consent: &str, scope: &str) -> String {
        let url = authorize_url(
            self,
            c,
            &c.tpp.sign(&request_claims(self, c, consent, scope)),
            scope,
        );
        let r = self.client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 302);
        let f = fragment(r.headers()["location"].to_str().unwrap());
        let code = f.get("code").unwrap_or_else(|| panic!("no code: {f:?}"));
        let t: Value = self.tokens(c, code, &c.redirect).await;
        t["access_token"].as_str().unwrap().to_string()
    }
}

/// Reads a response: checks its signature with the bank's JWKS (PIS-3,
/// COMMON-32) and returns status and body.
async fn signed_json(s: &TestServer, r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let sig = r
        .headers()
        .get("x-jws-signature")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = r.bytes().await.unwrap();
    let sig = sig.unwrap_or_else(|| {
        panic!(
            "unsigned {status} response: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let jwks = s.jwks().await;
    let tans = vec![TAN.to_string()];
    aspen_jose::verify_detached(
        Some(&sig),
        &bytes,
        &jwks,
        &aspen_jose::DetachedExpectations {
            // COMMON-30: the bank signs as its OB-shaped org id.
            iss: &s.server.aspsp_org_id,
            tans: &tans,
            now: chrono::Utc::now().timestamp(),
            max_future_skew: 30,
            max_age: 60,
        },
    )
    .expect("response signature verifies with /jwks");
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn error_codes(body: &Value) -> Vec<(String, String)> {
    body["Errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["ErrorCode"].as_str().unwrap().to_string(),
                e["Path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

async fn balance(s: &TestServer, c: &Client, token: &str, account: &str) -> (String, String) {
    let v: Value = s
        .kit_client(&c.tpp.dir)
        .get(s.url(&format!("{AISP}/accounts/{account}/balances")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let find = |t: &str| {
        v["Data"]["Balance"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["Type"] == t)
            .map(|b| b["Amount"]["Amount"].as_str().unwrap().to_string())
            .unwrap()
    };
    (find("InterimBooked"), find("InterimAvailable"))
}

fn minor(s: &str) -> i64 {
    aspen_domain::parse_minor(s).unwrap()
}

/// How the member authorises: headless, or in Chromium choosing the
/// debtor account at this index.
#[derive(Clone, Copy)]
enum Via {
    Headless,
    Browser(usize),
}

/// The journey for one payment type, returning the consent and the debit
/// AIS shows.
async fn journey(
    s: &TestServer,
    p: &Pisp,
    kind: &str,
    initiation: Value,
    via: Via,
) -> (Value, i64) {
    let api = OpenApi::load("payment-initiation-openapi.yaml");
    let consents = format!("/{kind}-payment-consents");
    let payments = format!("/{kind}-payments");
    let body = json!({ "Data": { "Initiation": initiation }, "Risk": { "PaymentContextCode": "PartyToParty" } });
    let (st, consent) = signed_json(s, s.signed_post(p, &p.cc, &consents, &body, None).await).await;
    assert_eq!(st, 201, "{consent:#}");
    api.validate(&consents, "post", "201", &consent);
    assert_eq!(consent["Data"]["Status"], "AwaitingAuthorisation");
    assert_eq!(consent["Data"]["Initiation"], body["Data"]["Initiation"]);
    let id = consent["Data"]["ConsentId"].as_str().unwrap().to_string();

    let ac = match via {
        Via::Headless => s.authorise(&p.c, &id, "openid payments").await,
        Via::Browser(account) => {
            let scope = "openid payments";
            let url = authorize_url(
                s,
                &p.c,
                &p.c.tpp.sign(&request_claims(s, &p.c, &id, scope)),
                scope,
            );
            let seen = common::browser::drive(json!({
                "mode": "authorize", "start_url": url, "username": "rora", "password": "rora.",
                "totp_secret": aspen_sandbox::sandbox_logins(42)[0].totp_secret,
                "screenshots": std::env::var("ASPEN_SCREENSHOTS").ok(),
                "screenshot_prefix": format!("{kind}-payment-"),
                "accounts": [account], "decision": "allow", "redirect_prefix": p.c.redirect,
            }))
            .await;
            // SCA with dynamic linking: the second step names the payment.
            let otp = seen["otp_text"].as_str().unwrap_or_default();
            let amount = initiation["InstructedAmount"]["Amount"].as_str().unwrap();
            assert!(
                otp.contains(amount) && otp.contains("You are approving a payment"),
                "the code step names the payment: {seen}"
            );
            assert_eq!(seen["input_type"], "radio", "one debtor account: {seen}");
            let details = seen["details"].as_str().unwrap();
            let amount = initiation["InstructedAmount"]["Amount"].as_str().unwrap();
            assert!(
                details.contains(amount),
                "the page shows the amount: {details}"
            );
            let f = fragment(seen["final_url"].as_str().unwrap());
            let t: Value = s.tokens(&p.c, &f["code"], &p.c.redirect).await;
            t["access_token"].as_str().unwrap().to_string()
        }
    };
    let (st, got) = signed_json(s, s.pis_get(p, &p.cc, &format!("{consents}/{id}")).await).await;
    assert_eq!(st, 200);
    api.validate(&format!("{consents}/{{ConsentId}}"), "get", "200", &got);
    assert_eq!(got["Data"]["Status"], "Authorised");

    let (st, funds) = signed_json(
        s,
        s.pis_get(p, &ac, &format!("{consents}/{id}/funds-confirmation"))
            .await,
    )
    .await;
    assert_eq!(st, 200, "{funds:#}");
    api.validate(
        &format!("{consents}/{{ConsentId}}/funds-confirmation"),
        "get",
        "200",
        &funds,
    );
    assert_eq!(
        funds["Data"]["FundsAvailableResult"]["FundsAvailable"],
        true
    );

    // The debtor account and its balance before, through AIS.
    let stored = s.server.store.consent(&id).await.unwrap().unwrap();
    let account = stored.accounts[0].clone();
    // A headless AIS client reads the member's balances and transactions.
    let reader = s
        .client_with(
            &format!("reader{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            json!({"aspen_headless": true}),
        )
        .await;
    let ais_consent = s
        .ais_consent(&reader, json!({ "Permissions": ALL_PERMISSIONS }))
        .await;
    let ais = s.authorise(&reader, &ais_consent, "openid accounts").await;
    let (booked_before, available_before) = balance(s, &reader, &ais, &account).await;

    let order = json!({ "Data": { "ConsentId": id, "Initiation": body["Data"]["Initiation"] }, "Risk": body["Risk"] });
    let key = uuid::Uuid::new_v4().to_string();
    let (st, pay) = signed_json(
        s,
        s.signed_post(p, &ac, &payments, &order, Some(&key)).await,
    )
    .await;
    assert_eq!(st, 201, "{pay:#}");
    api.validate(&payments, "post", "201", &pay);
    let id_field = if kind == "domestic" {
        "DomesticPaymentId"
    } else {
        "InternationalPaymentId"
    };
    let pid = pay["Data"][id_field].as_str().unwrap().to_string();
    // Immediate sandbox timing: settled on the debtor's side by now.
    let (st, now) = signed_json(s, s.pis_get(p, &p.cc, &format!("{payments}/{pid}")).await).await;
    assert_eq!(st, 200);
    api.validate(&format!("{payments}/{{{id_field}}}"), "get", "200", &now);
    assert_eq!(now["Data"]["Status"], "AcceptedSettlementCompleted");
    // PIS-4: the same key and body replays the order, current status.
    let (st, again) = signed_json(
        s,
        s.signed_post(p, &ac, &payments, &order, Some(&key)).await,
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(again["Data"][id_field], pid);
    assert_eq!(again["Data"]["Status"], "AcceptedSettlementCompleted");
    let (_, consumed) =
        signed_json(s, s.pis_get(p, &p.cc, &format!("{consents}/{id}")).await).await;
    assert_eq!(consumed["Data"]["Status"], "Consumed");

    let (booked_after, available_after) = balance(s, &reader, &ais, &account).await;
    let debit = minor(&booked_before) - minor(&booked_after);
    assert_eq!(minor(&available_before) - minor(&available_after), debit);
    // The entry is in the account's transactions.
    let txs: Value = s
        .kit_client(&reader.tpp.dir)
        .get(s.url(&format!("{AISP}/accounts/{account}/transactions")))
        .query(&[(
            "fromBookingDateTime",
            (chrono::Utc::now() - chrono::Duration::minutes(5))
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string(),
        )])
        .bearer_auth(&ais)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all = txs["Data"]["Transaction"].as_array().unwrap();
    let mine: Vec<&Value> = all
        .iter()
        .filter(|t| t["TransactionId"] == format!("txn-{pid}"))
        .collect();
    assert_eq!(mine.len(), 1, "one ledger entry for the payment");
    assert_eq!(mine[0]["Status"], "Booked");
    assert_eq!(mine[0]["CreditDebitIndicator"], "Debit");
    assert_eq!(minor(mine[0]["Amount"]["Amount"].as_str().unwrap()), debit);
    (consent, debit)
}

#[tokio::test]
async fn domestic_payment_moves_money() {
    let s = start_sandbox().await;
    let p = s.pisp("domesticpisp").await;
    let (_, debit) = journey(
        &s,
        &p,
        "domestic",
        domestic_initiation("12.34"),
        Via::Headless,
    )
    .await;
    assert_eq!(debit, 1234);
    s.stop().await;
}

#[tokio::test]
async fn international_payment_applies_the_quoted_rate() {
    let s = start_sandbox().await;
    let p = s.pisp("intlpisp").await;
    // 116.50 EUR at the locked Actual quote of 1.165 EUR per GBP = 100.00 GBP.
    let rate = json!({ "UnitCurrency": "GBP", "RateType": "Actual" });
    let (consent, debit) = journey(
        &s,
        &p,
        "international",
        international_initiation("116.50", Some(rate)),
        Via::Headless,
    )
    .await;
    let x = &consent["Data"]["ExchangeRateInformation"];
    assert_eq!(x["RateType"], "Actual");
    assert_eq!(x["ExchangeRate"], json!(1.165));
    assert!(x["ExpirationDateTime"].is_string());
    // headless picks the first account that can pay: the GBP one.
    assert_eq!(debit, 10_000);
    s.stop().await;
}

/// A payment as the OB Functional Conformance Suite sends it: the OB
/// schema's required fields and nothing a bank may add.
fn minimal_ob_payment(kind: &str) -> Value {
    let mut i = json!({
        "InstructionIdentification": "FCS0001",
        "EndToEndIdentification": "FCS0001E2E",
        "InstructedAmount": { "Amount": "1.00", "Currency": "GBP" },
        "CreditorAccount": {
            "SchemeName": "UK.OBIE.SortCodeAccountNumber",
            "Identification": "11280001234567",
            "Name": "OB Test",
        },
    });
    if kind == "international" {
        i["CurrencyOfTransfer"] = json!("EUR");
        i["InstructedAmount"]["Currency"] = json!("EUR");
        i["CreditorAccount"] = json!({
            "SchemeName": "UK.OBIE.IBAN",
            "Identification": "DE89370400440532013000",
            "Name": "OB Test",
        });
    }
    i
}

#[tokio::test]
async fn the_ob_profile_takes_the_minimal_ob_payment() {
    // Issue 10: under the default `ob` rules the conformance suite's
    // payments run; the Stripe rules refuse the same body with the bank's
    // own reasons.
    let s = start_stripe().await;
    let p = s.pisp("stripeprofile").await;
    for kind in ["domestic", "international"] {
        let body = json!({ "Data": { "Initiation": minimal_ob_payment(kind) }, "Risk": {} });
        let (st, v) = signed_json(
            &s,
            s.signed_post(&p, &p.cc, &format!("/{kind}-payment-consents"), &body, None)
                .await,
        )
        .await;
        assert_eq!(st, 400, "{kind}: {v:#}");
    }
    let dir = s.stop().await;
    let cfg = sandbox_config(dir.path());
    let s = start_with(dir, cfg).await;
    let p = s.pisp("obprofile").await;
    for kind in ["domestic", "international"] {
        let (_, debit) = journey(&s, &p, kind, minimal_ob_payment(kind), Via::Headless).await;
        assert!(debit > 0, "{kind}");
    }
    s.stop().await;
}

/// A consent authorised headlessly, and its AC token.
async fn authorised(s: &TestServer, p: &Pisp, body: &Value) -> (String, String) {
    let (st, v) = signed_json(
        s,
        s.signed_post(p, &p.cc, "/domestic-payment-consents", body, None)
            .await,
    )
    .await;
    assert_eq!(st, 201, "{v:#}");
    let id = v["Data"]["ConsentId"].as_str().unwrap().to_string();
    let ac = s.authorise(&p.c, &id, "openid payments").await;
    (id, ac)
}

async fn raw_post(
    s: &TestServer,
    p: &Pisp,
    token: &str,
    path: &str,
    body: &[u8],
    sig: Option<String>,
    key: &str,
) -> (u16, Value) {
    let mut rb = s
        .kit_client(&p.c.tpp.dir)
        .post(s.url(&format!("{PISP}{path}")))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("x-idempotency-key", key)
        .body(body.to_vec());
    if let Some(sig) = sig {
        rb = rb.header("x-jws-signature", sig);
    }
    signed_json(s, rb.send().await.unwrap()).await
}

#[tokio::test]
async fn request_signatures_are_enforced() {
    let s = start_sandbox().await;
    let p = s.pisp("sigpisp").await;
    let body = serde_json::to_vec(
        &json!({ "Data": { "Initiation": domestic_initiation("1.00") }, "Risk": {} }),
    )
    .unwrap();
    let path = "/domestic-payment-consents";
    let key = || uuid::Uuid::new_v4().to_string();
    let expect = |got: (u16, Value), code: &str| {
        assert_eq!(got.0, 400, "{:#}", got.1);
        assert_eq!(error_codes(&got.1)[0].0, code, "{:#}", got.1);
    };
    // COMMON-31 #1: missing.
    expect(
        raw_post(&s, &p, &p.cc, path, &body, None, &key()).await,
        "UK.OBIE.Signature.Missing",
    );
    // #2: not a detached JWS.
    expect(
        raw_post(&s, &p, &p.cc, path, &body, Some("abc".into()), &key()).await,
        "UK.OBIE.Signature.Malformed",
    );
    // #9: one body byte changed after signing.
    let sig = sign(&p.c, &body);
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'1').unwrap();
    tampered[at] = b'9';
    expect(
        raw_post(&s, &p, &p.cc, path, &tampered, Some(sig), &key()).await,
        "UK.OBIE.Signature.Invalid",
    );
    // #5: a key the TPP never registered.
    let stranger = aspen_jose::SigningKey::generate(Some("not-registered".into())).unwrap();
    let sig = aspen_jose::sign_detached(
        &stranger,
        &body,
        &iss(&p.c),
        TAN,
        chrono::Utc::now().timestamp(),
        None,
    )
    .unwrap();
    let got = raw_post(&s, &p, &p.cc, path, &body, Some(sig), &key()).await;
    expect(got.clone(), "UK.OBIE.Signature.InvalidClaim");
    assert_eq!(error_codes(&got.1)[0].1, "kid");
    // #8: a stale iat.
    let sig = aspen_jose::sign_detached(
        &p.c.tpp.key,
        &body,
        &iss(&p.c),
        TAN,
        chrono::Utc::now().timestamp() - 3600,
        None,
    )
    .unwrap();
    let got = raw_post(&s, &p, &p.cc, path, &body, Some(sig), &key()).await;
    expect(got.clone(), "UK.OBIE.Signature.InvalidClaim");
    assert_eq!(error_codes(&got.1)[0].1, "http://openbanking.org.uk/iat");
    // #6: iss of another TPP.
    let sig = aspen_jose::sign_detached(
        &p.c.tpp.key,
        &body,
        "someone/else",
        TAN,
        chrono::Utc::now().timestamp(),
        None,
    )
    .unwrap();
    expect(
        raw_post(&s, &p, &p.cc, path, &body, Some(sig), &key()).await,
        "UK.OBIE.Signature.InvalidClaim",
    );
    // Nothing above created a consent; a correct one does.
    let got = raw_post(&s, &p, &p.cc, path, &body, Some(sign(&p.c, &body)), &key()).await;
    assert_eq!(got.0, 201);
    s.stop().await;
}

#[tokio::test]
async fn idempotency_headers_and_replays() {
    let s = start_sandbox().await;
    let p = s.pisp("idempisp").await;
    let body = json!({ "Data": { "Initiation": domestic_initiation("2.00") }, "Risk": {} });
    let path = "/domestic-payment-consents";
    let bytes = serde_json::to_vec(&body).unwrap();
    let post = |key: Option<String>| {
        let mut rb = s
            .kit_client(&p.c.tpp.dir)
            .post(s.url(&format!("{PISP}{path}")))
            .bearer_auth(&p.cc)
            .header("content-type", "application/json")
            .header("x-jws-signature", sign(&p.c, &bytes))
            .body(bytes.clone());
        if let Some(k) = key {
            rb = rb.header("x-idempotency-key", k);
        }
        rb.send()
    };
    let (st, v) = signed_json(&s, post(None).await.unwrap()).await;
    assert_eq!(
        (st, error_codes(&v)[0].clone()),
        (
            400,
            ("UK.OBIE.Header.Missing".into(), "x-idempotency-key".into())
        )
    );
    let (st, v) = signed_json(&s, post(Some("k".repeat(41))).await.unwrap()).await;
    assert_eq!(
        (st, error_codes(&v)[0].0.as_str()),
        (400, "UK.OBIE.Header.Invalid")
    );
    let (st, first) = signed_json(&s, post(Some("same-key".into())).await.unwrap()).await;
    assert_eq!(st, 201);
    let (st, again) = signed_json(&s, post(Some("same-key".into())).await.unwrap()).await;
    assert_eq!(st, 201);
    assert_eq!(again["Data"]["ConsentId"], first["Data"]["ConsentId"]);
    // COMMON-25: another body under the same key.
    let mut other = body.clone();
    other["Data"]["Initiation"]["InstructedAmount"]["Amount"] = json!("3.00");
    let (st, v) = signed_json(
        &s,
        s.signed_post(&p, &p.cc, path, &other, Some("same-key"))
            .await,
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        error_codes(&v)[0],
        ("UK.OBIE.Field.Invalid".into(), "x-idempotency-key".into())
    );
    // COMMON-26: concurrent requests with one key create one consent.
    let key = uuid::Uuid::new_v4().to_string();
    let racing = (0..8).map(|_| s.signed_post(&p, &p.cc, path, &body, Some(&key)));
    let mut ids = std::collections::BTreeSet::new();
    for r in futures_util::future::join_all(racing).await {
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        ids.insert(v["Data"]["ConsentId"].to_string());
    }
    assert_eq!(ids.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn consent_rules_on_payment_orders() {
    let s = start_sandbox().await;
    let p = s.pisp("rulespisp").await;
    let body = json!({ "Data": { "Initiation": domestic_initiation("3.00") }, "Risk": {} });
    let codes = |v: &Value| error_codes(v);

    // Not yet authorised: the consent can be read but a token for it
    // cannot exist; a token for another consent is a mismatch.
    let (first, ac_first) = authorised(&s, &p, &body).await;
    let (second, _ac_second) = authorised(&s, &p, &body).await;
    let order = |consent: &str| json!({ "Data": { "ConsentId": consent, "Initiation": body["Data"]["Initiation"] }, "Risk": {} });
    let (st, v) = signed_json(
        &s,
        s.signed_post(&p, &ac_first, "/domestic-payments", &order(&second), None)
            .await,
    )
    .await;
    assert_eq!(
        (st, codes(&v)[0].clone()),
        (
            400,
            (
                "UK.OBIE.Resource.ConsentMismatch".into(),
                "Data.ConsentId".into()
            )
        )
    );

    // PIS-20.4: one field differs.
    let mut changed = order(&first);
    changed["Data"]["Initiation"]["InstructedAmount"]["Amount"] = json!("3.01");
    let (st, v) = signed_json(
        &s,
        s.signed_post(&p, &ac_first, "/domestic-payments", &changed, None)
            .await,
    )
    .await;
    assert_eq!(
        (st, codes(&v)[0].clone()),
        (
            400,
            (
                "UK.OBIE.Resource.ConsentMismatch".into(),
                "Data.Initiation.InstructedAmount.Amount".into()
            )
        )
    );
    let mut risk = order(&first);
    risk["Risk"]["PaymentContextCode"] = json!("Other");
    let (st, v) = signed_json(
        &s,
        s.signed_post(&p, &ac_first, "/domestic-payments", &risk, None)
            .await,
    )
    .await;
    assert_eq!(
        (st, codes(&v)[0].1.as_str()),
        (400, "Risk.PaymentContextCode")
    );

    // CC token on a payment order: 401 (COMMON-44), unsigned, no body.
    let r = s
        .signed_post(&p, &p.cc, "/domestic-payments", &order(&first), None)
        .await;
    assert_eq!(r.status(), 401);

    // Pays once; then InvalidConsentStatus (PIS-12) for orders and funds.
    let (st, _) = signed_json(
        &s,
        s.signed_post(&p, &ac_first, "/domestic-payments", &order(&first), None)
            .await,
    )
    .await;
    assert_eq!(st, 201);
    let (st, v) = signed_json(
        &s,
        s.signed_post(&p, &ac_first, "/domestic-payments", &order(&first), None)
            .await,
    )
    .await;
    assert_eq!(
        (st, codes(&v)[0].0.as_str()),
        (400, "UK.OBIE.Resource.InvalidConsentStatus")
    );
    let (st, v) = signed_json(
        &s,
        s.pis_get(
            &p,
            &ac_first,
            &format!("/domestic-payment-consents/{first}/funds-confirmation"),
        )
        .await,
    )
    .await;
    assert_eq!(
        (st, codes(&v)[0].0.as_str()),
        (400, "UK.OBIE.Resource.InvalidConsentStatus")
    );

    // Another client's consent and payment: 403 (COMMON-34).
    let other = s.pisp("otherpisp").await;
    let r = s
        .pis_get(
            &other,
            &other.cc,
            &format!("/domestic-payment-consents/{first}"),
        )
        .await;
    assert_eq!(r.status(), 403);
    // Unknown ids: 400 NotFound, signed.
    let (st, v) = signed_json(&s, s.pis_get(&p, &p.cc, "/domestic-payments/nope").await).await;
    assert_eq!(
        (st, codes(&v)[0].0.as_str()),
        (400, "UK.OBIE.Resource.NotFound")
    );
    s.stop().await;
}

/// Changes a valid initiation so that it breaks one rule.
type Edit = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn each_profile_rule_broken_once() {
    let s = start_stripe().await;
    let p = s.pisp("profilepisp").await;
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        (
            "domestic",
            Box::new(|i| {
                i.as_object_mut().unwrap().remove("RemittanceInformation");
            }),
            "UK.OBIE.Field.Missing",
            "Data.Initiation.RemittanceInformation.Reference",
        ),
        (
            "domestic",
            Box::new(|i| i["RemittanceInformation"]["Reference"] = json!("INV_123456")),
            "UK.OBIE.Field.Invalid",
            "Data.Initiation.RemittanceInformation.Reference",
        ),
        (
            "domestic",
            Box::new(|i| i["RemittanceInformation"]["Reference"] = json!("AB-12-CD-34")),
            "UK.OBIE.Field.Invalid",
            "Data.Initiation.RemittanceInformation.Reference",
        ),
        (
            "domestic",
            Box::new(|i| i["RemittanceInformation"]["Reference"] = json!("777777")),
            "UK.OBIE.Field.Invalid",
            "Data.Initiation.RemittanceInformation.Reference",
        ),
        (
            "domestic",
            Box::new(|i| i["InstructedAmount"]["Currency"] = json!("EUR")),
            "UK.OBIE.Unsupported.Currency",
            "Data.Initiation.InstructedAmount.Currency",
        ),
        (
            "domestic",
            Box::new(|i| i["CreditorAccount"]["SchemeName"] = json!("UK.OBIE.IBAN")),
            "UK.OBIE.Unsupported.Scheme",
            "Data.Initiation.CreditorAccount.SchemeName",
        ),
        (
            "domestic",
            Box::new(|i| i["CreditorAccount"]["Identification"] = json!("0808002132569")),
            "UK.OBIE.Unsupported.AccountIdentifier",
            "Data.Initiation.CreditorAccount.Identification",
        ),
        (
            "domestic",
            Box::new(|i| {
                i["CreditorAccount"] = json!({"SchemeName": "UK.OBIE.Wallet", "Identification": "acct_test_123", "Name": "W"});
                i["SupplementaryData"] = json!({"CreditorAccount": {"Destination": "nonsense"}});
            }),
            "UK.OBIE.Field.Invalid",
            "Data.Initiation.SupplementaryData.CreditorAccount.Destination",
        ),
        (
            "domestic",
            Box::new(|i| {
                i["SupplementaryData"]["CreditorAccount"]
                    .as_object_mut()
                    .unwrap()
                    .remove("Email");
            }),
            "UK.OBIE.Field.Missing",
            "Data.Initiation.SupplementaryData.CreditorAccount.Email",
        ),
        (
            "domestic",
            Box::new(|i| i["SupplementaryData"]["CreditorAccount"]["EntityType"] = json!("trust")),
            "UK.OBIE.Field.Invalid",
            "Data.Initiation.SupplementaryData.CreditorAccount.EntityType",
        ),
        (
            "domestic",
            Box::new(|i| {
                i["SupplementaryData"]["CreditorAccount"]
                    .as_object_mut()
                    .unwrap()
                    .remove("BusinessDetails");
            }),
            "UK.OBIE.Field.Missing",
            "Data.Initiation.SupplementaryData.CreditorAccount.BusinessDetails",
        ),
        (
            "international",
            Box::new(|i| i["CreditorAccount"]["SchemeName"] = json!("UK.OBIE.PAN")),
            "UK.OBIE.Unsupported.Scheme",
            "Data.Initiation.CreditorAccount.SchemeName",
        ),
        (
            "international",
            Box::new(|i| i["CreditorAccount"]["Identification"] = json!("DE00370400440532013000")),
            "UK.OBIE.Unsupported.AccountIdentifier",
            "Data.Initiation.CreditorAccount.Identification",
        ),
        // Stripe's bank-account table: per country, the schemes it takes
        // and the details each needs.
        (
            "international",
            Box::new(|i| {
                i["DestinationCountryCode"] = json!("US");
                i["CreditorAccount"] = json!({"SchemeName": "UK.OBIE.BBAN", "Identification": "000123456789", "Name": "Acme Corp"});
            }),
            "UK.OBIE.Field.Missing",
            "Data.Initiation.SupplementaryData.CreditorAccount.BankAccountDetails.RoutingNumber",
        ),
        (
            "international",
            Box::new(|i| {
                i["DestinationCountryCode"] = json!("ZA");
                i["CreditorAccount"] = json!({"SchemeName": "UK.OBIE.BBAN", "Identification": "62001234567", "Name": "Acme SA"});
            }),
            "UK.OBIE.Field.Missing",
            "Data.Initiation.SupplementaryData.CreditorAccount.BankAccountDetails.SwiftCode",
        ),
        (
            "international",
            Box::new(|i| i["DestinationCountryCode"] = json!("US")),
            "UK.OBIE.Unsupported.Scheme",
            "Data.Initiation.CreditorAccount.SchemeName",
        ),
        (
            "international",
            Box::new(|i| i["DestinationCountryCode"] = json!("KP")),
            "UK.OBIE.Field.Invalid",
            "Data.Initiation.DestinationCountryCode",
        ),
        // Stripe's KYC table: per country and EntityType.
        (
            "international",
            Box::new(|i| {
                i["SupplementaryData"]["CreditorAccount"]["Individual"]
                    .as_object_mut()
                    .unwrap()
                    .remove("DateOfBirth");
            }),
            "UK.OBIE.Field.Missing",
            "Data.Initiation.SupplementaryData.CreditorAccount.Individual.DateOfBirth",
        ),
        (
            "international",
            Box::new(|i| {
                i["DestinationCountryCode"] = json!("AE");
                i["CreditorAccount"]["Identification"] = json!("AE070331234567890123456");
                i["SupplementaryData"]["CreditorAccount"]["EntityType"] = json!("company");
                i["SupplementaryData"]["CreditorAccount"]["BusinessDetails"] =
                    json!({"RegisteredName": "Acme FZE"});
            }),
            "UK.OBIE.Field.Missing",
            "Data.Initiation.SupplementaryData.CreditorAccount.BusinessDetails.AddressNonPOBox",
        ),
        (
            "international",
            Box::new(|i| {
                i["DestinationCountryCode"] = json!("BT");
                i["CreditorAccount"] = json!({"SchemeName": "UK.OBIE.BBAN", "Identification": "110000123", "Name": "Tashi"});
                i["SupplementaryData"]["CreditorAccount"]["BankAccountDetails"] =
                    json!({"SwiftCode": "BNBTBTBT"});
                i["SupplementaryData"]["CreditorAccount"]["Individual"]["AddressNonPOBox"] =
                    json!({"Line1": "Norzin Lam", "City": "Thimphu", "CountryCode": "BT"});
            }),
            "UK.OBIE.Field.Missing",
            "Data.Initiation.SupplementaryData.CreditorAccount.Individual.PhoneNumber",
        ),
        (
            "international",
            Box::new(|i| {
                i["ExchangeRateInformation"] =
                    json!({"UnitCurrency": "GBP", "RateType": "Agreed", "ExchangeRate": 1.165})
            }),
            "UK.OBIE.Field.Expected",
            "Data.Initiation.ExchangeRateInformation.ContractIdentification",
        ),
        (
            "international",
            Box::new(
                |i| i["ExchangeRateInformation"] = json!({"UnitCurrency": "GBP", "RateType": "Indicative", "ContractIdentification": "c1"}),
            ),
            "UK.OBIE.Field.Unexpected",
            "Data.Initiation.ExchangeRateInformation.ContractIdentification",
        ),
        (
            "international",
            Box::new(
                |i| i["ExchangeRateInformation"] = json!({"UnitCurrency": "GBP", "RateType": "Agreed", "ExchangeRate": 2.5, "ContractIdentification": "c1"}),
            ),
            "UK.OBIE.Field.Invalid",
            "Data.Initiation.ExchangeRateInformation.ExchangeRate",
        ),
        // Schema level (official OpenAPI): missing, malformed, unknown.
        (
            "domestic",
            Box::new(|i| {
                i.as_object_mut()
                    .unwrap()
                    .remove("InstructionIdentification");
            }),
            "UK.OBIE.Field.Missing",
            "Data.Initiation.InstructionIdentification",
        ),
        (
            "domestic",
            Box::new(|i| i["InstructedAmount"]["Amount"] = json!("12")),
            "UK.OBIE.Field.Invalid",
            "Data.Initiation.InstructedAmount.Amount",
        ),
        (
            "domestic",
            Box::new(|i| i["Surprise"] = json!(true)),
            "UK.OBIE.Resource.InvalidFormat",
            "Data.Initiation.Surprise",
        ),
    ];
    for (kind, edit, code, path) in cases {
        let mut i = if kind == "domestic" {
            domestic_initiation("5.00")
        } else {
            international_initiation("5.00", None)
        };
        edit(&mut i);
        let body = json!({ "Data": { "Initiation": i }, "Risk": {} });
        let (st, v) = signed_json(
            &s,
            s.signed_post(&p, &p.cc, &format!("/{kind}-payment-consents"), &body, None)
                .await,
        )
        .await;
        assert_eq!(st, 400, "{code} {path}: {v:#}");
        assert!(
            error_codes(&v).contains(&(code.to_string(), path.to_string())),
            "{code} {path}: {v:#}"
        );
        OpenApi::load("payment-initiation-openapi.yaml").validate(
            &format!("/{kind}-payment-consents"),
            "post",
            "400",
            &v,
        );
    }
    s.stop().await;
}

/// The member's journey in Chromium for both payment types: sign in, see
/// the payment, choose the account to pay from, allow; then the PISP pays.
#[tokio::test]
async fn browser_journeys_for_both_payment_types() {
    if !common::browser::ready() {
        return;
    }
    let s = start_sandbox().await;
    let p = s.pisp_with("browserpisp", false).await;
    let (_, debit) = journey(
        &s,
        &p,
        "domestic",
        domestic_initiation("7.50"),
        Via::Browser(0),
    )
    .await;
    assert_eq!(debit, 750);
    // International from the second account offered, at the table rate
    // (no quote requested): the debit is in that account's currency.
    let (consent, debit) = journey(
        &s,
        &p,
        "international",
        international_initiation("58.25", None),
        Via::Browser(1),
    )
    .await;
    let id = consent["Data"]["ConsentId"].as_str().unwrap();
    let stored = s.server.store.consent(id).await.unwrap().unwrap();
    let account = s
        .server
        .store
        .account(&stored.accounts[0])
        .await
        .unwrap()
        .unwrap();
    let expected = match account.currency.as_str() {
        "EUR" => 5825,
        // 58.25 EUR at 1.165 EUR per GBP = 50.00 GBP.
        "GBP" => 5000,
        // 58.25 EUR in USD at 1.27/1.165 = 63.4979 → 63.50.
        "USD" => 6350,
        other => panic!("unexpected account currency {other}"),
    };
    assert_eq!(debit, expected, "paid from a {} account", account.currency);
    s.stop().await;
}

/// PIS-27: an Agreed rate is honoured and echoed without an expiry; an
/// Indicative one is quoted without an expiry.
#[tokio::test]
async fn agreed_and_indicative_rates() {
    let s = start_sandbox().await;
    let p = s.pisp("agreedpisp").await;
    let rate = json!({ "UnitCurrency": "GBP", "RateType": "Agreed", "ExchangeRate": 1.17, "ContractIdentification": "FX-2026-001" });
    let (consent, debit) = journey(
        &s,
        &p,
        "international",
        international_initiation("117.00", Some(rate)),
        Via::Headless,
    )
    .await;
    let x = &consent["Data"]["ExchangeRateInformation"];
    assert_eq!(
        (
            x["RateType"].as_str(),
            x["ExchangeRate"].as_f64(),
            x["ContractIdentification"].as_str()
        ),
        (Some("Agreed"), Some(1.17), Some("FX-2026-001"))
    );
    assert!(x.get("ExpirationDateTime").is_none());
    // 117.00 EUR at the agreed 1.17 = 100.00 GBP, not the table's 100.43.
    assert_eq!(debit, 10_000);

    let body = json!({ "Data": { "Initiation": international_initiation("10.00", Some(json!({ "UnitCurrency": "GBP", "RateType": "Indicative" }))) }, "Risk": {} });
    let (st, v) = signed_json(
        &s,
        s.signed_post(&p, &p.cc, "/international-payment-consents", &body, None)
            .await,
    )
    .await;
    assert_eq!(st, 201);
    let x = &v["Data"]["ExchangeRateInformation"];
    assert_eq!(x["ExchangeRate"], json!(1.165));
    assert!(x.get("ExpirationDateTime").is_none());
    s.stop().await;
}

/// A payment consent stops being usable when it expires
/// (`payments.consent_ttl_secs`): its token dies with it, nothing is paid
/// and the consent stays as it was.
#[tokio::test]
async fn expired_consent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    cfg.payments.consent_ttl_secs = 1;
    let s = start_with(dir, cfg).await;
    let p = s.pisp("expirypisp").await;
    let (consent, ac) = authorised(
        &s,
        &p,
        &json!({ "Data": { "Initiation": domestic_initiation("5.00") }, "Risk": {} }),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let order = json!({ "Data": { "ConsentId": consent, "Initiation": domestic_initiation("5.00") }, "Risk": {} });
    // The token never outlives its consent (AUTH-59): COMMON-37's 401.
    let r = s
        .signed_post(&p, &ac, "/domestic-payments", &order, None)
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        s.server
            .store
            .consent(&consent)
            .await
            .unwrap()
            .unwrap()
            .status,
        "Authorised"
    );
    s.stop().await;
}

/// PIS-20.6 alone: the quote expires before the consent does.
#[tokio::test]
async fn expired_actual_quote_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    cfg.payments.quote_ttl_secs = 1;
    let s = start_with(dir, cfg).await;
    let p = s.pisp("quotepisp").await;
    let quoted = json!({ "Data": { "Initiation": international_initiation("5.00", Some(json!({ "UnitCurrency": "GBP", "RateType": "Actual" }))) }, "Risk": {} });
    let (_, v) = signed_json(
        &s,
        s.signed_post(&p, &p.cc, "/international-payment-consents", &quoted, None)
            .await,
    )
    .await;
    let consent = v["Data"]["ConsentId"].as_str().unwrap().to_string();
    let ac = s.authorise(&p.c, &consent, "openid payments").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let order = json!({ "Data": { "ConsentId": consent, "Initiation": quoted["Data"]["Initiation"] }, "Risk": {} });
    let (st, v) = signed_json(
        &s,
        s.signed_post(&p, &ac, "/international-payments", &order, None)
            .await,
    )
    .await;
    assert_eq!(st, 400, "{v:#}");
    assert_eq!(
        error_codes(&v)[0],
        (
            "UK.OBIE.Field.InvalidDate".into(),
            "Data.Initiation.ExchangeRateInformation".into()
        )
    );
    s.stop().await;
}

/// PIS-21 and PIS-35: more than the account holds: funds confirmation says
/// so, the order is accepted and then Rejected at execution, and no money
/// moves.
#[tokio::test]
async fn insufficient_funds_rejects_at_execution() {
    let s = start_sandbox().await;
    let p = s.pisp("poorpisp").await;
    let (consent, ac) = authorised(
        &s,
        &p,
        &json!({ "Data": { "Initiation": domestic_initiation("9999999.00") }, "Risk": {} }),
    )
    .await;
    let (st, funds) = signed_json(
        &s,
        s.pis_get(
            &p,
            &ac,
            &format!("/domestic-payment-consents/{consent}/funds-confirmation"),
        )
        .await,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        funds["Data"]["FundsAvailableResult"]["FundsAvailable"],
        false
    );
    let account = s
        .server
        .store
        .consent(&consent)
        .await
        .unwrap()
        .unwrap()
        .accounts[0]
        .clone();
    let before = s.server.store.account(&account).await.unwrap().unwrap();
    let order = json!({ "Data": { "ConsentId": consent, "Initiation": domestic_initiation("9999999.00") }, "Risk": {} });
    let (st, v) = signed_json(
        &s,
        s.signed_post(&p, &ac, "/domestic-payments", &order, None)
            .await,
    )
    .await;
    assert_eq!(st, 201, "{v:#}");
    OpenApi::load("payment-initiation-openapi.yaml").validate(
        "/domestic-payments",
        "post",
        "201",
        &v,
    );
    assert_eq!(v["Data"]["Status"], "Rejected");
    assert_eq!(
        s.server.store.account(&account).await.unwrap().unwrap(),
        before
    );
    s.stop().await;
}

/// PIS-2 / PIS-41.9 and COMMON-34: an AC token cannot create a consent; a
/// payment order is invisible to other clients.
#[tokio::test]
async fn grants_and_ownership_of_payment_orders() {
    let s = start_sandbox().await;
    let p = s.pisp("grantpisp").await;
    let body = json!({ "Data": { "Initiation": domestic_initiation("1.50") }, "Risk": {} });
    let (consent, ac) = authorised(&s, &p, &body).await;
    let r = s
        .signed_post(&p, &ac, "/domestic-payment-consents", &body, None)
        .await;
    assert_eq!(r.status(), 401);
    let order = json!({ "Data": { "ConsentId": consent, "Initiation": body["Data"]["Initiation"] }, "Risk": {} });
    let (_, v) = signed_json(
        &s,
        s.signed_post(&p, &ac, "/domestic-payments", &order, None)
            .await,
    )
    .await;
    let pid = v["Data"]["DomesticPaymentId"].as_str().unwrap().to_string();
    let other = s.pisp("strangerpisp").await;
    let r = s
        .pis_get(&other, &other.cc, &format!("/domestic-payments/{pid}"))
        .await;
    assert_eq!(r.status(), 403);
    // The right type matters too: a domestic id on the international path.
    let (st, v) = signed_json(
        &s,
        s.pis_get(&p, &p.cc, &format!("/international-payments/{pid}"))
            .await,
    )
    .await;
    assert_eq!(
        (st, error_codes(&v)[0].0.as_str()),
        (400, "UK.OBIE.Resource.NotFound")
    );
    s.stop().await;
}
