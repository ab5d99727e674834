//! Issue 4 in a real browser: Debian's Chromium, driven by playwright-core
//! (tests/browser/journey.mjs), signs in, picks accounts, allows, denies and
//! revokes; the TPP side then checks what came back. Prints SKIPPED when
//! Chromium or Node is missing, unless ASPEN_REQUIRE_BROWSER=1 (CI).

mod common;

use common::browser::{drive, ready};
use common::*;
use serde_json::{Value, json};

const SCOPE: &str = "openid accounts";

fn screenshots() -> Option<String> {
    std::env::var("ASPEN_SCREENSHOTS").ok()
}

#[tokio::test]
async fn allow_with_two_of_three_accounts_then_tpp_validates() {
    if !ready() {
        return;
    }
    let s = start_sandbox().await;
    let c = s.client_with("browserapp", json!({})).await;
    let consent = s
        .ais_consent(
            &c,
            json!({ "Permissions": ALL_PERMISSIONS, "ExpirationDateTime": "2099-01-01T00:00Z" }),
        )
        .await;
    let url = authorize_url(
        &s,
        &c,
        &c.tpp.sign(&request_claims(&s, &c, &consent, SCOPE)),
        SCOPE,
    );
    let seen = drive(json!({
        "mode": "authorize", "start_url": url, "username": "rora", "password": "rora.",
        "wrong_password": "not-it", "accounts": [0, 2], "decision": "allow",
        "redirect_prefix": c.redirect, "screenshots": screenshots(),
    }))
    .await;
    assert_eq!(
        seen["login_error"],
        "The username or password is incorrect."
    );
    assert_eq!(seen["account_count"], 3);
    assert!(
        seen["consent_heading"]
            .as_str()
            .unwrap()
            .contains("browserapp")
    );
    let f = fragment(seen["final_url"].as_str().unwrap());
    assert_eq!(f["state"], "st-123");

    // The TPP checks the ID token against /jwks (AUTH-40..43).
    let claims = aspen_jose::verify_jwt(&f["id_token"], &s.jwks().await, &[aspen_jose::Alg::PS256])
        .unwrap()
        .claims;
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["openbanking_intent_id"], consent);
    assert_eq!(claims["c_hash"], aspen_jose::half_hash(&f["code"]));
    assert_eq!(claims["s_hash"], aspen_jose::half_hash("st-123"));

    // Exactly the two chosen accounts are bound.
    let stored = s.server.store.consent(&consent).await.unwrap().unwrap();
    let chosen: Vec<String> = serde_json::from_value(seen["chosen"].clone()).unwrap();
    assert_eq!(stored.accounts, chosen);
    assert_eq!(stored.status, "Authorised");

    let r = s.exchange(&c, &f["code"], &c.redirect).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let idt = aspen_jose::verify_jwt(
        t["id_token"].as_str().unwrap(),
        &s.jwks().await,
        &[aspen_jose::Alg::PS256],
    )
    .unwrap()
    .claims;
    // AUTH-55: the refresh token lives until the consent expires.
    assert_eq!(
        idt["http://openbanking.org.uk/refresh_token_expires_at"],
        4_070_908_800i64
    );
    s.stop().await;
}

#[tokio::test]
async fn deny_rejects_the_consent() {
    if !ready() {
        return;
    }
    let s = start_sandbox().await;
    let c = s.client_with("denyapp", json!({})).await;
    let consent = s
        .ais_consent(
            &c,
            json!({ "Permissions": ["ReadAccountsBasic", "ReadBalances"] }),
        )
        .await;
    let url = authorize_url(
        &s,
        &c,
        &c.tpp.sign(&request_claims(&s, &c, &consent, SCOPE)),
        SCOPE,
    );
    let seen = drive(json!({
        "mode": "authorize", "start_url": url, "username": "mits", "password": "mits.",
        "accounts": [0], "decision": "deny", "redirect_prefix": c.redirect,
    }))
    .await;
    let f = fragment(seen["final_url"].as_str().unwrap());
    assert_eq!(f["error"], "access_denied");
    assert_eq!(f["state"], "st-123");
    assert!(!f.contains_key("code"));
    assert_eq!(
        s.server
            .store
            .consent(&consent)
            .await
            .unwrap()
            .unwrap()
            .status,
        "Rejected"
    );
    s.stop().await;
}

#[tokio::test]
async fn revocation_from_the_dashboard() {
    if !ready() {
        return;
    }
    let s = start_sandbox().await;
    let c = s
        .client_with("revokeapp", json!({"aspen_headless": true}))
        .await;
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ALL_PERMISSIONS }))
        .await;
    let url = authorize_url(
        &s,
        &c,
        &c.tpp.sign(&request_claims(&s, &c, &consent, SCOPE)),
        SCOPE,
    );
    let r = s.client().get(&url).send().await.unwrap();
    let code = fragment(r.headers()["location"].to_str().unwrap())["code"].clone();
    let t: Value = s
        .exchange(&c, &code, &c.redirect)
        .await
        .json()
        .await
        .unwrap();
    let seen = drive(json!({
        "mode": "dashboard", "start_url": s.url("/account/consents"), "username": "rora",
        "totp_secret": aspen_sandbox::sandbox_logins(42)[0].totp_secret,
        "password": "rora.", "client_name": "revokeapp", "screenshots": screenshots(),
    }))
    .await;
    assert!(seen["before"].as_str().unwrap().contains("revokeapp"));
    assert!(seen["after"].as_str().unwrap().contains("Access revoked."));
    assert_eq!(
        s.server
            .store
            .consent(&consent)
            .await
            .unwrap()
            .unwrap()
            .status,
        "Revoked"
    );
    let r = s.refresh(&c, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    s.stop().await;
}
