//! A TPP kit on disk: `kit.json`, the transport certificate and key, the
//! signing key, the SSA and (for a sandbox) the CA that issued the bank's
//! server certificate.

use std::path::{Path, PathBuf};

use aspen_jose::SigningKey;
use serde::Deserialize;

use crate::{Result, TppError};

#[derive(Debug, Deserialize)]
struct KitJson {
    server: Option<String>,
    org_id: String,
    software_id: String,
    org_name: Option<String>,
    signing_kid: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    aspsp_org_id: Option<String>,
    #[serde(default)]
    sandbox_psus: Vec<serde_json::Value>,
}

pub struct Kit {
    pub dir: PathBuf,
    /// The bank's base URL (`kit.json` `server`, or `--server`).
    pub server: String,
    pub org_id: String,
    pub software_id: String,
    pub org_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub roles: Vec<String>,
    /// The bank's organisation id: the registration `aud` and the `iss` of
    /// its response signatures.
    pub aspsp_org_id: Option<String>,
    pub sandbox_psus: Vec<serde_json::Value>,
    pub signing_key: SigningKey,
    pub ssa: String,
    /// Certificate then key, PEM, as reqwest's identity wants them.
    pub(crate) transport_pem: Vec<u8>,
    /// Absent for a bank whose certificate chains to the system roots.
    pub(crate) ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Kit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kit")
            .field("dir", &self.dir)
            .field("server", &self.server)
            .field("org_id", &self.org_id)
            .field("software_id", &self.software_id)
            .finish_non_exhaustive()
    }
}

impl Kit {
    /// Loads the kit in `dir`; `server` overrides `kit.json`'s.
    pub fn load(dir: &Path, server: Option<&str>) -> Result<Kit> {
        let err = |what: String| TppError::Kit {
            dir: dir.to_path_buf(),
            what,
        };
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| {
                err(if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "{name} is missing (a kit comes from `aspen sandbox init --out {}`)",
                        dir.display()
                    )
                } else {
                    format!("cannot read {name}: {e}")
                })
            })
        };
        let json: KitJson = serde_json::from_slice(&read("kit.json")?)
            .map_err(|e| err(format!("kit.json is not a kit: {e}")))?;
        let server = server
            .map(str::to_string)
            .or(json.server)
            .ok_or_else(|| err("kit.json names no server: pass --server URL".into()))?
            .trim_end_matches('/')
            .to_string();
        if !server.starts_with("https://") {
            return Err(err(format!("the server {server} is not an https URL")));
        }
        let mut transport_pem = read("transport.pem")?;
        transport_pem.push(b'\n');
        transport_pem.extend(read("transport-key.pem")?);
        let key_pem = String::from_utf8(read("signing-key.pem")?)
            .map_err(|_| err("signing-key.pem is not PEM text".into()))?;
        let signing_key = SigningKey::from_pkcs8_pem(&key_pem, Some(json.signing_kid))
            .map_err(|e| err(format!("signing-key.pem: {e}")))?;
        let ssa = String::from_utf8(read("ssa.jwt")?)
            .map_err(|_| err("ssa.jwt is not text".into()))?
            .trim()
            .to_string();
        let ca_pem = match std::fs::read(dir.join("ca.pem")) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(err(format!("cannot read ca.pem: {e}"))),
        };
        Ok(Kit {
            dir: dir.to_path_buf(),
            server,
            org_id: json.org_id,
            software_id: json.software_id,
            org_name: json.org_name,
            redirect_uris: json.redirect_uris,
            roles: json.roles,
            aspsp_org_id: json.aspsp_org_id,
            sandbox_psus: json.sandbox_psus,
            signing_key,
            ssa,
            transport_pem,
            ca_pem,
        })
    }

    /// The `iss` of the TPP's request signatures: `{org_id}/{software_id}`.
    pub fn signer(&self) -> String {
        format!("{}/{}", self.org_id, self.software_id)
    }

    /// The transport certificate's subject as RFC 4514 writes it, for
    /// `tls_client_auth` registrations: the OB Directory's (and the sandbox
    /// CA's) layout, C=GB, O=org name, OU=org id, CN=software id.
    pub fn subject_dn(&self) -> Option<String> {
        let o = self.org_name.as_deref()?;
        Some(format!(
            "CN={},OU={},O={},C=GB",
            self.software_id,
            self.org_id,
            o.replace('\\', "\\\\").replace(',', "\\,")
        ))
    }

    /// Registration scope from the SSA's roles.
    pub fn scope(&self) -> String {
        let mut s = vec!["openid"];
        for r in &self.roles {
            match r.as_str() {
                "AISP" => s.push("accounts"),
                "PISP" => s.push("payments"),
                "CBPII" => s.push("fundsconfirmations"),
                _ => {}
            }
        }
        s.join(" ")
    }

    /// Signs a detached `x-jws-signature` over `body`.
    pub fn sign_detached(&self, body: &[u8]) -> Result<String> {
        Ok(aspen_jose::sign_detached(
            &self.signing_key,
            body,
            &self.signer(),
            crate::TAN,
            crate::now(),
            None,
        )?)
    }
}
