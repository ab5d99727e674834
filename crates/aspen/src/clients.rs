//! `aspen clients add|list|remove`: operator-registered clients for TPPs
//! and test tools that do not use DCR. They pass the same SSA and metadata
//! validation as `/register`; only the request-JWT signature and the
//! transport-certificate check, which belong to the HTTP exchange, are
//! replaced by the operator's decision.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use aspen_http::ClientCert;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// A TPP kit directory from `aspen sandbox init` (uses its ssa.jwt and
    /// transport.pem).
    #[arg(long, conflicts_with = "ssa")]
    pub kit: Option<PathBuf>,
    /// A software statement (JWT file), when not using a kit.
    #[arg(long)]
    pub ssa: Option<PathBuf>,
    /// Registration metadata as a JSON object (DCR claims); flags below
    /// fill what it leaves out.
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// private_key_jwt (default), tls_client_auth, or in the sandbox
    /// client_secret_basic / client_secret_post (implies --permissive).
    #[arg(long, default_value = "private_key_jwt")]
    pub auth_method: String,
    /// Subject DN for tls_client_auth; default: the kit's transport
    /// certificate subject.
    #[arg(long)]
    pub subject_dn: Option<String>,
    /// Register under the sandbox's permissive profile.
    #[arg(long)]
    pub permissive: bool,
    /// Enable headless authorisation (sandbox only).
    #[arg(long)]
    pub headless: bool,
    /// Redirect URIs (default: all of the SSA's).
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// Space-separated scopes (default: all the SSA's roles allow).
    #[arg(long)]
    pub scope: Option<String>,
    /// Response types, repeatable (default: `code id_token`; `code` needs
    /// --permissive).
    #[arg(long = "response-type")]
    pub response_types: Vec<String>,
    /// Grant types, repeatable (default: client_credentials,
    /// authorization_code, refresh_token).
    #[arg(long = "grant-type")]
    pub grant_types: Vec<String>,
}

pub async fn add(config: Config, args: AddArgs) -> Result<()> {
    let (ssa, cert) = match (&args.kit, &args.ssa) {
        (Some(kit), _) => {
            let ssa = std::fs::read_to_string(kit.join("ssa.jwt"))
                .with_context(|| format!("{} has no ssa.jwt", kit.display()))?;
            let der = CertificateDer::from_pem_file(kit.join("transport.pem"))
                .with_context(|| format!("{} has no transport.pem", kit.display()))?;
            (ssa, ClientCert::from_der(der.to_vec()))
        }
        (None, Some(path)) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            None,
        ),
        (None, None) => bail!("give --kit DIR or --ssa FILE"),
    };
    let mut meta: serde_json::Map<String, Value> = match &args.metadata {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("{} is not a JSON object", p.display()))?,
        None => serde_json::Map::new(),
    };
    let method = meta
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        .unwrap_or(&args.auth_method)
        .to_string();
    let mut put = |k: &str, v: Value| {
        meta.entry(k.to_string()).or_insert(v);
    };
    put("token_endpoint_auth_method", json!(method));
    if method == "private_key_jwt" {
        put("token_endpoint_auth_signing_alg", json!("PS256"));
    }
    put("id_token_signed_response_alg", json!("PS256"));
    put("request_object_signing_alg", json!("PS256"));
    put("application_type", json!("web"));
    if !args.grant_types.is_empty() {
        put("grant_types", json!(args.grant_types));
    }
    put(
        "grant_types",
        json!(["client_credentials", "authorization_code", "refresh_token"]),
    );
    if !args.response_types.is_empty() {
        put("response_types", json!(args.response_types));
    }
    if method == "tls_client_auth" {
        let dn = args
            .subject_dn
            .clone()
            .or_else(|| cert.as_ref().map(|c| c.subject_dn.clone()))
            .ok_or_else(|| anyhow!("tls_client_auth needs --subject-dn or --kit"))?;
        put("tls_client_auth_subject_dn", json!(dn));
    }
    if args.permissive || method.starts_with("client_secret_") {
        put(aspen_auth::dcr::EXT_PROFILE, json!("permissive"));
    }
    if args.headless {
        put(aspen_auth::dcr::EXT_HEADLESS, json!(true));
    }
    if !args.redirect_uris.is_empty() {
        put("redirect_uris", json!(args.redirect_uris));
    }
    if let Some(s) = &args.scope {
        put("scope", json!(s));
    }
    let meta = Value::Object(meta);

    let (rt, state) = runtime(config).await?;
    let ssa_claims = aspen_auth::dcr::verify_ssa(&state, ssa.trim()).map_err(|e| anyhow!("{e}"))?;
    let jwks = state
        .tpp_keys
        .for_ssa(&ssa_claims)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let v = aspen_auth::dcr::validate_metadata(
        &state,
        &meta,
        &ssa_claims,
        ssa.trim(),
        &jwks,
        cert.as_ref(),
        None,
    )
    .map_err(|e| anyhow!("{e}"))?;
    rt.store.insert_client(&v.record).await?;
    println!("client_id: {}", v.record.client_id);
    if let Some(secret) = v.secret {
        println!("client_secret: {secret}");
    }
    println!("{}", serde_json::to_string_pretty(&v.record.metadata)?);
    Ok(())
}

pub async fn list(config: Config) -> Result<()> {
    let (rt, _) = runtime(config).await?;
    for c in rt.store.list_clients().await? {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            c.client_id,
            c.software_id,
            c.token_endpoint_auth_method,
            if c.permissive { "permissive" } else { "strict" },
            c.client_name
        );
    }
    Ok(())
}

pub async fn remove(config: Config, client_id: &str) -> Result<()> {
    let (rt, _) = runtime(config).await?;
    if !rt.store.delete_client(client_id).await? {
        bail!("no client {client_id}");
    }
    println!("client {client_id} removed and its tokens revoked");
    Ok(())
}

async fn runtime(config: Config) -> Result<(crate::server::Runtime, aspen_auth::AuthState)> {
    let url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://{}", config.listen));
    let rt = crate::server::prepare(config).await?;
    let state = crate::server::auth_state(&rt, &url);
    Ok((rt, state))
}
