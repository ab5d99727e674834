//! Wiring: data directory, keys, trust, store, sandbox world, routers and
//! the listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use aspen_http::{ObError, PeerCert};
use aspen_store::Store;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rustls::server::danger::ClientCertVerifier;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::Layer;

use crate::config::{Config, Profile};
use crate::datadir::{DataDir, KeyRing};
use crate::{edge, ops, tls};

/// Everything the routers share.
pub struct Runtime {
    /// Seals AIS page links; from the shared key directory.
    pub link_key: Arc<aws_lc_rs::hmac::Key>,
    pub config: Config,
    pub auth: aspen_auth::AuthConfig,
    pub data: DataDir,
    pub store: Arc<dyn Store>,
    pub keys: KeyRing,
    /// The bank's directory org id (configured, or made once per data
    /// directory).
    pub aspsp_org_id: String,
    pub verifier: Arc<dyn ClientCertVerifier>,
    pub tls: Arc<rustls::ServerConfig>,
    pub payment_profile: aspen_domain::payments::AspspProfile,
    /// The payment rules as loaded, and where from (the portal shows both).
    pub payment_profile_text: String,
    pub payment_profile_source: String,
    pub rates: aspen_domain::payments::RateTable,
    /// The bank's core: the builtin ledger or the connector.
    pub core: Arc<dyn aspen_core::Core>,
    /// The builtin ledger's execution loop, when the core is builtin.
    pub ledger: Option<Arc<aspen_core::builtin::BuiltinCore>>,
    pub payment_sync: Arc<aspen_core::sync::PaymentSync>,
}

const STRIPE_PROFILE: &str = include_str!("../profiles/stripe.toml");
const OB_PROFILE: &str = include_str!("../profiles/ob.toml");

/// The ASPSP payment rules: the configured file, or the built-in ones.
fn payment_profile(
    config: &Config,
) -> Result<(aspen_domain::payments::AspspProfile, String, String)> {
    let (text, origin) = match &config.payments.profile_file {
        Some(p) => (
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read payments.profile_file {}", p.display()))?,
            p.display().to_string(),
        ),
        None if config.payments.profile == "ob" => {
            (OB_PROFILE.to_string(), "built-in ob profile".into())
        }
        None => (STRIPE_PROFILE.to_string(), "built-in stripe profile".into()),
    };
    let profile: aspen_domain::payments::AspspProfile = toml::from_str(&text)
        .with_context(|| format!("payments.profile_file: {origin} is invalid"))?;
    if let Some(bad) = profile
        .countries
        .keys()
        .find(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
    {
        anyhow::bail!(
            "payments.profile_file: {origin}: countries.{bad} is not an ISO 3166 alpha-2 code"
        );
    }
    Ok((profile, text, origin))
}

fn rate_table(config: &Config) -> Result<aspen_domain::payments::RateTable> {
    let mut rates = std::collections::BTreeMap::new();
    for (ccy, r) in &config.payments.rates {
        let v = aspen_domain::payments::parse_rate(r)
            .with_context(|| format!("payments.rates.{ccy}: {r:?} is not a positive decimal"))?;
        rates.insert(ccy.clone(), v);
    }
    Ok(aspen_domain::payments::RateTable {
        base: config.payments.rates_base.clone(),
        rates,
    })
}

/// The ledger's execution timing from `[payments]`.
pub fn ledger_timing(config: &Config) -> aspen_core::builtin::Timing {
    aspen_core::builtin::Timing {
        accept_after_ms: config.payments.accept_after_ms,
        settle_after_ms: config.payments.settle_after_ms,
        poll: Duration::from_millis(config.payments.poll_interval_ms.max(10)),
    }
}

type CoreParts = (
    Arc<dyn aspen_core::Core>,
    Option<Arc<aspen_core::builtin::BuiltinCore>>,
);

/// The core named by `[core]`: the builtin ledger on this store, or the
/// connector over mTLS (certificates from the data directory's connector
/// PKI unless configured).
fn build_core(config: &Config, data: &DataDir, store: &Arc<dyn Store>) -> Result<CoreParts> {
    if config.core.kind != "http" {
        let ledger = Arc::new(aspen_core::builtin::BuiltinCore::new(
            store.clone(),
            ledger_timing(config),
        ));
        return Ok((ledger.clone(), Some(ledger)));
    }
    let c = &config.core;
    let (ca, cert, key) = match (&c.ca_file, &c.cert_file, &c.key_file) {
        (Some(ca), Some(cert), Some(key)) => (ca.clone(), cert.clone(), key.clone()),
        _ => {
            let pki = data.connector_pki()?;
            (
                c.ca_file.clone().unwrap_or(pki.ca_file),
                c.cert_file.clone().unwrap_or(pki.client_cert),
                c.key_file.clone().unwrap_or(pki.client_key),
            )
        }
    };
    let tls = tls::mtls_client_config(&[ca], &cert, &key).context("core connector TLS")?;
    let core = aspen_core::http::HttpCore::new(
        aspen_core::http::HttpCoreOptions {
            url: c.url.clone().unwrap_or_default(),
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            timeout: Duration::from_millis(c.timeout_ms),
            retries: c.retries,
            breaker_failures: c.breaker_failures,
            breaker_open: Duration::from_secs(c.breaker_open_secs.max(1)),
        },
        tls,
    )?;
    Ok((Arc::new(core), None))
}

/// Opens (or creates) the data directory, the keys and the store, and seeds
/// the sandbox world. Shared by `serve` and the tests.
pub async fn prepare(config: Config) -> Result<Runtime> {
    // Also when the configuration was built in code rather than loaded.
    config.validate()?;
    let data = DataDir::open(&config.data_dir)?;
    if config.profile == Profile::Production {
        refuse_sandbox_history(&config, &data)?;
    }
    let mut ca_files = config.trust.client_ca_files.clone();
    let (cert_file, key_file) = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let ca = data.sandbox_ca()?;
            let host = config
                .public_url
                .as_deref()
                .and_then(|u| u.strip_prefix("https://"))
                .and_then(|h| h.split([':', '/']).next())
                .map(str::to_string);
            data.server_cert(&ca, host.as_slice())?
        }
    };
    if config.profile == Profile::Sandbox {
        data.sandbox_ca()?;
        data.directory_key()?;
        ca_files.insert(0, data.ca_cert_path());
    }
    let aspsp_org_id = match &config.aspsp_org_id {
        Some(id) => id.clone(),
        None => data.aspsp_org_id()?,
    };
    let mut keys = data.keyring()?;
    if config.profile == Profile::Sandbox {
        keys.certify_missing(&data.sandbox_ca()?, &config.branding.name, &aspsp_org_id)?;
    } else {
        for kid in keys.uncertified() {
            tracing::warn!(
                %kid,
                "signing key has no certificate (keys/{kid}.crt.pem): /jwks publishes it without x5c, \
                 and OB clients that check response signatures against the directory will refuse them"
            );
        }
    }
    let roots = tls::root_store(&ca_files)?;
    let verifier = tls::client_verifier(roots)?;
    let tls = tls::server_config(&cert_file, &key_file, verifier.clone())?;

    let url = config.database_url();
    if config.database_url.is_none() {
        data.protect_database_files()?;
    }
    let store = aspen_store::connect(&url)
        .await
        .with_context(|| format!("cannot open database {}", redact(&url)))?;
    store.migrate().await.context("database migration failed")?;
    if config.profile == Profile::Production && store.seed_state().await?.is_some() {
        anyhow::bail!(
            "the database {} holds the sandbox's generated bank (sandbox PSUs and accounts); \
             the production profile needs a database of its own: set database_url to a new one",
            redact(&url)
        );
    }
    if config.profile == Profile::Sandbox {
        let report = aspen_sandbox::seed(
            store.as_ref(),
            &aspen_sandbox::SeedConfig {
                seed: config.sandbox.seed,
                bulk_transactions: config.sandbox.transactions,
            },
        )
        .await
        .context("seeding the sandbox failed")?;
        tracing::info!(?report, "sandbox world ready");
    }
    let auth = auth_config(&config, &data, &aspsp_org_id)?;
    if config.profile == Profile::Sandbox {
        let sealer = auth.factor_box.clone();
        aspen_sandbox::seed_factors(store.as_ref(), config.sandbox.seed, &move |s| {
            sealer.seal(s)
        })
        .await
        .context("seeding the sandbox authenticators failed")?;
    }
    let link_key = Arc::new(aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        &data.link_secret()?,
    ));
    let (payment_profile, payment_profile_text, payment_profile_source) = payment_profile(&config)?;
    let rates = rate_table(&config)?;
    let (core, ledger) = build_core(&config, &data, &store)?;
    let payment_sync = Arc::new(aspen_core::sync::PaymentSync::new(
        store.clone(),
        core.clone(),
        Duration::from_millis(config.core.payment_poll_ms.max(10)),
        Duration::from_millis(config.core.payment_retry_ms.max(10)),
    ));
    Ok(Runtime {
        payment_profile,
        payment_profile_text,
        payment_profile_source,
        rates,
        core,
        ledger,
        payment_sync,
        link_key,
        config,
        auth,
        data,
        store,
        keys,
        aspsp_org_id,
        verifier,
        tls,
    })
}

/// The production profile starts only on data that never ran as a sandbox
/// and with the operator's own server certificate: a sandbox CA, directory
/// key or self-made server certificate would quietly widen trust.
fn refuse_sandbox_history(config: &Config, data: &DataDir) -> Result<()> {
    if config.tls.cert_file.is_none() {
        anyhow::bail!(
            "the production profile needs the bank's own server certificate: set tls.cert_file and \
             tls.key_file (PEM) in the configuration or ASPEN_TLS__CERT_FILE / ASPEN_TLS__KEY_FILE"
        );
    }
    if let Some(found) = data.sandbox_artifacts().first() {
        anyhow::bail!(
            "the data directory {} was used by the sandbox profile ({} exists); the production \
             profile needs a fresh data directory: set data_dir to a new, empty one",
            data.root.display(),
            found.display()
        );
    }
    Ok(())
}

/// The authorisation server's settings from the configuration and the data
/// directory's sandbox trust anchors.
fn auth_config(
    config: &Config,
    data: &DataDir,
    aspsp_org_id: &str,
) -> Result<aspen_auth::AuthConfig> {
    let mut directory_files = config.trust.directory_jwks_files.clone();
    let mut issuers = config.trust.directory_issuers.clone();
    if config.profile == Profile::Sandbox {
        directory_files.insert(0, data.directory_jwks_path());
        issuers.push(config.sandbox.directory_issuer.clone());
    }
    let mut keys = Vec::new();
    for path in &directory_files {
        let jwks = read_jwks(path)?;
        keys.extend(
            jwks.to_value()["keys"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    let directory_jwks = aspen_jose::Jwks::from_value(&serde_json::json!({ "keys": keys }))
        .context("directory JWKS files hold no usable keys")?;
    let mut jwks_url_map = Vec::new();
    for (url, path) in &config.trust.jwks_url_map {
        jwks_url_map.push((url.clone(), read_jwks(path)?));
    }
    let factor_box = aspen_auth::sealed::SecretBox::new(&data.factor_key()?)
        .context("keys/factor-key must hold 32 bytes")?;
    Ok(aspen_auth::AuthConfig {
        issuer: String::new(),
        passkey_rp_id: config.psu_auth.passkey_rp_id.clone(),
        factor_box: Arc::new(factor_box),
        profile: match config.profile {
            Profile::Sandbox => aspen_auth::ServerProfile::Sandbox,
            Profile::Production => aspen_auth::ServerProfile::Production,
        },
        aspsp_org_id: Some(aspsp_org_id.to_string()),
        directory_issuers: issuers,
        directory_jwks,
        ssa_max_age: Duration::from_secs(config.trust.ssa_max_age_days * 86_400),
        client_credentials_ttl: Duration::from_secs(config.tokens.client_credentials_ttl_secs),
        jwks_url_map,
        jwks_fetch_timeout: Duration::from_secs(5),
        access_token_ttl: Duration::from_secs(config.tokens.access_token_ttl_secs),
        code_ttl: Duration::from_secs(config.tokens.code_ttl_secs),
        id_token_ttl: Duration::from_secs(600),
        session_ttl: Duration::from_secs(config.tokens.session_ttl_secs),
        default_psu: config.sandbox.default_psu.clone(),
        login_per_psu: aspen_store::consent::ThrottleRule {
            limit: config.psu_login.max_attempts_per_psu,
            window: config.psu_login.window_secs,
            lock_secs: config.psu_login.lockout_secs,
        },
        login_per_address: aspen_store::consent::ThrottleRule {
            limit: config.psu_login.max_attempts_per_address,
            window: config.psu_login.window_secs,
            lock_secs: config.psu_login.lockout_secs,
        },
        brand: aspen_auth::web::Brand {
            name: config.branding.name.clone(),
            colour: config.branding.primary_colour.clone(),
            logo: match &config.branding.logo_file {
                Some(p) => Some(logo_data_uri(p)?),
                None => None,
            },
        },
        psu_auth: psu_auth(config)?,
    })
}

/// The PSU sign-in provider; an upstream's key and trust anchors are read
/// now, so a bad file stops the start rather than the first sign-in. The
/// upstream itself is not contacted: a node starts while it is down.
fn psu_auth(config: &Config) -> Result<aspen_auth::PsuAuth> {
    use aspen_auth::upstream::{ClientAuth, Upstream, UpstreamConfig};
    let Some(o) = config
        .psu_auth
        .oidc
        .as_ref()
        .filter(|_| config.psu_auth.provider == "oidc")
    else {
        return Ok(aspen_auth::PsuAuth::Builtin);
    };
    let auth = match (&o.client_secret, &o.client_key_file) {
        (Some(secret), _) => ClientAuth::Secret(secret.clone()),
        (None, Some(path)) => {
            let pem = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read psu_auth.oidc.client_key_file {}",
                    path.display()
                )
            })?;
            let key = aspen_auth::upstream::load_client_key(&pem, o.client_key_id.clone())
                .map_err(|e| {
                    anyhow::anyhow!("psu_auth.oidc.client_key_file {}: {e}", path.display())
                })?;
            ClientAuth::PrivateKeyJwt(key)
        }
        (None, None) => anyhow::bail!("psu_auth.oidc needs client_secret or client_key_file"),
    };
    let ca_pem = match &o.ca_file {
        Some(p) => Some(
            std::fs::read(p)
                .with_context(|| format!("cannot read psu_auth.oidc.ca_file {}", p.display()))?,
        ),
        None => None,
    };
    let upstream = Upstream::new(UpstreamConfig {
        issuer: o.issuer.clone(),
        client_id: o.client_id.clone(),
        auth,
        ca_pem,
        scope: o.scope.clone(),
        acr_values: o.acr_values.clone(),
        connect_timeout: Duration::from_millis(o.connect_timeout_ms),
        timeout: Duration::from_millis(o.timeout_ms),
    })?;
    tracing::info!(issuer = %o.issuer, "PSUs sign in at the upstream OpenID provider");
    Ok(aspen_auth::PsuAuth::Oidc(Arc::new(upstream)))
}

/// The logo inlined as a `data:` URI: the pages load no external assets.
fn logo_data_uri(path: &std::path::Path) -> Result<String> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read logo {}", path.display()))?;
    let mime = match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        other => anyhow::bail!(
            "branding.logo_file: unsupported image type {other:?} (svg, png, jpg, gif)"
        ),
    };
    use base64::Engine;
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

fn read_jwks(path: &std::path::Path) -> Result<aspen_jose::Jwks> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read JWKS file {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    aspen_jose::Jwks::from_value(&value)
        .with_context(|| format!("{} is not a usable JWKS", path.display()))
}

/// The authorisation server state for a given public URL.
pub fn auth_state(rt: &Runtime, public_url: &str) -> aspen_auth::AuthState {
    let mut cfg = rt.auth.clone();
    cfg.issuer = public_url.to_string();
    let keys = aspen_auth::ServerKeys {
        current: rt.keys.current().clone(),
        published: rt.keys.keys.clone(),
    };
    aspen_auth::AuthState::new(cfg, rt.store.clone(), rt.core.clone(), keys)
}

fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_user, host)) => {
            let scheme = scheme_user.split("://").next().unwrap_or("");
            format!("{scheme}://…@{host}")
        }
        None => url.to_string(),
    }
}

/// Payment settings; request signatures are checked with the authorisation
/// server's key caches (one per node, not one per use).
fn pis_settings(rt: &Runtime, auth: &aspen_auth::AuthState) -> Result<aspen_api::pis::PisSettings> {
    let p = &rt.config.payments;
    Ok(aspen_api::pis::PisSettings {
        profile: rt.payment_profile.clone(),
        rates: rt.rates.clone(),
        // COMMON-30: the ASPSP signs as its directory org id.
        iss: rt.aspsp_org_id.clone(),
        tan: p.tan.clone(),
        trusted_tans: p.trusted_tans.clone(),
        iat_max_age: p.iat_max_age_secs,
        iat_future_skew: p.iat_future_skew_secs,
        consent_ttl_ms: p.consent_ttl_secs * 1000,
        quote_ttl_ms: p.quote_ttl_secs * 1000,
        agreed_tolerance_bp: p.agreed_tolerance_bp,
        signing_key: rt.keys.current().clone(),
        tpp_keys: auth.tpp_keys.clone(),
        client_keys: auth.client_keys.clone(),
        payments: rt.payment_sync.clone(),
    })
}

/// Signs SETs as the bank: the current key, the public URL as `iss`.
fn set_signer(rt: &Runtime, public_url: &str) -> Arc<aspen_events::SetSigner> {
    Arc::new(aspen_events::SetSigner {
        key: rt.keys.current().clone(),
        issuer: public_url.to_string(),
        base_url: public_url.to_string(),
    })
}

/// Pushes events to TPP callbacks: TLS to servers whose certificates chain
/// to the transport CAs aspen trusts for TPPs (the OB issuing CAs; the
/// sandbox CA in the sandbox) or to the system roots; no client
/// certificate (EVT-20).
fn deliverer(rt: &Runtime, public_url: &str) -> Result<aspen_events::Deliverer> {
    let mut ca_files = rt.config.trust.client_ca_files.clone();
    if rt.config.profile == Profile::Sandbox {
        ca_files.push(rt.data.ca_cert_path());
    }
    let mut roots = Vec::new();
    for f in &ca_files {
        let pem = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        roots.extend(
            reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("bad PEM in {}", f.display()))?,
        );
    }
    let e = &rt.config.events;
    let http = reqwest::Client::builder()
        .tls_certs_merge(roots)
        .connect_timeout(Duration::from_secs(e.push_timeout_secs))
        .timeout(Duration::from_secs(e.push_timeout_secs))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("event delivery client")?;
    Ok(aspen_events::Deliverer::new(
        rt.store.clone(),
        set_signer(rt, public_url),
        http,
        aspen_events::DeliveryConfig {
            timeout: Duration::from_secs(e.push_timeout_secs),
            retry_base: Duration::from_millis(e.retry_base_ms.max(10)),
            retry_cap: Duration::from_secs(e.retry_cap_secs.max(1)),
            max_attempts: e.max_attempts,
            poll: Duration::from_millis(e.delivery_poll_ms.max(10)),
            financial_id: rt.aspsp_org_id.clone(),
        },
    ))
}

/// The whole HTTP application.
pub fn app(
    rt: &Runtime,
    public_url: &str,
) -> Result<
    edge::Edge<
        impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
    >,
> {
    let ops_state = ops::OpsState {
        store: rt.store.clone(),
        metrics: ops::metrics_handle(),
    };
    let auth = auth_state(rt, public_url);
    let api = aspen_api::ApiState::new(aspen_api::ApiStateInner {
        store: rt.store.clone(),
        core: rt.core.clone(),
        events: Arc::new(aspen_api::events::EventSettings {
            signer: set_signer(rt, public_url),
            max_events: rt.config.events.max_events,
            long_poll: Duration::from_secs(rt.config.events.long_poll_secs),
            allow_private_callbacks: rt.config.profile == Profile::Sandbox,
        }),
        schemas: Arc::new(aspen_api::pis_schema::Schemas::load(true).map_err(anyhow::Error::msg)?),
        base_url: public_url.to_string(),
        strict: true,
        link_key: rt.link_key.clone(),
        page_size: rt.config.limits.page_size,
        pis: Arc::new(pis_settings(rt, &auth)?),
    });
    let portal = portal(rt, &auth);
    let mut router = Router::new()
        .merge(ops::router(ops_state))
        .merge(aspen_auth::router(auth))
        .merge(aspen_api::router(api.clone()))
        .merge(portal.router());
    if rt.config.profile == Profile::Sandbox {
        router = router.route("/sandbox/whoami", axum::routing::get(whoami));
    }
    let proxy = edge::ProxyCert {
        enabled: rt.config.proxy.trust_client_cert_header,
        header: rt.config.proxy.client_cert_header.clone(),
        verifier: rt.verifier.clone(),
        addresses: proxy_networks(&rt.config),
        subjects: rt
            .config
            .proxy
            .trusted_subject_dns
            .iter()
            .filter_map(|d| aspen_http::client_cert::Dn::parse(d))
            .collect(),
    };
    let router = router
        .route_layer(aspen_http::metrics_layer::TrackLayer::default())
        .fallback(fallback);
    // Around the router, not through `Router::layer`: that wraps every
    // route in the stack, boxed and cloned with everything in it on every
    // request (issue 15, BENCHMARKS.md). The extractors' own body limit is
    // set the same way, as a plain service around the router.
    Ok(edge::Edge::new(
        DefaultBodyLimit::max(rt.config.limits.max_body_bytes).layer(router),
        edge::EdgeSettings {
            proxy,
            api,
            request_timeout: Duration::from_secs(rt.config.limits.request_timeout_secs),
            max_body_bytes: rt.config.limits.max_body_bytes,
        },
    ))
}

/// Shows the verified client certificate: lets a TPP developer check that
/// their transport certificate is accepted before they register.
async fn whoami(axum::Extension(PeerCert(cert)): axum::Extension<PeerCert>) -> Response {
    match cert {
        Some(c) => aspen_http::Json(serde_json::json!({
            "subject_dn": c.subject_dn,
            "x5t#S256": c.thumbprint,
        }))
        .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            aspen_http::Json(serde_json::json!({
                "error": "invalid_client",
                "error_description": "no client certificate was presented",
            })),
        )
            .into_response(),
    }
}

/// The developer portal, rendered from this node's configuration.
fn portal(rt: &Runtime, auth: &aspen_auth::AuthState) -> aspen_portal::Portal {
    let c = &rt.config;
    let sandbox = c.profile == Profile::Sandbox;
    let input = aspen_portal::PortalInput {
        bank_name: c.branding.name.clone(),
        colour: auth.config.brand.colour.clone(),
        issuer: auth.config.issuer.clone(),
        profile: c.profile.to_string(),
        discovery: aspen_auth::discovery::document(&auth.config),
        sandbox_psus: if sandbox {
            aspen_sandbox::sandbox_logins(c.sandbox.seed)
                .into_iter()
                .map(|l| aspen_portal::TestPsu {
                    username: l.username.to_string(),
                    password: l.password.to_string(),
                    totp_secret: l.totp_secret,
                })
                .collect()
        } else {
            Vec::new()
        },
        headless_psu: c.sandbox.default_psu.clone(),
        rules: rt.payment_profile.clone(),
        rules_source: rt.payment_profile_source.clone(),
        rules_text: rt.payment_profile_text.clone(),
        aspsp_org_id: auth.config.aspsp_org_id.clone().unwrap_or_default(),
        directory_issuers: auth.config.directory_issuers.clone(),
        passkeys: auth.passkeys.is_some(),
    };
    aspen_portal::Portal::new(input)
}

async fn fallback(req: Request) -> Response {
    metrics::counter!(aspen_http::metrics_layer::REQUESTS,
        "method" => aspen_http::metrics_layer::method_label(req.method()), "route" => "unmatched", "status" => "404")
    .increment(1);
    if edge::is_open_banking(req.uri().path()) {
        ObError::not_found().into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            aspen_http::Json(serde_json::json!({ "error": "not_found" })),
        )
            .into_response()
    }
}

/// `proxy.trusted_addresses`, validated with the configuration.
fn proxy_networks(config: &Config) -> Vec<ipnet::IpNet> {
    config
        .proxy
        .trusted_addresses
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// A running server.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub aspsp_org_id: String,
    pub public_url: String,
    pub data_dir: std::path::PathBuf,
    pub store: Arc<dyn Store>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningServer {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops (Ctrl-C / SIGTERM in `serve`).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Purges expired short-lived state on every node, in bounded batches:
/// several nodes purging at once only share the work.
async fn housekeeping(
    store: Arc<dyn Store>,
    cfg: crate::config::HousekeepingConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.purge_interval_secs));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        // Consents that lapsed while authorised: their TPPs hear of it.
        match store
            .expire_consents(chrono::Utc::now().timestamp_millis(), cfg.purge_batch)
            .await
        {
            Ok(n) if n > 0 => tracing::info!(consents = n, "expired consents noticed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "noticing expired consents failed"),
        }
        // A few batches per tick at most, so one node never holds the
        // database for long; the rest waits for the next tick.
        for _ in 0..10 {
            let now = chrono::Utc::now().timestamp();
            match store.purge_expired(now, cfg.purge_batch).await {
                Ok(n) if (n as i64) < cfg.purge_batch => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "purging expired state failed");
                    break;
                }
            }
        }
    }
}

pub async fn start(config: Config) -> Result<RunningServer> {
    let addr = config.listen_addr()?;
    let rt = prepare(config).await?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let public_url = rt
        .config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://{addr}"));
    let app = app(&rt, &public_url)?;
    let (tx, rx) = watch::channel(false);
    if let Some(ledger) = &rt.ledger {
        tokio::spawn(ledger.clone().run(rx.clone()));
    }
    tokio::spawn(rt.payment_sync.clone().run(rx.clone()));
    tokio::spawn(Arc::new(deliverer(&rt, &public_url)?).run(rx.clone()));
    tokio::spawn(housekeeping(
        rt.store.clone(),
        rt.config.housekeeping.clone(),
        rx.clone(),
    ));
    // Once a second: at 50,000 requests a second the buffer then peaks
    // near 0.4 MB, and an upkeep costs a pass over a few dozen histograms.
    tokio::spawn(ops::metrics_upkeep(
        ops::metrics_handle(),
        Duration::from_secs(1),
        rx.clone(),
    ));
    let limits = &rt.config.limits;
    let opts = tls::ListenerOptions {
        handshake_timeout: Duration::from_secs(limits.handshake_timeout_secs),
        header_read_timeout: Duration::from_secs(limits.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(limits.idle_timeout_secs),
        max_connections: limits.max_connections,
        max_connections_per_address: limits.max_connections_per_address,
        cap_exempt: proxy_networks(&rt.config),
    };
    let task = tokio::spawn(tls::serve(listener, rt.tls.clone(), app, opts, rx));
    tracing::info!(%addr, %public_url, profile = %rt.config.profile, aspsp_org_id = %rt.aspsp_org_id, "aspen listening");
    Ok(RunningServer {
        addr,
        aspsp_org_id: rt.aspsp_org_id.clone(),
        public_url,
        data_dir: rt.data.root.clone(),
        store: rt.store.clone(),
        shutdown: tx,
        task,
    })
}
