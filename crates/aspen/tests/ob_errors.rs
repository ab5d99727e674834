//! Issue 10 item 6: what schemathesis found — every refusal under
//! `/open-banking/` is an `OBErrorResponse1` that fits the official schema,
//! including those the framework makes before a handler runs.

mod common;

use common::*;
use serde_json::{Value, json};

const P: &str = "/open-banking/v3.1/aisp";

async fn ais_token(s: &TestServer, c: &Client) -> String {
    let consent = s
        .ais_consent(c, json!({ "Permissions": ALL_PERMISSIONS }))
        .await;
    let f = s.headless_fragment(c, &consent, "openid accounts").await;
    let t: Value = s.tokens(c, &f["code"], &c.redirect).await;
    t["access_token"].as_str().unwrap().to_string()
}

/// An OB error body valid against the AIS OpenAPI's `OBErrorResponse1`.
async fn ob_error(api: &OpenApi, r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/json"), "{status}: {ct}");
    let body: Value = r.json().await.unwrap();
    api.validate("/accounts", "get", "400", &body);
    body
}

#[tokio::test]
async fn framework_refusals_are_ob_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    cfg.limits.max_body_bytes = 16 * 1024;
    let s = start_with(dir, cfg).await;
    let api = OpenApi::load("account-info-openapi.yaml");
    let c = s
        .client_with("fuzzed", json!({"aspen_headless": true}))
        .await;
    let token = ais_token(&s, &c).await;
    let http = s.kit_client(&c.tpp.dir);
    let accounts: Value = http
        .get(s.url(&format!("{P}/accounts")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a = accounts["Data"]["Account"][0]["AccountId"]
        .as_str()
        .unwrap()
        .to_string();

    // A repeated query parameter.
    let r = http
        .get(s.url(&format!(
            "{P}/accounts/{a}/transactions?fromBookingDateTime=2020-01-01T00:00:00&fromBookingDateTime=2020-01-02T00:00:00"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let b = ob_error(&api, r, 400).await;
    assert_eq!(b["Errors"][0]["ErrorCode"], "UK.OBIE.Field.Invalid");

    // A path id that is not UTF-8.
    let r = http
        .get(s.url(&format!("{P}/accounts/%FF%FE/balances")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    ob_error(&api, r, 400).await;

    // A body over the limit.
    let r = http
        .post(s.url(&format!("{P}/account-access-consents")))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(vec![b' '; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.headers().contains_key("x-fapi-interaction-id"));
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["Code"], "413 PayloadTooLarge");

    // 415 says which header was wrong.
    let cc = s.cc_token(&c.tpp, &c.id, "accounts").await;
    let r = http
        .post(s.url(&format!("{P}/account-access-consents")))
        .bearer_auth(&cc)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["Errors"][0]["ErrorCode"], "UK.OBIE.Header.Invalid");

    // Client input echoed back never breaks OBError1's 500-character limit.
    let long = "x".repeat(2000);
    let r = http
        .get(s.url(&format!("{P}/accounts/{long}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let b = ob_error(&api, r, 400).await;
    for e in b["Errors"].as_array().unwrap() {
        assert!(e["Message"].as_str().unwrap().chars().count() <= 500);
    }

    // x-fapi-auth-date is an RFC 7231 IMF-fixdate, case and all.
    for (date, status) in [
        ("Sun, 10 Sep 2017 19:43:31 GMT", 200),
        ("sun, 10 sep 2017 19:43:31 GMT", 400),
    ] {
        let r = http
            .get(s.url(&format!("{P}/accounts")))
            .bearer_auth(&token)
            .header("x-fapi-auth-date", date)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{date}");
    }

    // 401 stays bare (COMMON-37).
    let r = http
        .get(s.url(&format!("{P}/accounts")))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.bytes().await.unwrap().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn every_pisp_body_is_signed_even_outside_a_route() {
    // Schemathesis found unsigned 404/405 bodies under /pisp (COMMON-32).
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    cfg.limits.max_body_bytes = 16 * 1024;
    let s = start_with(dir, cfg).await;
    let c = s.client_with("signedpisp", json!({})).await;
    let cc = s.cc_token(&c.tpp, &c.id, "payments").await;
    let http = s.kit_client(&c.tpp.dir);
    let pisp = s.url("/open-banking/v3.1/pisp");
    let jwks = s.jwks().await;
    let tans = vec![TAN.to_string()];
    for (req, status) in [
        (http.get(format!("{pisp}/no-such-thing")), 404),
        (http.put(format!("{pisp}/domestic-payment-consents")), 405),
        (
            http.post(format!("{pisp}/domestic-payment-consents"))
                .header("content-type", "application/json")
                .header("x-idempotency-key", "big-1")
                .body(vec![b' '; 64 * 1024]),
            413,
        ),
    ] {
        let r = req.bearer_auth(&cc).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        let sig = r
            .headers()
            .get("x-jws-signature")
            .unwrap_or_else(|| panic!("{status} unsigned"))
            .to_str()
            .unwrap()
            .to_string();
        let bytes = r.bytes().await.unwrap();
        aspen_jose::verify_detached(
            Some(&sig),
            &bytes,
            &jwks,
            &aspen_jose::DetachedExpectations {
                iss: &s.server.aspsp_org_id,
                tans: &tans,
                now: chrono::Utc::now().timestamp(),
                max_future_skew: 30,
                max_age: 60,
            },
        )
        .unwrap_or_else(|e| panic!("{status}: {e}"));
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["Code"].as_str().unwrap()[..3], status.to_string());
    }
    s.stop().await;
}

#[tokio::test]
async fn what_schemathesis_found_stays_fixed() {
    let s = start_sandbox().await;
    let api = OpenApi::load("account-info-openapi.yaml");
    let c = s.client_with("regress", json!({})).await;
    let http = s.kit_client(&c.tpp.dir);
    let cc = s.cc_token(&c.tpp, &c.id, "accounts").await;
    // OBRisk2 admits no fields; an empty field name is still named.
    for (body, path) in [
        (
            json!({"Data": {"Permissions": ["ReadAccountsDetail"]}, "Risk": {"x": 42}}),
            "Risk.x",
        ),
        (
            json!({"Data": {"Permissions": ["ReadAccountsDetail"]}, "Risk": {}, "": 1}),
            "$",
        ),
    ] {
        let r = http
            .post(s.url(&format!("{P}/account-access-consents")))
            .bearer_auth(&cc)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let b: Value = r.json().await.unwrap();
        api.validate("/account-access-consents", "post", "400", &b);
        assert_eq!(b["Errors"][0]["Path"], path, "{b:#}");
    }
    // A non-ASCII IBAN start made the handler panic (no answer at all).
    let pay = s.cc_token(&c.tpp, &c.id, "payments").await;
    let body = json!({"Data": {"Initiation": {
        "InstructionIdentification": "FUZZ001", "EndToEndIdentification": "FUZZ.E2E.001",
        "CurrencyOfTransfer": "EUR", "InstructedAmount": {"Amount": "1.00", "Currency": "EUR"},
        "CreditorAccount": {"SchemeName": "UK.OBIE.IBAN", "Identification": "a®", "Name": "ACME Inc"},
    }}, "Risk": {}});
    let r = s
        .pis_post(&c, &pay, "/international-payment-consents", &body, "fuzz-1")
        .await;
    assert_eq!(r.status(), 400);
    s.stop().await;
}
