//! Issue 14, strong customer authentication with TOTP: `acr` says `sca`
//! only when two factors were verified in this authentication, `amr`
//! names them; a request that accepts only `sca` gets the second step, or
//! `access_denied` for a PSU without a second factor; codes are good once
//! and throttled like passwords.

mod common;

use common::*;
use serde_json::{Value, json};

const SCOPE: &str = "openid accounts";
const SCA: &str = "urn:openbanking:psd2:sca";
const CA: &str = "urn:openbanking:psd2:ca";

fn secret_of(username: &str) -> String {
    aspen_sandbox::sandbox_logins(42)
        .into_iter()
        .find(|l| l.username == username)
        .and_then(|l| l.totp_secret)
        .expect("a sandbox authenticator")
}

fn code_now(username: &str) -> String {
    let key = aspen_auth::totp::decode_secret(&secret_of(username)).unwrap();
    aspen_auth::totp::code_at(&key, chrono::Utc::now().timestamp())
}

/// A request object asking for the given acr values (essential).
fn request(s: &TestServer, c: &Client, consent: &str, acr: &[&str]) -> String {
    let mut claims = request_claims(s, c, consent, SCOPE);
    claims["claims"]["id_token"]["acr"]["values"] = json!(acr);
    c.tpp.sign(&claims)
}

/// Starts a journey and signs in with the password: the response to the
/// login form.
async fn sign_in(
    s: &TestServer,
    b: &mut Browser<'_>,
    c: &Client,
    consent: &str,
    acr: &[&str],
    user: &str,
) -> reqwest::Response {
    let r = b
        .get(&authorize_url(s, c, &request(s, c, consent, acr), SCOPE))
        .await;
    assert_eq!(location(&r), "/login");
    let csrf = csrf_of(&b.get(&s.url("/login")).await.text().await.unwrap());
    b.post(
        "/login",
        &[
            ("csrf", &csrf),
            ("username", user),
            ("password", &format!("{user}.")),
        ],
    )
    .await
}

/// Allows on the consent page; the ID token's claims.
async fn allow(s: &TestServer, b: &mut Browser<'_>) -> Value {
    let f = b.allow_first_account().await;
    let id = f
        .get("id_token")
        .unwrap_or_else(|| panic!("no ID token at the TPP: {f:?}"));
    aspen_jose::verify_jwt(id, &s.jwks().await, &[aspen_jose::Alg::PS256])
        .unwrap()
        .claims
}

#[tokio::test]
async fn two_factors_make_sca_and_a_code_is_good_once() {
    let s = start_sandbox().await;
    let c = s.client_with("scatpp", json!({})).await;
    let data = json!({ "Permissions": ["ReadAccountsBasic"] });

    // Only sca accepted: the second step, with an input named otp and a
    // button "Verify" (DESIGN.md).
    let consent = s.ais_consent(&c, data.clone()).await;
    let mut b = Browser::new(&s);
    let r = sign_in(&s, &mut b, &c, &consent, &[SCA], "rora").await;
    assert_eq!(location(&r), "/login/otp");
    // Not signed in yet: the consent page sends back to the login.
    let r = b.get(&s.url("/consent")).await;
    assert_ne!(r.status(), 200);
    let page = b.get(&s.url("/login/otp")).await.text().await.unwrap();
    assert!(
        page.contains("name=\"otp\"") && page.contains(">Verify<"),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let r = b
        .post("/login/otp", &[("csrf", &csrf), ("otp", "000000")])
        .await;
    assert_eq!(r.status(), 401);
    let code = code_now("rora");
    let r = b
        .post("/login/otp", &[("csrf", &csrf), ("otp", &code)])
        .await;
    assert_eq!(location(&r), "/consent");
    let claims = allow(&s, &mut b).await;
    assert_eq!(claims["acr"], SCA);
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));

    // The same code again, in another journey: refused (replay), on any
    // node — the time step is a compare-and-set in the database.
    let consent = s.ais_consent(&c, data.clone()).await;
    let mut b = Browser::new(&s);
    sign_in(&s, &mut b, &c, &consent, &[SCA], "rora").await;
    let csrf = csrf_of(&b.get(&s.url("/login/otp")).await.text().await.unwrap());
    let r = b
        .post("/login/otp", &[("csrf", &csrf), ("otp", &code)])
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("already used"));

    // sca or ca accepted: the password alone, reported as ca.
    let consent = s.ais_consent(&c, data.clone()).await;
    let mut b = Browser::new(&s);
    let r = sign_in(&s, &mut b, &c, &consent, &[SCA, CA], "mits").await;
    assert_eq!(location(&r), "/consent");
    let claims = allow(&s, &mut b).await;
    assert_eq!(claims["acr"], CA);
    assert_eq!(claims["amr"], json!(["pwd"]));
    s.stop().await;
}

#[tokio::test]
async fn without_a_second_factor_the_tpp_gets_access_denied() {
    let s = start_sandbox().await;
    let c = s.client_with("nofactor", json!({})).await;
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let mut b = Browser::new(&s);
    let r = sign_in(&s, &mut b, &c, &consent, &[SCA], "oska").await;
    let loc = location(&r);
    assert!(loc.starts_with(&format!("{}#", c.redirect)), "{loc}");
    let f = fragment(&loc);
    assert_eq!(f["error"], "access_denied");
    assert!(f["error_description"].contains("second factor"), "{f:?}");

    // Headless pretends the factors the PSU has, and says so in amr.
    let h = s
        .client_with("headlesssca", json!({"aspen_headless": true}))
        .await;
    let consent = s
        .ais_consent(&h, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let r = s
        .client()
        .get(authorize_url(
            &s,
            &h,
            &request(&s, &h, &consent, &[SCA]),
            SCOPE,
        ))
        .send()
        .await
        .unwrap();
    let f = fragment(&location(&r));
    let claims = aspen_jose::verify_jwt(&f["id_token"], &s.jwks().await, &[aspen_jose::Alg::PS256])
        .unwrap()
        .claims;
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert_eq!(claims["acr"], SCA);
    let consent = s
        .ais_consent(&h, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let mut claims = request_claims(&s, &h, &consent, SCOPE);
    claims["claims"]["id_token"]["acr"]["values"] = json!([SCA]);
    claims["login_hint"] = json!("oska");
    let r = s
        .client()
        .get(authorize_url(&s, &h, &h.tpp.sign(&claims), SCOPE))
        .send()
        .await
        .unwrap();
    let f = fragment(&location(&r));
    assert_eq!(f["error"], "access_denied", "{f:?}");
    s.stop().await;
}

#[tokio::test]
async fn wrong_codes_are_throttled_like_passwords() {
    let s = start_sandbox().await;
    let c = s.client_with("otpthrottle", json!({})).await;
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let mut b = Browser::new(&s);
    sign_in(&s, &mut b, &c, &consent, &[SCA], "ivsa").await;
    let csrf = csrf_of(&b.get(&s.url("/login/otp")).await.text().await.unwrap());
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = b
            .post("/login/otp", &[("csrf", &csrf), ("otp", "123456")])
            .await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5]);
    assert_eq!(statuses[5], 429);
    // Locked: even the right code is refused now.
    let r = b
        .post("/login/otp", &[("csrf", &csrf), ("otp", &code_now("ivsa"))])
        .await;
    assert_eq!(r.status(), 429);
    s.stop().await;
}

fn between(s: &str, a: &str, b: &str) -> String {
    let i = s.find(a).unwrap_or_else(|| panic!("{a} in {s}")) + a.len();
    s[i..].split(b).next().unwrap().to_string()
}

/// Enrolment and removal in the dashboard (`/account/security`), each
/// behind a fresh sign-in; a stale one asks for the password and a code
/// again.
#[tokio::test]
async fn authenticators_are_added_and_removed_behind_a_fresh_sign_in() {
    let s = start_sandbox().await;
    let mut b = Browser::new(&s);
    let csrf = csrf_of(
        &b.get(&s.url("/account/consents"))
            .await
            .text()
            .await
            .unwrap(),
    );
    b.post(
        "/login",
        &[("csrf", &csrf), ("username", "mits"), ("password", "mits.")],
    )
    .await;
    b.second_factor("mits").await;
    let page = b
        .get(&s.url("/account/security"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sandbox authenticator"), "{page}");
    let csrf = csrf_of(&page);
    let page = b
        .post("/account/security/totp/start", &[("csrf", &csrf)])
        .await
        .text()
        .await
        .unwrap();
    let secret = between(&page, "<code>", "</code>");
    assert!(page.contains("otpauth://totp/"), "{page}");
    let csrf = csrf_of(&page);
    let r = b
        .post(
            "/account/security/totp/confirm",
            &[("csrf", &csrf), ("otp", "000000"), ("label", "Phone")],
        )
        .await;
    assert_eq!(r.status(), 401);
    let key = aspen_auth::totp::decode_secret(&secret).unwrap();
    let code = aspen_auth::totp::code_at(&key, chrono::Utc::now().timestamp());
    let page = b
        .post(
            "/account/security/totp/confirm",
            &[("csrf", &csrf), ("otp", &code), ("label", "Phone")],
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Authenticator added.") && page.contains("Phone"),
        "{page}"
    );
    let mits = s
        .server
        .store
        .psu_by_username("mits")
        .await
        .unwrap()
        .unwrap();
    let factors = s.server.store.factors(&mits.id).await.unwrap();
    assert_eq!(factors.len(), 2);
    let phone = factors.iter().find(|f| f.label == "Phone").unwrap();
    // Sealed at rest: the database holds neither this secret nor the
    // sandbox one in the clear.
    assert!(phone.secret.starts_with("v1.") && !phone.secret.contains(&secret));
    let sandbox = factors.iter().find(|f| f.label != "Phone").unwrap();
    assert!(sandbox.secret.starts_with("v1."));
    assert!(!sandbox.secret.contains(&secret_of("mits")));

    // Ten minutes later the sign-in is no longer fresh.
    let db = format!("sqlite://{}", s.data_dir().join("aspen.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("UPDATE web_sessions SET auth_time = auth_time - 600")
        .execute(&pool)
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let r = b
        .post(
            &format!("/account/security/factors/{}/remove", phone.factor_id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Confirm it") && page.contains("name=\"otp\""),
        "{page}"
    );
    // The sign-in spent this step's code: the app's next one.
    let key = aspen_auth::totp::decode_secret(&secret_of("mits")).unwrap();
    let code = aspen_auth::totp::code_at(
        &key,
        chrono::Utc::now().timestamp() + aspen_auth::totp::STEP_SECS,
    );
    let page = b
        .post(
            "/account/security/reauth",
            &[("csrf", &csrf), ("password", "mits."), ("otp", &code)],
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Confirmed."), "{page}");
    let csrf = csrf_of(&page);
    let page = b
        .post(
            &format!("/account/security/factors/{}/remove", phone.factor_id),
            &[("csrf", &csrf)],
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Authenticator removed."), "{page}");
    assert_eq!(s.server.store.factors(&mits.id).await.unwrap().len(), 1);
    s.stop().await;
}

/// Dynamic linking (RTS Art. 5): a payment always needs SCA, the code step
/// names the payment, and a payment changed between the code and the
/// approval is refused.
#[tokio::test]
async fn a_payment_changed_after_its_code_is_refused() {
    let s = start_sandbox().await;
    let c = s.client_with("linktpp", json!({})).await;
    let cc = s.cc_token(&c.tpp, &c.id, "payments").await;
    let body = domestic_consent_body(domestic_initiation("12.34"));
    let r = s
        .pis_post(&c, &cc, "/domestic-payment-consents", &body, "link-1")
        .await;
    assert_eq!(r.status(), 201);
    let consent = r.json::<Value>().await.unwrap()["Data"]["ConsentId"]
        .as_str()
        .unwrap()
        .to_string();
    let scope = "openid payments";
    let mut b = Browser::new(&s);
    // The TPP accepts ca too: a payment needs SCA anyway.
    let r = b
        .get(&authorize_url(
            &s,
            &c,
            &c.tpp.sign(&request_claims(&s, &c, &consent, scope)),
            scope,
        ))
        .await;
    assert_eq!(location(&r), "/login");
    let csrf = csrf_of(&b.get(&s.url("/login")).await.text().await.unwrap());
    let r = b
        .post(
            "/login",
            &[("csrf", &csrf), ("username", "rora"), ("password", "rora.")],
        )
        .await;
    assert_eq!(location(&r), "/login/otp");
    let page = b.get(&s.url("/login/otp")).await.text().await.unwrap();
    assert!(
        page.contains("a payment of 12.34 GBP to ACME Inc (08080021325698)"),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let r = b
        .post("/login/otp", &[("csrf", &csrf), ("otp", &code_now("rora"))])
        .await;
    assert_eq!(location(&r), "/consent");
    let page = b.get(&s.url("/consent")).await.text().await.unwrap();
    let csrf = csrf_of(&page);
    let pat = "name=\"account\" value=\"";
    let i = page.find(pat).expect("an account") + pat.len();
    let account = page[i..].split('"').next().unwrap().to_string();

    // Someone changes the amount behind the page.
    let db = format!("sqlite://{}", s.data_dir().join("aspen.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let n = sqlx::query(
        "UPDATE consents SET data = replace(data, '\"12.34\"', '\"99.99\"') WHERE consent_id = ?",
    )
    .bind(&consent)
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(n, 1);
    let r = b
        .post(
            "/consent",
            &[
                ("csrf", &csrf),
                ("decision", "allow"),
                ("account", &account),
            ],
        )
        .await;
    let f = fragment(&location(&r));
    assert_eq!(f["error"], "access_denied", "{f:?}");
    assert!(f["error_description"].contains("changed"), "{f:?}");
    assert_eq!(
        s.server
            .store
            .consent(&consent)
            .await
            .unwrap()
            .unwrap()
            .status,
        "AwaitingAuthorisation",
        "nothing was authorised"
    );
    s.stop().await;
}
