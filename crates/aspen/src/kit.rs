//! `aspen sandbox init`: a ready TPP kit signed by the sandbox CA and the
//! sandbox directory.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use aspen_jose::SigningKey;

use crate::datadir::{DataDir, write_public, write_secret};
use crate::pki;

pub struct KitOptions {
    pub out: PathBuf,
    pub redirect_uris: Vec<String>,
    pub org_name: String,
    pub org_id: Option<String>,
    pub software_id: Option<String>,
    pub client_name: String,
    pub roles: Vec<String>,
    pub directory_issuer: String,
    pub server_url: String,
    /// The bank's org id when configured; else the data directory's.
    pub aspsp_org_id: Option<String>,
    /// ECDSA P-256 transport key instead of RSA-2048.
    pub ec_transport: bool,
    /// The sandbox seed: the test customers' sign-ins derive from it.
    pub sandbox_seed: u64,
}

pub struct Kit {
    pub org_id: String,
    pub aspsp_org_id: String,
    pub software_id: String,
    pub kid: String,
}

/// Base62, the alphabet the OB Directory uses for org and software ids.
pub(crate) fn base62(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut bytes).expect("system RNG available");
    // 248 = 4 * 62: rejecting nothing would bias; mapping modulo on a byte
    // that is at most 247 keeps every symbol equally likely.
    bytes
        .iter()
        .map(|b| {
            let mut v = *b;
            while v >= 248 {
                let mut one = [0u8; 1];
                aws_lc_rs::rand::fill(&mut one).expect("system RNG available");
                v = one[0];
            }
            ALPHABET[(v % 62) as usize] as char
        })
        .collect()
}

fn check_id(name: &str, v: &str, max: usize) -> Result<()> {
    if v.is_empty() || v.len() > max || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("{name} must be 1-{max} ASCII letters or digits");
    }
    Ok(())
}

pub fn create(data: &DataDir, opts: &KitOptions) -> Result<Kit> {
    if opts.redirect_uris.is_empty() {
        bail!("at least one --redirect-uri is required");
    }
    for uri in &opts.redirect_uris {
        if !uri.starts_with("https://") {
            bail!("redirect URI {uri} must use https (DCR-22)");
        }
    }
    for role in &opts.roles {
        if !matches!(role.as_str(), "AISP" | "PISP" | "CBPII") {
            bail!("unknown software role {role} (AISP, PISP or CBPII)");
        }
    }
    let org_id = opts.org_id.clone().unwrap_or_else(|| base62(18));
    let software_id = opts.software_id.clone().unwrap_or_else(|| base62(22));
    check_id("org id", &org_id, 18)?;
    check_id("software id", &software_id, 22)?;

    fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let ca = data.sandbox_ca()?;
    let directory = data.directory_key()?;

    let aspsp_org_id = match &opts.aspsp_org_id {
        Some(id) => id.clone(),
        None => data.aspsp_org_id()?,
    };
    let transport = pki::transport_cert(
        &ca,
        &opts.org_name,
        &org_id,
        &software_id,
        !opts.ec_transport,
    )?;
    write_public(&opts.out.join("transport.pem"), &transport.cert_pem)?;
    write_secret(&opts.out.join("transport-key.pem"), &transport.key_pem)?;

    // As the OB Directory issues them: an RSA-2048 signing key with its
    // certificate beside it (some TPP tools load the key's certificate).
    let signing = SigningKey::generate(None).context("RSA key generation failed")?;
    write_secret(&opts.out.join("signing-key.pem"), &signing.to_pkcs8_pem()?)?;
    let signing_pem = pki::signing_cert(&ca, &signing, &opts.org_name, &org_id, &software_id)?;
    write_public(&opts.out.join("signing.pem"), &signing_pem)?;
    let signing = signing
        .clone()
        .with_certificates(pki::certifies(&signing_pem, &signing)?);
    let jwks = serde_json::json!({ "keys": [signing.public_jwk()] });
    write_public(
        &opts.out.join("signing-jwks.json"),
        &serde_json::to_string_pretty(&jwks)?,
    )?;
    write_public(
        &opts.out.join("ca.pem"),
        &fs::read_to_string(data.ca_cert_path())?,
    )?;

    let now = chrono::Utc::now().timestamp();
    let jwks_endpoint =
        format!("https://keystore.sandbox.aspen.invalid/{org_id}/{software_id}.jwks");
    let ssa_claims = serde_json::json!({
        "iss": opts.directory_issuer,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "software_environment": "sandbox",
        "software_mode": "Test",
        "software_id": software_id,
        "software_client_id": software_id,
        "software_client_name": opts.client_name,
        "software_client_description": format!("{} (sandbox kit)", opts.client_name),
        "software_version": "1.0",
        "software_client_uri": opts.redirect_uris[0].split('/').take(3).collect::<Vec<_>>().join("/"),
        "software_redirect_uris": opts.redirect_uris,
        "software_roles": opts.roles,
        "software_jwks": jwks,
        "software_jwks_endpoint": jwks_endpoint,
        "software_jwks_revoked_endpoint": format!("https://keystore.sandbox.aspen.invalid/{org_id}/revoked/{software_id}.jwks"),
        "org_status": "Active",
        "org_id": org_id,
        "org_name": opts.org_name,
        "org_contacts": [],
        "org_jwks_endpoint": format!("https://keystore.sandbox.aspen.invalid/{org_id}/{org_id}.jwks"),
        "org_jwks_revoked_endpoint": format!("https://keystore.sandbox.aspen.invalid/{org_id}/revoked/{org_id}.jwks"),
        "organisation_competent_authority_claims": {
            "authority_id": "GBFCA",
            "registration_id": org_id,
            "status": "Active",
            "authorisations": opts.roles.iter().map(|r| serde_json::json!({"member_state": "GB", "roles": [r]})).collect::<Vec<_>>(),
        },
    });
    let ssa = aspen_jose::sign_jwt(&directory, Some("JWT"), &ssa_claims)
        .context("cannot sign the SSA")?;
    write_public(&opts.out.join("ssa.jwt"), &ssa)?;

    let kit = serde_json::json!({
        "org_id": org_id,
        "aspsp_org_id": aspsp_org_id,
        "org_name": opts.org_name,
        "software_id": software_id,
        "client_name": opts.client_name,
        "signing_kid": signing.kid(),
        "redirect_uris": opts.redirect_uris,
        "roles": opts.roles,
        "software_jwks_endpoint": jwks_endpoint,
        "server": opts.server_url,
        "sandbox_psus": aspen_sandbox::sandbox_logins(opts.sandbox_seed)
            .iter()
            .map(|l| serde_json::json!({
                "username": l.username,
                "password": l.password,
                "totp_secret": l.totp_secret,
            }))
            .collect::<Vec<_>>(),
    });
    write_public(
        &opts.out.join("kit.json"),
        &serde_json::to_string_pretty(&kit)?,
    )?;
    write_public(
        &opts.out.join("README.md"),
        &readme(opts, &org_id, &software_id, signing.kid(), &aspsp_org_id),
    )?;
    Ok(Kit {
        org_id,
        aspsp_org_id,
        software_id,
        kid: signing.kid().to_string(),
    })
}

fn readme(
    opts: &KitOptions,
    org_id: &str,
    software_id: &str,
    kid: &str,
    aspsp_org_id: &str,
) -> String {
    let dir = opts.out.display();
    let url = &opts.server_url;
    format!(
        r#"# aspen sandbox TPP kit

Organisation `{org}` (org_id `{org_id}`), software `{client}` (software_id `{software_id}`).

The bank's organisation id (`aspsp_org_id`) is `{aspsp_org_id}`: use it as the `aud` of registration
requests (the issuer URL works too) and expect it as the `iss` of the bank's response signatures.

| file | what |
| --- | --- |
| `transport.pem`, `transport-key.pem` | mTLS transport certificate (C=GB, O={org}, OU={org_id}, CN={software_id}; RSA-2048 unless `--ec-transport`), signed by the sandbox CA |
| `signing-key.pem`, `signing.pem`, `signing-jwks.json` | PS256 signing key (RSA-2048, kid `{kid}`), its certificate (chain: leaf, CA) and its public JWKS (with `x5c`) |
| `ssa.jwt` | software statement assertion signed by the sandbox directory (the key in `aspen-data/directory/jwks.json`) |
| `ca.pem` | the CA that issued the server's certificate: trust it with `--cacert` |
| `kit.json` | the identifiers above, machine-readable |

## Next steps

Check that the server accepts your transport certificate:

```sh
curl --cacert {dir}/ca.pem --cert {dir}/transport.pem --key {dir}/transport-key.pem \
  {url}/sandbox/whoami
```

Read the discovery document:

```sh
curl --cacert {dir}/ca.pem {url}/.well-known/openid-configuration
```

Register your client with a registration JWT signed by `signing-key.pem` (kid `{kid}`) that carries
`ssa.jwt` as `software_statement` (`POST {url}/register`, `Content-Type: application/jwt`),
or let the operator add it directly: `aspen clients add --kit {dir}`.

## Test customers

Sign in on the bank's pages with these. When a request asks for strong customer authentication
(`acr` essential with `urn:openbanking:psd2:sca` only), the second step asks for the 6-digit code of
the customer's authenticator: add the TOTP secret (base32, SHA-1, 30 s) to any authenticator app,
or compute it (`oathtool --totp -b SECRET`). `oska` has no authenticator: such a request gets
`access_denied`. A password alone gives `acr` `urn:openbanking:psd2:ca`; with the code, `sca`.

| username | password | TOTP secret |
| --- | --- | --- |
{psus}"#,
        org = opts.org_name,
        client = opts.client_name,
        psus = aspen_sandbox::sandbox_logins(opts.sandbox_seed)
            .iter()
            .map(|l| format!(
                "| `{}` | `{}` | {} |\n",
                l.username,
                l.password,
                l.totp_secret
                    .as_deref()
                    .map_or("(none)".to_string(), |s| format!("`{s}`"))
            ))
            .collect::<String>(),
    )
}
