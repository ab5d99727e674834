//! Load generator for BENCHMARKS.md: keep-alive mTLS connections against a
//! running aspen, as a TPP would connect.
//!
//! ```sh
//! cargo run --release -p aspen --example load -- token \
//!     --url https://127.0.0.1:8443 --kit tpp-kit --client-id ID --conns 16 --secs 10
//! cargo run --release -p aspen --example load -- get \
//!     --url https://127.0.0.1:8443/health --kit tpp-kit --conns 16 --secs 10
//! cargo run --release -p aspen --example load -- pis \
//!     --url https://127.0.0.1:8443 --kit tpp-kit --client-id HEADLESS_ID --conns 16 --secs 10 --count 3000
//! ```
//! `pis` needs a client registered with `--headless`.
//!
//! `token` pre-signs every client assertion before the clock starts (each
//! `jti` is single-use), so the client is not the bottleneck.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[derive(Clone)]
struct Args {
    mode: String,
    url: String,
    kit: PathBuf,
    client_id: String,
    conns: usize,
    secs: u64,
    bearer: Option<String>,
    /// `pis`: authorised consents prepared before the clock starts.
    count: usize,
    /// `pis --wait 1`: once prepared, say `ready` on stderr and start the
    /// clock at the next line on stdin (bench/profile-pis.sh zeroes the
    /// profiler's counters in between).
    wait: bool,
}

fn parse() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().context("mode: token | get | setup-ais | pis")?;
    let mut a = Args {
        mode,
        url: "https://127.0.0.1:8443".into(),
        kit: PathBuf::from("tpp-kit"),
        client_id: String::new(),
        conns: 1,
        secs: 10,
        bearer: None,
        count: 2000,
        wait: false,
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
            "--count" => a.count = v.parse()?,
            "--wait" => a.wait = v == "1",
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

/// A fresh `private_key_jwt` client assertion for the token endpoint.
fn assertion(a: &Args, key: &aspen_jose::SigningKey) -> Result<String> {
    let now = chrono::Utc::now().timestamp();
    Ok(aspen_jose::sign_jwt(
        key,
        None,
        &serde_json::json!({
            "iss": a.client_id, "sub": a.client_id,
            "aud": format!("{}/token", a.url.trim_end_matches('/')),
            "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string(),
        }),
    )?)
}

/// A client-credentials access token for `scope`.
async fn cc_token(
    a: &Args,
    key: &aspen_jose::SigningKey,
    c: &reqwest::Client,
    scope: &str,
) -> Result<String> {
    let t: serde_json::Value = c
        .post(format!("{}/token", a.url.trim_end_matches('/')))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion(a, key)?),
        ])
        .send()
        .await?
        .json()
        .await?;
    Ok(t["access_token"]
        .as_str()
        .context("no cc token")?
        .to_string())
}

/// The browser's side of `/authorize`: no client certificate, no redirects
/// followed.
fn browser(kit: &std::path::Path) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(
            kit.join("ca.pem"),
        )?)?])
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Obtains an AIS access token as a TPP would: client-credentials token,
/// account-access consent, headless authorisation (the client must be
/// registered with `--headless`), code exchange. Prints the token and the
/// Financial Account's id.
async fn setup_ais(a: &Args, key: &aspen_jose::SigningKey) -> Result<()> {
    let c = client(&a.kit)?;
    let base = a.url.trim_end_matches('/');
    let cc = cc_token(a, key, &c, "accounts").await?;
    let cc = cc.as_str();
    let consent: serde_json::Value = c
        .post(format!("{base}/open-banking/v3.1/aisp/account-access-consents"))
        .bearer_auth(cc)
        .json(&serde_json::json!({"Data": {"Permissions": ["ReadAccountsDetail", "ReadTransactionsDetail", "ReadTransactionsCredits", "ReadTransactionsDebits"]}, "Risk": {}}))
        .send().await?.json().await?;
    let consent_id = consent["Data"]["ConsentId"]
        .as_str()
        .context("no consent")?;
    let t = authorise(a, key, &c, &browser(&a.kit)?, consent_id, "openid accounts").await?;
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

/// Headless authorisation of a consent and the code exchange; the token
/// response.
async fn authorise(
    a: &Args,
    key: &aspen_jose::SigningKey,
    c: &reqwest::Client,
    noredirect: &reqwest::Client,
    consent_id: &str,
    scope: &str,
) -> Result<serde_json::Value> {
    let base = a.url.trim_end_matches('/');
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
            "redirect_uri": redirect, "scope": scope, "nonce": "bench", "state": "bench",
            "nbf": now, "exp": now + 300,
            "claims": {"id_token": {"openbanking_intent_id": {"value": consent_id, "essential": true}}},
        }),
    )?;
    let r = noredirect
        .get(format!("{base}/authorize"))
        .query(&[
            ("client_id", a.client_id.as_str()),
            ("response_type", "code id_token"),
            ("scope", scope),
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
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion(a, key)?),
        ])
        .send()
        .await?
        .json()
        .await?;
    Ok(t)
}

/// `pis`: domestic payment submissions. Before the clock starts it creates
/// and authorises enough consents (a consent pays once) and pre-signs each
/// order body, so each timed request costs the server one request-signature
/// verification and one response signature, plus the payment itself.
async fn pis(a: &Args, key: &aspen_jose::SigningKey) -> Result<()> {
    let base = a.url.trim_end_matches('/').to_string();
    let c = client(&a.kit)?;
    let kit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.kit.join("kit.json"))?)?;
    let iss = format!(
        "{}/{}",
        kit["org_id"].as_str().context("kit org_id")?,
        kit["software_id"].as_str().context("kit software_id")?
    );
    let cc = cc_token(a, key, &c, "payments").await?;
    let initiation = serde_json::json!({
        "InstructionIdentification": "LOAD1", "EndToEndIdentification": "LOAD1",
        "InstructedAmount": { "Amount": "0.01", "Currency": "GBP" },
        "CreditorAccount": { "SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": "08080021325698", "Name": "Load" },
        "RemittanceInformation": { "Reference": "LOAD-123456" },
        "SupplementaryData": { "CreditorAccount": { "Email": "load@example.com", "EntityType": "company", "BusinessDetails": {} } },
    });
    let consent_body = serde_json::to_vec(
        &serde_json::json!({ "Data": { "Initiation": initiation }, "Risk": {} }),
    )?;
    let n = a.count;
    eprintln!("preparing {n} authorised consents");
    let prepared = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(n)));
    let mut setup = Vec::new();
    let per = n.div_ceil(8);
    for w in 0..8 {
        let (c, nr, cc, base, key, iss, body, initiation, prepared) = (
            client(&a.kit)?,
            browser(&a.kit)?,
            cc.clone(),
            base.clone(),
            key.clone(),
            iss.clone(),
            consent_body.clone(),
            initiation.clone(),
            prepared.clone(),
        );
        let a = a.clone();
        setup.push(tokio::spawn(async move {
            for i in 0..per {
                if w * per + i >= n {
                    break;
                }
                let sig = aspen_jose::sign_detached(&key, &body, &iss, "openbanking.org.uk", chrono::Utc::now().timestamp(), None)?;
                let v: serde_json::Value = c
                    .post(format!("{base}/open-banking/v3.1/pisp/domestic-payment-consents"))
                    .bearer_auth(&cc)
                    .header("content-type", "application/json")
                    .header("x-idempotency-key", uuid::Uuid::new_v4().to_string())
                    .header("x-jws-signature", sig)
                    .body(body.clone())
                    .send().await?.json().await?;
                let consent = v["Data"]["ConsentId"].as_str().context("no consent")?.to_string();
                let t = authorise(&a, &key, &c, &nr, &consent, "openid payments").await?;
                let token = t["access_token"].as_str().context("no access token")?.to_string();
                let order = serde_json::to_vec(&serde_json::json!({ "Data": { "ConsentId": consent, "Initiation": initiation }, "Risk": {} }))?;
                prepared.lock().await.push((token, order));
            }
            anyhow::Ok(())
        }));
    }
    for t in setup {
        t.await??;
    }
    // Signed just before the clock starts: `iat` stays within its window.
    let now = chrono::Utc::now().timestamp();
    let jobs: Vec<(String, Vec<u8>, String)> = std::mem::take(&mut *prepared.lock().await)
        .into_iter()
        .map(|(t, o)| {
            let sig = aspen_jose::sign_detached(key, &o, &iss, "openbanking.org.uk", now, None)
                .expect("sign");
            (t, o, sig)
        })
        .collect();
    let jobs = Arc::new(jobs);
    if a.wait {
        eprintln!("ready");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
    }
    // Keys are unique per run: a replayed key would measure the replay path.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(a.secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.conns {
        let (c, jobs, next, run, url) = (
            client(&a.kit)?,
            jobs.clone(),
            next.clone(),
            run.clone(),
            format!("{base}/open-banking/v3.1/pisp/domestic-payments"),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((token, order, sig)) = jobs.get(i) else {
                    break;
                };
                let t = Instant::now();
                let r = c
                    .post(&url)
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .header("x-idempotency-key", format!("{run}-{i}"))
                    .header("x-jws-signature", sig)
                    .body(order.clone())
                    .send()
                    .await;
                match r {
                    Ok(r)
                        if r.status().as_u16() == 201
                            && r.headers().contains_key("x-jws-signature") =>
                    {
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
    let elapsed = started
        .elapsed()
        .min(Duration::from_secs(a.secs))
        .as_secs_f64();
    report(&a.mode, a.conns, all, errors, elapsed);
    Ok(())
}

fn report(mode: &str, conns: usize, mut all: Vec<Duration>, errors: u64, secs: f64) {
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "mode={} conns={} ok={} errors={} rps={:.0} p50={:.2}ms p99={:.2}ms",
        mode,
        conns,
        all.len(),
        errors,
        all.len() as f64 / secs,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0
    );
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
    if a.mode == "pis" {
        return pis(&a, &key).await;
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
    report(&a.mode, a.conns, all, errors, a.secs as f64);
    Ok(())
}
