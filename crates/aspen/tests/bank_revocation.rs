//! The bank revokes a consent (`aspen consents revoke`): its tokens stop at
//! once and the TPP hears of it through events (issue 13: "a consent
//! revoked by the PSU in the dashboard or by the bank").

mod common;

use common::*;
use serde_json::{Value, json};

fn revoke(s: &TestServer, consent: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aspen"))
        .args(["consents", "revoke", consent])
        .env("ASPEN_DATA_DIR", s.data_dir())
        .env("ASPEN_LOG", "warn")
        .output()
        .expect("aspen runs")
}

#[tokio::test]
async fn the_bank_revokes_a_consent_and_the_tpp_hears_of_it() {
    let s = start_sandbox().await;
    let c = s
        .client_with(
            "bankrevoke",
            json!({"aspen_headless": true, "scope": "openid accounts eventpolling"}),
        )
        .await;
    let cc = s.cc_token(&c.tpp, &c.id, "accounts").await;
    let body = serde_json::to_vec(&json!({ "Data": { "Version": "3.1.2" } })).unwrap();
    let r = s
        .kit_client(&c.tpp.dir)
        .post(s.url("/open-banking/v3.1/event-subscriptions"))
        .bearer_auth(&cc)
        .header("content-type", "application/json")
        .header("x-jws-signature", sign(&c, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let f = s.headless_fragment(&c, &consent, "openid accounts").await;
    let t: Value = s.tokens(&c, &f["code"], &c.redirect).await;
    let ac = t["access_token"].as_str().unwrap().to_string();
    let accounts = || async {
        s.kit_client(&c.tpp.dir)
            .get(s.url("/open-banking/v3.1/aisp/accounts"))
            .bearer_auth(&ac)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(accounts().await, 200);

    let o = revoke(&s, &consent);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(accounts().await, 401, "the token stops at once");
    // A consent already revoked is not revoked again.
    let o = revoke(&s, &consent);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Revoked"));

    let ep = s.cc_token(&c.tpp, &c.id, "eventpolling").await;
    let v: Value = s
        .kit_client(&c.tpp.dir)
        .post(s.url("/open-banking/v3.1/events"))
        .bearer_auth(&ep)
        .json(&json!({ "returnImmediately": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sets = v["sets"].as_object().unwrap();
    assert_eq!(sets.len(), 1, "{v:#}");
    let set = sets.values().next().unwrap().as_str().unwrap();
    let claims = aspen_jose::verify_jwt(set, &s.jwks().await, &[aspen_jose::Alg::PS256])
        .unwrap()
        .claims;
    let e = &claims["events"]["urn:uk:org:openbanking:events:consent-authorization-revoked"];
    assert_eq!(e["subject"]["http://openbanking.org.uk/rid"], consent);
    s.stop().await;
}
