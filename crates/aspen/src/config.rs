//! Configuration: one TOML file plus `ASPEN_*` environment overrides.
//!
//! Environment variables map onto TOML keys: `ASPEN_LISTEN` sets `listen`,
//! `ASPEN_TRUST__CLIENT_CA_FILES` sets `trust.client_ca_files` (a double
//! underscore descends into a table). Values are read as TOML literals when
//! they parse as one (`ASPEN_SANDBOX__TRANSACTIONS=1000`,
//! `ASPEN_TRUST__CLIENT_CA_FILES='["/etc/ca.pem"]'`) and as plain strings
//! otherwise. With nothing set, the defaults run the sandbox on
//! https://127.0.0.1:8443 with everything under `./aspen-data`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Sandbox: seeded bank, sandbox CA and directory trusted, permissive
    /// clients and headless authorisation available.
    Sandbox,
    /// Production: only the configured trust anchors, strict clients only.
    Production,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Profile::Sandbox => "sandbox",
            Profile::Production => "production",
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub profile: Profile,
    /// Socket address of the HTTPS listener.
    pub listen: String,
    /// Public base URL (issuer, absolute links). Defaults to
    /// `https://<listen address>`; set it when behind a proxy (COMMON-2).
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to the SQLite file in the
    /// data directory.
    pub database_url: Option<String>,
    /// The ASPSP's organisation id at the directory: accepted as `aud` of
    /// registration requests next to the issuer (DCR-10).
    pub aspsp_org_id: Option<String>,
    pub tls: TlsConfig,
    pub trust: TrustConfig,
    pub proxy: ProxyConfig,
    pub psu_login: PsuLoginConfig,
    pub psu_auth: PsuAuthConfig,
    pub housekeeping: HousekeepingConfig,
    pub sandbox: SandboxConfig,
    pub limits: LimitsConfig,
    pub tokens: TokensConfig,
    pub branding: BrandingConfig,
    pub log: LogConfig,
    pub payments: PaymentsConfig,
    pub core: CoreConfig,
    pub events: EventsConfig,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Server certificate chain (PEM). Default: generated in the data dir.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// CA bundles for TPP transport certificates (added to the sandbox CA in
    /// the sandbox profile).
    pub client_ca_files: Vec<PathBuf>,
    /// JWKS files with the keys that sign SSAs.
    pub directory_jwks_files: Vec<PathBuf>,
    /// Trusted SSA issuers (`iss`); the sandbox directory's is always added
    /// in the sandbox profile.
    pub directory_issuers: Vec<String>,
    /// JWKS URL → local file, standing in for fetching a TPP's
    /// `software_jwks_endpoint` on offline installs.
    pub jwks_url_map: BTreeMap<String, PathBuf>,
    /// Oldest software statement accepted, by its `iat`, in days.
    pub ssa_max_age_days: u64,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            client_ca_files: Vec::new(),
            directory_jwks_files: Vec::new(),
            directory_issuers: Vec::new(),
            jwks_url_map: BTreeMap::new(),
            ssa_max_age_days: 30,
        }
    }
}

/// Token lifetimes (AUTH-59).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    pub client_credentials_ttl_secs: u64,
    /// Access tokens from the authorisation-code and refresh grants.
    pub access_token_ttl_secs: u64,
    pub code_ttl_secs: u64,
    /// PSU login / consent / dashboard sessions.
    pub session_ttl_secs: u64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            client_credentials_ttl_secs: 3600,
            access_token_ttl_secs: 900,
            code_ttl_secs: 60,
            session_ttl_secs: 600,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Trust `client_cert_header` as the client certificate — only on
    /// connections from `trusted_addresses` or from a proxy presenting a
    /// certificate whose subject is in `trusted_subject_dns`. Start-up
    /// refuses it with neither set.
    pub trust_client_cert_header: bool,
    /// Header carrying the URL-encoded PEM client certificate.
    pub client_cert_header: String,
    /// The proxies' own addresses, as CIDRs (`10.0.0.0/8`, `192.0.2.7/32`,
    /// `::1/128`). From these, `client_cert_header` and the client address
    /// in `X-Forwarded-For` are believed; from anyone else both are
    /// ignored (the header is stripped).
    pub trusted_addresses: Vec<String>,
    /// Subject DNs (RFC 4514, as in `tls_client_auth_subject_dn`) of
    /// proxies that authenticate to aspen with their own TLS client
    /// certificate; such a connection is trusted like `trusted_addresses`.
    pub trusted_subject_dns: Vec<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            trust_client_cert_header: false,
            client_cert_header: "x-ssl-client-cert".into(),
            trusted_addresses: Vec::new(),
            trusted_subject_dns: Vec::new(),
        }
    }
}

/// PSU sign-in throttling: every attempt is reserved in the database
/// before the password is checked, per PSU and per client address.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PsuLoginConfig {
    /// Attempts per PSU per window before a lockout.
    pub max_attempts_per_psu: i64,
    /// Attempts per client address per window before a lockout.
    pub max_attempts_per_address: i64,
    pub window_secs: i64,
    /// First lockout; each further one doubles it, up to 64 times.
    pub lockout_secs: i64,
}

impl Default for PsuLoginConfig {
    fn default() -> Self {
        Self {
            max_attempts_per_psu: 5,
            max_attempts_per_address: 20,
            window_secs: 900,
            lockout_secs: 60,
        }
    }
}

/// Who signs PSUs in (docs/upstream-oidc.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PsuAuthConfig {
    /// `builtin` (aspen's own PSU store: password and TOTP) or `oidc` (the
    /// bank's own login as an upstream OpenID provider).
    pub provider: String,
    /// The upstream provider (provider = "oidc").
    pub oidc: Option<OidcUpstreamConfig>,
    /// The WebAuthn relying party id for passkeys: the public URL's host
    /// or a parent domain of it (so passkeys survive a move between
    /// subdomains). Unset: the host. Passkeys are offered only when the
    /// public URL names a host, never an IP address (WebAuthn has no RP
    /// ids for addresses): in the sandbox, `public_url =
    /// "https://localhost:8443"`.
    pub passkey_rp_id: Option<String>,
}

impl Default for PsuAuthConfig {
    fn default() -> Self {
        Self {
            provider: "builtin".into(),
            oidc: None,
            passkey_rp_id: None,
        }
    }
}

/// aspen as a relying party of the bank's OpenID provider.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcUpstreamConfig {
    /// The provider's issuer identifier (https), as its discovery document
    /// spells it.
    pub issuer: String,
    pub client_id: String,
    /// `client_secret_basic`; exactly one of this and `client_key_file`.
    pub client_secret: Option<String>,
    /// PEM RSA private key (PKCS#8 or PKCS#1, 2048 bits or more):
    /// `private_key_jwt` with PS256 assertions.
    pub client_key_file: Option<PathBuf>,
    /// `kid` of the assertions; default the key's RFC 7638 thumbprint.
    pub client_key_id: Option<String>,
    /// PEM trust anchors for the provider's TLS; default the system's.
    pub ca_file: Option<PathBuf>,
    pub scope: String,
    /// `acr_values` sent with each sign-in (space-separated).
    pub acr_values: String,
    pub connect_timeout_ms: u64,
    /// Whole call, connect to last byte.
    pub timeout_ms: u64,
}

impl Default for OidcUpstreamConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            client_key_file: None,
            client_key_id: None,
            ca_file: None,
            scope: "openid".into(),
            acr_values: "urn:openbanking:psd2:sca".into(),
            connect_timeout_ms: 2_000,
            timeout_ms: 5_000,
        }
    }
}

impl PsuAuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        match self.provider.as_str() {
            "builtin" => return Ok(()),
            "oidc" => {}
            _ => {
                return Err(field(
                    "psu_auth.provider",
                    "must be \"builtin\" or \"oidc\"",
                ));
            }
        }
        let Some(o) = &self.oidc else {
            return Err(field(
                "psu_auth.oidc",
                "is required when psu_auth.provider = \"oidc\" (issuer, client_id, and client_secret or client_key_file)",
            ));
        };
        let issuer_ok = o
            .issuer
            .strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['?', '#']));
        if !issuer_ok {
            return Err(field(
                "psu_auth.oidc.issuer",
                "must be an https:// URL without query or fragment",
            ));
        }
        if o.client_id.is_empty() {
            return Err(field("psu_auth.oidc.client_id", "is required"));
        }
        match (&o.client_secret, &o.client_key_file) {
            (Some(s), None) if !s.is_empty() => {}
            (None, Some(p)) if p.is_file() => {}
            (None, Some(p)) => {
                return Err(field(
                    "psu_auth.oidc.client_key_file",
                    format!("{} is not a readable file", p.display()),
                ));
            }
            _ => {
                return Err(field(
                    "psu_auth.oidc.client_secret",
                    "set exactly one of client_secret (client_secret_basic) and client_key_file (private_key_jwt)",
                ));
            }
        }
        if o.client_key_id.is_some() && o.client_key_file.is_none() {
            return Err(field(
                "psu_auth.oidc.client_key_id",
                "names the key of client_key_file, which is not set",
            ));
        }
        if let Some(p) = &o.ca_file
            && !p.is_file()
        {
            return Err(field(
                "psu_auth.oidc.ca_file",
                format!("{} is not a readable file", p.display()),
            ));
        }
        if !o.scope.split_whitespace().any(|s| s == "openid") {
            return Err(field("psu_auth.oidc.scope", "must include openid"));
        }
        if o.connect_timeout_ms == 0 || o.timeout_ms == 0 || o.connect_timeout_ms > o.timeout_ms {
            return Err(field(
                "psu_auth.oidc.timeout_ms",
                "timeouts must be positive, connect_timeout_ms no longer than timeout_ms",
            ));
        }
        Ok(())
    }
}

/// Background housekeeping on every node.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HousekeepingConfig {
    /// How often expired sessions, codes, JWT ids, tokens, idempotency
    /// keys and login throttles are purged.
    pub purge_interval_secs: u64,
    /// Rows of each kind deleted per statement (bounded batches keep
    /// locks short). On SQLite, spent JWT ids and tokens have no expiry
    /// index: a step visits eight times this many ids, in key order, and
    /// deletes the expired ones among them.
    pub purge_batch: i64,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        Self {
            purge_interval_secs: 60,
            purge_batch: 500,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Seed of the generated world: the same seed gives the same bank.
    pub seed: u64,
    /// Extra synthetic transactions for load tests.
    pub transactions: u64,
    /// PSU used by headless authorisation when no `login_hint` is given.
    pub default_psu: String,
    /// `iss` of SSAs minted by the sandbox directory.
    pub directory_issuer: String,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            transactions: 0,
            default_psu: "rora".into(),
            directory_issuer: "aspen sandbox directory".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    /// Longest a request may take once its headers have arrived (reading
    /// the body and producing the response); answered with 408 when over.
    pub request_timeout_secs: u64,
    /// Longest a TLS handshake may take, counted from the TCP accept; the
    /// connection is closed when over.
    pub handshake_timeout_secs: u64,
    /// Longest the headers of a request may take to arrive, counted from
    /// its first byte; the connection is closed when over, however slowly
    /// bytes keep coming (slowloris).
    pub header_read_timeout_secs: u64,
    /// Longest a connection may stay open with no request in progress and
    /// nothing received (HTTP/1.1 keep-alive and HTTP/2 alike); the
    /// connection is then closed. Also bounds how long a client may take
    /// to read a response.
    pub idle_timeout_secs: u64,
    /// Open connections across all clients; further connections are
    /// closed as soon as they are accepted.
    pub max_connections: usize,
    /// Open connections from one client IP address, 0 for no limit;
    /// further connections from that address are closed as soon as they
    /// are accepted. At most `max_connections`. Behind a proxy or a NAT all
    /// its clients share one address: raise it accordingly.
    pub max_connections_per_address: usize,
    /// AIS transactions per page (COMMON-47: 25–1000).
    pub page_size: i64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            handshake_timeout_secs: 10,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 30,
            max_connections: 4096,
            max_connections_per_address: 64,
            page_size: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrandingConfig {
    pub name: String,
    pub primary_colour: String,
    pub logo_file: Option<PathBuf>,
}

impl Default for BrandingConfig {
    fn default() -> Self {
        Self {
            name: "Aspen Sandbox Bank".into(),
            primary_colour: "#1d4d3b".into(),
            logo_file: None,
        }
    }
}

/// Payment initiation (PIS.md): the ASPSP's rules, FX, signatures,
/// execution timing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Built-in payment rules by name: `ob` (the OB v3.1.2 rules alone;
    /// the default, so the official conformance suite and any OB client
    /// work unchanged) or `stripe` (a bank's own rules: Stripe's published
    /// PIS overview).
    pub profile: String,
    /// A TOML file of payment rules (`AspspProfile`); overrides `profile`.
    pub profile_file: Option<PathBuf>,
    /// `http://openbanking.org.uk/tan` of the bank's response signatures.
    pub tan: String,
    /// Trust anchors accepted in TPP request signatures.
    pub trusted_tans: Vec<String>,
    /// Oldest request-signature `iat` accepted (COMMON-31 #8).
    pub iat_max_age_secs: i64,
    /// Clock skew allowed for an `iat` in the future.
    pub iat_future_skew_secs: i64,
    /// How long a payment consent can be authorised and used.
    pub consent_ttl_secs: i64,
    /// Validity of an `Actual` exchange-rate quote (PIS-27).
    pub quote_ttl_secs: i64,
    /// How far an `Agreed` rate may sit from the table rate (basis points).
    pub agreed_tolerance_bp: i64,
    /// Sandbox execution timing; both 0 = immediate.
    pub accept_after_ms: i64,
    pub settle_after_ms: i64,
    pub poll_interval_ms: u64,
    /// The rate table: units of each currency per one unit of `rates_base`.
    pub rates_base: String,
    pub rates: BTreeMap<String, String>,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            profile: "ob".into(),
            profile_file: None,
            tan: "openbanking.org.uk".into(),
            trusted_tans: vec!["openbanking.org.uk".into()],
            iat_max_age_secs: 300,
            iat_future_skew_secs: 30,
            consent_ttl_secs: 86_400,
            quote_ttl_secs: 300,
            agreed_tolerance_bp: 200,
            accept_after_ms: 0,
            settle_after_ms: 0,
            poll_interval_ms: 500,
            rates_base: "GBP".into(),
            rates: [
                ("EUR", "1.1650"),
                ("USD", "1.2700"),
                ("CAD", "1.7400"),
                ("AUD", "1.9300"),
                ("JPY", "190.50"),
                ("CHF", "1.1200"),
                ("SEK", "13.4000"),
                ("NOK", "13.6000"),
                ("DKK", "8.6900"),
                ("PLN", "5.0500"),
                ("SGD", "1.7000"),
                ("HKD", "9.9000"),
                ("INR", "107.20"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }
    }
}

/// Event notifications (EVENTS.md): pushes to TPP callbacks and
/// aggregated polling.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Longest one push may take, connect to answer.
    pub push_timeout_secs: u64,
    /// First retry after a failed push; doubles up to `retry_cap_secs`.
    pub retry_base_ms: u64,
    pub retry_cap_secs: u64,
    /// Pushes in all before a callback counts as unresponsive (EVT-21);
    /// the event stays available to polling.
    pub max_attempts: i64,
    /// How often the outbox is looked at for due pushes.
    pub delivery_poll_ms: u64,
    /// Upper bound (and default) of `maxEvents` per poll.
    pub max_events: i64,
    /// Longest a poll with `returnImmediately: false` is held.
    pub long_poll_secs: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            push_timeout_secs: 10,
            retry_base_ms: 2_000,
            retry_cap_secs: 3_600,
            max_attempts: 10,
            delivery_poll_ms: 500,
            max_events: 100,
            long_poll_secs: 20,
        }
    }
}

/// Where the accounts and the money live (`docs/connector.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoreConfig {
    /// `builtin` (aspen's own ledger: the sandbox) or `http` (the bank's
    /// connector API).
    pub kind: String,
    /// `https://host:port` of the connector (kind = "http").
    pub url: Option<String>,
    /// CA that issued the connector's server certificate. Default: the
    /// data directory's connector CA.
    pub ca_file: Option<PathBuf>,
    /// aspen's client certificate and key for the connector. Default:
    /// issued by the data directory's connector CA.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub connect_timeout_ms: u64,
    /// Whole call, connect to last byte.
    pub timeout_ms: u64,
    /// Further attempts after a failure in transit (all calls are
    /// idempotent).
    pub retries: u32,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    pub breaker_open_secs: u64,
    /// How often unfinished payments are submitted again / asked about.
    pub payment_poll_ms: u64,
    /// How soon a payment is tried again after the core failed.
    pub payment_retry_ms: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            kind: "builtin".into(),
            url: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            connect_timeout_ms: 1_000,
            // A payment order makes two calls (the debtor account, the
            // submission), each with its retries: together well inside the
            // request timeout.
            timeout_ms: 3_000,
            retries: 1,
            breaker_failures: 5,
            breaker_open_secs: 10,
            payment_poll_ms: 500,
            payment_retry_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `aspen=debug,info`.
    pub filter: String,
    /// `text` or `json`.
    pub format: String,
    /// Lines to a file, a pipe or a journal are held for at most this long
    /// and written together; a warning or an error goes out at once with
    /// everything before it. 0: every line written as it is logged. (On a
    /// terminal every line is written at once.)
    pub flush_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: "text".into(),
            flush_ms: 100,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            profile: Profile::Sandbox,
            listen: "127.0.0.1:8443".into(),
            public_url: None,
            data_dir: PathBuf::from("./aspen-data"),
            database_url: None,
            aspsp_org_id: None,
            tls: TlsConfig::default(),
            trust: TrustConfig::default(),
            proxy: ProxyConfig::default(),
            psu_login: PsuLoginConfig::default(),
            psu_auth: PsuAuthConfig::default(),
            housekeeping: HousekeepingConfig::default(),
            sandbox: SandboxConfig::default(),
            limits: LimitsConfig::default(),
            tokens: TokensConfig::default(),
            branding: BrandingConfig::default(),
            payments: PaymentsConfig::default(),
            core: CoreConfig::default(),
            events: EventsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// A configuration problem, naming the field and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config field `{field}`: {message}")]
    Field { field: String, message: String },
}

fn field(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    /// Reads the optional file, applies `ASPEN_*` overrides from `env`, and
    /// validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut root = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("ASPEN_") else {
                continue;
            };
            // Variables with other jobs: the config file path, the log
            // filter (`ASPEN_LOG`) and test switches.
            if rest.starts_with("TEST_")
                || rest.starts_with("REQUIRE_")
                || matches!(rest, "CONFIG" | "LOG" | "SCREENSHOTS")
            {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(String::is_empty) {
                return Err(ConfigError::Env {
                    var,
                    message: "empty key segment".into(),
                });
            }
            set_path(&mut root, &path, parse_env_value(&value)).map_err(|message| {
                ConfigError::Env {
                    var: var.clone(),
                    message,
                }
            })?;
        }
        let cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(
            |e: serde_path_to_error::Error<toml::de::Error>| {
                let path = e.path().to_string();
                field(&path, e.inner().message().to_string())
            },
        )?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        match self.core.kind.as_str() {
            "builtin" => {}
            "http" => match &self.core.url {
                Some(u) if u.starts_with("https://") && !u.ends_with('/') => {}
                Some(_) => {
                    return Err(field(
                        "core.url",
                        "must be an https:// URL without a trailing '/'",
                    ));
                }
                None => return Err(field("core.url", "is required when core.kind = \"http\"")),
            },
            _ => return Err(field("core.kind", "must be \"builtin\" or \"http\"")),
        }
        if self.core.cert_file.is_some() != self.core.key_file.is_some() {
            return Err(field(
                "core.cert_file",
                "core.cert_file and core.key_file go together",
            ));
        }
        if self.core.timeout_ms == 0 || self.core.connect_timeout_ms == 0 {
            return Err(field("core.timeout_ms", "timeouts must be positive"));
        }
        if self.events.max_events < 1 || self.events.max_attempts < 1 {
            return Err(field(
                "events.max_events",
                "events.max_events and events.max_attempts must be at least 1",
            ));
        }
        if self.events.long_poll_secs >= self.limits.request_timeout_secs {
            return Err(field(
                "events.long_poll_secs",
                "must be shorter than limits.request_timeout_secs",
            ));
        }
        if self.core.retries > 5 {
            return Err(field("core.retries", "at most 5"));
        }
        if self.core.breaker_failures == 0 {
            return Err(field("core.breaker_failures", "must be at least 1"));
        }
        if let Some(url) = &self.public_url {
            if !url.starts_with("https://") {
                return Err(field("public_url", "must be an https:// URL"));
            }
            if url.ends_with('/') {
                return Err(field("public_url", "must not end with '/'"));
            }
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(field(
                "database_url",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(field(
                "tls.cert_file",
                "tls.cert_file and tls.key_file must be set together",
            ));
        }
        if self.tokens.client_credentials_ttl_secs == 0
            || self.tokens.client_credentials_ttl_secs > 3600
        {
            return Err(field(
                "tokens.client_credentials_ttl_secs",
                "must be between 1 and 3600 (AUTH-59)",
            ));
        }
        if !(300..=3600).contains(&self.tokens.access_token_ttl_secs) {
            return Err(field(
                "tokens.access_token_ttl_secs",
                "must be between 300 and 3600 (AUTH-59)",
            ));
        }
        if !(1..=600).contains(&self.tokens.code_ttl_secs) {
            return Err(field(
                "tokens.code_ttl_secs",
                "must be between 1 and 600 (AUTH-52)",
            ));
        }
        if !(60..=3600).contains(&self.tokens.session_ttl_secs) {
            return Err(field(
                "tokens.session_ttl_secs",
                "must be between 60 and 3600",
            ));
        }
        if let Some(p) = &self.branding.logo_file
            && !p.is_file()
        {
            return Err(field(
                "branding.logo_file",
                format!("{} is not a readable file", p.display()),
            ));
        }
        if !self.branding.primary_colour.starts_with('#')
            || !matches!(self.branding.primary_colour.len(), 4 | 7)
            || !self.branding.primary_colour[1..]
                .chars()
                .all(|c| c.is_ascii_hexdigit())
        {
            return Err(field(
                "branding.primary_colour",
                "must be a #rgb or #rrggbb colour",
            ));
        }
        if self.trust.ssa_max_age_days == 0 {
            return Err(field("trust.ssa_max_age_days", "must be greater than 0"));
        }
        if !(25..=1000).contains(&self.limits.page_size) {
            return Err(field(
                "limits.page_size",
                "must be between 25 and 1000 (COMMON-47)",
            ));
        }
        if self.limits.max_body_bytes == 0 {
            return Err(field("limits.max_body_bytes", "must be greater than 0"));
        }
        for (name, secs) in [
            (
                "limits.request_timeout_secs",
                self.limits.request_timeout_secs,
            ),
            (
                "limits.handshake_timeout_secs",
                self.limits.handshake_timeout_secs,
            ),
            (
                "limits.header_read_timeout_secs",
                self.limits.header_read_timeout_secs,
            ),
            ("limits.idle_timeout_secs", self.limits.idle_timeout_secs),
        ] {
            if secs == 0 {
                return Err(field(name, "must be greater than 0"));
            }
        }
        if self.limits.max_connections == 0 {
            return Err(field("limits.max_connections", "must be greater than 0"));
        }
        if self.limits.max_connections_per_address > self.limits.max_connections {
            return Err(field(
                "limits.max_connections_per_address",
                "must not exceed limits.max_connections",
            ));
        }
        if self.proxy.trust_client_cert_header
            && http::HeaderName::from_bytes(self.proxy.client_cert_header.as_bytes()).is_err()
        {
            return Err(field("proxy.client_cert_header", "not a valid header name"));
        }
        for (i, a) in self.proxy.trusted_addresses.iter().enumerate() {
            if a.parse::<ipnet::IpNet>().is_err() {
                return Err(field(
                    &format!("proxy.trusted_addresses[{i}]"),
                    format!("{a:?} is not a CIDR such as 10.0.0.0/8 or 192.0.2.7/32"),
                ));
            }
        }
        if self.proxy.trust_client_cert_header
            && self.proxy.trusted_addresses.is_empty()
            && self.proxy.trusted_subject_dns.is_empty()
        {
            return Err(field(
                "proxy.trust_client_cert_header",
                "the header would be believed from anyone who reaches the listener; list the proxy in proxy.trusted_addresses (CIDRs) or its certificate subject in proxy.trusted_subject_dns",
            ));
        }
        let l = &self.psu_login;
        if l.max_attempts_per_psu < 1
            || l.max_attempts_per_address < 1
            || l.window_secs < 1
            || l.lockout_secs < 1
        {
            return Err(field(
                "psu_login",
                "max_attempts_per_psu, max_attempts_per_address, window_secs and lockout_secs must be at least 1",
            ));
        }
        self.psu_auth.validate()?;
        if let Some(rp_id) = &self.psu_auth.passkey_rp_id {
            let issuer = self
                .public_url
                .clone()
                .unwrap_or_else(|| format!("https://{}", self.listen));
            if let Err(why) =
                aspen_auth::webauthn::RelyingParty::for_issuer(&issuer, Some(rp_id), "")
            {
                return Err(field("psu_auth.passkey_rp_id", &why));
            }
        }
        if self.housekeeping.purge_interval_secs == 0 || self.housekeeping.purge_batch < 1 {
            return Err(field(
                "housekeeping",
                "purge_interval_secs and purge_batch must be at least 1",
            ));
        }
        if !matches!(self.payments.profile.as_str(), "stripe" | "ob") {
            return Err(field(
                "payments.profile",
                "must be \"stripe\" or \"ob\" (or set payments.profile_file)",
            ));
        }
        if self.log.flush_ms > 10_000 {
            return Err(field("log.flush_ms", "must be at most 10000"));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(field("log.format", "must be \"text\" or \"json\""));
        }
        if self.profile == Profile::Production {
            if self.trust.client_ca_files.is_empty() {
                return Err(field(
                    "trust.client_ca_files",
                    "the production profile trusts no sandbox CA; list the CA bundle(s) for TPP transport certificates",
                ));
            }
            if self.trust.directory_jwks_files.is_empty() {
                return Err(field(
                    "trust.directory_jwks_files",
                    "the production profile trusts no sandbox directory; list the directory JWKS file(s)",
                ));
            }
            if self.sandbox.transactions > 0 {
                return Err(field(
                    "sandbox.transactions",
                    "bulk sandbox data cannot be seeded in the production profile",
                ));
            }
        }
        for (i, p) in self.trust.client_ca_files.iter().enumerate() {
            if !p.is_file() {
                return Err(field(
                    &format!("trust.client_ca_files[{i}]"),
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        for (url, p) in &self.trust.jwks_url_map {
            if !p.is_file() {
                return Err(field(
                    &format!("trust.jwks_url_map.{url:?}"),
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        for (i, p) in self.trust.directory_jwks_files.iter().enumerate() {
            if !p.is_file() {
                return Err(field(
                    &format!("trust.directory_jwks_files[{i}]"),
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            field(
                "listen",
                format!("{:?} is not an IP:port address", self.listen),
            )
        })
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("aspen.db").display()
            )
        })
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    // `x = <raw>` parses for numbers, booleans, arrays and quoted strings;
    // anything else (a bare path or URL) is taken as a string.
    match format!("x = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("x")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a table"))?;
    }
    cur.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_run_the_sandbox_on_8443() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.profile, Profile::Sandbox);
        assert_eq!(c.listen_addr().unwrap().port(), 8443);
        assert!(
            c.database_url()
                .starts_with("sqlite://./aspen-data/aspen.db")
        );
    }

    #[test]
    fn env_overrides_nested_keys() {
        let c = Config::load(
            None,
            env(&[
                ("ASPEN_LISTEN", "127.0.0.1:9000"),
                ("ASPEN_SANDBOX__TRANSACTIONS", "1000"),
                ("ASPEN_DATABASE_URL", "postgres://x@y/z"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.sandbox.transactions, 1000);
        assert_eq!(c.database_url(), "postgres://x@y/z");
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::load(None, env(&[("ASPEN_LISTEN", "nope")])).unwrap_err();
        assert!(e.to_string().contains("`listen`"), "{e}");
        let e = Config::load(None, env(&[("ASPEN_SANDBOX__SEED", "\"abc\"")])).unwrap_err();
        assert!(e.to_string().contains("sandbox.seed"), "{e}");
        let e = Config::load(None, env(&[("ASPEN_NOPE", "1")])).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn passkey_rp_id_must_fit_the_public_url() {
        let rp = ("ASPEN_PSU_AUTH__PASSKEY_RP_ID", "bank.example");
        let e = Config::load(None, env(&[rp])).unwrap_err();
        assert!(e.to_string().contains("psu_auth.passkey_rp_id"), "{e}");
        let e = Config::load(
            None,
            env(&[rp, ("ASPEN_PUBLIC_URL", "https://evil.example")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not evil.example"), "{e}");
        let ok = env(&[rp, ("ASPEN_PUBLIC_URL", "https://login.bank.example")]);
        assert!(Config::load(None, ok).is_ok());
    }

    #[test]
    fn production_requires_trust_anchors() {
        let e = Config::load(None, env(&[("ASPEN_PROFILE", "production")])).unwrap_err();
        assert!(e.to_string().contains("trust.client_ca_files"), "{e}");
    }

    #[test]
    fn upstream_provider_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("client.pem");
        std::fs::write(&key, "x").unwrap();
        let key = key.display().to_string();
        let base = [
            ("ASPEN_PSU_AUTH__PROVIDER", "oidc"),
            ("ASPEN_PSU_AUTH__OIDC__ISSUER", "https://login.bank.example"),
            ("ASPEN_PSU_AUTH__OIDC__CLIENT_ID", "aspen"),
        ];
        let load = |extra: &[(&str, &str)]| {
            let mut e = base.to_vec();
            e.extend_from_slice(extra);
            Config::load(None, env(&e))
        };
        let c = load(&[("ASPEN_PSU_AUTH__OIDC__CLIENT_SECRET", "s")]).unwrap();
        let o = c.psu_auth.oidc.unwrap();
        assert_eq!((o.scope.as_str(), o.timeout_ms), ("openid", 5_000));
        assert_eq!(o.acr_values, "urn:openbanking:psd2:sca");
        assert!(load(&[("ASPEN_PSU_AUTH__OIDC__CLIENT_KEY_FILE", &key)]).is_ok());
        for (extra, named) in [
            (vec![], "client_secret"),
            (
                vec![
                    ("ASPEN_PSU_AUTH__OIDC__CLIENT_SECRET", "s"),
                    ("ASPEN_PSU_AUTH__OIDC__CLIENT_KEY_FILE", key.as_str()),
                ],
                "client_secret",
            ),
            (
                vec![
                    ("ASPEN_PSU_AUTH__OIDC__CLIENT_SECRET", "s"),
                    ("ASPEN_PSU_AUTH__OIDC__ISSUER", "http://login.bank.example"),
                ],
                "psu_auth.oidc.issuer",
            ),
            (
                vec![("ASPEN_PSU_AUTH__OIDC__CLIENT_KEY_FILE", "/nonexistent.pem")],
                "client_key_file",
            ),
            (
                vec![
                    ("ASPEN_PSU_AUTH__OIDC__CLIENT_SECRET", "s"),
                    ("ASPEN_PSU_AUTH__OIDC__SCOPE", "profile"),
                ],
                "scope",
            ),
            (
                vec![
                    ("ASPEN_PSU_AUTH__OIDC__CLIENT_SECRET", "s"),
                    ("ASPEN_PSU_AUTH__OIDC__CA_FILE", "/nonexistent.pem"),
                ],
                "ca_file",
            ),
            (
                vec![
                    ("ASPEN_PSU_AUTH__OIDC__CLIENT_SECRET", "s"),
                    ("ASPEN_PSU_AUTH__OIDC__CONNECT_TIMEOUT_MS", "0"),
                ],
                "timeout",
            ),
        ] {
            let e = load(&extra).unwrap_err().to_string();
            assert!(e.contains(named), "{named}: {e}");
        }
        let e = Config::load(None, env(&[("ASPEN_PSU_AUTH__PROVIDER", "oidc")])).unwrap_err();
        assert!(e.to_string().contains("psu_auth.oidc"), "{e}");
        let e = Config::load(None, env(&[("ASPEN_PSU_AUTH__PROVIDER", "saml")])).unwrap_err();
        assert!(e.to_string().contains("psu_auth.provider"), "{e}");
    }

    #[test]
    fn log_lines_are_held_a_bounded_time() {
        assert_eq!(Config::load(None, env(&[])).unwrap().log.flush_ms, 100);
        let c = Config::load(None, env(&[("ASPEN_LOG__FLUSH_MS", "0")])).unwrap();
        assert_eq!(c.log.flush_ms, 0);
        let e = Config::load(None, env(&[("ASPEN_LOG__FLUSH_MS", "10001")])).unwrap_err();
        assert!(e.to_string().contains("log.flush_ms"), "{e}");
    }

    #[test]
    fn file_and_env_combine() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("aspen.toml");
        std::fs::write(
            &p,
            "listen = \"127.0.0.1:7000\"\n[limits]\nmax_body_bytes = 10\n",
        )
        .unwrap();
        let c = Config::load(Some(&p), env(&[("ASPEN_LIMITS__MAX_BODY_BYTES", "20")])).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7000");
        assert_eq!(c.limits.max_body_bytes, 20);
        std::fs::write(&p, "listen = [").unwrap();
        assert!(matches!(
            Config::load(Some(&p), env(&[])),
            Err(ConfigError::Syntax { .. })
        ));
    }
}
