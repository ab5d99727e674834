//! Issue 11: each finding of the attack review, run as the attack itself
//! against the real server. Every test here failed on 65bfe23.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SCOPE: &str = "openid accounts";

fn ais_data() -> Value {
    json!({ "Permissions": ALL_PERMISSIONS })
}

/// A login journey ready for the form: the browser holds the session
/// cookie; returns the page's CSRF token.
async fn login_form<'a>(s: &'a TestServer, c: &Client) -> (Browser<'a>, String) {
    let consent = s.ais_consent(c, ais_data()).await;
    let mut b = Browser::new(s);
    let r = b
        .get(&authorize_url(
            s,
            c,
            &c.tpp.sign(&request_claims(s, c, &consent, SCOPE)),
            SCOPE,
        ))
        .await;
    assert_eq!(r.status(), 303);
    let page = b.get(&s.url("/login")).await.text().await.unwrap();
    let csrf = csrf_of(&page);
    (b, csrf)
}

async fn post_login(
    http: &reqwest::Client,
    s: &TestServer,
    cookie: &str,
    csrf: &str,
    user: &str,
    password: &str,
) -> u16 {
    http.post(s.url("/login"))
        .header("cookie", cookie)
        .form(&[("csrf", csrf), ("username", user), ("password", password)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn parallel_password_guesses_check_at_most_the_limit() {
    // Finding 2: 60 concurrent guesses were all checked and the right one
    // logged in. Now each attempt is reserved in the database first.
    let s = start_sandbox().await;
    let c = s.client_with("guesser", json!({})).await;
    let (b, csrf) = login_form(&s, &c).await;
    let cookie = b.cookie.clone().unwrap();
    let http = s.client();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (http, cookie, csrf) = (http.clone(), cookie.clone(), csrf.clone());
        let url = s.url("/login");
        let password = if i == 45 { "mits." } else { "guess" };
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .header("cookie", cookie)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("username", "mits"),
                    ("password", password),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut checked = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            401 | 303 => checked += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(checked <= 5, "{checked} guesses were checked (limit 5)");
    assert_eq!(checked + refused, 60);
    // From another address (the burst locked 127.0.0.1 too): the PSU is
    // locked out, so even the right password waits, while another PSU
    // signs in.
    let (b2, csrf2) = login_form(&s, &c).await;
    let elsewhere = client_builder(&s.ca_pem())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let cookie2 = b2.cookie.clone().unwrap();
    assert_eq!(
        post_login(&elsewhere, &s, &cookie2, &csrf2, "mits", "mits.").await,
        429
    );
    assert_eq!(
        post_login(&elsewhere, &s, &cookie2, &csrf2, "ivsa", "ivsa.").await,
        303
    );
    s.stop().await;
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn unknown_usernames_cost_the_same_work() {
    // Finding 7: 34.7 ms for a known user, 5.2 ms for an unknown one.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    cfg.psu_login.max_attempts_per_psu = 1000;
    cfg.psu_login.max_attempts_per_address = 1000;
    let s = start_with(dir, cfg).await;
    let c = s.client_with("timing", json!({})).await;
    let (b, csrf) = login_form(&s, &c).await;
    let cookie = b.cookie.clone().unwrap();
    let http = s.client();
    // Warm up the connection and the lazily built dummy hash.
    post_login(&http, &s, &cookie, &csrf, "nobody-here", "x").await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let t = Instant::now();
        assert_eq!(
            post_login(&http, &s, &cookie, &csrf, "rora", "wrong").await,
            401
        );
        known.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(
            post_login(&http, &s, &cookie, &csrf, "nobody-here", "wrong").await,
            401
        );
        unknown.push(t.elapsed());
    }
    let (k, u) = (median(known), median(unknown));
    // Both pay one argon2 verification; without the dummy verify the
    // unknown user answered in about a seventh of the time.
    assert!(
        u.as_secs_f64() >= 0.5 * k.as_secs_f64(),
        "known {k:?}, unknown {u:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn parallel_refreshes_have_one_winner_and_need_the_bound_certificate() {
    // Finding 4: 24 simultaneous refreshes gave 16 successes; a refresh
    // over another TPP's certificate worked.
    let s = start_sandbox().await;
    let c = s
        .client_with("refresher", json!({"aspen_headless": true}))
        .await;
    let consent = s.ais_consent(&c, ais_data()).await;
    let f = s.headless_fragment(&c, &consent, SCOPE).await;
    let t: Value = s.tokens(&c, &f["code"], &c.redirect).await;
    let refresh = t["refresh_token"].as_str().unwrap().to_string();

    // Another TPP's transport certificate with this client's assertion.
    let other = Tpp::load(&s.make_kit("othercert", "https://othercert.example.com/cb"));
    let r = s
        .token_request(
            &other.dir,
            &c,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (s, c, refresh) = (&s, &c, refresh.clone());
        tasks.push(async move { s.refresh(c, &refresh).await });
    }
    let results = futures_util::future::join_all(tasks).await;
    let mut winners = Vec::new();
    for r in results {
        match r.status().as_u16() {
            200 => winners.push(r.json::<Value>().await.unwrap()),
            400 => assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant"),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one refresh wins");
    let next = winners[0]["refresh_token"].as_str().unwrap();
    assert_eq!(s.refresh(&c, next).await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn code_races_and_strangers_cannot_burn_a_code() {
    // Finding 6: the winner's token sometimes survived a detected replay;
    // another client or a missing PKCE verifier burned the owner's code.
    let s = start_sandbox().await;
    let c = s
        .client_with("racer", json!({"aspen_headless": true}))
        .await;
    let consent = s.ais_consent(&c, ais_data()).await;
    let code = s.headless_fragment(&c, &consent, SCOPE).await["code"].clone();
    let tasks: Vec<_> = (0..8).map(|_| s.exchange(&c, &code, &c.redirect)).collect();
    let mut winners = Vec::new();
    for r in futures_util::future::join_all(tasks).await {
        match r.status().as_u16() {
            200 => winners.push(r.json::<Value>().await.unwrap()),
            400 => assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant"),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(winners.len(), 1);
    // The replays revoked what the winner got, whatever the order.
    let at = winners[0]["access_token"].as_str().unwrap();
    let r = s
        .kit_client(&c.tpp.dir)
        .get(s.url("/open-banking/v3.1/aisp/accounts"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the winner's token is revoked after replay"
    );

    // A stranger's attempt and the owner's attempt without its PKCE
    // verifier leave the code spendable by its owner.
    let thief = s.client_with("codethief", json!({})).await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let consent = s.ais_consent(&c, ais_data()).await;
    let mut claims = request_claims(&s, &c, &consent, SCOPE);
    claims["code_challenge"] = json!("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    claims["code_challenge_method"] = json!("S256");
    let r = s
        .client()
        .get(authorize_url(&s, &c, &c.tpp.sign(&claims), SCOPE))
        .send()
        .await
        .unwrap();
    let code = fragment(&location(&r))["code"].clone();
    let r = s.exchange(&thief, &code, &c.redirect).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = s.exchange(&c, &code, &c.redirect).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = s
        .token_request(
            &c.tpp.dir,
            &c,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &c.redirect),
                ("code_verifier", verifier),
            ],
        )
        .await;
    assert_eq!(r.status(), 200, "the owner still redeems its code");
    s.stop().await;
}

#[tokio::test]
async fn production_refuses_sandbox_history_and_a_self_made_certificate() {
    // Finding 5: on a data directory once run as sandbox, production still
    // took client secrets and the sandbox PSUs; without [tls] it quietly
    // made its own CA.
    let sandbox = start_sandbox().await;
    let data = sandbox.data_dir();
    let keep = sandbox.stop().await;

    // The sandbox's own data directory.
    let cfg = production_config(keep.path(), &data);
    let e = format!("{:#}", aspen::start(cfg).await.err().expect("refused"));
    assert!(e.contains("was used by the sandbox profile"), "{e}");

    // A fresh directory, but the sandbox's database.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = production_config(dir.path(), &data);
    cfg.database_url = Some(format!("sqlite://{}", data.join("aspen.db").display()));
    let e = format!("{:#}", aspen::start(cfg).await.err().expect("refused"));
    assert!(e.contains("holds the sandbox's generated bank"), "{e}");

    // No server certificate of its own.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = production_config(dir.path(), &data);
    cfg.tls = Default::default();
    let e = format!("{:#}", aspen::start(cfg).await.err().expect("refused"));
    assert!(e.contains("tls.cert_file"), "{e}");

    // Fresh data, its own certificate: it starts, and nothing of the
    // sandbox answers.
    let dir = tempfile::tempdir().unwrap();
    let cfg = production_config(dir.path(), &data);
    let s = start_with(dir, cfg).await;
    let http = client_builder(&std::fs::read(data.join("ca.pem")).unwrap())
        .build()
        .unwrap();
    let r = http.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn forwarded_certificates_only_from_the_proxy() {
    // Finding 3: with header mode on, a client without a certificate sent
    // another TPP's public certificate in the header and got its tokens.
    let sandbox = start_sandbox().await;
    let c = sandbox.client_with("victim", json!({})).await;
    let cert_pem = std::fs::read_to_string(c.tpp.dir.join("transport.pem")).unwrap();
    let header =
        percent_encoding::utf8_percent_encode(&cert_pem, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let dir = sandbox.stop().await;

    // Startup refuses header mode that names no proxy.
    let mut cfg = sandbox_config(dir.path());
    cfg.proxy.trust_client_cert_header = true;
    assert!(cfg.validate().is_err());

    for (proxies, expected) in [
        (vec!["10.0.0.0/8".to_string()], 401),
        (vec!["127.0.0.1/32".into()], 200),
    ] {
        let mut cfg = sandbox_config(dir.path());
        cfg.proxy.trust_client_cert_header = true;
        cfg.proxy.trusted_addresses = proxies.clone();
        let s = aspen::start(cfg).await.unwrap();
        let url = format!("{}/token", s.public_url);
        let r = client_builder(&std::fs::read(dir.path().join("data/ca.pem")).unwrap())
            .build()
            .unwrap()
            .post(&url)
            .header("x-ssl-client-cert", &header)
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "accounts"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &c.tpp.assertion(&c.id, &url)),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), expected, "proxies {proxies:?}");
        s.stop().await;
    }
}

#[tokio::test]
async fn anonymous_visits_write_nothing_and_expired_state_is_purged() {
    // Finding 8: every anonymous dashboard visit wrote a session row, and
    // expired rows were never deleted.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    cfg.housekeeping.purge_interval_secs = 1;
    let s = start_with(dir, cfg).await;
    let before = session_rows(&s).await;
    for _ in 0..30 {
        let r = s
            .client()
            .get(s.url("/account/consents"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        session_rows(&s).await,
        before,
        "anonymous visits wrote rows"
    );

    // The cookie-only session still signs a PSU in, and a bad CSRF token
    // on sign-out changes nothing (finding 13).
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
    assert_eq!(r.status(), 303);
    let r = b.second_factor("rora").await;
    assert_eq!(r.status(), 303);
    let page = b
        .get(&s.url("/account/consents"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Connected applications"), "{page}");
    let dash_csrf = csrf_of(&page);
    let r = b.post("/logout", &[("csrf", "forged")]).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let r = b.get(&s.url("/account/consents")).await;
    assert!(
        r.text().await.unwrap().contains(&dash_csrf),
        "still signed in"
    );

    // An expired session row goes within a few purge intervals.
    let now = chrono::Utc::now().timestamp();
    s.server
        .store
        .insert_session(&aspen_store::consent::WebSession {
            id_hash: "expired-one".into(),
            kind: "authorize".into(),
            csrf: "x".into(),
            psu_id: None,
            auth_time: None,
            payload: json!({}),
            expires_at: now - 10,
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if s.server
            .store
            .session("expired-one", 0)
            .await
            .unwrap()
            .is_none()
        {
            break;
        }
        assert!(Instant::now() < deadline, "expired session never purged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.stop().await;
}

async fn session_rows(s: &TestServer) -> i64 {
    use sqlx::Row;
    let url = format!("sqlite://{}", s.data_dir().join("aspen.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let n = sqlx::query("SELECT COUNT(*) FROM web_sessions")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get::<i64, _>(0);
    pool.close().await;
    n
}

#[cfg(unix)]
#[tokio::test]
async fn data_directory_and_database_are_private() {
    // Finding 9: aspen.db and its WAL were world-readable, the directory 0755.
    use std::os::unix::fs::PermissionsExt;
    let s = start_sandbox().await;
    s.client_with("perm", json!({})).await;
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(s.data_dir()), 0o700);
    for f in ["aspen.db", "aspen.db-wal"] {
        assert_eq!(mode(s.data_dir().join(f)), 0o600, "{f}");
    }
    s.stop().await;
}

#[tokio::test]
async fn registration_management_needs_a_client_credentials_token() {
    // Finding 10 (DCR-4): a PSU's token read the registration.
    let s = start_sandbox().await;
    let c = s.client_with("dcr4", json!({"aspen_headless": true})).await;
    let consent = s.ais_consent(&c, ais_data()).await;
    let f = s.headless_fragment(&c, &consent, SCOPE).await;
    let t: Value = s.tokens(&c, &f["code"], &c.redirect).await;
    let psu_token = t["access_token"].as_str().unwrap();
    let get = |token: String| {
        let s = &s;
        let c = &c;
        async move {
            s.kit_client(&c.tpp.dir)
                .get(s.url(&format!("/register/{}", c.id)))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(get(psu_token.to_string()).await, 401);
    // The PSU token still works for what it was issued for.
    let r = s
        .kit_client(&c.tpp.dir)
        .get(s.url("/open-banking/v3.1/aisp/accounts"))
        .bearer_auth(psu_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cc = s.cc_token(&c.tpp, &c.id, "accounts").await;
    assert_eq!(get(cc).await, 200);
    s.stop().await;
}

#[tokio::test]
async fn payment_consent_for_an_account_the_psu_lacks_is_refused_at_authorisation() {
    // Finding 11 (PIS-13): it was authorised with no account, then funds
    // confirmation and the payment answered 500.
    let s = start_sandbox().await;
    let c = s
        .client_with("nodebtor", json!({"aspen_headless": true}))
        .await;
    let cc = s.cc_token(&c.tpp, &c.id, "payments").await;
    let mut init = domestic_initiation("5.00");
    init["DebtorAccount"] = json!({
        "SchemeName": "UK.OBIE.SortCodeAccountNumber",
        "Identification": "99999999999999",
        "Name": "Not A Customer",
    });
    let r = s
        .pis_post(
            &c,
            &cc,
            "/domestic-payment-consents",
            &domestic_consent_body(init),
            "nd-1",
        )
        .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["Data"]["ConsentId"]
        .as_str()
        .unwrap()
        .to_string();
    let f = s.headless_fragment(&c, &id, "openid payments").await;
    assert_eq!(
        f.get("error").map(String::as_str),
        Some("access_denied"),
        "{f:?}"
    );
    assert!(!f.contains_key("code"));
    // The consent was not authorised: its funds check is refused cleanly.
    let r = s
        .kit_client(&c.tpp.dir)
        .get(s.url(&format!(
            "/open-banking/v3.1/pisp/domestic-payment-consents/{id}/funds-confirmation"
        )))
        .bearer_auth(&cc)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    s.stop().await;
}

#[tokio::test]
async fn a_page_link_works_only_where_it_was_made() {
    // Finding 12: an account's transactions link replayed on a statement's
    // transactions returned rows outside the statement period.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    cfg.limits.page_size = 25;
    let s = start_with(dir, cfg).await;
    let c = s
        .client_with("pager", json!({"aspen_headless": true}))
        .await;
    let consent = s.ais_consent(&c, ais_data()).await;
    let f = s.headless_fragment(&c, &consent, SCOPE).await;
    let t: Value = s.tokens(&c, &f["code"], &c.redirect).await;
    let token = t["access_token"].as_str().unwrap().to_string();
    let get = |url: String| {
        let s = &s;
        let c = &c;
        let token = token.clone();
        async move {
            let r = s
                .kit_client(&c.tpp.dir)
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let aisp = s.url("/open-banking/v3.1/aisp");
    let (_, accounts) = get(format!("{aisp}/accounts")).await;
    let mut tried = false;
    for a in accounts["Data"]["Account"].as_array().unwrap() {
        let id = a["AccountId"].as_str().unwrap();
        let (_, st) = get(format!("{aisp}/accounts/{id}/statements")).await;
        let Some(sid) = st["Data"]["Statement"][0]["StatementId"].as_str() else {
            continue;
        };
        let (_, txs) = get(format!("{aisp}/accounts/{id}/transactions")).await;
        let Some(next) = txs["Links"]["Next"].as_str() else {
            continue;
        };
        let page = next.split_once("?page=").unwrap().1;
        let (status, body) = get(format!(
            "{aisp}/accounts/{id}/statements/{sid}/transactions?page={page}"
        ))
        .await;
        assert_eq!(status, 400, "{body:#}");
        assert_eq!(body["Errors"][0]["ErrorCode"], "UK.OBIE.Field.Invalid");
        // Nor on another account of the same consent.
        let other = accounts["Data"]["Account"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["AccountId"].as_str().unwrap())
            .find(|o| *o != id)
            .expect("a second account");
        let (status, body) = get(format!("{aisp}/accounts/{other}/transactions?page={page}")).await;
        assert_eq!(status, 400, "{body:#}");
        assert_eq!(body["Errors"][0]["ErrorCode"], "UK.OBIE.Field.Invalid");
        // The link still works where it was made.
        assert_eq!(get(next.to_string()).await.0, 200);
        tried = true;
        break;
    }
    assert!(tried, "no account with statements and a second page");
    s.stop().await;
}

#[tokio::test]
async fn pages_carry_the_browser_security_headers() {
    // Finding 13: no HSTS, X-Content-Type-Options or Referrer-Policy.
    let s = start_sandbox().await;
    for path in [
        "/account/consents",
        "/health",
        "/.well-known/openid-configuration",
    ] {
        let r = s.client().get(s.url(path)).send().await.unwrap();
        let h = r.headers();
        assert!(
            h.get("strict-transport-security")
                .is_some_and(|v| v.to_str().unwrap().starts_with("max-age=")),
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert!(h.contains_key("referrer-policy"), "{path}");
    }
    s.stop().await;
}
