//! Storage for the authorisation server: clients, tokens, used JWT ids.

use async_trait::async_trait;
use serde_json::Value;

use crate::StoreError;
use crate::direct::Script;

#[derive(Debug, Clone, PartialEq)]
pub struct ClientRecord {
    pub client_id: String,
    pub org_id: String,
    pub software_id: String,
    pub client_name: String,
    pub token_endpoint_auth_method: String,
    pub token_endpoint_auth_signing_alg: Option<String>,
    pub tls_client_auth_subject_dn: Option<String>,
    pub client_secret_hash: Option<String>,
    /// Registered under the sandbox's permissive profile.
    pub permissive: bool,
    /// Sandbox headless authorisation enabled.
    pub headless: bool,
    pub scope: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    /// The client's public keys (from its SSA).
    pub jwks: Value,
    pub jwks_uri: Option<String>,
    /// The registration response body (DCR-25), without any secret.
    pub metadata: Value,
    pub issued_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }
}

/// An issued token; only its SHA-256 is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    /// The row id the token carries (`<id>.<secret>`, from
    /// [`AuthStore::next_token_id`]); below zero for a token issued before
    /// tokens carried one.
    pub id: i64,
    /// SHA-256 of the whole token as issued, id included.
    pub token_hash: String,
    pub kind: TokenKind,
    pub client_id: String,
    pub scope: String,
    pub consent_id: Option<String>,
    pub psu_id: Option<String>,
    pub grant: String,
    /// RFC 8705 `x5t#S256` of the certificate the token is bound to.
    pub cert_thumbprint: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
    /// The authorisation code the token came from (revoked on code replay).
    pub code_hash: Option<String>,
}

/// Where a presented token's row is: by the id it carries, or (a token
/// issued before tokens carried one) by its hash alone, on an index that
/// covers only such rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    pub id: Option<i64>,
    /// SHA-256 of the whole token as presented.
    pub hash: String,
}

impl TokenKey {
    /// The condition on `tokens` (as `t`) for `$id` and `$hash`, bound as
    /// [`TokenKey::id_param`] and the hash: a row with the token's id, or
    /// one from before ids. Either way the hash must match too.
    pub(crate) fn cond(&self, id: usize, hash: usize) -> String {
        key_cond(self.id.is_some(), id, hash)
    }

    pub(crate) fn id_param(&self) -> i64 {
        self.id.unwrap_or(0)
    }
}

/// [`TokenKey::cond`] for a key that carries an id, or one that does not.
fn key_cond(carried: bool, id: usize, hash: usize) -> String {
    if carried {
        format!("t.id = ${id} AND t.token_hash = ${hash}")
    } else {
        // The literal lets both planners take the partial index (`WHERE id
        // < 0`); with a parameter SQLite walked every such row by rowid.
        // `$id` (bound as 0) still appears, for PostgreSQL to type it.
        format!("t.id < 0 AND ${id} = 0 AND t.token_hash = ${hash}")
    }
}

/// What the token endpoint reads of a client on every request: all but
/// the registration document (`metadata`, most of the row: it carries the
/// SSA), and the key set as stored, so that a parsed copy can be found by
/// its exact text and never differs from the row just read.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenClient {
    pub client_id: String,
    pub token_endpoint_auth_method: String,
    pub token_endpoint_auth_signing_alg: Option<String>,
    pub tls_client_auth_subject_dn: Option<String>,
    pub client_secret_hash: Option<String>,
    pub permissive: bool,
    pub scope: String,
    pub grant_types: Vec<String>,
    /// The `jwks` column: a JSON document, byte for byte as registered.
    pub jwks_json: String,
    pub jwks_uri: Option<String>,
    /// Counts the row's updates: a token written against it names the
    /// revision its checks were made on (issue 15).
    pub revision: i64,
}

/// A client assertion's `jti` to record with the token it buys.
#[derive(Debug, Clone, Copy)]
pub struct JtiUse<'a> {
    pub scope: &'a str,
    pub jti: &'a str,
    pub expires_at: i64,
}

/// A live client as a request-signature check needs it (COMMON-31): its
/// directory identity and its keys, not the registration document.
#[derive(Debug, Clone, PartialEq)]
pub struct SignerClient {
    pub org_id: String,
    pub software_id: String,
    /// The `jwks` column: a JSON document, byte for byte as registered.
    pub jwks_json: String,
    pub jwks_uri: Option<String>,
}

/// What a resource request needs of its access token, read in one
/// statement ([`AuthStore::access`]): the token, the consent it names (if
/// that consent exists) and, when asked for, its client as a
/// request-signature check needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    pub token: TokenRecord,
    pub consent: Option<crate::consent::ConsentRecord>,
    pub signer: Option<SignerClient>,
}

#[async_trait]
pub trait AuthStore: Send + Sync {
    async fn insert_client(&self, c: &ClientRecord) -> Result<(), StoreError>;
    async fn update_client(&self, c: &ClientRecord) -> Result<(), StoreError>;
    /// A live (not deleted) client.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    /// Deletes the client, and with it every token it holds: a token is
    /// read only with its live client ([`LIVE_CLIENT`]), so no node finds
    /// one afterwards. False when there was no such live client.
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError>;
    async fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError>;
    /// An id for a new token: unique on every node sharing the database,
    /// ascending within this node's block ([`crate::IdBlock`]).
    async fn next_token_id(&self) -> Result<i64, StoreError>;
    /// The token, while its client is live.
    async fn token(&self, key: &TokenKey) -> Result<Option<TokenRecord>, StoreError>;
    /// The token with its consent and (with `signer`) its signing client,
    /// in one statement: an AIS page or a payment reads them all, and on
    /// PostgreSQL each statement is a round trip (issue 15).
    async fn access(&self, key: &TokenKey, signer: bool) -> Result<Option<Access>, StoreError>;
    async fn revoke_token(&self, key: &TokenKey) -> Result<(), StoreError>;
    /// Records a JWT id; false when it was already used in this scope.
    async fn use_jti(&self, scope: &str, jti: &str, expires_at: i64) -> Result<bool, StoreError>;
    /// A live client as the token endpoint needs it ([`TokenClient`]).
    async fn token_client(&self, client_id: &str) -> Result<Option<TokenClient>, StoreError>;
    /// A live client as request-signature checks need it ([`SignerClient`]).
    async fn signer_client(&self, client_id: &str) -> Result<Option<SignerClient>, StoreError>;
    /// A client-credentials token, written only while the client is live at
    /// `client_revision` (the row its checks were made on), with the
    /// assertion's `jti` (if any, as [`AuthStore::use_jti`]) in the same
    /// write: all of it or nothing. False, with nothing written, when the id
    /// was used before in its scope or the client was changed or deleted
    /// since; the `(scope, jti)` primary key and the client row decide,
    /// whichever node asks.
    async fn insert_cc_token(
        &self,
        jti: Option<JtiUse<'_>>,
        client_revision: i64,
        t: &TokenRecord,
    ) -> Result<bool, StoreError>;
}

/// A used JWT id is kept at least this long past now, whatever its `exp`
/// says, so an assertion cannot be replayed within the clock skew.
pub(crate) fn jti_expiry(expires_at: i64) -> i64 {
    expires_at.max(chrono::Utc::now().timestamp() + 60)
}

/// `$first..` for the thirteen [`TOKEN_COLUMNS`], as [`bind_token!`] binds them.
fn token_params(first: usize) -> String {
    (first..first + 13)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The client is live and still the row the token's checks were made on:
/// `$1` is the revision, `$client` the token's `client_id`.
fn client_unchanged(client: usize) -> String {
    format!(
        "SELECT 1 FROM clients WHERE client_id=${client} AND revision=$1 AND deleted_at IS NULL"
    )
}

/// A token's `INSERT`, bound by [`bind_token!`].
pub(crate) fn insert_token_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ({})",
            token_params(1)
        )
    });
    &SQL
}

/// Binds a token's columns in [`TOKEN_COLUMNS`] order.
#[macro_export]
#[doc(hidden)]
macro_rules! bind_token {
    ($q:expr, $t:expr) => {
        $q.bind(&$t.token_hash)
            .bind($t.kind.as_str())
            .bind(&$t.client_id)
            .bind(&$t.scope)
            .bind(&$t.consent_id)
            .bind(&$t.psu_id)
            .bind(&$t.grant)
            .bind(&$t.cert_thumbprint)
            .bind($t.issued_at)
            .bind($t.expires_at)
            .bind($t.revoked as i64)
            .bind(&$t.code_hash)
            .bind($t.id)
    };
}

/// SQLite's insert for a statement that writes at most one row. An
/// `INSERT ... SELECT` that may abort (a `NOT NULL` or `UNIQUE` column, in
/// the default `ABORT`, or any function call) inside a transaction makes
/// SQLite copy every page it changes to a statement journal first, so that
/// it can undo itself: 13,000–19,000 instructions a token (issue 15,
/// fourteenth pass). `FAIL`
/// differs from `ABORT` only in keeping the rows the statement wrote before
/// the failing one; with at most one row there are none, since a row's
/// constraints are all checked before it is written. Only for tables with
/// no foreign key: an immediate foreign key of a multi-row statement
/// journals whatever the statement says.
const SQLITE_INSERT_ONE: &str = "INSERT OR FAIL";

/// SQLite's `insert_cc_token` without a JWT id (`$1` the client's revision,
/// `$2..$14` the token), then [`WRITTEN`].
/// The SQLite scripts answer "written" with a row from a statement of their
/// own, not `RETURNING`: SQLite collects returned rows in an ephemeral
/// table, a pager and page cache opened and freed for every token (issue
/// 15, BENCHMARKS.md).
static CC_PLAIN: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(format!(
        "{SQLITE_INSERT_ONE} INTO tokens ({TOKEN_COLUMNS}) SELECT {} WHERE EXISTS ({}); {WRITTEN}",
        token_params(2),
        client_unchanged(4)
    ))
});

/// One row if the statement before it wrote one.
const WRITTEN: &str = "SELECT 1 WHERE changes() = 1";

/// `insert_cc_token` with a JWT id: `$1` the client's revision, `$2..$3`
/// the JWT id (its key, [`crate::jti::sqlite_key`], and expiry), `$4..$16`
/// the token (`$16` its id). The token is written only if the id is
/// unspent, and the id spent only if the token was written; the write lock
/// `BEGIN IMMEDIATE` takes makes the check and the writes one step, on every
/// node. The id's insert names the token's row rather than asking
/// `changes()`: a function call in an `INSERT ... SELECT` makes SQLite
/// journal the statement (see [`SQLITE_INSERT_ONE`]), 13,000 instructions a
/// token.
static CC_JTI: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(format!(
        "BEGIN IMMEDIATE; \
         {SQLITE_INSERT_ONE} INTO tokens ({TOKEN_COLUMNS}) SELECT {} \
         WHERE EXISTS ({}) AND NOT EXISTS (SELECT 1 FROM used_jti WHERE k=$2); \
         {SQLITE_INSERT_ONE} INTO used_jti (k, expires_at) SELECT $2,$3 \
         WHERE EXISTS (SELECT 1 FROM tokens WHERE id=$16 AND token_hash=$4); \
         {WRITTEN}; \
         COMMIT",
        token_params(4),
        client_unchanged(6)
    ))
});

/// SQLite: on the request's thread ([`crate::direct`]) unless the database
/// is busy; else through sqlx: [`CC_PLAIN`] without a JWT id, with one the
/// statement list ([`crate::sqlite_script`], in a task of its own).
pub(crate) async fn sqlite_insert_cc_token(
    store: &crate::SqliteStore,
    jti: Option<JtiUse<'_>>,
    revision: i64,
    t: &TokenRecord,
) -> Result<bool, StoreError> {
    if let Some(direct) = &store.direct {
        use crate::direct::Param::{Blob, Int, OptText, Text};
        let mut params = vec![Int(revision)];
        let script: &'static Script = match jti {
            None => &CC_PLAIN,
            Some(j) => {
                params.extend([
                    Blob(crate::jti::sqlite_key(j.scope, j.jti)),
                    Int(jti_expiry(j.expires_at)),
                ]);
                &CC_JTI
            }
        };
        params.extend([
            Text(t.token_hash.clone()),
            Text(t.kind.as_str().to_string()),
            Text(t.client_id.clone()),
            Text(t.scope.clone()),
            OptText(t.consent_id.clone()),
            OptText(t.psu_id.clone()),
            Text(t.grant.clone()),
            OptText(t.cert_thumbprint.clone()),
            Int(t.issued_at),
            Int(t.expires_at),
            Int(t.revoked as i64),
            OptText(t.code_hash.clone()),
            Int(t.id),
        ]);
        if let Some(rows) = direct.write(script, params).await? {
            return Ok(!rows.is_empty());
        }
    }
    let pool = &store.writer;
    let Some(jti) = jti else {
        let q = sqlx::query(sqlx::AssertSqlSafe(CC_PLAIN.text.as_str()));
        let rows = bind_token!(q.bind(revision), t).fetch_all(pool).await?;
        return Ok(!rows.is_empty());
    };
    let (pool, key, exp, t) = (
        pool.clone(),
        crate::jti::sqlite_key(jti.scope, jti.jti),
        jti_expiry(jti.expires_at),
        t.clone(),
    );
    tokio::spawn(async move { sqlite_write_cc_token(&pool, key, exp, revision, &t).await })
        .await
        .map_err(|e| StoreError::Backend(format!("token write did not finish: {e}")))?
}

async fn sqlite_write_cc_token(
    pool: &sqlx::SqlitePool,
    jti_key: Vec<u8>,
    jti_expires_at: i64,
    revision: i64,
    t: &TokenRecord,
) -> Result<bool, StoreError> {
    let mut conn = pool.acquire().await?;
    let q = sqlx::query(sqlx::AssertSqlSafe(CC_JTI.text.as_str()))
        .bind(revision)
        .bind(jti_key)
        .bind(jti_expires_at);
    let rows = crate::sqlite_script(&mut conn, bind_token!(q, t)).await?;
    Ok(!rows.is_empty())
}

/// PostgreSQL: through the node's token queue ([`crate::pg_batch`]), which
/// writes each batch with [`pg_write_cc_tokens`].
pub(crate) async fn pg_insert_cc_token(
    store: &crate::PgStore,
    jti: Option<JtiUse<'_>>,
    revision: i64,
    t: &TokenRecord,
) -> Result<bool, StoreError> {
    store.cc_tokens.insert(jti, revision, t).await
}

/// `insert_cc_token` for many tokens in one statement, each as if alone:
/// `$1` the client revisions, `$2..$4` the JWT ids (NULL for none), then
/// the thirteen [`TOKEN_COLUMNS`], one array each. A token is written only
/// while its client is live at its revision, and only if its JWT id, when
/// it has one, is spent by this statement (the primary key decides between
/// nodes). `FOR SHARE` holds the client rows until the commit, so a DCR
/// update or delete on another node either waits for the tokens or has
/// already committed and they are not written. (A token is read only with
/// its live client, [`LIVE_CLIENT`], so a delete that waited ends them all
/// the same.) The JWT ids go in in the order the caller sorted them.
static PG_CC_BATCH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH u AS (SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], \
         $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
         $12::text[], $13::int8[], $14::int8[], $15::int8[], $16::text[], $17::int8[]) \
         WITH ORDINALITY AS u (rev, jscope, jti, jexp, {TOKEN_COLUMNS}, n)), \
         live AS (SELECT * FROM u WHERE EXISTS (SELECT 1 FROM clients c \
         WHERE c.client_id=u.client_id AND c.revision=u.rev AND c.deleted_at IS NULL FOR SHARE)), \
         spent AS (INSERT INTO used_jti (scope, jti, expires_at) \
         SELECT jscope, jti, jexp FROM live WHERE jti IS NOT NULL ORDER BY n \
         ON CONFLICT DO NOTHING RETURNING scope, jti) \
         INSERT INTO tokens ({TOKEN_COLUMNS}) SELECT {TOKEN_COLUMNS} FROM live \
         WHERE jti IS NULL OR EXISTS (SELECT 1 FROM spent s WHERE s.scope=live.jscope AND s.jti=live.jti) \
         RETURNING id"
    )
});

/// Writes `jobs` in one statement ([`PG_CC_BATCH`]); the ids of the tokens
/// written. The batch holds each JWT id at most once.
pub(crate) async fn pg_write_cc_tokens(
    pool: &crate::pg_pool::PgConns,
    jobs: &[&crate::pg_batch::CcToken],
) -> Result<Vec<i64>, sqlx::Error> {
    macro_rules! column {
        ($f:expr) => {
            jobs.iter().map($f).collect::<Vec<_>>()
        };
    }
    let q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(PG_CC_BATCH.as_str()))
        .bind(column!(|j| j.revision))
        .bind(column!(|j| j.jti.as_ref().map(|(s, _, _)| s.as_str())))
        .bind(column!(|j| j.jti.as_ref().map(|(_, i, _)| i.as_str())))
        .bind(column!(|j| j.jti.as_ref().map(|(_, _, e)| *e)))
        .bind(column!(|j| j.token.token_hash.as_str()))
        .bind(column!(|j| j.token.kind.as_str()))
        .bind(column!(|j| j.token.client_id.as_str()))
        .bind(column!(|j| j.token.scope.as_str()))
        .bind(column!(|j| j.token.consent_id.as_deref()))
        .bind(column!(|j| j.token.psu_id.as_deref()))
        .bind(column!(|j| j.token.grant.as_str()))
        .bind(column!(|j| j.token.cert_thumbprint.as_deref()))
        .bind(column!(|j| j.token.issued_at))
        .bind(column!(|j| j.token.expires_at))
        .bind(column!(|j| j.token.revoked as i64))
        .bind(column!(|j| j.token.code_hash.as_deref()))
        .bind(column!(|j| j.token.id));
    q.fetch_all(pool).await
}

/// A token from [`TOKEN_COLUMNS`].
pub(crate) fn token_from_row(r: &impl crate::cols::Cols) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: r.col(12)?,
        token_hash: r.col(0)?,
        kind: token_kind(r.col_str(1)?),
        client_id: r.col(2)?,
        scope: r.col(3)?,
        consent_id: r.col(4)?,
        psu_id: r.col(5)?,
        grant: r.col(6)?,
        cert_thumbprint: r.col(7)?,
        issued_at: r.col(8)?,
        expires_at: r.col(9)?,
        revoked: r.col::<i64>(10)? != 0,
        code_hash: r.col(11)?,
    })
}

/// A [`SignerClient`] from `org_id, software_id, jwks, jwks_uri`.
pub(crate) fn signer_from_row(r: &impl crate::cols::Cols) -> Result<SignerClient, StoreError> {
    Ok(SignerClient {
        org_id: r.col(0)?,
        software_id: r.col(1)?,
        jwks_json: r.col(2)?,
        jwks_uri: r.col(3)?,
    })
}

pub(crate) fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn parse_list(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Backend(format!("corrupt list column: {e}")))
}

pub(crate) fn parse_json(s: &str) -> Result<Value, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Backend(format!("corrupt JSON column: {e}")))
}

pub(crate) fn token_kind(s: &str) -> TokenKind {
    if s == "refresh" {
        TokenKind::Refresh
    } else {
        TokenKind::Access
    }
}

pub(crate) const CLIENT_COLUMNS: &str = "client_id, org_id, software_id, client_name, \
    token_endpoint_auth_method, token_endpoint_auth_signing_alg, tls_client_auth_subject_dn, \
    client_secret_hash, permissive, headless, scope, redirect_uris, grant_types, response_types, \
    jwks, jwks_uri, metadata, issued_at, updated_at";

pub(crate) const TOKEN_COLUMNS: &str = "token_hash, kind, client_id, scope, consent_id, psu_id, \
    grant_type, cert_thumbprint, issued_at, expires_at, revoked, code_hash, id";

/// Where the consent's columns start in [`access_sql`]'s row.
pub(crate) const ACCESS_CONSENT_AT: usize = 13;
/// Where the signing client's columns start in [`access_sql`]'s row.
pub(crate) const ACCESS_SIGNER_AT: usize = 25;

/// A token's client, live: every read of a token (as `t`) joins it, so a
/// deleted client's tokens are gone with it on every node, and deleting a
/// client writes nothing to `tokens`. That spares `tokens` an index on
/// `client_id`, which cost each token's commit a frame (about 5 µs, issue
/// 15, fifteenth pass). The join is by primary key.
pub(crate) const LIVE_CLIENT: &str =
    "JOIN clients s ON s.client_id = t.client_id AND s.deleted_at IS NULL";

/// `cols` (a comma-separated list), each as `p.col`.
pub(crate) fn prefixed(cols: &str, p: &str) -> String {
    cols.split(',')
        .map(|c| format!("{p}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`AuthStore::token`]'s statement, for `$1` and `$2` as
/// [`TokenKey::cond`] binds them.
pub(crate) fn token_sql(key: &TokenKey) -> String {
    format!(
        "SELECT {} FROM tokens t {LIVE_CLIENT} WHERE {}",
        prefixed(TOKEN_COLUMNS, "t"),
        key.cond(1, 2)
    )
}

/// [`AuthStore::access`]'s statement: [`TOKEN_COLUMNS`], the consent's
/// [`crate::consent::CONSENT_COLUMNS`] (NULLs when the token names none or
/// it is gone) and, with `signer`, [`signer_from_row`]'s four, for `$1`
/// and `$2` as [`TokenKey::cond`] binds them; no row when the token's
/// client is not live ([`LIVE_CLIENT`]). Both joins are by primary key.
pub(crate) fn access_sql(key: &TokenKey, signer: bool) -> &'static str {
    static SQL: std::sync::LazyLock<[String; 4]> = std::sync::LazyLock::new(|| {
        let base = format!(
            "SELECT {}, {}{{signer}} FROM tokens t {LIVE_CLIENT} \
             LEFT JOIN consents c ON c.consent_id = t.consent_id WHERE {{cond}}",
            prefixed(TOKEN_COLUMNS, "t"),
            prefixed(crate::consent::CONSENT_COLUMNS, "c"),
        );
        let plain = base.replace("{signer}", "");
        let signed = base.replace("{signer}", ", s.org_id, s.software_id, s.jwks, s.jwks_uri");
        let (carried, legacy) = (key_cond(true, 1, 2), key_cond(false, 1, 2));
        [
            plain.replace("{cond}", &carried),
            signed.replace("{cond}", &carried),
            plain.replace("{cond}", &legacy),
            signed.replace("{cond}", &legacy),
        ]
    });
    &SQL[usize::from(signer) + 2 * usize::from(key.id.is_none())]
}

/// A row of [`access_sql`].
pub(crate) fn access_from_row(
    r: &impl crate::cols::Cols,
    signer: bool,
) -> Result<Access, StoreError> {
    use crate::cols::{At, Cols};
    let consent = At(r, ACCESS_CONSENT_AT);
    let client = At(r, ACCESS_SIGNER_AT);
    Ok(Access {
        token: token_from_row(r)?,
        consent: match consent.col_opt_str(0)? {
            Some(_) => Some(crate::consent::consent_from_row(&consent)?),
            None => None,
        },
        signer: if signer && client.col_opt_str(0)?.is_some() {
            Some(signer_from_row(&client)?)
        } else {
            None
        },
    })
}

/// Implements [`AuthStore`] for a store type with a `pool` field; the SQL is
/// the same on SQLite and PostgreSQL.
#[macro_export]
#[doc(hidden)]
macro_rules! impl_auth_store {
    ($store:ty, $row:ty, $insert_cc_token:path) => {
        #[async_trait::async_trait]
        impl $crate::auth::AuthStore for $store {
            async fn insert_client(&self, c: &$crate::auth::ClientRecord) -> Result<(), $crate::StoreError> {
                let sql = format!(
                    "INSERT INTO clients ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)",
                    $crate::auth::CLIENT_COLUMNS
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&c.client_id)
                    .bind(&c.org_id)
                    .bind(&c.software_id)
                    .bind(&c.client_name)
                    .bind(&c.token_endpoint_auth_method)
                    .bind(&c.token_endpoint_auth_signing_alg)
                    .bind(&c.tls_client_auth_subject_dn)
                    .bind(&c.client_secret_hash)
                    .bind(c.permissive as i64)
                    .bind(c.headless as i64)
                    .bind(&c.scope)
                    .bind($crate::auth::json_list(&c.redirect_uris))
                    .bind($crate::auth::json_list(&c.grant_types))
                    .bind($crate::auth::json_list(&c.response_types))
                    .bind(c.jwks.to_string())
                    .bind(&c.jwks_uri)
                    .bind(c.metadata.to_string())
                    .bind(c.issued_at)
                    .bind(c.updated_at)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn update_client(&self, c: &$crate::auth::ClientRecord) -> Result<(), $crate::StoreError> {
                let r = sqlx::query(
                    "UPDATE clients SET org_id=$2, software_id=$3, client_name=$4, \
                     token_endpoint_auth_method=$5, token_endpoint_auth_signing_alg=$6, \
                     tls_client_auth_subject_dn=$7, client_secret_hash=$8, permissive=$9, headless=$10, \
                     scope=$11, redirect_uris=$12, grant_types=$13, response_types=$14, jwks=$15, \
                     jwks_uri=$16, metadata=$17, updated_at=$18, revision=revision+1 \
                     WHERE client_id=$1 AND deleted_at IS NULL",
                )
                .bind(&c.client_id)
                .bind(&c.org_id)
                .bind(&c.software_id)
                .bind(&c.client_name)
                .bind(&c.token_endpoint_auth_method)
                .bind(&c.token_endpoint_auth_signing_alg)
                .bind(&c.tls_client_auth_subject_dn)
                .bind(&c.client_secret_hash)
                .bind(c.permissive as i64)
                .bind(c.headless as i64)
                .bind(&c.scope)
                .bind($crate::auth::json_list(&c.redirect_uris))
                .bind($crate::auth::json_list(&c.grant_types))
                .bind($crate::auth::json_list(&c.response_types))
                .bind(c.jwks.to_string())
                .bind(&c.jwks_uri)
                .bind(c.metadata.to_string())
                .bind(c.updated_at)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                if r.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn client(&self, client_id: &str) -> Result<Option<$crate::auth::ClientRecord>, $crate::StoreError> {
                let sql = format!(
                    "SELECT {} FROM clients WHERE client_id=$1 AND deleted_at IS NULL",
                    $crate::auth::CLIENT_COLUMNS
                );
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                row.map(|r| client_from_row(&r)).transpose()
            }

            async fn list_clients(&self) -> Result<Vec<$crate::auth::ClientRecord>, $crate::StoreError> {
                let sql = format!(
                    "SELECT {} FROM clients WHERE deleted_at IS NULL ORDER BY issued_at, client_id",
                    $crate::auth::CLIENT_COLUMNS
                );
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                rows.iter().map(client_from_row).collect()
            }

            async fn delete_client(&self, client_id: &str) -> Result<bool, $crate::StoreError> {
                let now = chrono::Utc::now().timestamp();
                let r = sqlx::query("UPDATE clients SET deleted_at=$2 WHERE client_id=$1 AND deleted_at IS NULL")
                    .bind(client_id)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(r.rows_affected() > 0)
            }

            async fn insert_token(&self, t: &$crate::auth::TokenRecord) -> Result<(), $crate::StoreError> {
                $crate::bind_token!(sqlx::query($crate::auth::insert_token_sql()), t)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn next_token_id(&self) -> Result<i64, $crate::StoreError> {
                if let Some(id) = self.token_ids.take() {
                    return Ok(id);
                }
                let end: i64 = sqlx::query_scalar(
                    "UPDATE id_blocks SET next = next + $1 WHERE name = 'tokens' RETURNING next",
                )
                .bind($crate::IdBlock::SIZE)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(self.token_ids.refill(end))
            }

            async fn token(&self, key: &$crate::auth::TokenKey) -> Result<Option<$crate::auth::TokenRecord>, $crate::StoreError> {
                let sql = $crate::auth::token_sql(key);
                let id = key.id_param();
                if let Some(d) = self.direct()
                    && let Some(t) = d.read_opt(&sql, &[&id, &key.hash], |r| $crate::auth::token_from_row(r))?
                {
                    return Ok(t);
                }
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(&key.hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                row.map(|r| $crate::auth::token_from_row(&r)).transpose()
            }

            async fn access(&self, key: &$crate::auth::TokenKey, signer: bool) -> Result<Option<$crate::auth::Access>, $crate::StoreError> {
                let sql = $crate::auth::access_sql(key, signer);
                let id = key.id_param();
                if let Some(d) = self.direct()
                    && let Some(a) = d.read_opt(sql, &[&id, &key.hash], |r| $crate::auth::access_from_row(r, signer))?
                {
                    return Ok(a);
                }
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(&key.hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                row.map(|r| $crate::auth::access_from_row(&r, signer)).transpose()
            }

            async fn revoke_token(&self, key: &$crate::auth::TokenKey) -> Result<(), $crate::StoreError> {
                // `t.`: the key's condition names the table as `t`.
                let sql = format!("UPDATE tokens AS t SET revoked=1 WHERE {}", key.cond(1, 2));
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(key.id_param())
                    .bind(&key.hash)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn use_jti(&self, scope: &str, jti: &str, expires_at: i64) -> Result<bool, $crate::StoreError> {
                // Expired ids go in the background purge
                // (`ConsentStore::purge_expired`), not on this path.
                self.use_spent_id(scope, jti, expires_at).await
            }

            async fn token_client(&self, client_id: &str) -> Result<Option<$crate::auth::TokenClient>, $crate::StoreError> {
                let row: Option<$row> = sqlx::query(
                    "SELECT client_id, token_endpoint_auth_method, token_endpoint_auth_signing_alg, \
                     tls_client_auth_subject_dn, client_secret_hash, permissive, scope, grant_types, \
                     jwks, jwks_uri, revision FROM clients WHERE client_id=$1 AND deleted_at IS NULL",
                )
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                row.map(|r| {
                    use sqlx::Row;
                    Ok($crate::auth::TokenClient {
                        client_id: r.get(0),
                        token_endpoint_auth_method: r.get(1),
                        token_endpoint_auth_signing_alg: r.get(2),
                        tls_client_auth_subject_dn: r.get(3),
                        client_secret_hash: r.get(4),
                        permissive: r.get::<i64, _>(5) != 0,
                        scope: r.get(6),
                        grant_types: $crate::auth::parse_list(r.get::<&str, _>(7))?,
                        jwks_json: r.get(8),
                        jwks_uri: r.get(9),
                        revision: r.get(10),
                    })
                })
                .transpose()
            }

            async fn signer_client(&self, client_id: &str) -> Result<Option<$crate::auth::SignerClient>, $crate::StoreError> {
                const SQL: &str = "SELECT org_id, software_id, jwks, jwks_uri FROM clients WHERE client_id=$1 AND deleted_at IS NULL";
                if let Some(d) = self.direct()
                    && let Some(c) = d.read_opt(SQL, &[&client_id], |r| $crate::auth::signer_from_row(r))?
                {
                    return Ok(c);
                }
                let row: Option<$row> = sqlx::query(SQL)
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                row.map(|r| $crate::auth::signer_from_row(&r)).transpose()
            }

            async fn insert_cc_token(
                &self,
                jti: Option<$crate::auth::JtiUse<'_>>,
                client_revision: i64,
                t: &$crate::auth::TokenRecord,
            ) -> Result<bool, $crate::StoreError> {
                $insert_cc_token(self, jti, client_revision, t).await
            }
        }

        fn client_from_row(r: &$row) -> Result<$crate::auth::ClientRecord, $crate::StoreError> {
            use sqlx::Row;
            Ok($crate::auth::ClientRecord {
                client_id: r.get(0),
                org_id: r.get(1),
                software_id: r.get(2),
                client_name: r.get(3),
                token_endpoint_auth_method: r.get(4),
                token_endpoint_auth_signing_alg: r.get(5),
                tls_client_auth_subject_dn: r.get(6),
                client_secret_hash: r.get(7),
                permissive: r.get::<i64, _>(8) != 0,
                headless: r.get::<i64, _>(9) != 0,
                scope: r.get(10),
                redirect_uris: $crate::auth::parse_list(r.get::<&str, _>(11))?,
                grant_types: $crate::auth::parse_list(r.get::<&str, _>(12))?,
                response_types: $crate::auth::parse_list(r.get::<&str, _>(13))?,
                jwks: $crate::auth::parse_json(r.get::<&str, _>(14))?,
                jwks_uri: r.get(15),
                metadata: $crate::auth::parse_json(r.get::<&str, _>(16))?,
                issued_at: r.get(17),
                updated_at: r.get(18),
            })
        }
    };
}
