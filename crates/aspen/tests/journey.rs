//! Issue 4 at the HTTP level: the authorisation request checks, the code
//! and refresh grants, headless sandbox authorisation, login/consent forms
//! (CSRF, throttling, deny) and the PSU dashboard. The same pages are
//! driven in a real browser by `browser.rs`.

mod common;

use common::*;
use serde_json::{Value, json};

const SCOPE: &str = "openid accounts";

fn ais_data() -> Value {
    json!({ "Permissions": ALL_PERMISSIONS })
}

async fn get(s: &TestServer, url: &str) -> reqwest::Response {
    s.client().get(url).send().await.unwrap()
}

#[tokio::test]
async fn headless_hybrid_flow_code_exchange_replay_and_refresh() {
    let s = start_sandbox().await;
    let c = s
        .client_with("headless", json!({"aspen_headless": true}))
        .await;
    let consent = s.ais_consent(&c, ais_data()).await;
    let req = c.tpp.sign(&request_claims(&s, &c, &consent, SCOPE));
    let r = get(&s, &authorize_url(&s, &c, &req, SCOPE)).await;
    // DESIGN.md headless: 302 straight back to the TPP.
    assert_eq!(r.status(), 302);
    let loc = location(&r);
    assert!(loc.starts_with(&format!("{}#", c.redirect)), "{loc}");
    let f = fragment(&loc);
    assert_eq!(f["state"], "st-123");
    let code = f["code"].clone();

    // AUTH-40..43: the ID token as a TPP validates it.
    let jwks = s.jwks().await;
    let id = aspen_jose::verify_jwt(&f["id_token"], &jwks, &[aspen_jose::Alg::PS256]).unwrap();
    assert!(id.header["kid"].is_string());
    let claims = id.claims;
    assert_eq!(claims["iss"], s.server.public_url);
    assert_eq!(claims["aud"], c.id);
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["openbanking_intent_id"], consent);
    assert_eq!(claims["sub"], consent);
    assert_eq!(claims["acr"], "urn:openbanking:psd2:sca");
    assert_eq!(claims["c_hash"], aspen_jose::half_hash(&code));
    assert_eq!(claims["s_hash"], aspen_jose::half_hash("st-123"));
    for k in ["exp", "iat", "auth_time"] {
        assert!(claims[k].is_i64(), "{k}");
    }

    // The consent is Authorised (AIS-5).
    let cc = s.cc_token(&c.tpp, &c.id, "accounts").await;
    let got: Value = s
        .kit_client(&c.tpp.dir)
        .get(s.url(&format!(
            "/open-banking/v3.1/aisp/account-access-consents/{consent}"
        )))
        .bearer_auth(&cc)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["Data"]["Status"], "Authorised");

    // AUTH-52, AUTH-54: tokens for a long-lived consent.
    let r = s.exchange(&c, &code, &c.redirect).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], SCOPE);
    let refresh = t["refresh_token"].as_str().unwrap().to_string();
    let idt = aspen_jose::verify_jwt(
        t["id_token"].as_str().unwrap(),
        &jwks,
        &[aspen_jose::Alg::PS256],
    )
    .unwrap()
    .claims;
    assert_eq!(idt["openbanking_intent_id"], consent);
    // AUTH-55: no ExpirationDateTime → a refresh token that never expires.
    assert_eq!(
        idt["http://openbanking.org.uk/refresh_token_expires_at"],
        2147483647
    );

    // AUTH-56: refresh rotates; the old refresh token is spent.
    let r = s.refresh(&c, &refresh).await;
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    let refresh2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh);
    assert_eq!(s.refresh(&c, &refresh).await.status(), 400);

    // AUTH-53: the code a second time → invalid_grant, and what it issued
    // is revoked (the rotated refresh token came from it too).
    let r = s.exchange(&c, &code, &c.redirect).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = s.refresh(&c, &refresh2).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    s.stop().await;
}

#[tokio::test]
async fn code_bound_to_client_and_redirect_uri() {
    let s = start_sandbox().await;
    let c = s
        .client_with("owner", json!({"aspen_headless": true}))
        .await;
    let other = s.client_with("thief", json!({})).await;
    for (who, redirect, label) in [
        (&other, c.redirect.clone(), "another client"),
        (
            &c,
            "https://owner.example.com/other".to_string(),
            "another redirect_uri",
        ),
    ] {
        let consent = s.ais_consent(&c, ais_data()).await;
        let req = c.tpp.sign(&request_claims(&s, &c, &consent, SCOPE));
        let loc = location(&get(&s, &authorize_url(&s, &c, &req, SCOPE)).await);
        let code = fragment(&loc)["code"].clone();
        let r = s.exchange(who, &code, &redirect).await;
        assert_eq!(r.status(), 400, "{label}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "invalid_grant",
            "{label}"
        );
    }
    s.stop().await;
}

/// Asserts an HTML error page: 400, no redirect (AUTH-36).
async fn assert_page(r: reqwest::Response, why: &str) {
    assert_eq!(r.status(), 400, "{why}");
    assert!(r.headers().get("location").is_none(), "{why}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{why}"
    );
}

/// Asserts an error redirect to the TPP with `state` (AUTH-37, AUTH-38).
fn assert_redirect_error(r: &reqwest::Response, redirect: &str, error: &str, why: &str) {
    assert_eq!(r.status(), 302, "{why}");
    let loc = location(r);
    assert!(loc.starts_with(&format!("{redirect}#")), "{why}: {loc}");
    let f = fragment(&loc);
    assert_eq!(
        f.get("error").map(String::as_str),
        Some(error),
        "{why}: {loc}"
    );
    assert_eq!(f.get("state").map(String::as_str), Some("st-123"), "{why}");
    assert!(
        !f.contains_key("code") && !f.contains_key("id_token"),
        "{why}"
    );
}

#[tokio::test]
async fn authorize_rejections() {
    let s = start_sandbox().await;
    let c = s
        .client_with("strict", json!({"aspen_headless": true}))
        .await;
    let other = s.client_with("rival", json!({})).await;
    let consent = s.ais_consent(&c, ais_data()).await;
    let base = request_claims(&s, &c, &consent, SCOPE);

    // Before the redirect URI is trusted: pages.
    assert_page(
        get(
            &s,
            &s.url("/authorize?response_type=code%20id_token&scope=openid"),
        )
        .await,
        "no client_id",
    )
    .await;
    assert_page(
        get(
            &s,
            &s.url("/authorize?client_id=nobody&response_type=code%20id_token"),
        )
        .await,
        "unknown client",
    )
    .await;
    let mut bad = base.clone();
    bad["redirect_uri"] = json!("https://evil.example.com/cb");
    assert_page(
        get(&s, &authorize_url(&s, &c, &c.tpp.sign(&bad), SCOPE)).await,
        "unregistered redirect_uri",
    )
    .await;
    let rogue = aspen_jose::SigningKey::generate(Some(c.tpp.key.kid().to_string())).unwrap();
    let forged = aspen_jose::sign_jwt(&rogue, None, &base).unwrap();
    assert_page(
        get(&s, &authorize_url(&s, &c, &forged, SCOPE)).await,
        "request object signed by an unregistered key",
    )
    .await;
    let mut bad = base.clone();
    bad["iss"] = json!(other.id);
    assert_page(
        get(&s, &authorize_url(&s, &c, &c.tpp.sign(&bad), SCOPE)).await,
        "iss of another client",
    )
    .await;

    // After: redirects with the error.
    let plain = s.url(&format!(
        "/authorize?client_id={}&response_type=code%20id_token&scope=openid%20accounts&redirect_uri={}&state=st-123&nonce=n",
        c.id,
        percent_encoding::utf8_percent_encode(&c.redirect, percent_encoding::NON_ALPHANUMERIC)
    ));
    assert_redirect_error(
        &get(&s, &plain).await,
        &c.redirect,
        "invalid_request",
        "no request object (strict)",
    );

    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "wrong aud",
            Box::new(|v| v["aud"] = json!("https://other.example.com")),
            "invalid_request_object",
        ),
        (
            "expired",
            Box::new(|v| {
                v["exp"] = json!(chrono::Utc::now().timestamp() - 600);
                v["nbf"] = json!(chrono::Utc::now().timestamp() - 900);
            }),
            "invalid_request_object",
        ),
        (
            "no nbf",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("nbf");
            }),
            "invalid_request_object",
        ),
        (
            "exp too far after nbf",
            Box::new(|v| v["exp"] = json!(chrono::Utc::now().timestamp() + 7200)),
            "invalid_request_object",
        ),
        (
            "response_type code",
            Box::new(|v| v["response_type"] = json!("code")),
            "unsupported_response_type",
        ),
        (
            "no nonce",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("nonce");
            }),
            "invalid_request",
        ),
        (
            "no openid",
            Box::new(|v| v["scope"] = json!("accounts")),
            "invalid_scope",
        ),
        (
            "two OB scopes",
            Box::new(|v| v["scope"] = json!("openid accounts payments")),
            "invalid_scope",
        ),
        (
            "intent not essential",
            Box::new(|v| {
                v["claims"]["id_token"]["openbanking_intent_id"]["essential"] = json!(false)
            }),
            "invalid_request",
        ),
        (
            "unknown intent",
            Box::new(|v| {
                v["claims"]["id_token"]["openbanking_intent_id"]["value"] = json!("aac-nope")
            }),
            "invalid_request",
        ),
        (
            "intent for another scope",
            Box::new(|v| v["scope"] = json!("openid payments")),
            "invalid_request",
        ),
        (
            "unsupported acr",
            Box::new(|v| v["claims"]["id_token"]["acr"]["values"] = json!(["urn:example:loa1"])),
            "invalid_request",
        ),
    ];
    for (why, change, error) in cases {
        let mut v = base.clone();
        change(&mut v);
        v["jti"] = json!(uuid::Uuid::new_v4().to_string());
        let scope = v["scope"].as_str().unwrap().to_string();
        let rt = percent_encoding::utf8_percent_encode(
            v["response_type"].as_str().unwrap(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        let url = authorize_url(&s, &c, &c.tpp.sign(&v), &scope).replace(
            "response_type=code%20id%5Ftoken",
            &format!("response_type={rt}"),
        );
        let r = get(&s, &url).await;
        assert_redirect_error(&r, &c.redirect, error, why);
    }
    // AUTH-17: a query parameter contradicting the object.
    let url = authorize_url(&s, &c, &c.tpp.sign(&base), SCOPE)
        .replace("scope=openid%20accounts", "scope=openid%20payments");
    assert_redirect_error(
        &get(&s, &url).await,
        &c.redirect,
        "invalid_request",
        "parameter mismatch",
    );
    // AUTH-16: request_uri.
    let url = format!(
        "{}&request_uri=https%3A%2F%2Fx",
        authorize_url(&s, &c, &c.tpp.sign(&base), SCOPE)
    );
    assert_redirect_error(
        &get(&s, &url).await,
        &c.redirect,
        "request_uri_not_supported",
        "request_uri",
    );
    // AUTH-29: another client's intent.
    let theirs = s.ais_consent(&other, ais_data()).await;
    let r = get(
        &s,
        &authorize_url(
            &s,
            &c,
            &c.tpp.sign(&request_claims(&s, &c, &theirs, SCOPE)),
            SCOPE,
        ),
    )
    .await;
    assert_redirect_error(
        &r,
        &c.redirect,
        "invalid_request",
        "another client's intent",
    );
    // Replayed request object jti.
    let once = c.tpp.sign(&request_claims(&s, &c, &consent, SCOPE));
    assert_eq!(
        get(&s, &authorize_url(&s, &c, &once, SCOPE)).await.status(),
        302
    );
    assert_redirect_error(
        &get(&s, &authorize_url(&s, &c, &once, SCOPE)).await,
        &c.redirect,
        "invalid_request_object",
        "replayed request object",
    );
    s.stop().await;
}

/// A browser without JavaScript: follows the flow by hand, keeping the
/// session cookie.
fn account_values(html: &str) -> Vec<String> {
    html.match_indices("name=\"account\" value=\"")
        .map(|(i, m)| html[i + m.len()..].split('"').next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn login_consent_deny_csrf_and_throttling() {
    let s = start_sandbox().await;
    let c = s.client_with("forms", json!({})).await;

    // Allow with a chosen subset of accounts.
    let consent = s.ais_consent(&c, ais_data()).await;
    let mut b = Browser::new(&s);
    let r = b
        .get(&authorize_url(
            &s,
            &c,
            &c.tpp.sign(&request_claims(&s, &c, &consent, SCOPE)),
            SCOPE,
        ))
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/login");
    let page = b.get(&s.url("/login")).await.text().await.unwrap();
    assert!(
        page.contains("name=\"username\"")
            && page.contains("name=\"password\"")
            && page.contains(">Sign in<")
    );
    let csrf = csrf_of(&page);
    // A wrong password: the same generic message as an unknown user.
    let r = b
        .post(
            "/login",
            &[("csrf", &csrf), ("username", "rora"), ("password", "wrong")],
        )
        .await;
    assert_eq!(r.status(), 401);
    let wrong = r.text().await.unwrap();
    assert!(wrong.contains("The username or password is incorrect."));
    let r = b
        .post(
            "/login",
            &[("csrf", &csrf), ("username", "nobody"), ("password", "x")],
        )
        .await;
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("The username or password is incorrect.")
    );
    // CSRF: a missing or foreign token is refused.
    let r = b
        .post(
            "/login",
            &[
                ("csrf", "forged"),
                ("username", "rora"),
                ("password", "rora."),
            ],
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = b
        .post(
            "/login",
            &[("csrf", &csrf), ("username", "rora"), ("password", "rora.")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/consent");
    let page = b.get(&s.url("/consent")).await.text().await.unwrap();
    assert!(page.contains("forms") && page.contains(">Allow<") && page.contains(">Deny<"));
    assert!(
        page.contains("account numbers and sort codes"),
        "permissions explained"
    );
    let accounts = account_values(&page);
    assert_eq!(accounts.len(), 3, "rora has three accounts");
    let csrf = csrf_of(&page);
    // At least one account.
    let r = b
        .post("/consent", &[("csrf", &csrf), ("decision", "allow")])
        .await;
    assert_eq!(r.status(), 400);
    // Not rora's account.
    let r = b
        .post(
            "/consent",
            &[
                ("csrf", &csrf),
                ("decision", "allow"),
                ("account", "acc-someone-else"),
            ],
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = b
        .post(
            "/consent",
            &[
                ("csrf", "bad"),
                ("decision", "allow"),
                ("account", &accounts[0]),
            ],
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = b
        .post(
            "/consent",
            &[
                ("csrf", &csrf),
                ("decision", "allow"),
                ("account", &accounts[0]),
                ("account", &accounts[2]),
            ],
        )
        .await;
    assert_eq!(r.status(), 302);
    let f = fragment(&location(&r));
    assert!(f.contains_key("code") && f.contains_key("id_token"));
    let stored = s.server.store.consent(&consent).await.unwrap().unwrap();
    assert_eq!(stored.status, "Authorised");
    assert_eq!(
        stored.accounts,
        vec![accounts[0].clone(), accounts[2].clone()]
    );

    // Deny → Rejected and access_denied.
    let consent = s.ais_consent(&c, ais_data()).await;
    let mut b = Browser::new(&s);
    b.get(&authorize_url(
        &s,
        &c,
        &c.tpp.sign(&request_claims(&s, &c, &consent, SCOPE)),
        SCOPE,
    ))
    .await;
    let csrf = csrf_of(&b.get(&s.url("/login")).await.text().await.unwrap());
    b.post(
        "/login",
        &[("csrf", &csrf), ("username", "mits"), ("password", "mits.")],
    )
    .await;
    let csrf = csrf_of(&b.get(&s.url("/consent")).await.text().await.unwrap());
    let r = b
        .post("/consent", &[("csrf", &csrf), ("decision", "deny")])
        .await;
    assert_redirect_error(&r, &c.redirect, "access_denied", "deny");
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
    // A rejected consent can never start again (AUTH-34).
    let r = get(
        &s,
        &authorize_url(
            &s,
            &c,
            &c.tpp.sign(&request_claims(&s, &c, &consent, SCOPE)),
            SCOPE,
        ),
    )
    .await;
    assert_redirect_error(&r, &c.redirect, "invalid_request", "terminal consent");

    // Throttling: after five failures even the right password is refused.
    let consent = s.ais_consent(&c, ais_data()).await;
    let mut b = Browser::new(&s);
    b.get(&authorize_url(
        &s,
        &c,
        &c.tpp.sign(&request_claims(&s, &c, &consent, SCOPE)),
        SCOPE,
    ))
    .await;
    let csrf = csrf_of(&b.get(&s.url("/login")).await.text().await.unwrap());
    for _ in 0..5 {
        assert_eq!(
            b.post(
                "/login",
                &[("csrf", &csrf), ("username", "ivsa"), ("password", "nope")]
            )
            .await
            .status(),
            401
        );
    }
    let r = b
        .post(
            "/login",
            &[("csrf", &csrf), ("username", "ivsa"), ("password", "ivsa.")],
        )
        .await;
    assert_eq!(r.status(), 429);
    // Pages without a journey never redirect anywhere (no open redirect).
    let r = Browser::new(&s).get(&s.url("/consent")).await;
    assert_eq!(r.status(), 400);
    s.stop().await;
}

#[tokio::test]
async fn dashboard_revocation_stops_tokens_at_once() {
    let s = start_sandbox().await;
    let c = s.client_with("dash", json!({"aspen_headless": true})).await;
    let consent = s.ais_consent(&c, ais_data()).await;
    let req = c.tpp.sign(&request_claims(&s, &c, &consent, SCOPE));
    let code = fragment(&location(
        &get(&s, &authorize_url(&s, &c, &req, SCOPE)).await,
    ))["code"]
        .clone();
    let t: Value = s.tokens(&c, &code, &c.redirect).await;
    let refresh = t["refresh_token"].as_str().unwrap().to_string();

    let mut b = Browser::new(&s);
    let page = b
        .get(&s.url("/account/consents"))
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let r = b
        .post(
            "/login",
            &[("csrf", &csrf), ("username", "rora"), ("password", "rora.")],
        )
        .await;
    // The dashboard is the PSU's own bank account online: two factors.
    assert_eq!(location(&r), "/login/otp");
    let r = b.second_factor("rora").await;
    assert_eq!(location(&r), "/account/consents");
    let page = b
        .get(&s.url("/account/consents"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("dash") && page.contains("Authorised") && page.contains("Revoke"));
    let csrf = csrf_of(&page);
    let r = b
        .post(
            &format!("/account/consents/{consent}/revoke"),
            &[("csrf", "forged")],
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = b
        .post(
            &format!("/account/consents/{consent}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Access revoked."));
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
    let access = t["access_token"].as_str().unwrap();
    let tok = s
        .server
        .store
        .token(&aspen_store::auth::TokenKey {
            // The token carries its row id (`<id>.<secret>`).
            id: Some(access.split_once('.').unwrap().0.parse().unwrap()),
            hash: hash(access),
        })
        .await
        .unwrap()
        .unwrap();
    assert!(tok.revoked, "the access token stops working at once");
    let r = s.refresh(&c, &refresh).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    s.stop().await;
}

fn hash(v: &str) -> String {
    use aws_lc_rs::digest;
    digest::digest(&digest::SHA256, v.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn pkce_s256_is_honoured_when_requested() {
    let s = start_sandbox().await;
    let c = s.client_with("pkce", json!({"aspen_headless": true})).await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let mut code_for = Vec::new();
    for _ in 0..2 {
        let consent = s.ais_consent(&c, ais_data()).await;
        let mut claims = request_claims(&s, &c, &consent, SCOPE);
        claims["code_challenge"] = json!(challenge);
        claims["code_challenge_method"] = json!("S256");
        let loc = location(&get(&s, &authorize_url(&s, &c, &c.tpp.sign(&claims), SCOPE)).await);
        code_for.push(fragment(&loc)["code"].clone());
    }
    let exchange = |code: String, verifier: Option<&'static str>| {
        let s = &s;
        let c = &c;
        async move {
            let assertion = c.tpp.assertion(&c.id, &s.url("/token"));
            let mut form = vec![
                ("grant_type", "authorization_code".to_string()),
                ("code", code),
                ("redirect_uri", c.redirect.clone()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
                ),
                ("client_assertion", assertion),
            ];
            if let Some(v) = verifier {
                form.push(("code_verifier", v.to_string()));
            }
            s.kit_client(&c.tpp.dir)
                .post(s.url("/token"))
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    let r = exchange(
        code_for[0].clone(),
        Some("wrong-verifier-wrong-verifier-wrong-verifier"),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(
        exchange(code_for[1].clone(), Some(verifier)).await.status(),
        200
    );
    // A plain challenge is refused at authorize.
    let consent = s.ais_consent(&c, ais_data()).await;
    let mut claims = request_claims(&s, &c, &consent, SCOPE);
    claims["code_challenge"] = json!(challenge);
    claims["code_challenge_method"] = json!("plain");
    let r = get(&s, &authorize_url(&s, &c, &c.tpp.sign(&claims), SCOPE)).await;
    assert_redirect_error(&r, &c.redirect, "invalid_request", "plain PKCE");
    s.stop().await;
}
