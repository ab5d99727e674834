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

    let t = s.tokens(&c, &f["code"], &c.redirect).await;
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
    let t: Value = s.tokens(&c, &code, &c.redirect).await;
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

/// Issue 14 in Chromium with a virtual authenticator (CDP WebAuthn): the
/// PSU adds a passkey on the security page, then authorises an AIS
/// consent that accepts only SCA and a payment with "Use a passkey" and
/// no password; a payment changed behind the page is refused.
#[tokio::test]
async fn passkey_enrolment_and_sca_logins_in_chromium() {
    if !ready() {
        return;
    }
    let s = start_localhost().await;
    let c = s.client_with("passkeyapp", json!({})).await;
    let sca_only = |consent: &str, scope: &str| {
        let mut claims = request_claims(&s, &c, consent, scope);
        claims["claims"]["id_token"]["acr"]["values"] = json!(["urn:openbanking:psd2:sca"]);
        authorize_url(&s, &c, &c.tpp.sign(&claims), scope)
    };
    let ais = s
        .ais_consent(&c, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let cc = s.cc_token(&c.tpp, &c.id, "payments").await;
    let mut payments = Vec::new();
    for (amount, key) in [("4.20", "pk-chrome-1"), ("12.34", "pk-chrome-2")] {
        let body = domestic_consent_body(domestic_initiation(amount));
        let r = s
            .pis_post(&c, &cc, "/domestic-payment-consents", &body, key)
            .await;
        assert_eq!(r.status(), 201);
        payments.push(
            r.json::<Value>().await.unwrap()["Data"]["ConsentId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let sync = s.dir.path().join("sync");
    std::fs::create_dir_all(&sync).unwrap();
    let (pause, resume) = (sync.join("paused"), sync.join("resume"));
    let cfg = json!({
        "dashboard_url": s.url("/account/consents"), "username": "rora", "password": "rora.",
        "totp_secret": aspen_sandbox::sandbox_logins(42)[0].totp_secret,
        "redirect_prefix": c.redirect, "screenshots": screenshots(),
        "journeys": [
            { "start_url": sca_only(&ais, SCOPE), "screenshot": "passkey-login" },
            { "start_url": sca_only(&payments[0], "openid payments") },
            { "start_url": sca_only(&payments[1], "openid payments"), "expect_denied": true,
              "pause_file": pause, "resume_file": resume },
        ],
    });
    let run = tokio::spawn(common::browser::run("passkey.mjs", cfg));
    // The third journey's page is shown: the amount changes behind it.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !pause.exists() {
        assert!(
            std::time::Instant::now() < until,
            "the browser never paused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let db = format!("sqlite://{}", s.data_dir().join("aspen.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let n = sqlx::query(
        "UPDATE consents SET data = replace(data, '\"12.34\"', '\"99.99\"') WHERE consent_id = ?",
    )
    .bind(&payments[1])
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(n, 1);
    std::fs::write(&resume, "go").unwrap();
    let seen = run.await.unwrap();

    assert_eq!(seen["credentials"], 1, "{seen}");
    assert_eq!(seen["resident"], true, "a discoverable credential");
    assert!(
        seen["security_text"]
            .as_str()
            .unwrap()
            .contains("Virtual key")
    );
    let j = seen["journeys"].as_array().unwrap();
    let jwks = s.jwks().await;
    for (i, consent) in [&ais, &payments[0]].into_iter().enumerate() {
        let f = fragment(j[i]["final_url"].as_str().unwrap());
        let claims = aspen_jose::verify_jwt(&f["id_token"], &jwks, &[aspen_jose::Alg::PS256])
            .unwrap_or_else(|e| panic!("{e:?} {f:?}"))
            .claims;
        assert_eq!(claims["acr"], "urn:openbanking:psd2:sca");
        assert_eq!(claims["amr"], json!(["hwk", "mfa"]));
        assert_eq!(claims["openbanking_intent_id"], **consent);
        assert_eq!(
            s.server
                .store
                .consent(consent)
                .await
                .unwrap()
                .unwrap()
                .status,
            "Authorised"
        );
    }
    assert!(
        j[1]["consent_text"].as_str().unwrap().contains("4.20"),
        "{}",
        j[1]
    );
    let f = fragment(j[2]["final_url"].as_str().unwrap());
    assert_eq!(f["error"], "access_denied", "{f:?}");
    assert!(f["error_description"].contains("changed"), "{f:?}");
    assert_eq!(
        s.server
            .store
            .consent(&payments[1])
            .await
            .unwrap()
            .unwrap()
            .status,
        "AwaitingAuthorisation"
    );
    s.stop().await;
}
