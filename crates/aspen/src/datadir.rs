//! The data directory: created on first start, reused afterwards.
//!
//! ```text
//! aspen-data/
//!   aspen.db                 SQLite database (default store)
//!   ca.pem, ca-key.pem       sandbox CA (trusts kits' transport certs; clients trust the server with it)
//!   server.pem, server-key.pem  TLS certificate for localhost / 127.0.0.1
//!   directory/signing-key.pem   sandbox directory key (signs SSAs)
//!   directory/jwks.json         its public JWKS
//!   keys/                     the server's PS256 signing keys (shared by all nodes)
//!   connector/                a CA of its own for aspen ↔ core connector mTLS:
//!                             ca.pem, server.pem (+key), client.pem (+key)
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aspen_jose::SigningKey;
use serde::{Deserialize, Serialize};

use crate::pki::{self, IssuedCert};

pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn open(root: &Path) -> Result<Self> {
        fs::create_dir_all(root)
            .with_context(|| format!("cannot create data directory {}", root.display()))?;
        // Keys, the database and its WAL live here: the owner only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(root, fs::Permissions::from_mode(0o700)).with_context(|| {
                format!("cannot restrict data directory {} to 0700", root.display())
            })?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The embedded database file and its WAL/shared-memory companions,
    /// created or narrowed to 0600 before SQLite opens them (SQLite gives
    /// the companions the main file's mode).
    pub fn protect_database_files(&self) -> Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let db = self.root.join("aspen.db");
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&db)
                .with_context(|| format!("cannot create {}", db.display()))?;
            for name in ["aspen.db", "aspen.db-wal", "aspen.db-shm"] {
                let p = self.root.join(name);
                match fs::set_permissions(&p, fs::Permissions::from_mode(0o600)) {
                    // Absent, or gone meanwhile: SQLite removes the WAL and
                    // its index when the last connection to them closes (a
                    // server on this directory still stopping), and creates
                    // them again with the main file's mode.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    r => r.with_context(|| format!("cannot restrict {} to 0600", p.display()))?,
                }
            }
        }
        Ok(())
    }

    /// Files only the sandbox profile creates: the sandbox CA's key, the
    /// directory key and the self-made server certificate.
    pub fn sandbox_artifacts(&self) -> Vec<PathBuf> {
        [
            self.root.join("ca-key.pem"),
            self.root.join("directory").join("signing-key.pem"),
            self.root.join("server-key.pem"),
        ]
        .into_iter()
        .filter(|p| p.exists())
        .collect()
    }

    /// The PKI between aspen and the core connector: a CA of its own (not
    /// the sandbox CA that issues TPP certificates, so no TPP certificate
    /// opens the connector), a server certificate for loopback names and
    /// aspen's client certificate. Made once; `aspen serve` and
    /// `aspen connector serve` starting together build it in a private
    /// directory and the first rename wins.
    pub fn connector_pki(&self) -> Result<ConnectorPki> {
        let dir = self.root.join("connector");
        let pki = ConnectorPki::at(&dir);
        if pki.complete() {
            return Ok(pki);
        }
        let tmp = self.root.join(format!(
            "connector.tmp-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let ca = pki::new_ca("Aspen Connector CA")?;
        let server =
            pki::server_cert(&ca, &["localhost".into(), "127.0.0.1".into(), "::1".into()])?;
        let client = pki::client_cert(&ca, "aspen")?;
        let t = ConnectorPki::at(&tmp);
        write_public(&t.ca_file, &ca.cert_pem)?;
        write_secret(&tmp.join("ca-key.pem"), &ca.key_pem)?;
        write_public(
            &t.server_cert,
            &format!("{}{}", server.cert_pem, ca.cert_pem),
        )?;
        write_secret(&t.server_key, &server.key_pem)?;
        write_public(
            &t.client_cert,
            &format!("{}{}", client.cert_pem, ca.cert_pem),
        )?;
        write_secret(&t.client_key, &client.key_pem)?;
        if fs::rename(&tmp, &dir).is_err() {
            // Someone else's set is in place: use theirs.
            let _ = fs::remove_dir_all(&tmp);
        }
        if !pki.complete() {
            bail!(
                "{} is incomplete; remove it to have it made again",
                dir.display()
            );
        }
        Ok(pki)
    }

    pub fn ca_cert_path(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    pub fn directory_jwks_path(&self) -> PathBuf {
        self.root.join("directory").join("jwks.json")
    }

    /// The sandbox CA, created if absent.
    pub fn sandbox_ca(&self) -> Result<IssuedCert> {
        let cert = self.root.join("ca.pem");
        let key = self.root.join("ca-key.pem");
        if cert.exists() && key.exists() {
            return Ok(IssuedCert {
                cert_pem: read(&cert)?,
                key_pem: read(&key)?,
            });
        }
        let ca = pki::new_ca("Aspen Sandbox CA")?;
        write_secret(&key, &ca.key_pem)?;
        write_public(&cert, &ca.cert_pem)?;
        Ok(ca)
    }

    /// The generated server certificate (chain: leaf then CA), created if
    /// absent. Returns (cert chain PEM path, key PEM path).
    pub fn server_cert(
        &self,
        ca: &IssuedCert,
        extra_names: &[String],
    ) -> Result<(PathBuf, PathBuf)> {
        let cert = self.root.join("server.pem");
        let key = self.root.join("server-key.pem");
        if !(cert.exists() && key.exists()) {
            let mut names = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            for n in extra_names {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
            let issued = pki::server_cert(ca, &names)?;
            write_secret(&key, &issued.key_pem)?;
            write_public(&cert, &format!("{}{}", issued.cert_pem, ca.cert_pem))?;
        }
        Ok((cert, key))
    }

    /// The sandbox directory key that signs SSAs, and its JWKS file.
    pub fn directory_key(&self) -> Result<SigningKey> {
        let dir = self.root.join("directory");
        fs::create_dir_all(&dir)?;
        let key_path = dir.join("signing-key.pem");
        let key = if key_path.exists() {
            SigningKey::from_pkcs8_pem(&read(&key_path)?, None)
                .context("directory/signing-key.pem is not a valid RSA key")?
        } else {
            let key = SigningKey::generate(None).context("RSA key generation failed")?;
            write_secret(&key_path, &key.to_pkcs8_pem()?)?;
            key
        };
        let jwks_path = self.directory_jwks_path();
        if !jwks_path.exists() {
            let jwks = serde_json::json!({ "keys": [key.public_jwk()] });
            write_public(&jwks_path, &serde_json::to_string_pretty(&jwks)?)?;
        }
        Ok(key)
    }

    /// The secret that seals page links, in the shared key directory so
    /// every node accepts every other node's links.
    pub fn link_secret(&self) -> Result<Vec<u8>> {
        self.secret_key("link-secret")
    }

    /// The key that seals PSU second-factor secrets (AES-256).
    pub fn factor_key(&self) -> Result<Vec<u8>> {
        self.secret_key("factor-key")
    }

    /// A 32-byte secret of the shared key directory, made once.
    fn secret_key(&self, name: &str) -> Result<Vec<u8>> {
        let dir = self.root.join("keys");
        fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        if !path.exists() {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes)
                .map_err(|_| anyhow::anyhow!("system RNG unavailable"))?;
            write_secret(&path, &hex::encode(bytes))?;
        }
        let hex = read(&path)?;
        hex::decode(hex.trim())
            .ok()
            .filter(|b| b.len() >= 16)
            .with_context(|| format!("{} is not a hex secret", path.display()))
    }

    /// The bank's organisation id at the directory, OB-shaped (18
    /// characters of `[0-9A-Za-z]`), made once per data directory: the DCR
    /// `aud` and the `iss` of response signatures unless `aspsp_org_id` is
    /// configured.
    pub fn aspsp_org_id(&self) -> Result<String> {
        let path = self.root.join("aspsp-org-id");
        if !path.exists() {
            write_public(&path, &format!("0015800001{}", crate::kit::base62(8)))?;
        }
        let id = read(&path)?.trim().to_string();
        if id.len() != 18 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            bail!("{} must hold 18 letters or digits", path.display());
        }
        Ok(id)
    }

    pub fn keyring(&self) -> Result<KeyRing> {
        KeyRing::open(&self.root.join("keys"))
    }
}

/// The server's signing keys. `current` signs; every key in `published`
/// appears in `/jwks` so tokens signed before a rotation still verify until
/// the key is retired. All nodes share this directory.
pub struct KeyRing {
    dir: PathBuf,
    pub state: KeyRingState,
    pub keys: Vec<SigningKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct KeyRingState {
    pub current: String,
    pub published: Vec<String>,
}

impl KeyRing {
    fn state_path(dir: &Path) -> PathBuf {
        dir.join("keyring.json")
    }

    /// Opens the key directory, creating the first key if there is none.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let state_path = Self::state_path(dir);
        if !state_path.exists() {
            let key = SigningKey::generate(None).context("RSA key generation failed")?;
            write_secret(
                &dir.join(format!("{}.pem", key.kid())),
                &key.to_pkcs8_pem()?,
            )?;
            let state = KeyRingState {
                current: key.kid().to_string(),
                published: vec![key.kid().to_string()],
            };
            write_public(&state_path, &serde_json::to_string_pretty(&state)?)?;
        }
        let state: KeyRingState = serde_json::from_str(&read(&state_path)?)
            .with_context(|| format!("{} is not a valid key ring", state_path.display()))?;
        let mut keys = Vec::new();
        for kid in &state.published {
            let pem = read(&dir.join(format!("{kid}.pem")))?;
            let mut key = SigningKey::from_pkcs8_pem(&pem, Some(kid.clone()))
                .with_context(|| format!("key {kid} is not a valid RSA key"))?;
            let cert_path = Self::cert_path(dir, kid);
            if cert_path.exists() {
                let chain = pki::certifies(&read(&cert_path)?, &key).with_context(|| {
                    format!("{} does not certify key {kid}", cert_path.display())
                })?;
                key = key.with_certificates(chain);
            }
            keys.push(key);
        }
        if !state.published.contains(&state.current) {
            bail!("key ring: current key {} is not published", state.current);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            state,
            keys,
        })
    }

    /// `keys/<kid>.crt.pem`: the key's certificate chain (leaf first),
    /// published as `x5c`. The sandbox CA issues it in the sandbox; in
    /// production the operator puts the bank's certificate there.
    fn cert_path(dir: &Path, kid: &str) -> PathBuf {
        dir.join(format!("{kid}.crt.pem"))
    }

    /// Issues a certificate from `ca` for every published key without one.
    pub fn certify_missing(&mut self, ca: &IssuedCert, org_name: &str, org_id: &str) -> Result<()> {
        for key in &mut self.keys {
            if !key.certificates().is_empty() {
                continue;
            }
            let pem = pki::signing_cert(ca, key, org_name, org_id, key.kid())?;
            write_public(&Self::cert_path(&self.dir, key.kid()), &pem)?;
            let chain = pki::certifies(&pem, key)?;
            *key = key.clone().with_certificates(chain);
        }
        Ok(())
    }

    /// Published keys that have no certificate (production warns).
    pub fn uncertified(&self) -> Vec<&str> {
        self.keys
            .iter()
            .filter(|k| k.certificates().is_empty())
            .map(|k| k.kid())
            .collect()
    }

    pub fn current(&self) -> &SigningKey {
        self.keys
            .iter()
            .find(|k| k.kid() == self.state.current)
            .unwrap_or(&self.keys[0])
    }

    /// Adds a new current key; the previous keys stay published.
    pub fn rotate(&mut self) -> Result<&SigningKey> {
        let key = SigningKey::generate(None).context("RSA key generation failed")?;
        write_secret(
            &self.dir.join(format!("{}.pem", key.kid())),
            &key.to_pkcs8_pem()?,
        )?;
        self.state.current = key.kid().to_string();
        self.state.published.insert(0, key.kid().to_string());
        self.save()?;
        self.keys.insert(0, key);
        Ok(&self.keys[0])
    }

    /// Removes a non-current key from the JWKS (its file moves to
    /// `keys/retired/`).
    pub fn retire(&mut self, kid: &str) -> Result<()> {
        if kid == self.state.current {
            bail!("{kid} is the current signing key; rotate first");
        }
        if !self.state.published.iter().any(|k| k == kid) {
            bail!("{kid} is not a published key");
        }
        self.state.published.retain(|k| k != kid);
        self.keys.retain(|k| k.kid() != kid);
        self.save()?;
        let retired = self.dir.join("retired");
        fs::create_dir_all(&retired)?;
        fs::rename(
            self.dir.join(format!("{kid}.pem")),
            retired.join(format!("{kid}.pem")),
        )?;
        Ok(())
    }

    fn save(&self) -> Result<()> {
        write_public(
            &Self::state_path(&self.dir),
            &serde_json::to_string_pretty(&self.state)?,
        )
    }
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes atomically (temp file + rename) so a crash never leaves half a key.
fn write_with_mode(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Where the connector's certificates are.
pub struct ConnectorPki {
    pub ca_file: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl ConnectorPki {
    fn at(dir: &Path) -> Self {
        Self {
            ca_file: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
        }
    }

    fn complete(&self) -> bool {
        [
            &self.ca_file,
            &self.server_cert,
            &self.server_key,
            &self.client_cert,
            &self.client_key,
        ]
        .iter()
        .all(|p| p.exists())
    }
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).expect("system RNG available");
    u64::from_le_bytes(b) % 1_000_000
}

pub fn write_secret(path: &Path, contents: &str) -> Result<()> {
    write_with_mode(path, contents, 0o600)
}

pub fn write_public(path: &Path, contents: &str) -> Result<()> {
    write_with_mode(path, contents, 0o644)
}
