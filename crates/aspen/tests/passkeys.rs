//! Issue 14, passkeys: enrolment behind a fresh sign-in, a passkey that
//! verifies the PSU signs in on its own (SCA: `amr` hwk + mfa), one that
//! does not is the second factor after the password (`amr` pwd + hwk);
//! for a payment the challenge is derived from the consent id, amount,
//! currency and payee, so a payment changed behind the page fails. A
//! software authenticator answers as a browser's would; the pages are
//! served on `https://localhost:…`, since WebAuthn has no relying party on
//! an IP address.

mod common;

use aspen_psu::soft_authenticator::SoftAuthenticator;
use common::*;
use serde_json::{Value, json};

const SCOPE: &str = "openid accounts";
const SCA: &str = "urn:openbanking:psd2:sca";

/// HTML attribute text back to what the browser hands the script.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(';').expect("an entity ends") + i;
        let entity = &rest[i + 1..end];
        let c = match entity {
            "quot" => '"',
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "apos" => '\'',
            _ => {
                let n = entity.strip_prefix('#').expect("a numeric entity");
                let code = match n.strip_prefix('x') {
                    Some(hex) => u32::from_str_radix(hex, 16).unwrap(),
                    None => n.parse().unwrap(),
                };
                char::from_u32(code).unwrap()
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The WebAuthn options of the passkey form posting to `action`.
fn options_of(page: &str, action: &str) -> Value {
    let form = page
        .split("<form ")
        .find(|f| f.contains(&format!("action=\"{action}\"")))
        .unwrap_or_else(|| panic!("a passkey form for {action} in {page}"));
    let i = form.find("data-options=\"").expect("data-options") + 14;
    let raw = form[i..].split('"').next().unwrap();
    serde_json::from_str(&unescape(raw)).expect("options are JSON")
}

fn origin(s: &TestServer) -> String {
    s.server.public_url.clone()
}

/// Signs in to the dashboard with password and code and opens the
/// security page, fresh enough to change it.
async fn security_page(s: &TestServer, b: &mut Browser<'_>, user: &str) -> String {
    let csrf = csrf_of(
        &b.get(&s.url("/account/consents"))
            .await
            .text()
            .await
            .unwrap(),
    );
    let r = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", user),
                ("password", &format!("{user}.")),
            ],
        )
        .await;
    assert_eq!(location(&r), "/login/otp");
    let r = b.second_factor(user).await;
    assert_eq!(location(&r), "/account/consents");
    b.get(&s.url("/account/security"))
        .await
        .text()
        .await
        .unwrap()
}

/// Enrols a new software passkey for `user`.
async fn enrol(s: &TestServer, user: &str) -> SoftAuthenticator {
    let mut b = Browser::new(s);
    let page = security_page(s, &mut b, user).await;
    assert!(page.contains(">Add a passkey<"), "{page}");
    let opts = options_of(&page, "/account/security/passkey");
    assert_eq!(opts["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(opts["attestation"], "none");
    let mut a = SoftAuthenticator::new(&origin(s));
    let (id, cd, att) = a.create(&opts);
    let csrf = csrf_of(&page);
    let r = b
        .post(
            "/account/security/passkey",
            &[
                ("csrf", &csrf),
                ("credential_id", &id),
                ("client_data", &cd),
                ("attestation", &att),
                ("label", "Laptop"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Passkey added.") && page.contains("Laptop (Passkey"),
        "{page}"
    );
    a
}

fn request(s: &TestServer, c: &Client, consent: &str, scope: &str, acr: &[&str]) -> String {
    let mut claims = request_claims(s, c, consent, scope);
    if !acr.is_empty() {
        claims["claims"]["id_token"]["acr"]["values"] = json!(acr);
    }
    c.tpp.sign(&claims)
}

/// Starts a journey for `consent` and opens the login page.
async fn login_page<'a>(
    s: &'a TestServer,
    c: &Client,
    consent: &str,
    scope: &str,
    acr: &[&str],
) -> (Browser<'a>, String) {
    let mut b = Browser::new(s);
    let r = b
        .get(&authorize_url(
            s,
            c,
            &request(s, c, consent, scope, acr),
            scope,
        ))
        .await;
    assert_eq!(location(&r), "/login");
    let page = b.get(&s.url("/login")).await.text().await.unwrap();
    (b, page)
}

async fn id_claims(s: &TestServer, f: &std::collections::HashMap<String, String>) -> Value {
    aspen_jose::verify_jwt(&f["id_token"], &s.jwks().await, &[aspen_jose::Alg::PS256])
        .unwrap_or_else(|e| panic!("{e:?} {f:?}"))
        .claims
}

async fn payment_consent(s: &TestServer, c: &Client, amount: &str, key: &str) -> String {
    let cc = s.cc_token(&c.tpp, &c.id, "payments").await;
    let body = domestic_consent_body(domestic_initiation(amount));
    let r = s
        .pis_post(c, &cc, "/domestic-payment-consents", &body, key)
        .await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["Data"]["ConsentId"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_verifying_passkey_alone_is_sca_and_its_answer_counts_once() {
    let s = start_localhost().await;
    let mut a = enrol(&s, "rora").await;
    let c = s.client_with("pktpp", json!({})).await;
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let mut b = Browser::new(&s);
    let r = b
        .get(&authorize_url(
            &s,
            &c,
            &request(&s, &c, &consent, SCOPE, &[SCA]),
            SCOPE,
        ))
        .await;
    assert_eq!(location(&r), "/login");
    let r = b.get(&s.url("/login")).await;
    // The page's forms may end at the TPP (access_denied): its origin is
    // the one other form target allowed.
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("form-action 'self' https://pktpp.example.com;")
            && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let page = r.text().await.unwrap();
    assert!(page.contains(">Use a passkey<") && page.contains("/assets/passkey.js"));
    let opts = options_of(&page, "/login/passkey");
    assert_eq!(opts["userVerification"], "required");
    assert_eq!(opts["allowCredentials"], json!([]), "no username asked");
    let answer = a.get(&opts);
    let csrf = csrf_of(&page);
    let old_cookie = b.cookie.clone();
    let r = b.post("/login/passkey", &answer.form(&csrf)).await;
    assert_eq!(location(&r), "/consent");
    let f = b.allow_first_account().await;
    let claims = id_claims(&s, &f).await;
    assert_eq!(claims["acr"], SCA);
    assert_eq!(claims["amr"], json!(["hwk", "mfa"]));
    let stored = s.server.store.consent(&consent).await.unwrap().unwrap();
    let rora = s
        .server
        .store
        .psu_by_username("rora")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.psu_id.as_deref(), Some(rora.id.as_str()));

    // The same answer again, from the session it was made for: that
    // session is gone.
    b.cookie = old_cookie;
    let r = b.post("/login/passkey", &answer.form(&csrf)).await;
    assert_eq!(r.status(), 400);

    // ...and from a new journey: its challenge is another one.
    let consent2 = s
        .ais_consent(&c, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let (mut b2, page) = login_page(&s, &c, &consent2, SCOPE, &[SCA]).await;
    let r = b2
        .post("/login/passkey", &answer.form(&csrf_of(&page)))
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("not accepted"));
    assert_eq!(
        s.server
            .store
            .consent(&consent2)
            .await
            .unwrap()
            .unwrap()
            .status,
        "AwaitingAuthorisation"
    );
    s.stop().await;
}

/// A passkey without user verification is one factor: refused alone, good
/// as the second factor after the password — here for a payment, whose
/// step names it and whose challenge is linked to it.
#[tokio::test]
async fn a_passkey_after_the_password_approves_a_payment() {
    let s = start_localhost().await;
    let mut a = enrol(&s, "ivsa").await;
    a.verifies_user = false;
    let c = s.client_with("pkpay", json!({})).await;
    let consent = payment_consent(&s, &c, "7.50", "pk-pay-1").await;
    let scope = "openid payments";
    let (mut b, page) = login_page(&s, &c, &consent, scope, &[]).await;
    let csrf = csrf_of(&page);
    let r = b
        .post(
            "/login/passkey",
            &a.get(&options_of(&page, "/login/passkey")).form(&csrf),
        )
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("did not check it is you"));

    let r = b
        .post(
            "/login",
            &[("csrf", &csrf), ("username", "ivsa"), ("password", "ivsa.")],
        )
        .await;
    assert_eq!(location(&r), "/login/otp");
    let page = b.get(&s.url("/login/otp")).await.text().await.unwrap();
    assert!(page.contains("a payment of 7.50 GBP to ACME Inc"), "{page}");
    let opts = options_of(&page, "/login/otp/passkey");
    assert_eq!(
        opts["allowCredentials"][0]["id"],
        json!(data_encoding::BASE64URL_NOPAD.encode(&a.credential_id))
    );
    let r = b
        .post("/login/otp/passkey", &a.get(&opts).form(&csrf_of(&page)))
        .await;
    assert_eq!(location(&r), "/consent");
    let f = b.allow_first_account().await;
    let claims = id_claims(&s, &f).await;
    assert_eq!(claims["acr"], SCA);
    assert_eq!(claims["amr"], json!(["pwd", "hwk"]));
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

/// Dynamic linking: the page's challenge is derived from the payment; the
/// amount changed behind the page makes the passkey's answer fail, and the
/// TPP hears access_denied; nothing is authorised.
#[tokio::test]
async fn a_payment_changed_behind_the_passkey_page_is_refused() {
    let s = start_localhost().await;
    let mut a = enrol(&s, "rora").await;
    let c = s.client_with("pklink", json!({})).await;
    let consent = payment_consent(&s, &c, "12.34", "pk-link-1").await;
    let scope = "openid payments";
    let (mut b, page) = login_page(&s, &c, &consent, scope, &[]).await;
    let opts = options_of(&page, "/login/passkey");
    let answer = a.get(&opts);

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
        .post("/login/passkey", &answer.form(&csrf_of(&page)))
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
        "AwaitingAuthorisation"
    );

    // The same payment unchanged goes through with a fresh page.
    let consent = payment_consent(&s, &c, "12.34", "pk-link-2").await;
    let (mut b, page) = login_page(&s, &c, &consent, scope, &[]).await;
    let r = b
        .post(
            "/login/passkey",
            &a.get(&options_of(&page, "/login/passkey"))
                .form(&csrf_of(&page)),
        )
        .await;
    assert_eq!(location(&r), "/consent");
    let f = b.allow_first_account().await;
    assert_eq!(id_claims(&s, &f).await["acr"], SCA);
    s.stop().await;
}

/// Another customer's passkey, a counter that goes backwards (a cloned
/// authenticator), an answer for another origin: refused.
#[tokio::test]
async fn foreign_cloned_or_phished_passkeys_are_refused() {
    let s = start_localhost().await;
    let mut rora = enrol(&s, "rora").await;
    let c = s.client_with("pkneg", json!({})).await;

    // mits's second step with rora's passkey.
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let (mut b, page) = login_page(&s, &c, &consent, SCOPE, &[SCA]).await;
    let login_opts = options_of(&page, "/login/passkey");
    let csrf = csrf_of(&page);
    let r = b
        .post(
            "/login",
            &[("csrf", &csrf), ("username", "mits"), ("password", "mits.")],
        )
        .await;
    assert_eq!(location(&r), "/login/otp");
    let page = b.get(&s.url("/login/otp")).await.text().await.unwrap();
    assert!(!page.contains("data-passkey"), "mits has no passkey");
    let mut opts = login_opts.clone();
    opts["challenge"] = json!("AAAA");
    let r = b
        .post("/login/otp/passkey", &rora.get(&opts).form(&csrf_of(&page)))
        .await;
    assert_eq!(r.status(), 401);
    assert_ne!(
        b.get(&s.url("/consent")).await.status(),
        200,
        "not signed in"
    );

    // A phishing site's origin.
    let (mut b, page) = login_page(&s, &c, &consent, SCOPE, &[SCA]).await;
    let opts = options_of(&page, "/login/passkey");
    rora.origin = "https://bank-login.example".into();
    let r = b
        .post("/login/passkey", &rora.get(&opts).form(&csrf_of(&page)))
        .await;
    assert_eq!(r.status(), 401);
    rora.origin = origin(&s);

    // A signature counter behind the stored one: a copy of the key.
    let r = b
        .post("/login/passkey", &rora.get(&opts).form(&csrf_of(&page)))
        .await;
    assert_eq!(location(&r), "/consent", "the real one still works");
    let (mut b, page) = login_page(&s, &c, &consent, SCOPE, &[SCA]).await;
    rora.counter = Some(1);
    let r = b
        .post(
            "/login/passkey",
            &rora
                .get(&options_of(&page, "/login/passkey"))
                .form(&csrf_of(&page)),
        )
        .await;
    assert_eq!(r.status(), 401);
    s.stop().await;
}

async fn send(b: &mut Browser<'_>, f: Vec<(String, String)>) -> reqwest::Response {
    let form: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    b.post("/account/security/passkey", &form).await
}

/// Enrolment: only after a fresh sign-in, only an answer to this page's
/// challenge and origin, one authenticator once; removal like any factor.
#[tokio::test]
async fn enrolment_rules() {
    let s = start_localhost().await;
    let mut b = Browser::new(&s);
    let page = security_page(&s, &mut b, "mits").await;
    let opts = options_of(&page, "/account/security/passkey");
    let csrf = csrf_of(&page);
    let post = |a: (String, String, String)| {
        vec![
            ("csrf".to_string(), csrf.clone()),
            ("credential_id".to_string(), a.0),
            ("client_data".to_string(), a.1),
            ("attestation".to_string(), a.2),
            ("label".to_string(), "Key".to_string()),
        ]
    };
    let mut phished = SoftAuthenticator::new("https://evil.example");
    let r = send(&mut b, post(phished.create(&opts))).await;
    assert_eq!(r.status(), 400);
    let mut a = SoftAuthenticator::new(&origin(&s));
    let created = a.create(&opts);
    let r = send(&mut b, post(created.clone())).await;
    assert_eq!(r.status(), 200);
    // The page's challenge was spent with the session it belonged to.
    let page = b
        .get(&s.url("/account/security"))
        .await
        .text()
        .await
        .unwrap();
    let csrf2 = csrf_of(&page);
    let mut again = post(created);
    again[0].1 = csrf2.clone();
    let r = send(&mut b, again).await;
    assert_eq!(r.status(), 400, "an old page's answer");
    // The same authenticator enrolled again (it would answer a new
    // challenge with the same credential id) is refused.
    let opts2 = options_of(&page, "/account/security/passkey");
    assert_eq!(
        opts2["excludeCredentials"][0]["id"],
        json!(data_encoding::BASE64URL_NOPAD.encode(&a.credential_id))
    );
    let mut again = post(a.create(&opts2));
    again[0].1 = csrf2;
    let r = send(&mut b, again).await;
    assert_eq!(r.status(), 409);

    // Not fresh: a new dashboard session after the five minutes pass is
    // simulated by a session whose sign-in is old.
    let db = format!("sqlite://{}", s.data_dir().join("aspen.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("UPDATE web_sessions SET auth_time = auth_time - 600")
        .execute(&pool)
        .await
        .unwrap();
    let page = b
        .get(&s.url("/account/security"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains(">Add a passkey<"));
    let mut late = post(SoftAuthenticator::new(&origin(&s)).create(&opts2));
    late[0].1 = csrf_of(&page);
    let r = send(&mut b, late).await;
    assert_eq!(r.status(), 403);
    // A fresh sign-in with the passkey itself (it verifies the user).
    let reauth = options_of(&page, "/account/security/reauth/passkey");
    let r = b
        .post(
            "/account/security/reauth/passkey",
            &a.get(&reauth).form(&csrf_of(&page)),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Confirmed."));
    let mits = s
        .server
        .store
        .psu_by_username("mits")
        .await
        .unwrap()
        .unwrap();
    let kinds: Vec<String> = s
        .server
        .store
        .factors(&mits.id)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.kind)
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "passkey").count(), 1);
    s.stop().await;
}

/// On an IP address (the default sandbox) no passkey is offered, and the
/// endpoint refuses; the pages may load their one script.
#[tokio::test]
async fn no_passkeys_on_an_ip_address() {
    let s = start_sandbox().await;
    let mut b = Browser::new(&s);
    let page = b
        .get(&s.url("/account/consents"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Use a passkey"));
    let r = b.post("/login/passkey", &[("csrf", &csrf_of(&page))]).await;
    assert!(r.status().is_client_error());
    let page = security_page(&s, &mut b, "rora").await;
    assert!(page.contains("reached by an IP address"), "{page}");
    let r = s
        .client()
        .get(s.url("/assets/passkey.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let r = b.get(&s.url("/account/security")).await;
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    s.stop().await;
}

/// Passkey attempts are throttled like passwords: after the per-PSU limit
/// of refused answers even a good one is turned away for a while.
#[tokio::test]
async fn passkey_attempts_are_throttled() {
    let s = start_localhost().await;
    let mut a = enrol(&s, "mits").await;
    let c = s.client_with("pkthrottle", json!({})).await;
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let (mut b, page) = login_page(&s, &c, &consent, SCOPE, &[SCA]).await;
    let opts = options_of(&page, "/login/passkey");
    let csrf = csrf_of(&page);
    a.origin = "https://bank-login.example".into();
    for _ in 0..5 {
        let r = b.post("/login/passkey", &a.get(&opts).form(&csrf)).await;
        assert_eq!(r.status(), 401);
    }
    a.origin = origin(&s);
    let r = b.post("/login/passkey", &a.get(&opts).form(&csrf)).await;
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("Too many"));
    s.stop().await;
}
