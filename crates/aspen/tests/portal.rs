//! Issue 16, the developer portal at `/developers`: every page and every
//! internal link resolves (anchors included), the pages say what the
//! running server does — discovery's table, the sandbox customers, the
//! payment rules of the profile file the validator loads, every error
//! code — and the OpenAPI downloads are the official files byte for byte.
//! In Chromium: every page loads with no request leaving the server, and
//! basic accessibility holds (one h1, no skipped heading level, named
//! links, header cells, a language).

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use common::browser::{ready, run};
use common::*;
use serde_json::{Value, json};

fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let pat = format!("{attr}=\"");
    html.match_indices(&pat)
        .map(|(i, _)| html[i + pat.len()..].split('"').next().unwrap())
        .collect()
}

/// Every page reachable from `/developers` by its links: path → body.
async fn crawl(s: &TestServer) -> BTreeMap<String, String> {
    let http = s.client();
    let mut pages = BTreeMap::new();
    let mut todo = VecDeque::from(["/developers".to_string()]);
    let mut seen = BTreeSet::new();
    while let Some(path) = todo.pop_front() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let r = http.get(s.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        let body = r.text().await.unwrap();
        if !kind.starts_with("text/html") {
            pages.insert(path, String::new());
            continue;
        }
        for href in attr_values(&body, "href") {
            let target = href.split('#').next().unwrap();
            if target.starts_with("/developers") {
                todo.push_back(target.to_string());
            }
        }
        pages.insert(path, body);
    }
    pages
}

#[tokio::test]
async fn every_page_and_link_resolves_and_says_what_the_server_does() {
    let s = start_sandbox().await;
    let pages = crawl(&s).await;
    for p in [
        "/developers/sandbox",
        "/developers/authorisation",
        "/developers/apis",
        "/developers/apis/account-info",
        "/developers/apis/payment-initiation",
        "/developers/apis/core-connector",
        "/developers/payment-rules",
        "/developers/errors",
        "/developers/onboarding",
        "/developers/faq",
        "/developers/changelog",
        "/developers/openapi/account-info-openapi.yaml",
        "/developers/payment-rules.toml",
    ] {
        assert!(pages.contains_key(p), "{p} is linked from the portal");
    }
    // Every in-page anchor a link names exists on its page.
    for (path, body) in &pages {
        for href in attr_values(body, "href") {
            let Some((target, frag)) = href.split_once('#') else {
                continue;
            };
            let target = if target.is_empty() {
                path.as_str()
            } else {
                target
            };
            if !target.starts_with("/developers") {
                continue;
            }
            let page = &pages[target];
            assert!(
                page.contains(&format!("id=\"{frag}\"")),
                "{path} links to {href}, which has no such anchor"
            );
        }
    }

    // The issuer and the discovery table are this server's.
    let index = &pages["/developers"];
    assert!(index.contains(&s.server.public_url), "the real issuer");
    let discovery: Value = s
        .client()
        .get(s.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let auth = &pages["/developers/authorisation"];
    for key in [
        "token_endpoint_auth_methods_supported",
        "response_types_supported",
        "scopes_supported",
        "acr_values_supported",
        "aspen_permissive_token_endpoint_auth_methods_supported",
    ] {
        assert!(auth.contains(&format!("<code>{key}</code>")), "{key}");
        for v in discovery[key].as_array().unwrap() {
            assert!(
                auth.contains(&format!("<code>{}</code>", v.as_str().unwrap())),
                "{key}: {v}"
            );
        }
    }
    assert!(auth.contains(discovery["token_endpoint"].as_str().unwrap()));

    // The sandbox customers and their authenticator secrets.
    let sandbox = &pages["/developers/sandbox"];
    for l in aspen_sandbox::sandbox_logins(42) {
        assert!(sandbox.contains(&format!("<code>{}</code>", l.username)));
        if let Some(secret) = l.totp_secret {
            assert!(sandbox.contains(&secret), "{}'s secret", l.username);
        }
    }

    // Every OB error code and every aspen 403 code, with a cause.
    let errors = &pages["/developers/errors"];
    for c in aspen_http::ObErrorCode::ALL {
        assert!(errors.contains(&format!("id=\"{}\"", c.as_str())), "{c:?}");
    }
    for f in aspen_http::Forbidden::ALL {
        assert!(errors.contains(&format!("id=\"{}\"", f.code())), "{f:?}");
    }
    for e in [
        "invalid_client",
        "invalid_grant",
        "access_denied",
        "invalid_request_object",
    ] {
        assert!(errors.contains(&format!("id=\"{e}\"")), "{e}");
    }
    s.stop().await;
}

/// The payment rules page is rendered from the profile the validator
/// loads: every country row of the built-in file, with its schemes,
/// their bank details and the KYC fields; a payment that breaks a rule the
/// page states is refused.
#[tokio::test]
async fn payment_rules_match_the_profile_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    cfg.payments.profile = "stripe".into();
    let s = start_with(dir, cfg).await;
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/stripe.toml"))
            .unwrap();
    let profile: aspen_domain::payments::AspspProfile = toml::from_str(&text).unwrap();
    let http = s.client();
    let page = http
        .get(s.url("/developers/payment-rules"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let served = http
        .get(s.url("/developers/payment-rules.toml"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, text, "the file offered is the file loaded");
    assert!(!profile.countries.is_empty());
    for (code, rule) in &profile.countries {
        let row_at = page
            .find(&format!("data-country=\"{code}\""))
            .unwrap_or_else(|| panic!("country {code}"));
        let row = &page[row_at..page[row_at..].find("</tr>").unwrap() + row_at];
        for (scheme, fields) in &rule.schemes {
            assert!(
                row.contains(&format!("data-scheme=\"{scheme}\"")),
                "{code} {scheme}"
            );
            for f in fields {
                assert!(row.contains(f.as_str()), "{code} {scheme} {f}");
            }
        }
        for fields in rule.kyc.values() {
            for f in fields {
                assert!(row.contains(f.as_str()), "{code} {f}");
            }
        }
    }
    assert_eq!(
        page.matches("data-country=\"").count(),
        profile.countries.len(),
        "no country the file does not list"
    );
    for f in &profile.supplementary.required {
        assert!(page.contains(&format!("<li><code>{f}</code></li>")), "{f}");
    }
    for c in &profile.domestic.instructed_currencies {
        assert!(page.contains(c.as_str()));
    }
    // The page says a reference needs a run of letters and digits: the
    // validator refuses one without.
    let n = profile.reference.min_alphanumeric_run;
    assert!(page.contains(&format!("at least {n} letters and digits in a row")));
    let c = s.client_with("rulestpp", json!({})).await;
    let cc = s.cc_token(&c.tpp, &c.id, "payments").await;
    let mut initiation = domestic_initiation("1.00");
    initiation["RemittanceInformation"]["Reference"] = json!("AB-12");
    let r = s
        .pis_post(
            &c,
            &cc,
            "/domestic-payment-consents",
            &domestic_consent_body(initiation),
            "rules-1",
        )
        .await;
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["Errors"][0]["ErrorCode"], "UK.OBIE.Field.Invalid", "{b}");
    s.stop().await;
}

/// The OpenAPI files offered are the official ones, byte for byte, and the
/// connector's is aspen's own; each reference page lists every operation
/// of its file.
#[tokio::test]
async fn openapi_downloads_are_the_official_files() {
    let s = start_sandbox().await;
    let http = s.client();
    let official = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/standard/openapi"
    );
    for entry in std::fs::read_dir(official).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let r = http
            .get(s.url(&format!("/developers/openapi/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/yaml")
        );
        let body = r.bytes().await.unwrap();
        assert!(
            body == std::fs::read(&p).unwrap(),
            "{name} differs from the official file"
        );
        // Every operation of the file is on its reference page.
        let doc: Value = serde_yaml::from_slice(&body).unwrap();
        let slug = name.trim_end_matches("-openapi.yaml");
        let page = http
            .get(s.url(&format!("/developers/apis/{slug}")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in ["get", "post", "put", "delete", "patch"] {
                if item.get(m).is_some() {
                    assert!(
                        page.contains(&format!("{}</span> <code>", m.to_uppercase()))
                            && page.contains(&format!("{path}</code>")),
                        "{slug}: {m} {path}"
                    );
                }
            }
        }
    }
    let connector = http
        .get(s.url("/developers/openapi/core-connector-openapi.yaml"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let ours = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/connector-openapi.yaml"
    ))
    .unwrap();
    assert!(
        connector == ours,
        "the portal's connector API is docs/connector-openapi.yaml"
    );
    // The PIS reference names the bank's extras beside the schema.
    let pis = http
        .get(s.url("/developers/apis/payment-initiation"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pis.contains("SupplementaryData.CreditorAccount"));
    assert!(
        pis.contains("Data.Initiation.InstructedAmount.Amount"),
        "flattened schema paths"
    );
    let r = http.get(s.url("/developers/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    s.stop().await;
}

/// Chromium: every page loads, no request leaves the server, and basic
/// accessibility checks pass on each.
#[tokio::test]
async fn portal_pages_in_chromium() {
    if !ready() {
        return;
    }
    let s = start_sandbox().await;
    let pages: Vec<String> = crawl(&s)
        .await
        .into_iter()
        .filter(|(_, body)| !body.is_empty())
        .map(|(p, _)| s.url(&p))
        .collect();
    assert!(pages.len() >= 18, "{pages:?}");
    let seen = run(
        "portal.mjs",
        json!({ "pages": pages, "origin": s.server.public_url, "screenshots": std::env::var("ASPEN_SCREENSHOTS").ok() }),
    )
    .await;
    let problems = seen["problems"].as_array().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(seen["visited"], pages.len());
    s.stop().await;
}

/// In production the portal shows no test customers or sandbox-only
/// capabilities: what it says follows the profile in force.
#[tokio::test]
async fn production_portal_shows_production() {
    let sandbox = start_sandbox().await;
    let data = sandbox.data_dir();
    let _keep = sandbox.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = production_config(dir.path(), &data);
    cfg.trust.directory_issuers = vec!["OpenBanking Ltd".into()];
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::copy(data.join("ca.pem"), dir.path().join("data/ca.pem")).unwrap();
    let s = start_with(dir, cfg).await;
    let pages = crawl(&s).await;
    assert!(pages["/developers"].contains("production profile"));
    assert!(!pages["/developers"].contains("tpp register --headless"));
    let sandbox_page = &pages["/developers/sandbox"];
    for l in aspen_sandbox::sandbox_logins(42) {
        assert!(
            !sandbox_page.contains(&format!("<code>{}.</code>", l.username)),
            "{}",
            l.username
        );
    }
    let auth = &pages["/developers/authorisation"];
    assert!(!auth.contains("client_secret_basic"));
    assert!(!auth.contains("aspen_permissive"));
    assert!(pages["/developers/onboarding"].contains("<code>OpenBanking Ltd</code>"));
    s.stop().await;
}
