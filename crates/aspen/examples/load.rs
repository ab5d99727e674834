//! Load generator for BENCHMARKS.md: keep-alive mTLS connections against a
//! running aspen, as a TPP would connect.
//!
//! ```sh
//! cargo run --release -p aspen --example load -- token \
//!     --url https://127.0.0.1:8443 --kit tpp-kit --client-id ID --conns 16 --secs 10
//! cargo run --release -p aspen --example load -- get \
//!     --url https://127.0.0.1:8443/health --kit tpp-kit --conns 16 --secs 10
//! ```
//! `token` pre-signs every client assertion before the clock starts (each
//! `jti` is single-use), so the client is not the bottleneck.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

struct Args {
    mode: String,
    url: String,
    kit: PathBuf,
    client_id: String,
    conns: usize,
    secs: u64,
    bearer: Option<String>,
}

fn parse() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().context("mode: token | get | setup-ais")?;
    let mut a = Args {
        mode,
        url: "https://127.0.0.1:8443".into(),
        kit: PathBuf::from("tpp-kit"),
        client_id: String::new(),
        conns: 1,
        secs: 10,
        bearer: None,
    };
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => a.url = v,
            "--kit" => a.kit = v.into(),
            "--client-id" => a.client_id = v,
            "--conns" => a.conns = v.parse()?,
            "--secs" => a.secs = v.parse()?,
            "--bearer" => a.bearer = Some(v),
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

fn client(kit: &std::path::Path) -> Result<reqwest::Client> {
    let ca = std::fs::read(kit.join("ca.pem"))?;
    let mut ident = std::fs::read(kit.join("transport.pem"))?;
    ident.extend(std::fs::read(kit.join("transport-key.pem"))?);
    Ok(reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
        .identity(reqwest::Identity::from_pem(&ident)?)
        .pool_max_idle_per_host(1)
        .http1_only()
        .build()?)
}

/// Obtains an AIS access token as a TPP would: client-credentials token,
/// account-access consent, headless authorisation (the client must be
/// registered with `--headless`), code exchange. Prints the token and the
/// Financial Account's id.
async fn setup_ais(a: &Args, key: &aspen_jose::SigningKey) -> Result<()> {
    let c = client(&a.kit)?;
    let base = a.url.trim_end_matches('/');
    let token_url = format!("{base}/token");
    let assertion = |n: &str| {
        let now = chrono::Utc::now().timestamp();
        aspen_jose::sign_jwt(
            key,
            None,
            &serde_json::json!({
                "iss": a.client_id, "sub": a.client_id, "aud": token_url,
                "iat": now, "exp": now + 60, "jti": format!("setup-{n}-{now}-{}", std::process::id()),
            }),
        )
    };
    let cc: serde_json::Value = c
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "accounts"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion("cc")?),
        ])
        .send()
        .await?
        .json()
        .await?;
    let cc = cc["access_token"].as_str().context("no cc token")?;
    let consent: serde_json::Value = c
        .post(format!("{base}/open-banking/v3.1/aisp/account-access-consents"))
        .bearer_auth(cc)
        .json(&serde_json::json!({"Data": {"Permissions": ["ReadAccountsDetail", "ReadTransactionsDetail", "ReadTransactionsCredits", "ReadTransactionsDebits"]}, "Risk": {}}))
        .send().await?.json().await?;
    let consent_id = consent["Data"]["ConsentId"]
        .as_str()
        .context("no consent")?;
    let kit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.kit.join("kit.json"))?)?;
    let redirect = kit["redirect_uris"][0]
        .as_str()
        .context("kit has no redirect URI")?;
    let now = chrono::Utc::now().timestamp();
    let request = aspen_jose::sign_jwt(
        key,
        None,
        &serde_json::json!({
            "iss": a.client_id, "aud": base, "client_id": a.client_id, "response_type": "code id_token",
            "redirect_uri": redirect, "scope": "openid accounts", "nonce": "bench", "state": "bench",
            "nbf": now, "exp": now + 300,
            "claims": {"id_token": {"openbanking_intent_id": {"value": consent_id, "essential": true}}},
        }),
    )?;
    let noredirect = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(
            a.kit.join("ca.pem"),
        )?)?])
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let r = noredirect
        .get(format!("{base}/authorize"))
        .query(&[
            ("client_id", a.client_id.as_str()),
            ("response_type", "code id_token"),
            ("scope", "openid accounts"),
            ("redirect_uri", redirect),
            ("request", &request),
        ])
        .send()
        .await?;
    let location = r
        .headers()
        .get("location")
        .context("no redirect")?
        .to_str()?
        .to_string();
    let code = location
        .split(['#', '&'])
        .find_map(|kv| kv.strip_prefix("code="))
        .context("no code")?
        .to_string();
    let t: serde_json::Value = c
        .post(&token_url)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion("ac")?),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = t["access_token"].as_str().context("no access token")?;
    let accounts: serde_json::Value = c
        .get(format!("{base}/open-banking/v3.1/aisp/accounts"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let account = accounts["Data"]["Account"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["Description"] == "Financial Account"))
        .and_then(|x| x["AccountId"].as_str())
        .context("no Financial Account")?;
    println!("{token} {account}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = parse()?;
    let key = aspen_jose::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(a.kit.join("signing-key.pem"))?,
        None,
    )?;
    if a.mode == "setup-ais" {
        return setup_ais(&a, &key).await;
    }
    let token_url = format!("{}/token", a.url.trim_end_matches('/'));
    // Enough assertions for a generous upper bound of the rate.
    let budget = if a.mode == "token" {
        3000 * a.secs as usize
    } else {
        0
    };
    let now = chrono::Utc::now().timestamp();
    let assertions: Vec<String> = (0..budget)
        .map(|i| {
            aspen_jose::sign_jwt(
                &key,
                None,
                &serde_json::json!({
                    "iss": a.client_id, "sub": a.client_id, "aud": token_url,
                    "iat": now, "exp": now + 540, "jti": format!("load-{now}-{i}"),
                }),
            )
            .expect("sign")
        })
        .collect();
    let assertions = Arc::new(assertions);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(a.secs);
    let mut tasks = Vec::new();
    for _ in 0..a.conns {
        let c = client(&a.kit)?;
        let (mode, url, client_id, bearer) = (
            a.mode.clone(),
            a.url.clone(),
            a.client_id.clone(),
            a.bearer.clone(),
        );
        let (assertions, next, token_url) = (assertions.clone(), next.clone(), token_url.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let resp = if mode == "token" {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(assertion) = assertions.get(i) else {
                        break;
                    };
                    c.post(&token_url)
                        .form(&[
                            ("grant_type", "client_credentials"),
                            ("client_id", client_id.as_str()),
                            (
                                "client_assertion_type",
                                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                            ),
                            ("client_assertion", assertion.as_str()),
                        ])
                        .send()
                        .await
                } else {
                    let mut r = c.get(&url);
                    if let Some(b) = &bearer {
                        r = r.bearer_auth(b);
                    }
                    r.send().await
                };
                match resp {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "mode={} conns={} ok={} errors={} rps={:.0} p50={:.2}ms p99={:.2}ms",
        a.mode,
        a.conns,
        all.len(),
        errors,
        all.len() as f64 / a.secs as f64,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0
    );
    Ok(())
}
