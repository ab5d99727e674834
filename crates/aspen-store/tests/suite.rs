//! One suite, both backends: every test body takes an `Arc<dyn Store>` and
//! runs once on SQLite (a temporary file) and once on PostgreSQL (its own
//! schema on the server named by `ASPEN_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). When PostgreSQL cannot be
//! reached the PostgreSQL half prints SKIPPED and why, unless
//! `ASPEN_REQUIRE_POSTGRES=1` (CI), where it fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aspen_domain::{CreditDebit, ResourceKind, World};
use aspen_store::auth::{ClientRecord, JtiUse, TokenKey, TokenKind, TokenRecord};
use aspen_store::consent::{CodeRecord, ConsentRecord, ThrottleRule};
use aspen_store::{Store, TxCursor, TxFilter};
use serde_json::json;

type Body = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
type RawBody = fn(Arc<dyn Store>, Raw) -> Pin<Box<dyn Future<Output = ()> + Send>>;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let s = aspen_store::connect(&url).await.unwrap();
    s.migrate().await.unwrap();
    (s, dir)
}

fn pg_url() -> String {
    std::env::var("ASPEN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A store on a fresh schema, and the schema name to drop afterwards.
async fn postgres() -> Option<(Arc<dyn Store>, String)> {
    let url = pg_url();
    let admin = match sqlx::PgPool::connect(&url).await {
        Ok(p) => p,
        Err(e) => {
            if std::env::var("ASPEN_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("PostgreSQL required but not reachable at {url}: {e}");
            }
            eprintln!("SKIPPED: PostgreSQL not reachable at {url}: {e}");
            return None;
        }
    };
    let schema = format!("t_{}", uuid_like());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let s = aspen_store::connect_with_schema(&url, Some(&schema))
        .await
        .unwrap();
    s.migrate().await.unwrap();
    Some((s, schema))
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n, std::process::id())
}

async fn drop_schema(schema: &str) {
    if let Ok(admin) = sqlx::PgPool::connect(&pg_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await;
    }
}

/// Ends the idle PostgreSQL connections named `application_name` (the
/// lanes of that kind on every node, as a server restart would) and waits
/// for the ends to reach their clients; how many it ended.
async fn end_idle_connections(application_name: &str) -> i64 {
    let admin = sqlx::PgPool::connect(&pg_url()).await.unwrap();
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND state = 'idle') AS t",
    )
    .bind(application_name)
    .fetch_one(&admin)
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    ended
}

async fn on_sqlite(body: Body) {
    let (s, _dir) = sqlite().await;
    body(s).await;
}

async fn on_postgres(body: Body) {
    if let Some((s, schema)) = postgres().await {
        body(s).await;
        drop_schema(&schema).await;
    }
}

macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                on_sqlite(|s| Box::pin($body(s))).await;
            }
            #[tokio::test]
            async fn postgres() {
                on_postgres(|s| Box::pin($body(s))).await;
            }
        }
    };
}

/// `$body(a, b)` on two nodes of each backend (`sqlite_nodes`,
/// `postgres_nodes`), as the tests `$body::sqlite` and `$body::postgres`,
/// with the runtime's flavour when given.
macro_rules! both_nodes {
    ($body:ident $(, $flavor:tt)?) => {
        mod $body {
            use super::*;
            #[tokio::test $($flavor)?]
            async fn sqlite() {
                let (a, b, _dir) = sqlite_nodes().await;
                $body(a, b).await;
            }
            #[tokio::test $($flavor)?]
            async fn postgres() {
                if let Some((a, b, schema)) = postgres_nodes().await {
                    $body(a, b).await;
                    drop_schema(&schema).await;
                }
            }
        }
    };
}

fn world() -> World {
    aspen_sandbox::generate_world(42, chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap())
}

both!(migrations_are_idempotent, |s: Arc<dyn Store>| async move {
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    s.ping().await.unwrap();
});

both!(
    seeding_is_idempotent_and_complete,
    |s: Arc<dyn Store>| async move {
        let w = world();
        assert!(s.seed_world(&w).await.unwrap());
        assert!(
            !s.seed_world(&w).await.unwrap(),
            "second seed changes nothing"
        );
        let st = s.seed_state().await.unwrap().unwrap();
        assert_eq!((st.seed, st.anchor.as_str()), (42, "2026-11-24"));
        let rora = s.psu_by_username("rora").await.unwrap().unwrap();
        assert_eq!(s.psu(&rora.id).await.unwrap().unwrap(), rora);
        assert!(s.psu_by_username("nobody").await.unwrap().is_none());
        let accounts = s.accounts_for_psu(&rora.id).await.unwrap();
        assert_eq!(accounts.len(), 3);
        for a in &accounts {
            let stored = s.account(&a.account_id).await.unwrap().unwrap();
            let expected = w
                .accounts
                .iter()
                .find(|x| x.account_id == a.account_id)
                .unwrap();
            assert_eq!(&stored, expected);
            // Balances agree with the stored transactions.
            let all = s
                .transactions_page(&a.account_id, &TxFilter::all(), None, None, 100_000)
                .await
                .unwrap();
            let booked: i64 = all
                .iter()
                .filter(|t| t.status == "Booked")
                .map(|t| t.signed_minor())
                .sum();
            assert_eq!(booked, stored.booked_minor);
            assert_eq!(
                all.len() as i64,
                s.count_transactions(&a.account_id, &TxFilter::all())
                    .await
                    .unwrap()
            );
        }
        let gbp = &accounts
            .iter()
            .find(|a| a.description == "Financial Account")
            .unwrap()
            .account_id;
        for k in [
            ResourceKind::Beneficiary,
            ResourceKind::DirectDebit,
            ResourceKind::StandingOrder,
            ResourceKind::ScheduledPayment,
            ResourceKind::Statement,
            ResourceKind::Product,
            ResourceKind::Party,
        ] {
            let list = s.resources(gbp, k).await.unwrap();
            assert!(!list.is_empty(), "{k:?}");
            let one = s
                .resource(gbp, k, &list[0].resource_id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(one, list[0]);
        }
        assert!(
            s.resource(gbp, ResourceKind::Statement, "nope")
                .await
                .unwrap()
                .is_none()
        );
        assert!(s.account("nope").await.unwrap().is_none());
    }
);

both!(keyset_pagination_walks_each_transaction_once, |s: Arc<
    dyn Store,
>| async move {
    let w = world();
    s.seed_world(&w).await.unwrap();
    let acct =
        aspen_sandbox::generate_world(42, chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap())
            .accounts[0]
            .account_id
            .clone();
    let anchor = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    let mut bulk = aspen_sandbox::bulk_transactions(42, anchor, &acct, 0, 3000);
    assert_eq!(s.seed_bulk(&acct, &mut bulk, 0, 3000).await.unwrap(), 3000);
    let before = s.account(&acct).await.unwrap().unwrap();
    let expected_sum: i64 = w
        .transactions
        .iter()
        .filter(|t| t.account_id == acct && t.status == "Booked")
        .map(|t| t.signed_minor())
        .sum();
    assert_eq!(before.booked_minor, expected_sum, "bulk pairs cancel out");

    let (lo, hi) = s.transaction_bounds(&acct).await.unwrap().unwrap();
    let filters = [
        TxFilter::all(),
        TxFilter {
            from_ms: lo + (hi - lo) / 3,
            to_ms: hi - (hi - lo) / 4,
            credits: true,
            debits: true,
        },
        TxFilter {
            credits: true,
            debits: false,
            ..TxFilter::all()
        },
        TxFilter {
            credits: false,
            debits: true,
            ..TxFilter::all()
        },
    ];
    for f in filters {
        let total = s.count_transactions(&acct, &f).await.unwrap();
        let mut seen = Vec::new();
        let mut cursor: Option<TxCursor> = None;
        loop {
            let page = s
                .transactions_page(&acct, &f, cursor.as_ref(), None, 97)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            for t in &page {
                assert!(t.booking_ms >= f.from_ms && t.booking_ms < f.to_ms);
                assert!(
                    (t.credit_debit == CreditDebit::Credit && f.credits)
                        || (t.credit_debit == CreditDebit::Debit && f.debits)
                );
            }
            let last = page.last().unwrap();
            cursor = Some(TxCursor {
                booking_ms: last.booking_ms,
                transaction_id: last.transaction_id.clone(),
            });
            seen.extend(page.into_iter().map(|t| (t.booking_ms, t.transaction_id)));
        }
        assert_eq!(seen.len() as i64, total);
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen, sorted, "in order and each exactly once");
        // Backwards from the end gives the same sequence reversed.
        let mut back = Vec::new();
        let mut cursor: Option<TxCursor> = None;
        loop {
            let page = match &cursor {
                None => s
                    .transactions_page(
                        &acct,
                        &f,
                        None,
                        Some(&TxCursor {
                            booking_ms: i64::MAX,
                            transaction_id: String::new(),
                        }),
                        89,
                    )
                    .await
                    .unwrap(),
                Some(c) => s
                    .transactions_page(&acct, &f, None, Some(c), 89)
                    .await
                    .unwrap(),
            };
            if page.is_empty() {
                break;
            }
            let first = page.first().unwrap();
            cursor = Some(TxCursor {
                booking_ms: first.booking_ms,
                transaction_id: first.transaction_id.clone(),
            });
            back.splice(
                0..0,
                page.into_iter().map(|t| (t.booking_ms, t.transaction_id)),
            );
        }
        assert_eq!(back, seen);
    }
});

fn client(id: &str) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        org_id: "org".into(),
        software_id: "soft".into(),
        client_name: "Client".into(),
        token_endpoint_auth_method: "private_key_jwt".into(),
        token_endpoint_auth_signing_alg: Some("PS256".into()),
        tls_client_auth_subject_dn: None,
        client_secret_hash: None,
        permissive: false,
        headless: true,
        scope: "openid accounts".into(),
        redirect_uris: vec!["https://x.example/cb".into()],
        grant_types: vec!["client_credentials".into()],
        response_types: vec!["code id_token".into()],
        jwks: json!({"keys": []}),
        jwks_uri: None,
        metadata: json!({"client_id": id}),
        issued_at: 1,
        updated_at: 1,
    }
}

/// A test token's row id, made from its name (FNV-1a): distinct names
/// have distinct ids here, and every id is above zero as issued ids are.
fn tid(hash: &str) -> i64 {
    let h = hash.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h >> 2) as i64 + 1
}

/// Where the test token named `hash` is.
fn key(hash: &str) -> TokenKey {
    TokenKey {
        id: Some(tid(hash)),
        hash: hash.into(),
    }
}

fn token(hash: &str, client: &str, consent: Option<&str>) -> TokenRecord {
    TokenRecord {
        id: tid(hash),
        token_hash: hash.into(),
        kind: TokenKind::Access,
        client_id: client.into(),
        scope: "accounts".into(),
        consent_id: consent.map(str::to_string),
        psu_id: None,
        grant: "client_credentials".into(),
        cert_thumbprint: Some("x5t".into()),
        issued_at: 1,
        expires_at: i64::MAX / 2,
        revoked: false,
        code_hash: Some("code-1".into()),
    }
}

/// Collects a page's transactions as the store hands them over.
#[derive(Default)]
struct Collected(Vec<aspen_domain::Transaction>);

impl aspen_domain::TxSink for Collected {
    fn entry(&mut self, t: &aspen_domain::TransactionView<'_>) {
        self.0.push(t.to_transaction());
    }
    /// Owned transactions come only from the columns.
    fn takes_stored(&self) -> bool {
        false
    }
    fn stored(&mut self, _: &aspen_domain::StoredTx<'_>) {
        panic!("a stored form handed over, not asked for");
    }
    fn restart(&mut self) {
        self.0.clear();
    }
}

/// [`aspen_store::WorldStore::transactions_page_summary`] with its
/// transactions in page order, checked against what it says of them: how
/// many, their order, and the first's and last's positions (where the
/// read ended only for a full page).
async fn page_summary(
    s: &Arc<dyn Store>,
    acct: &str,
    f: &TxFilter,
    after: Option<&TxCursor>,
    before: Option<&TxCursor>,
    limit: i64,
    summary: bool,
) -> Option<(Vec<aspen_domain::Transaction>, aspen_store::TxPageSummary)> {
    let mut sink = Collected::default();
    let p = s
        .transactions_page_summary(acct, f, after, before, limit, summary, &mut sink)
        .await
        .unwrap()?;
    let mut rows = sink.0;
    assert_eq!(
        p.descending,
        before.is_some(),
        "read backwards, handed over last first"
    );
    if p.descending {
        rows.reverse();
    }
    assert_eq!(p.rows, rows.len());
    let at = |t: &aspen_domain::Transaction| TxCursor {
        booking_ms: t.booking_ms,
        transaction_id: t.transaction_id.clone(),
    };
    let full = p.rows == limit as usize;
    let (first, last) = (rows.first().map(at), rows.last().map(at));
    if p.descending {
        assert_eq!((&p.first, &p.last), (&first.filter(|_| full), &last));
    } else {
        assert_eq!((&p.first, &p.last), (&first, &last.filter(|_| full)));
    }
    Some((rows, p))
}

both!(
    page_with_summary_agrees_with_the_separate_reads,
    |s: Arc<dyn Store>| async move {
        s.seed_world(&world()).await.unwrap();
        let acct = aspen_sandbox::generate_world(
            42,
            chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        )
        .accounts[0]
            .account_id
            .clone();
        let anchor = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let mut bulk = aspen_sandbox::bulk_transactions(42, anchor, &acct, 0, 1500);
        s.seed_bulk(&acct, &mut bulk, 0, 1500).await.unwrap();
        let (lo, hi) = s.transaction_bounds(&acct).await.unwrap().unwrap();
        let filters = [
            TxFilter::all(),
            // Partial days at both ends: the count's edges.
            TxFilter {
                from_ms: lo + (hi - lo) / 3 + 12_345,
                to_ms: hi - (hi - lo) / 4 - 6_789,
                credits: true,
                debits: true,
            },
            TxFilter {
                credits: false,
                debits: true,
                ..TxFilter::all()
            },
            // Nothing matches: an empty page still answers with its summary.
            TxFilter {
                from_ms: hi + 1,
                to_ms: hi + 2,
                credits: true,
                debits: true,
            },
        ];
        for f in filters {
            let total = s.count_transactions(&acct, &f).await.unwrap();
            let (_, first) = page_summary(&s, &acct, &f, None, None, 97, true)
                .await
                .unwrap();
            assert_eq!(first.count, Some(total));
            assert_eq!(first.bounds, Some((lo, hi)));
            // Forward and backward, every page as the plain page read gives it.
            let mut after: Option<TxCursor> = None;
            let mut seen = 0;
            loop {
                let plain = s
                    .transactions_page(&acct, &f, after.as_ref(), None, 97)
                    .await
                    .unwrap();
                let (rows, p) =
                    page_summary(&s, &acct, &f, after.as_ref(), None, 97, after.is_none())
                        .await
                        .unwrap();
                assert_eq!(rows, plain);
                if after.is_some() {
                    assert_eq!((p.count, p.bounds), (None, None));
                }
                let Some(last) = plain.last() else { break };
                seen += plain.len() as i64;
                after = Some(TxCursor {
                    booking_ms: last.booking_ms,
                    transaction_id: last.transaction_id.clone(),
                });
            }
            assert_eq!(seen, total);
            let end = TxCursor {
                booking_ms: i64::MAX,
                transaction_id: String::new(),
            };
            let plain = s
                .transactions_page(&acct, &f, None, Some(&end), 89)
                .await
                .unwrap();
            let (rows, _) = page_summary(&s, &acct, &f, None, Some(&end), 89, false)
                .await
                .unwrap();
            assert_eq!(rows, plain);
        }
        // An account that does not exist, with or without the summary.
        for summary in [true, false] {
            assert!(
                page_summary(&s, "nope", &TxFilter::all(), None, None, 10, summary)
                    .await
                    .is_none()
            );
        }
    }
);

both!(clients_tokens_and_jti, |s: Arc<dyn Store>| async move {
    s.insert_client(&client("c1")).await.unwrap();
    assert!(matches!(
        s.insert_client(&client("c1")).await,
        Err(aspen_store::StoreError::Conflict(_))
    ));
    assert_eq!(s.client("c1").await.unwrap().unwrap(), client("c1"));
    let mut upd = client("c1");
    upd.scope = "openid".into();
    s.update_client(&upd).await.unwrap();
    assert_eq!(s.client("c1").await.unwrap().unwrap().scope, "openid");
    s.insert_token(&token("t1", "c1", None)).await.unwrap();
    s.insert_token(&token("t2", "c1", Some("cons")))
        .await
        .unwrap();
    assert!(!s.token(&key("t1")).await.unwrap().unwrap().revoked);
    // Deleting a client ends its tokens with it.
    assert!(s.access(&key("t2"), false).await.unwrap().is_some());
    assert!(s.delete_client("c1").await.unwrap());
    assert!(s.client("c1").await.unwrap().is_none());
    assert!(s.token(&key("t1")).await.unwrap().is_none());
    assert!(s.access(&key("t2"), false).await.unwrap().is_none());
    assert!(s.access(&key("t2"), true).await.unwrap().is_none());
    assert!(!s.delete_client("c1").await.unwrap());
    assert_eq!(s.list_clients().await.unwrap().len(), 0);

    // A jti is accepted once per scope, however many callers race.
    let far = chrono::Utc::now().timestamp() + 600;
    let mut handles = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            s.use_jti("assertion:c1", "j1", far).await.unwrap()
        }));
    }
    let mut wins = 0;
    for h in handles {
        wins += h.await.unwrap() as u32;
    }
    assert_eq!(wins, 1);
    assert!(
        s.use_jti("assertion:c2", "j1", far).await.unwrap(),
        "other scope is independent"
    );
});

both!(token_client_reads_the_row_as_it_is_now, |s: Arc<
    dyn Store,
>| async move {
    assert!(s.token_client("c1").await.unwrap().is_none());
    let c = client("c1");
    s.insert_client(&c).await.unwrap();
    let t = s.token_client("c1").await.unwrap().unwrap();
    assert_eq!(
        (
            t.client_id.as_str(),
            t.token_endpoint_auth_method.as_str(),
            t.scope.as_str()
        ),
        (
            "c1",
            c.token_endpoint_auth_method.as_str(),
            c.scope.as_str()
        )
    );
    assert_eq!(t.grant_types, c.grant_types);
    assert_eq!(t.permissive, c.permissive);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&t.jwks_json).unwrap(),
        c.jwks
    );
    // An update and a delete count on the next read: nothing is kept.
    let mut upd = c.clone();
    upd.jwks = json!({"keys": [{"kty": "RSA", "kid": "new"}]});
    upd.scope = "openid".into();
    s.update_client(&upd).await.unwrap();
    let t = s.token_client("c1").await.unwrap().unwrap();
    assert_eq!(t.scope, "openid");
    assert_eq!(t.revision, 1, "every update counts");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&t.jwks_json).unwrap(),
        upd.jwks
    );
    assert!(s.delete_client("c1").await.unwrap());
    assert!(s.token_client("c1").await.unwrap().is_none());
});

both!(
    a_token_and_its_jti_are_one_write,
    |s: Arc<dyn Store>| async move {
        let far = chrono::Utc::now().timestamp() + 600;
        s.insert_client(&client("c1")).await.unwrap();
        s.insert_client(&client("c2")).await.unwrap();
        // Racing callers with the same jti, each with its own token: one wins,
        // and only the winner's token exists.
        let mut handles = Vec::new();
        for i in 0..8 {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                let won = spend(
                    &s,
                    "assertion:c1",
                    "j1",
                    far,
                    &token(&format!("r{i}"), "c1", None),
                )
                .await
                .unwrap();
                (i, won)
            }));
        }
        let mut winners = Vec::new();
        for h in handles {
            let (i, won) = h.await.unwrap();
            if won {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        for i in 0..8 {
            let stored = s.token(&key(&format!("r{i}"))).await.unwrap();
            assert_eq!(stored.is_some(), winners.contains(&i), "token r{i}");
        }
        assert_eq!(
            s.token(&key(&format!("r{}", winners[0])))
                .await
                .unwrap()
                .unwrap(),
            token(&format!("r{}", winners[0]), "c1", None)
        );
        // The jti is the same one `use_jti` guards, in both directions.
        assert!(!s.use_jti("assertion:c1", "j1", far).await.unwrap());
        assert!(s.use_jti("assertion:c1", "j2", far).await.unwrap());
        assert!(
            !spend(&s, "assertion:c1", "j2", far, &token("r9", "c1", None))
                .await
                .unwrap()
        );
        assert!(s.token(&key("r9")).await.unwrap().is_none());
        // Another scope is independent.
        assert!(
            spend(&s, "assertion:c2", "j1", far, &token("r10", "c2", None))
                .await
                .unwrap()
        );
        // A failed write (the token's hash already exists) leaves no jti
        // behind and the connection usable: the same jti then succeeds.
        assert!(matches!(
            spend(&s, "assertion:c1", "j3", far, &token("r10", "c1", None)).await,
            Err(aspen_store::StoreError::Conflict(_))
        ));
        // (Had the failed write left its transaction open, this write would
        // wait for SQLite's write lock and fail.)
        assert!(
            spend(&s, "assertion:c1", "j3", far, &token("r11", "c1", None))
                .await
                .unwrap()
        );
        // The jti is kept at least a minute, whatever its own expiry.
        assert!(
            spend(&s, "assertion:c1", "old", 1, &token("r12", "c1", None))
                .await
                .unwrap()
        );
        s.purge_expired(chrono::Utc::now().timestamp(), 100)
            .await
            .unwrap();
        assert!(!s.use_jti("assertion:c1", "old", 1).await.unwrap());
    }
);

both!(
    a_token_write_whose_caller_gives_up_finishes_or_leaves_nothing,
    |s: Arc<dyn Store>| async move {
        let far = chrono::Utc::now().timestamp() + 600;
        s.insert_client(&client("c1")).await.unwrap();
        // Callers that give up at once (a client that went away): each write
        // either happened whole or not at all, and no connection is left
        // holding a transaction.
        for i in 0..40 {
            let (jti, t) = (format!("gone{i}"), token(&format!("g{i}"), "c1", None));
            let write = spend(&s, "assertion:c1", &jti, far, &t);
            let _ = tokio::time::timeout(std::time::Duration::from_micros(i * 25), write).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        for i in 0..40 {
            let written = s.token(&key(&format!("g{i}"))).await.unwrap().is_some();
            let spent = !s
                .use_jti("assertion:c1", &format!("gone{i}"), far)
                .await
                .unwrap();
            assert_eq!(written, spent, "write {i}: token {written}, jti {spent}");
        }
        // Every pooled connection writes again at once (SQLite's busy
        // timeout is ten seconds: a leftover transaction would hold the
        // lock far longer than this allows).
        let writes = (0..16).map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let t = token(&format!("a{i}"), "c1", None);
                spend(&s, "assertion:c1", &format!("after{i}"), far, &t)
                    .await
                    .unwrap()
            })
        });
        let all = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            futures_util::future::join_all(writes),
        )
        .await
        .expect("no connection is left in a transaction");
        assert!(all.into_iter().all(|r| r.unwrap()));
    }
);

/// `insert_cc_token` with a JWT id, for client revision 0 (as inserted).
async fn spend(
    s: &Arc<dyn Store>,
    scope: &str,
    jti: &str,
    expires_at: i64,
    t: &TokenRecord,
) -> Result<bool, aspen_store::StoreError> {
    let jti = JtiUse {
        scope,
        jti,
        expires_at,
    };
    s.insert_cc_token(Some(jti), 0, t).await
}

both!(
    a_cc_token_is_written_only_on_the_client_row_it_was_checked_on,
    |s: Arc<dyn Store>| async move {
        let far = chrono::Utc::now().timestamp() + 600;
        // No such client: nothing written, the jti not spent.
        assert!(
            !spend(&s, "assertion:c1", "n1", far, &token("n1", "c1", None))
                .await
                .unwrap()
        );
        assert!(s.use_jti("assertion:c1", "n1", far).await.unwrap());
        let c = client("c1");
        s.insert_client(&c).await.unwrap();
        assert!(
            s.insert_cc_token(None, 0, &token("n2", "c1", None))
                .await
                .unwrap()
        );
        // Updated (by any node): a token checked on revision 0 is not
        // written, with or without a jti, and its jti stays unspent.
        s.update_client(&c).await.unwrap();
        assert!(
            !s.insert_cc_token(None, 0, &token("n3", "c1", None))
                .await
                .unwrap()
        );
        assert!(
            !spend(&s, "assertion:c1", "n4", far, &token("n4", "c1", None))
                .await
                .unwrap()
        );
        assert!(s.token(&key("n3")).await.unwrap().is_none());
        assert!(s.token(&key("n4")).await.unwrap().is_none());
        assert!(s.use_jti("assertion:c1", "n4", far).await.unwrap());
        // On the current revision it is.
        assert!(
            s.insert_cc_token(None, 1, &token("n5", "c1", None))
                .await
                .unwrap()
        );
        // Deleted: nothing, whatever the revision.
        assert!(s.delete_client("c1").await.unwrap());
        assert!(
            !s.insert_cc_token(None, 1, &token("n6", "c1", None))
                .await
                .unwrap()
        );
        // What was written before the delete is gone with the client.
        assert!(s.token(&key("n5")).await.unwrap().is_none());
    }
);

both!(
    many_tokens_at_once_are_all_written,
    |s: Arc<dyn Store>| async move {
        // More tokens at once than one PostgreSQL statement takes (24): the
        // second statement goes out beside the first, and every token is
        // written once, its JWT id with it.
        s.insert_client(&client("c1")).await.unwrap();
        let far = chrono::Utc::now().timestamp() + 600;
        let writes: Vec<_> = (0..100)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let t = token(&format!("m{i}"), "c1", None);
                    spend(&s, "assertion:c1", &format!("m{i}"), far, &t).await
                })
            })
            .collect();
        let done = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            futures_util::future::join_all(writes),
        )
        .await
        .expect("every write answered");
        for (i, w) in done.into_iter().enumerate() {
            assert!(w.unwrap().unwrap(), "m{i}");
            assert!(
                s.token(&key(&format!("m{i}"))).await.unwrap().is_some(),
                "m{i}"
            );
            assert!(
                !s.use_jti("assertion:c1", &format!("m{i}"), far)
                    .await
                    .unwrap(),
                "m{i} spent"
            );
        }
    }
);

both!(
    a_client_delete_racing_token_writes_leaves_no_token_usable,
    |s: Arc<dyn Store>| async move {
        // Token writes checked on the live row race the client's delete:
        // whichever wins, no token of the client is found afterwards.
        s.insert_client(&client("c1")).await.unwrap();
        let writes: Vec<_> = (0..24)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let t = token(&format!("d{i}"), "c1", None);
                    if i % 2 == 0 {
                        s.insert_cc_token(None, 0, &t).await.unwrap()
                    } else {
                        let far = chrono::Utc::now().timestamp() + 600;
                        spend(&s, "assertion:c1", &format!("d{i}"), far, &t)
                            .await
                            .unwrap()
                    }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(s.delete_client("c1").await.unwrap());
        for (i, w) in writes.into_iter().enumerate() {
            w.await.unwrap();
            let k = key(&format!("d{i}"));
            assert!(
                s.token(&k).await.unwrap().is_none(),
                "token d{i} outlived its client"
            );
            assert!(s.access(&k, false).await.unwrap().is_none(), "d{i}");
        }
    }
);

/// A domestic payment order of client `c1`, due now, as the API hands it to
/// the store.
/// The ledger's side of [`pending_payment`]: `minor` from `account`, due now.
fn ledger_payment(
    id: &str,
    minor: i64,
    account: &aspen_domain::Account,
    now: i64,
) -> aspen_store::payments::LedgerPayment {
    aspen_store::payments::LedgerPayment {
        payment_id: id.into(),
        account_id: account.account_id.clone(),
        debit_minor: minor,
        debit_currency: account.currency.clone(),
        status: "Pending".into(),
        created_at: now,
        status_updated_at: now,
        due_at: Some(now),
        reason: None,
        instruction: json!({}),
    }
}

fn pending_payment(
    id: &str,
    consent: &str,
    minor: i64,
    account: &aspen_domain::Account,
    now: i64,
    data: serde_json::Value,
) -> aspen_store::payments::PaymentRecord {
    aspen_store::payments::PaymentRecord {
        payment_id: id.into(),
        kind: "domestic-payment".into(),
        consent_id: consent.into(),
        client_id: "c1".into(),
        status: "Pending".into(),
        created_at: now,
        status_updated_at: now,
        due_at: Some(now),
        account_id: account.account_id.clone(),
        debit_minor: minor,
        debit_currency: account.currency.clone(),
        reason: None,
        data,
    }
}

fn consent(id: &str) -> ConsentRecord {
    ConsentRecord {
        consent_id: id.into(),
        kind: "account-access".into(),
        client_id: "c1".into(),
        status: "AwaitingAuthorisation".into(),
        created_at: 1,
        status_updated_at: 1,
        expires_at: None,
        psu_id: None,
        accounts: vec![],
        data: json!({"Data": {"Permissions": ["ReadAccountsBasic"]}, "Risk": {}}),
        authorised_at: None,
        deleted: false,
    }
}

// Issue 15: a resource request reads its token, the consent the token
// names and (for a signed request) the signing client in one statement;
// each part is exactly what its own read returns, and absent when it is.
both!(access_reads_token_consent_and_signer_as_one, |s: Arc<
    dyn Store,
>| async move {
    s.insert_client(&client("c1")).await.unwrap();
    s.insert_consent(&consent("k1")).await.unwrap();
    s.insert_token(&token("ta", "c1", Some("k1")))
        .await
        .unwrap();
    s.insert_token(&token("tb", "c1", None)).await.unwrap();
    s.insert_token(&token("tc", "c1", Some("gone")))
        .await
        .unwrap();

    let a = s.access(&key("ta"), true).await.unwrap().unwrap();
    assert_eq!(a.token, s.token(&key("ta")).await.unwrap().unwrap());
    assert_eq!(a.consent, s.consent("k1").await.unwrap());
    assert!(a.consent.is_some());
    assert_eq!(a.signer, s.signer_client("c1").await.unwrap());
    assert!(a.signer.is_some());
    // Without asking for the signer, the rest is the same.
    let unsigned = s.access(&key("ta"), false).await.unwrap().unwrap();
    assert_eq!(
        (&unsigned.token, &unsigned.consent, &unsigned.signer),
        (&a.token, &a.consent, &None)
    );

    // No consent named, or one that does not exist.
    let b = s.access(&key("tb"), true).await.unwrap().unwrap();
    assert_eq!(
        (b.token.token_hash.as_str(), b.consent, b.signer.is_some()),
        ("tb", None, true)
    );
    assert_eq!(
        s.access(&key("tc"), false).await.unwrap().unwrap().consent,
        None
    );
    // An unknown token; a deleted client's token, signed or not.
    assert!(s.access(&key("nope"), true).await.unwrap().is_none());
    assert!(s.delete_client("c1").await.unwrap());
    assert!(s.access(&key("ta"), true).await.unwrap().is_none());
    assert!(s.access(&key("ta"), false).await.unwrap().is_none());
});

both!(consents_codes_sessions_and_throttling, |s: Arc<
    dyn Store,
>| async move {
    s.insert_client(&client("c1")).await.unwrap();
    s.insert_consent(&consent("k1")).await.unwrap();
    s.insert_token(&token("tk", "c1", Some("k1")))
        .await
        .unwrap();
    // Compare-and-set transitions.
    assert!(
        !s.transition_consent("k1", &["Authorised"], "Revoked", 5, None)
            .await
            .unwrap()
    );
    let accts = vec!["a1".to_string(), "a2".to_string()];
    assert!(
        s.transition_consent(
            "k1",
            &["AwaitingAuthorisation"],
            "Authorised",
            7,
            Some(("p1", &accts))
        )
        .await
        .unwrap()
    );
    let c = s.consent("k1").await.unwrap().unwrap();
    assert_eq!(
        (
            c.status.as_str(),
            c.psu_id.as_deref(),
            c.accounts.clone(),
            c.authorised_at
        ),
        ("Authorised", Some("p1"), accts.clone(), Some(7))
    );
    assert_eq!(s.consents_for_psu("p1").await.unwrap().len(), 1);
    assert!(s.end_consent("k1", Some("Revoked"), 9).await.unwrap());
    assert_eq!(s.consent("k1").await.unwrap().unwrap().status, "Revoked");
    assert!(
        s.token(&key("tk")).await.unwrap().unwrap().revoked,
        "revocation kills the consent's tokens"
    );
    s.insert_consent(&consent("k2")).await.unwrap();
    assert!(s.end_consent("k2", None, 9).await.unwrap());
    assert!(s.consent("k2").await.unwrap().unwrap().deleted);

    // Codes: exactly one concurrent redemption wins; the rest see a replay.
    let code = CodeRecord {
        code_hash: "h1".into(),
        client_id: "c1".into(),
        redirect_uri: "https://x.example/cb".into(),
        consent_id: "k1".into(),
        psu_id: "p1".into(),
        nonce: "n".into(),
        scope: "openid accounts".into(),
        code_challenge: None,
        acr: "urn:openbanking:psd2:sca".into(),
        auth_time: 1,
        expires_at: 100,
        amr: vec!["pwd".into()],
    };
    s.insert_code(&code).await.unwrap();
    assert_eq!(s.code("h1").await.unwrap(), Some((code.clone(), false)));
    // Another client cannot spend it, nor can anyone once it has expired.
    assert!(!s.spend_code("h1", "c2", 50, &[]).await.unwrap());
    assert!(!s.spend_code("h1", "c1", 100, &[]).await.unwrap());
    let mut handles = Vec::new();
    for i in 0..6 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut t = token(&format!("from-code-{i}"), "c1", Some("k1"));
            t.code_hash = Some("h1".into());
            s.spend_code("h1", "c1", 50, &[t]).await.unwrap()
        }));
    }
    let mut winners = 0;
    for h in handles {
        winners += h.await.unwrap() as usize;
    }
    assert_eq!(winners, 1, "exactly one concurrent spend wins");
    assert!(s.code("h1").await.unwrap().unwrap().1, "the code is spent");
    let mut written = 0;
    for i in 0..6 {
        written += s
            .token(&key(&format!("from-code-{i}")))
            .await
            .unwrap()
            .is_some() as usize;
    }
    assert_eq!(written, 1, "only the winner's tokens were written");
    assert!(s.code("nope").await.unwrap().is_none());
    s.insert_token(&token("tc", "c1", None)).await.unwrap();
    s.revoke_tokens_of_code("code-1").await.unwrap();
    assert!(s.token(&key("tc")).await.unwrap().unwrap().revoked);

    // Sessions expire.
    let sess = aspen_store::consent::WebSession {
        id_hash: "s1".into(),
        kind: "authorize".into(),
        csrf: "x".into(),
        psu_id: None,
        auth_time: None,
        payload: json!({"a": 1}),
        expires_at: 100,
    };
    s.insert_session(&sess).await.unwrap();
    assert_eq!(s.session("s1", 50).await.unwrap().unwrap(), sess);
    assert!(s.session("s1", 150).await.unwrap().is_none());
    s.set_session_psu("s1", "p1", 60).await.unwrap();
    assert_eq!(
        s.session("s1", 60)
            .await
            .unwrap()
            .unwrap()
            .psu_id
            .as_deref(),
        Some("p1")
    );
    s.delete_session("s1").await.unwrap();
    assert!(s.session("s1", 50).await.unwrap().is_none());

    // Login throttling: attempts are reserved up to the limit, concurrently
    // too; failures at the limit lock the key out with a doubling lockout.
    let rule = ThrottleRule {
        limit: 3,
        window: 900,
        lock_secs: 60,
    };
    let mut handles = Vec::new();
    for _ in 0..12 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            s.reserve_login_attempt("psu:rora", 1000, rule)
                .await
                .unwrap()
        }));
    }
    let mut reserved = 0;
    for h in handles {
        reserved += h.await.unwrap() as usize;
    }
    assert_eq!(
        reserved, 3,
        "12 concurrent attempts reserve exactly the limit"
    );
    s.fail_login_attempt("psu:rora", 1000, rule).await.unwrap();
    assert!(
        !s.reserve_login_attempt("psu:rora", 1059, rule)
            .await
            .unwrap()
    );
    assert!(
        s.reserve_login_attempt("psu:rora", 1060, rule)
            .await
            .unwrap()
    );
    for _ in 0..2 {
        assert!(
            s.reserve_login_attempt("psu:rora", 1060, rule)
                .await
                .unwrap()
        );
    }
    s.fail_login_attempt("psu:rora", 1060, rule).await.unwrap();
    // Second lockout: twice as long.
    assert!(
        !s.reserve_login_attempt("psu:rora", 1179, rule)
            .await
            .unwrap()
    );
    assert!(
        s.reserve_login_attempt("psu:rora", 1180, rule)
            .await
            .unwrap()
    );
    // A released attempt is given back; a cleared key starts afresh.
    s.release_login_attempt("psu:rora").await.unwrap();
    assert!(
        s.reserve_login_attempt("psu:rora", 1180, rule)
            .await
            .unwrap()
    );
    s.clear_login_failures("psu:rora").await.unwrap();
    for _ in 0..3 {
        assert!(
            s.reserve_login_attempt("psu:rora", 1200, rule)
                .await
                .unwrap()
        );
    }
    assert!(
        !s.reserve_login_attempt("psu:rora", 1200, rule)
            .await
            .unwrap()
    );
    // A new window lets attempts in again.
    assert!(
        s.reserve_login_attempt("psu:rora", 2100, rule)
            .await
            .unwrap()
    );

    // Refresh rotation: one winner of concurrent rotations, only over the
    // bound certificate, and the new tokens written with it.
    let mut rt = token("rt1", "c1", Some("k9"));
    rt.kind = TokenKind::Refresh;
    s.insert_token(&rt).await.unwrap();
    assert!(
        !s.rotate_refresh_token(&key("rt1"), "c1", "other-cert", 10, &[])
            .await
            .unwrap()
    );
    assert!(
        !s.rotate_refresh_token(&key("rt1"), "c2", "x5t", 10, &[])
            .await
            .unwrap()
    );
    let mut handles = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let t = token(&format!("rotated-{i}"), "c1", Some("k9"));
            s.rotate_refresh_token(&key("rt1"), "c1", "x5t", 10, &[t])
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for h in handles {
        winners += h.await.unwrap() as usize;
    }
    assert_eq!(winners, 1);
    let mut written = 0;
    for i in 0..8 {
        written += s
            .token(&key(&format!("rotated-{i}")))
            .await
            .unwrap()
            .is_some() as usize;
    }
    assert_eq!(written, 1);

    // Purge: expired sessions and JWT ids go, live ones stay.
    for (id, exp) in [("old", 10), ("live", 10_000)] {
        s.insert_session(&aspen_store::consent::WebSession {
            id_hash: id.into(),
            kind: "authorize".into(),
            csrf: "x".into(),
            psu_id: None,
            auth_time: None,
            payload: json!({}),
            expires_at: exp,
        })
        .await
        .unwrap();
    }
    s.purge_expired(5_000, 1).await.unwrap();
    assert!(s.session("old", 0).await.unwrap().is_none());
    assert!(s.session("live", 0).await.unwrap().is_some());

    // A revoked token goes a day after its issue, whatever its expiry: a
    // rotated refresh token of a consent with no end date would otherwise
    // stay for ever, one row a refresh.
    for (h, revoked, issued_at) in [
        ("revoked-old", true, 1),
        ("live-old", false, 1),
        ("revoked-new", true, 50_000),
    ] {
        s.insert_token(&TokenRecord {
            revoked,
            issued_at,
            ..token(h, "c1", None)
        })
        .await
        .unwrap();
    }
    // A token goes a day past its expiry, not before: on PostgreSQL found
    // by the expiry index, on SQLite by the walk over ids (no index there).
    for (h, expires_at) in [("expired-old", 100_000 - 86_400), ("expired-new", 99_990)] {
        s.insert_token(&TokenRecord {
            issued_at: 1,
            expires_at,
            ..token(h, "c1", None)
        })
        .await
        .unwrap();
    }
    s.purge_expired(100_000, 10).await.unwrap();
    assert!(s.token(&key("revoked-old")).await.unwrap().is_none());
    assert!(!s.token(&key("live-old")).await.unwrap().unwrap().revoked);
    assert!(s.token(&key("revoked-new")).await.unwrap().unwrap().revoked);
    assert!(s.token(&key("expired-old")).await.unwrap().is_none());
    assert!(s.token(&key("expired-new")).await.unwrap().is_some());
});

fn idem(key: &str, hash: &str) -> aspen_store::payments::IdemKey {
    aspen_store::payments::IdemKey {
        client_id: "c1".into(),
        endpoint: "POST /domestic-payments".into(),
        key: key.into(),
        body_hash: hash.into(),
    }
}

// COMMON-24..26, PIS-12, PIS-21: one payment per consent and per key; each
// executor step runs once; a debit the account cannot cover is rejected.
both!(
    payments_pay_once_and_debit_once,
    |s: Arc<dyn Store>| async move {
        use aspen_store::payments::{Created, PaymentCreate, Step};
        let w = world();
        s.seed_world(&w).await.unwrap();
        let rora = s.psu_by_username("rora").await.unwrap().unwrap();
        let account = s.accounts_for_psu(&rora.id).await.unwrap()[0].clone();
        let day = 86_400_000;
        let now = 1_900_000_000_000;

        let mut c = consent("pc1");
        c.kind = "domestic-payment".into();
        c.created_at = now;
        let key = idem("k-consent", "h1");
        assert_eq!(
            s.insert_consent_once(&c, &key, now - day).await.unwrap(),
            Created::New
        );
        let mut c2 = consent("pc1-again");
        c2.kind = "domestic-payment".into();
        c2.created_at = now;
        match s.insert_consent_once(&c2, &key, now - day).await.unwrap() {
            Created::Existing(r) => assert_eq!(r.resource_id, "pc1"),
            other => panic!("{other:?}"),
        }
        assert!(s.consent("pc1-again").await.unwrap().is_none());

        let payment = |id: &str, consent: &str, minor: i64| {
            pending_payment(id, consent, minor, &account, now, json!({}))
        };
        // Not yet authorised: nothing is written, the key stays free.
        assert_eq!(
            s.insert_payment_once(&payment("p1", "pc1", 1234), &idem("k-pay", "h"), now - day)
                .await
                .unwrap(),
            PaymentCreate::ConsentNotAuthorised
        );
        assert!(
            s.idempotency("c1", "POST /domestic-payments", "k-pay", now - day)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            s.transition_consent("pc1", &["AwaitingAuthorisation"], "Authorised", now, None)
                .await
                .unwrap()
        );
        assert_eq!(
            s.insert_payment_once(&payment("p1", "pc1", 1234), &idem("k-pay", "h"), now - day)
                .await
                .unwrap(),
            PaymentCreate::New
        );
        assert_eq!(s.consent("pc1").await.unwrap().unwrap().status, "Consumed");
        // A second key on the consumed consent pays nothing.
        assert_eq!(
            s.insert_payment_once(&payment("p2", "pc1", 1234), &idem("k-pay2", "h"), now - day)
                .await
                .unwrap(),
            PaymentCreate::ConsentNotAuthorised
        );
        // The same key replays the first payment.
        match s
            .insert_payment_once(&payment("p3", "pc1", 1234), &idem("k-pay", "h"), now - day)
            .await
            .unwrap()
        {
            PaymentCreate::Existing(r) => assert_eq!(r.resource_id, "p1"),
            other => panic!("{other:?}"),
        }
        // After 24 hours the key is new again.
        assert!(
            s.idempotency("c1", "POST /domestic-payments", "k-pay", now + day)
                .await
                .unwrap()
                .is_none()
        );

        assert_eq!(s.due_payments(now, 10).await.unwrap().len(), 1);
        // The ledger's side: one row per payment id however often it is
        // submitted.
        let ledger = |id: &str, minor: i64| ledger_payment(id, minor, &account, now);
        let first = s.ledger_submit(&ledger("p1", 1234)).await.unwrap();
        let mut other = ledger("p1", 9999);
        other.created_at = now + 5;
        assert_eq!(s.ledger_submit(&other).await.unwrap(), first);
        assert_eq!(s.ledger_due(now, 10).await.unwrap().len(), 1);
        let entry = aspen_domain::Transaction {
            transaction_id: aspen_store::payments::entry_id("p1"),
            account_id: account.account_id.clone(),
            booking_ms: now,
            value_ms: None,
            amount_minor: 1234,
            currency: account.currency.clone(),
            credit_debit: CreditDebit::Debit,
            status: "Pending".into(),
            reference: Some("INV123456".into()),
            information: Some("Payment".into()),
            balance_minor: None,
            detail: json!({}).into(),
        };
        assert_eq!(
            s.ledger_accept("p1", now, now, &entry).await.unwrap(),
            Step::Moved("Accepted")
        );
        assert_eq!(
            s.ledger_accept("p1", now, now, &entry).await.unwrap(),
            Step::NotApplicable
        );
        let mid = s.account(&account.account_id).await.unwrap().unwrap();
        assert_eq!(
            mid.pending_debits_minor,
            account.pending_debits_minor + 1234
        );
        assert_eq!(mid.booked_minor, account.booked_minor);
        assert_eq!(
            s.ledger_settle("p1", now + 1).await.unwrap(),
            Step::Moved("Completed")
        );
        assert_eq!(
            s.ledger_settle("p1", now + 1).await.unwrap(),
            Step::NotApplicable
        );
        let after = s.account(&account.account_id).await.unwrap().unwrap();
        assert_eq!(after.booked_minor, account.booked_minor - 1234);
        assert_eq!(after.pending_debits_minor, account.pending_debits_minor);
        let l = s.ledger_payment("p1").await.unwrap().unwrap();
        assert_eq!((l.status.as_str(), l.due_at), ("Completed", None));
        assert!(s.ledger_due(now + day, 10).await.unwrap().is_empty());

        // The OB resource follows, forward only.
        assert!(
            s.advance_payment(
                "p1",
                &["Pending"],
                "AcceptedSettlementCompleted",
                now + 2,
                None,
                None
            )
            .await
            .unwrap()
        );
        assert!(
            !s.advance_payment(
                "p1",
                &["Pending"],
                "AcceptedSettlementInProcess",
                now + 3,
                None,
                Some(now)
            )
            .await
            .unwrap()
        );
        let p = s.payment("p1").await.unwrap().unwrap();
        assert_eq!(
            (p.status.as_str(), p.due_at),
            ("AcceptedSettlementCompleted", None)
        );
        assert!(s.due_payments(now + day, 10).await.unwrap().is_empty());

        // More than the account holds: rejected, nothing reserved.
        let mut c3 = consent("pc3");
        c3.kind = "domestic-payment".into();
        c3.status = "Authorised".into();
        s.insert_consent(&c3).await.unwrap();
        let huge = after.available_minor() + 1;
        s.insert_payment_once(&payment("p4", "pc3", huge), &idem("k4", "h"), now - day)
            .await
            .unwrap();
        s.ledger_submit(&ledger("p4", huge)).await.unwrap();
        let mut e4 = entry.clone();
        e4.transaction_id = aspen_store::payments::entry_id("p4");
        assert_eq!(
            s.ledger_accept("p4", now, now, &e4).await.unwrap(),
            Step::Moved("Rejected")
        );
        assert_eq!(
            s.account(&account.account_id).await.unwrap().unwrap(),
            after
        );
    }
);

// PIS-12, PIS-20, PIS-21 with the builtin ledger executing at once: the
// key, the consent's move, the order and the debit commit together; a
// consent pays once however many orders race for it; a debit the account
// cannot cover leaves both rows Rejected and the balance alone.
both!(
    payments_execute_with_their_order,
    |s: Arc<dyn Store>| async move {
        use aspen_store::payments::{LedgerExecution, PaymentCreate, entry_id};
        let w = world();
        s.seed_world(&w).await.unwrap();
        let rora = s.psu_by_username("rora").await.unwrap().unwrap();
        let account = s.accounts_for_psu(&rora.id).await.unwrap()[0].clone();
        let day = 86_400_000;
        let now = 1_900_000_000_000;
        let authorised = |id: &str| {
            let mut c = consent(id);
            c.kind = "domestic-payment".into();
            c.status = "Authorised".into();
            c
        };
        let payment = |id: &str, consent: &str, minor: i64| {
            pending_payment(id, consent, minor, &account, now, json!({"Initiation": {}}))
        };
        let exec = |id: &str, minor: i64| LedgerExecution {
            payment: ledger_payment(id, minor, &account, now),
            entry: aspen_domain::Transaction {
                transaction_id: entry_id(id),
                account_id: account.account_id.clone(),
                booking_ms: now,
                value_ms: None,
                amount_minor: minor,
                currency: account.currency.clone(),
                credit_debit: CreditDebit::Debit,
                status: "Pending".into(),
                reference: Some("INV123456".into()),
                information: Some("Payment".into()),
                balance_minor: None,
                detail: json!({}).into(),
            },
        };
        let all = TxFilter {
            from_ms: i64::MIN,
            to_ms: i64::MAX,
            credits: true,
            debits: true,
        };
        let newest = || async {
            let end = TxCursor {
                booking_ms: i64::MAX,
                transaction_id: String::new(),
            };
            s.transactions_page(&account.account_id, &all, None, Some(&end), 1)
                .await
                .unwrap()
                .pop()
                .unwrap()
        };
        let entries = s
            .count_transactions(&account.account_id, &all)
            .await
            .unwrap();

        s.insert_consent(&authorised("pe1")).await.unwrap();
        assert_eq!(
            s.insert_payment_executed(
                &payment("e1", "pe1", 1234),
                &idem("ke1", "h"),
                now - day,
                &exec("e1", 1234)
            )
            .await
            .unwrap(),
            PaymentCreate::Executed("AcceptedSettlementCompleted")
        );
        assert_eq!(s.consent("pe1").await.unwrap().unwrap().status, "Consumed");
        let p = s.payment("e1").await.unwrap().unwrap();
        assert_eq!(
            (p.status.as_str(), p.due_at),
            ("AcceptedSettlementCompleted", None)
        );
        assert!(s.due_payments(now + day, 10).await.unwrap().is_empty());
        let l = s.ledger_payment("e1").await.unwrap().unwrap();
        assert_eq!((l.status.as_str(), l.due_at), ("Completed", None));
        assert!(s.ledger_due(now + day, 10).await.unwrap().is_empty());
        let after = s.account(&account.account_id).await.unwrap().unwrap();
        assert_eq!(after.booked_minor, account.booked_minor - 1234);
        assert_eq!(after.pending_debits_minor, account.pending_debits_minor);
        let e = newest().await;
        assert_eq!(e.transaction_id, entry_id("e1"));
        assert_eq!(
            (e.status.as_str(), e.value_ms, e.balance_minor),
            ("Booked", Some(now), Some(after.booked_minor))
        );
        assert_eq!(
            s.count_transactions(&account.account_id, &all)
                .await
                .unwrap(),
            entries + 1
        );

        // The same key replays; another key on the consumed consent pays
        // nothing and leaves its key free.
        match s
            .insert_payment_executed(
                &payment("e2", "pe1", 1234),
                &idem("ke1", "h"),
                now - day,
                &exec("e2", 1234),
            )
            .await
            .unwrap()
        {
            PaymentCreate::Existing(r) => assert_eq!(r.resource_id, "e1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.insert_payment_executed(
                &payment("e3", "pe1", 1234),
                &idem("ke3", "h"),
                now - day,
                &exec("e3", 1234)
            )
            .await
            .unwrap(),
            PaymentCreate::ConsentNotAuthorised
        );
        assert!(
            s.idempotency("c1", "POST /domestic-payments", "ke3", now - day)
                .await
                .unwrap()
                .is_none()
        );
        assert!(s.payment("e3").await.unwrap().is_none());
        assert!(s.ledger_payment("e3").await.unwrap().is_none());

        // More than the account holds: both rows Rejected, no money moves.
        s.insert_consent(&authorised("pe4")).await.unwrap();
        let huge = after.available_minor() + 1;
        assert_eq!(
            s.insert_payment_executed(
                &payment("e4", "pe4", huge),
                &idem("ke4", "h"),
                now - day,
                &exec("e4", huge)
            )
            .await
            .unwrap(),
            PaymentCreate::Executed("Rejected")
        );
        assert_eq!(
            s.account(&account.account_id).await.unwrap().unwrap(),
            after
        );
        let p = s.payment("e4").await.unwrap().unwrap();
        assert_eq!(
            (p.status.as_str(), p.due_at, p.reason.as_deref()),
            ("Rejected", None, Some("insufficient funds at execution"))
        );
        assert_eq!(
            s.ledger_payment("e4").await.unwrap().unwrap().status,
            "Rejected"
        );
        assert_eq!(newest().await.transaction_id, entry_id("e1"));

        // Eight orders race for one consent: one pays, once.
        s.insert_consent(&authorised("pe5")).await.unwrap();
        let mut racers = Vec::new();
        for i in 0..8 {
            let (s, p, k, x) = (
                s.clone(),
                payment(&format!("r{i}"), "pe5", 100),
                idem(&format!("kr{i}"), "h"),
                exec(&format!("r{i}"), 100),
            );
            racers.push(tokio::spawn(async move {
                s.insert_payment_executed(&p, &k, now - day, &x)
                    .await
                    .unwrap()
            }));
        }
        let mut paid = 0;
        for r in racers {
            match r.await.unwrap() {
                PaymentCreate::Executed(st) => {
                    assert_eq!(st, "AcceptedSettlementCompleted");
                    paid += 1;
                }
                PaymentCreate::ConsentNotAuthorised => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(paid, 1);
        assert_eq!(
            s.account(&account.account_id)
                .await
                .unwrap()
                .unwrap()
                .booked_minor,
            after.booked_minor - 100
        );
    }
);

/// A domestic payment order of `minor` from `account`, paying `consent`
/// under key `key`, as the API hands it to the store to execute at once.
fn executed_order(
    id: &str,
    consent: &str,
    key: &str,
    minor: i64,
    account: &aspen_domain::Account,
    now: i64,
) -> (
    aspen_store::payments::PaymentRecord,
    aspen_store::payments::IdemKey,
    aspen_store::payments::LedgerExecution,
) {
    let exec = aspen_store::payments::LedgerExecution {
        payment: ledger_payment(id, minor, account, now),
        entry: aspen_domain::Transaction {
            transaction_id: aspen_store::payments::entry_id(id),
            account_id: account.account_id.clone(),
            booking_ms: now,
            value_ms: None,
            amount_minor: minor,
            currency: account.currency.clone(),
            credit_debit: CreditDebit::Debit,
            status: "Pending".into(),
            reference: Some("INV123456".into()),
            information: None,
            balance_minor: None,
            detail: json!({}).into(),
        },
    };
    let p = pending_payment(id, consent, minor, account, now, json!({"Initiation": {}}));
    (p, idem(key, "h"), exec)
}

/// An authorised domestic-payment consent, stored.
async fn authorised_payment_consent(s: &Arc<dyn Store>, id: &str) {
    let mut c = consent(id);
    c.kind = "domestic-payment".into();
    c.status = "Authorised".into();
    s.insert_consent(&c).await.unwrap();
}

/// `orders` (id, consent, key, minor) executed at once, all sent before
/// any is answered: on one thread, each is queued before the first goes
/// out, so they meet (PostgreSQL: one transaction of [`Payments`]'s
/// queue; SQLite: the direct lane's shared commit).
async fn execute_together(
    s: &Arc<dyn Store>,
    account: &aspen_domain::Account,
    now: i64,
    orders: &[(&str, &str, &str, i64)],
) -> Vec<Result<aspen_store::payments::PaymentCreate, aspen_store::StoreError>> {
    let orders: Vec<_> = orders
        .iter()
        .map(|&(id, consent, key, minor)| executed_order(id, consent, key, minor, account, now))
        .collect();
    futures_util::future::join_all(
        orders
            .iter()
            .map(|(p, k, x)| s.insert_payment_executed(p, k, now - 86_400_000, x)),
    )
    .await
}

/// The balances after each of `account`'s entries `ids`, which must all
/// be there.
async fn entry_balances(s: &Arc<dyn Store>, account: &str, ids: &[&str]) -> Vec<i64> {
    let page = s
        .transactions_page(account, &TxFilter::all(), None, None, 100_000)
        .await
        .unwrap();
    ids.iter()
        .map(|id| {
            let id = aspen_store::payments::entry_id(id);
            page.iter()
                .find(|t| t.transaction_id == id)
                .unwrap_or_else(|| panic!("no entry {id}"))
                .balance_minor
                .unwrap()
        })
        .collect()
}

/// PIS-12, PIS-21, COMMON-24..26 for orders that meet and share one
/// commit (issue 15): each order keeps the outcome it would have had
/// alone. Paid, rejected for funds, or a replay of an order in the same
/// commit; and when one of them cannot be written (its consent consumed by
/// another in the batch, its payment id taken), the others still pay, and
/// it leaves nothing behind: no key, no consent moved, no money.
async fn orders_meeting_keep_their_own_outcomes(s: Arc<dyn Store>) {
    use aspen_store::payments::PaymentCreate::{ConsentNotAuthorised, Executed, Existing};
    let w = world();
    s.seed_world(&w).await.unwrap();
    let rora = s.psu_by_username("rora").await.unwrap().unwrap();
    let account = s.accounts_for_psu(&rora.id).await.unwrap()[0].clone();
    let now = 1_900_000_000_000;
    for c in ["pa0", "pa1", "pa2", "pa3", "pa4", "pa5", "pa6"] {
        authorised_payment_consent(&s, c).await;
    }
    let huge = account.available_minor() + 1;
    let r = execute_together(
        &s,
        &account,
        now,
        &[
            ("a0", "pa0", "ka0", 100),
            ("a1", "pa1", "ka1", 100),
            ("a2", "pa2", "ka2", 100),
            ("a3", "pa3", "ka3", 100),
            ("a4", "pa4", "ka4", huge),
            ("a5", "pa5", "ka5", 100),
            // a0's key again, for another consent: a0's replay.
            ("a6", "pa6", "ka0", 100),
        ],
    )
    .await;
    let r: Vec<_> = r.into_iter().map(Result::unwrap).collect();
    let paid = Executed("AcceptedSettlementCompleted");
    assert_eq!(
        r[..4],
        [paid.clone(), paid.clone(), paid.clone(), paid.clone()]
    );
    assert_eq!(r[4], Executed("Rejected"));
    assert_eq!(r[5], paid);
    match &r[6] {
        Existing(rec) => assert_eq!(rec.resource_id, "a0"),
        other => panic!("{other:?}"),
    }
    assert!(s.payment("a6").await.unwrap().is_none());
    assert_eq!(
        s.consent("pa6").await.unwrap().unwrap().status,
        "Authorised"
    );
    let after = s.account(&account.account_id).await.unwrap().unwrap();
    assert_eq!(after.booked_minor, account.booked_minor - 500);
    let mut balances =
        entry_balances(&s, &account.account_id, &["a0", "a1", "a2", "a3", "a5"]).await;
    balances.sort_unstable();
    let expected: Vec<i64> = (1..=5)
        .rev()
        .map(|i| account.booked_minor - 100 * i)
        .collect();
    assert_eq!(balances, expected, "one debit after another, none lost");

    for c in ["pb0", "pb1", "pb3", "pb4"] {
        authorised_payment_consent(&s, c).await;
    }
    let r = execute_together(
        &s,
        &account,
        now,
        &[
            ("b0", "pb0", "kb0", 100),
            // Two orders for one consent: one pays.
            ("b1", "pb1", "kb1", 100),
            ("b2", "pb1", "kb2", 100),
            // a1's payment id, taken: this order fails, alone.
            ("a1", "pb3", "kb3", 100),
            ("b4", "pb4", "kb4", 100),
        ],
    )
    .await;
    assert_eq!(r[0].as_ref().unwrap(), &paid);
    let (b1, b2) = (r[1].as_ref().unwrap(), r[2].as_ref().unwrap());
    assert!(
        (b1 == &paid && b2 == &ConsentNotAuthorised)
            || (b2 == &paid && b1 == &ConsentNotAuthorised),
        "{b1:?} {b2:?}"
    );
    assert!(r[3].is_err(), "{:?}", r[3]);
    assert_eq!(r[4].as_ref().unwrap(), &paid);
    let loser = if b1 == &paid { "kb2" } else { "kb1" };
    for key in [loser, "kb3"] {
        assert!(
            s.idempotency("c1", "POST /domestic-payments", key, now - 86_400_000)
                .await
                .unwrap()
                .is_none(),
            "{key} left free"
        );
    }
    assert_eq!(
        s.consent("pb3").await.unwrap().unwrap().status,
        "Authorised"
    );
    assert_eq!(s.payment("a1").await.unwrap().unwrap().consent_id, "pa1");
    assert_eq!(
        s.account(&account.account_id)
            .await
            .unwrap()
            .unwrap()
            .booked_minor,
        account.booked_minor - 800
    );
}

#[tokio::test]
async fn sqlite_orders_meeting_keep_their_own_outcomes() {
    let (s, _dir) = sqlite().await;
    orders_meeting_keep_their_own_outcomes(s).await;
}

/// On PostgreSQL the first round's orders were one transaction: their
/// rows share one `xmin`, so one commit and one WAL flush (issue 15).
#[tokio::test]
async fn postgres_orders_meeting_keep_their_own_outcomes_in_one_commit() {
    let Some((s, schema)) = postgres().await else {
        return;
    };
    orders_meeting_keep_their_own_outcomes(s).await;
    let raw = pg_raw(&schema).await;
    let commits: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT xmin::text) FROM payments \
         WHERE payment_id IN ('a0', 'a1', 'a2', 'a3', 'a4', 'a5')",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    assert_eq!(commits, 1);
    raw.close().await;
    drop_schema(&schema).await;
}

/// PostgreSQL's payment lanes outlive their connections, as the tokens'
/// do: when the server ends the lanes' idle connections, the next orders
/// (alone and together) are written on new ones, none failing.
#[tokio::test]
async fn postgres_payment_lanes_reconnect_after_the_server_ends_them() {
    let Some((s, schema)) = postgres().await else {
        return;
    };
    s.seed_world(&world()).await.unwrap();
    let rora = s.psu_by_username("rora").await.unwrap().unwrap();
    let account = s.accounts_for_psu(&rora.id).await.unwrap()[0].clone();
    let now = 1_900_000_000_000;
    let paid = aspen_store::payments::PaymentCreate::Executed("AcceptedSettlementCompleted");
    let orders = |prefix: &str| -> Vec<(String, String, String)> {
        (0..4)
            .map(|i| {
                (
                    format!("{prefix}{i}"),
                    format!("c{prefix}{i}"),
                    format!("k{prefix}{i}"),
                )
            })
            .collect()
    };
    for round in ["p", "q"] {
        let round = orders(round);
        for (_, c, _) in &round {
            authorised_payment_consent(&s, c).await;
        }
        let r = execute_together(
            &s,
            &account,
            now,
            &round
                .iter()
                .map(|(id, c, k)| (id.as_str(), c.as_str(), k.as_str(), 100))
                .collect::<Vec<_>>(),
        )
        .await;
        for (o, r) in round.iter().zip(r) {
            assert_eq!(r.unwrap(), paid, "order {}", o.0);
        }
        if round[0].0 == "p0" {
            let ended = end_idle_connections("aspen payments").await;
            assert!(ended >= 1, "no idle payment connection to end");
        }
    }
    assert_eq!(
        s.account(&account.account_id)
            .await
            .unwrap()
            .unwrap()
            .booked_minor,
        account.booked_minor - 800
    );
    drop_schema(&schema).await;
}

/// Two nodes, each sending orders on two accounts at once, on threads of
/// their own: every order pays once, each account is debited by its
/// orders and no more, and no debit is lost (each entry's balance is its
/// own). PostgreSQL: the nodes' batches take the accounts' locks in one
/// order; were they to deadlock, the orders would still pay, one by one.
async fn orders_from_two_nodes_all_pay(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let w = world();
    a.seed_world(&w).await.unwrap();
    let rora = a.psu_by_username("rora").await.unwrap().unwrap();
    let accounts = a.accounts_for_psu(&rora.id).await.unwrap();
    let accounts = [accounts[0].clone(), accounts[1].clone()];
    let now = 1_900_000_000_000;
    let n = 32;
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let account = accounts[i / 2 % 2].clone();
        let id = format!("n{i}");
        tasks.push(tokio::spawn(async move {
            authorised_payment_consent(&s, &format!("c{id}")).await;
            let (p, k, x) = executed_order(
                &id,
                &format!("c{id}"),
                &format!("k{id}"),
                100,
                &account,
                now,
            );
            s.insert_payment_executed(&p, &k, now - 86_400_000, &x)
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            aspen_store::payments::PaymentCreate::Executed("AcceptedSettlementCompleted")
        );
    }
    for (j, account) in accounts.iter().enumerate() {
        let ids: Vec<String> = (0..n)
            .filter(|i| i / 2 % 2 == j)
            .map(|i| format!("n{i}"))
            .collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let after = b.account(&account.account_id).await.unwrap().unwrap();
        assert_eq!(
            after.booked_minor,
            account.booked_minor - 100 * ids.len() as i64
        );
        let mut balances = entry_balances(&b, &account.account_id, &ids).await;
        balances.sort_unstable();
        balances.dedup();
        assert_eq!(balances.len(), ids.len(), "each debit's balance its own");
        assert_eq!(balances[0], after.booked_minor);
    }
}

both_nodes!(
    orders_from_two_nodes_all_pay,
    (flavor = "multi_thread", worker_threads = 2)
);

// EVT-2, EVT-33: one registration of each kind per TPP; events written
// with the change, for registered TPPs and the types they take; a push
// claimed by one caller at a time; polling acknowledges; expiry noticed
// once.
both!(
    events_outbox_on_both_backends,
    |s: Arc<dyn Store>| async move {
        use aspen_store::events::{
            CONSENT_REVOKED, CallbackUrl, PushOutcome, Registered, Subscription,
        };
        let sub = |client: &str, url: Option<&str>, types: Vec<String>| Subscription {
            subscription_id: format!("es-{client}"),
            client_id: client.into(),
            callback_url: url.map(str::to_string),
            version: "3.1.2".into(),
            event_types: types,
            created_at: 1,
            updated_at: 1,
        };
        assert_eq!(
            s.insert_subscription(&sub(
                "c1",
                Some("https://tpp/v3.1/event-notifications"),
                vec![]
            ))
            .await
            .unwrap(),
            Registered::New
        );
        let mut again = sub("c1", None, vec![]);
        again.subscription_id = "es-other".into();
        assert_eq!(
            s.insert_subscription(&again).await.unwrap(),
            Registered::AlreadyExists
        );
        // c2 has a callback URL only: resource-update events only (EVT-3).
        let cb = CallbackUrl {
            callback_url_id: "cb-c2".into(),
            client_id: "c2".into(),
            url: "https://tpp2/v3.1/event-notifications".into(),
            version: "3.1".into(),
            created_at: 1,
            updated_at: 1,
        };
        assert_eq!(s.insert_callback_url(&cb).await.unwrap(), Registered::New);
        assert_eq!(
            s.insert_callback_url(&cb).await.unwrap(),
            Registered::AlreadyExists
        );

        let now = 1_900_000_000_000;
        for (id, client) in [("e1", "c1"), ("e2", "c2"), ("e3", "c3")] {
            let mut c = consent(id);
            c.client_id = client.into();
            c.status = "Authorised".into();
            s.insert_consent(&c).await.unwrap();
            assert!(s.end_consent(id, Some("Revoked"), now).await.unwrap());
        }
        // Revoking twice is one change, one event.
        assert!(!s.end_consent("e1", Some("Revoked"), now).await.unwrap());
        let (c1, more) = s.poll_events("c1", &[], &[], 10).await.unwrap();
        assert_eq!((c1.len(), more), (1, false));
        assert_eq!(c1[0].event_type, CONSENT_REVOKED);
        assert_eq!(c1[0].resource_type, "account-access-consent");
        assert!(
            s.poll_events("c2", &[], &[], 10)
                .await
                .unwrap()
                .0
                .is_empty()
        );
        assert!(
            s.poll_events("c3", &[], &[], 10)
                .await
                .unwrap()
                .0
                .is_empty()
        );

        // One claim at a time; a failure comes back when due.
        let claimed = s.claim_pushes(now, now + 10_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            claimed[0].push_url.as_deref(),
            Some("https://tpp/v3.1/event-notifications")
        );
        assert!(
            s.claim_pushes(now, now + 10_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        s.push_result(
            &claimed[0].jti,
            &PushOutcome::Failed {
                error: "500".into(),
                next_at: Some(now + 5),
            },
        )
        .await
        .unwrap();
        assert!(
            s.claim_pushes(now, now + 10_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let again = s.claim_pushes(now + 5, now + 10_000, 10).await.unwrap();
        assert_eq!((again.len(), again[0].push_attempts), (1, 2));
        assert_eq!(s.keep_set(&again[0].jti, "first").await.unwrap(), "first");
        assert_eq!(s.keep_set(&again[0].jti, "second").await.unwrap(), "first");
        s.push_result(&again[0].jti, &PushOutcome::Accepted)
            .await
            .unwrap();
        assert!(
            s.poll_events("c1", &[], &[], 10)
                .await
                .unwrap()
                .0
                .is_empty()
        );

        // Expiry: noticed once, for consents still authorised.
        let mut x = consent("x1");
        x.status = "Authorised".into();
        x.expires_at = Some(now - 1);
        s.insert_consent(&x).await.unwrap();
        let mut y = consent("x2");
        y.expires_at = Some(now - 1);
        s.insert_consent(&y).await.unwrap();
        assert_eq!(s.expire_consents(now, 10).await.unwrap(), 2);
        assert_eq!(s.expire_consents(now, 10).await.unwrap(), 0);
        let (evs, _) = s.poll_events("c1", &[], &[], 10).await.unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].resource_id, "x1");
        // Acknowledged by poll: gone; maxEvents 0 returns nothing.
        let (evs, more) = s
            .poll_events("c1", std::slice::from_ref(&evs[0].jti), &[], 0)
            .await
            .unwrap();
        assert_eq!((evs.len(), more), (0, false));
    }
);

// Issue 14: second factors; a TOTP time step is accepted once per factor.
both!(factors_and_totp_steps, |s: Arc<dyn Store>| async move {
    use aspen_store::factors::Factor;
    let f = Factor {
        factor_id: "totp-1".into(),
        psu_id: "p1".into(),
        kind: "totp".into(),
        label: "Phone".into(),
        secret: "v1.sealed".into(),
        created_at: 5,
        credential_id: None,
    };
    s.add_factor(&f).await.unwrap();
    let mut other = f.clone();
    other.label = "Changed".into();
    s.add_factor(&other).await.unwrap();
    assert_eq!(s.factors("p1").await.unwrap(), vec![f.clone()]);
    assert!(s.factors("p2").await.unwrap().is_empty());
    assert!(s.use_totp_step("totp-1", 100).await.unwrap());
    assert!(!s.use_totp_step("totp-1", 100).await.unwrap(), "replay");
    assert!(!s.use_totp_step("totp-1", 99).await.unwrap(), "older step");
    assert!(s.use_totp_step("totp-1", 101).await.unwrap());
    assert!(
        !s.remove_factor("p2", "totp-1").await.unwrap(),
        "another PSU's"
    );
    assert!(s.remove_factor("p1", "totp-1").await.unwrap());
    assert!(s.factors("p1").await.unwrap().is_empty());
});

// Issue 14: passkeys are found by credential id, which is unique over all
// PSUs; the signature counter only moves forward (or stays 0 for
// authenticators without one), and parallel uses of one counter value
// have one winner.
both!(
    passkeys_by_credential_and_counter,
    |s: Arc<dyn Store>| async move {
        use aspen_store::StoreError;
        use aspen_store::factors::Factor;
        let pk = |id: &str, psu: &str, cred: &str| Factor {
            factor_id: id.into(),
            psu_id: psu.into(),
            kind: "passkey".into(),
            label: "Laptop".into(),
            secret: "cose".into(),
            created_at: 7,
            credential_id: Some(cred.into()),
        };
        s.add_factor(&pk("pk-1", "p1", "cred-a")).await.unwrap();
        assert!(matches!(
            s.add_factor(&pk("pk-2", "p2", "cred-a")).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            s.factor_by_credential("cred-a").await.unwrap(),
            Some(pk("pk-1", "p1", "cred-a"))
        );
        assert_eq!(s.factor_by_credential("cred-b").await.unwrap(), None);
        assert!(
            s.use_passkey_counter("pk-1", 0).await.unwrap(),
            "no counter"
        );
        assert!(s.use_passkey_counter("pk-1", 3).await.unwrap());
        assert!(
            !s.use_passkey_counter("pk-1", 3).await.unwrap(),
            "same count"
        );
        assert!(!s.use_passkey_counter("pk-1", 2).await.unwrap(), "cloned");
        assert!(
            !s.use_passkey_counter("pk-1", 0).await.unwrap(),
            "0 after 3"
        );
        let (a, b) = tokio::join!(
            s.use_passkey_counter("pk-1", 9),
            s.use_passkey_counter("pk-1", 9)
        );
        assert_eq!(
            [a.unwrap(), b.unwrap()].iter().filter(|w| **w).count(),
            1,
            "one winner"
        );
        // The passkey counter CAS leaves TOTP factors alone.
        s.add_factor(&Factor {
            kind: "totp".into(),
            credential_id: None,
            ..pk("totp-9", "p1", "")
        })
        .await
        .unwrap();
        assert!(!s.use_passkey_counter("totp-9", 5).await.unwrap());
    }
);

/// A SQLite store and its database file, for the direct lane's tests.
async fn sqlite_file() -> (Arc<dyn Store>, tempfile::TempDir, std::path::PathBuf) {
    let (s, dir) = sqlite().await;
    let path = dir.path().join("t.db");
    (s, dir, path)
}

/// Two nodes: two stores on one new SQLite file.
async fn sqlite_nodes() -> (Arc<dyn Store>, Arc<dyn Store>, tempfile::TempDir) {
    let (a, dir, path) = sqlite_file().await;
    let b = aspen_store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    (a, b, dir)
}

/// Two nodes: two stores on one new PostgreSQL schema, and the schema to
/// drop afterwards; `None` (after printing why) without PostgreSQL.
async fn postgres_nodes() -> Option<(Arc<dyn Store>, Arc<dyn Store>, String)> {
    let (a, schema) = postgres().await?;
    let b = aspen_store::connect_with_schema(&pg_url(), Some(&schema))
        .await
        .unwrap();
    Some((a, b, schema))
}

/// The direct lane (SQLite on the request's thread) never waits for a
/// lock: while another connection holds the write lock, a token write
/// takes the sqlx path, which waits for the lock and then writes; reads go
/// on meanwhile (WAL). On this one-thread runtime, a direct lane that waited
/// itself would stall everything (the timer below); one that answered the
/// busy database with an error would fail the write.
#[tokio::test]
async fn sqlite_a_write_meeting_a_held_lock_waits_for_it_and_reads_go_on() {
    use sqlx::Connection as _;
    let (s, _dir, path) = sqlite_file().await;
    s.insert_client(&client("c1")).await.unwrap();
    s.insert_token(&token("before", "c1", None)).await.unwrap();
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let far = chrono::Utc::now().timestamp() + 600;
    let writer = {
        let s = s.clone();
        tokio::spawn(
            async move { spend(&s, "assertion:c1", "j1", far, &token("t1", "c1", None)).await },
        )
    };
    let t0 = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(2),
        "the write blocked the thread for {:?}",
        t0.elapsed()
    );
    assert!(!writer.is_finished(), "the write waits for the lock");
    let read = tokio::time::timeout(std::time::Duration::from_secs(2), s.token(&key("before")))
        .await
        .expect("a read does not wait for the writer");
    assert!(read.unwrap().is_some());
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    assert!(
        writer.await.unwrap().unwrap(),
        "written once the lock is free"
    );
    assert!(s.token(&key("t1")).await.unwrap().is_some());
    assert!(!s.use_jti("assertion:c1", "j1", far).await.unwrap());
}

/// The direct lane's commits do not checkpoint on the request's thread;
/// its WAL hook has blocking tasks do it, and the log starts again from the
/// beginning while tokens go on being written one after another (each
/// writes ~8 pages alone, so the lane's 8,000 pages take about a thousand).
/// A restart is what bounds the log's file: SQLite counts restarts in the
/// log's header (its checkpoint sequence, bytes 12..16), written with the
/// first frame after each. How many tokens the bulk pass overlaps depends
/// on the machine, so the tokens go on until the sequence moves, up to
/// 10,000 (about 80,000 pages, ten times the threshold).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_wal_is_checkpointed_while_tokens_are_written() {
    let (s, _dir, path) = sqlite_file().await;
    s.insert_client(&client("c1")).await.unwrap();
    let far = chrono::Utc::now().timestamp() + 600;
    let wal = path.with_extension("db-wal");
    let sequence = || {
        use std::io::Read;
        let mut header = [0; 16];
        std::fs::File::open(&wal)
            .unwrap()
            .read_exact(&mut header)
            .unwrap();
        u32::from_be_bytes(header[12..16].try_into().unwrap())
    };
    let mut written = 0;
    let mut first = None;
    while first.is_none_or(|f| f == sequence()) {
        assert!(
            written < 10_000,
            "the log was never started again in {written} tokens"
        );
        let (id, hash) = (format!("j{written}"), format!("t{written}"));
        assert!(
            spend(&s, "assertion:c1", &id, far, &token(&hash, "c1", None))
                .await
                .unwrap()
        );
        written += 1;
        first = first.or_else(|| Some(sequence()));
    }
}

both!(tokens_sharing_a_commit_keep_their_own_rules, |s: Arc<
    dyn Store,
>| async move {
    let far = chrono::Utc::now().timestamp() + 600;
    s.insert_client(&client("c1")).await.unwrap();
    let c2 = client("c2");
    s.insert_client(&c2).await.unwrap();
    s.update_client(&c2).await.unwrap();
    assert!(s.use_jti("assertion:c1", "z", far).await.unwrap());
    let tokens: Vec<TokenRecord> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|h| token(h, if ["d", "f"].contains(h) { "c2" } else { "c1" }, None))
        .collect();
    let jti = |id| {
        Some(JtiUse {
            scope: "assertion:c1",
            jti: id,
            expires_at: far,
        })
    };
    // Queued together (one thread, every write before the first goes out).
    let r = futures_util::future::join_all([
        s.insert_cc_token(jti("x"), 0, &tokens[0]),
        s.insert_cc_token(jti("x"), 0, &tokens[1]),
        s.insert_cc_token(None, 0, &tokens[2]),
        // c2 was updated: its revision is 1 now.
        s.insert_cc_token(jti("y"), 0, &tokens[3]),
        // Spent before.
        s.insert_cc_token(jti("z"), 0, &tokens[4]),
        s.insert_cc_token(None, 1, &tokens[5]),
    ])
    .await;
    let r: Vec<bool> = r.into_iter().map(Result::unwrap).collect();
    assert!(r[0] != r[1], "one use of a JWT id wins: {r:?}");
    assert_eq!(&r[2..], [true, false, false, true], "{r:?}");
    for (i, h) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        let stored = s.token(&key(h)).await.unwrap().is_some();
        assert_eq!(stored, r[i], "token {h}");
    }
    assert!(!s.use_jti("assertion:c1", "x", far).await.unwrap());
    assert!(
        s.use_jti("assertion:c1", "y", far).await.unwrap(),
        "a token not written leaves its JWT id unspent"
    );
});

/// Writes that meet share one commit: on SQLite's direct lane (group
/// commit) and in PostgreSQL's token statements (`pg_batch`). One that
/// fails (its token's id is taken) sends the others round again, each on
/// its own (SQLite: a savepoint each; PostgreSQL: a statement each), and
/// leaves its own JWT id unspent and takes nothing else with it. (On one
/// thread, every write below is queued before the first one leads or the
/// first statement goes out.)
#[tokio::test]
async fn sqlite_writes_sharing_a_commit_fail_alone() {
    let (s, _dir, _path) = sqlite_file().await;
    writes_sharing_a_commit_fail_alone(s).await;
}

#[tokio::test]
async fn postgres_writes_sharing_a_commit_fail_alone() {
    if let Some((s, schema)) = postgres().await {
        writes_sharing_a_commit_fail_alone(s).await;
        drop_schema(&schema).await;
    }
}

/// PostgreSQL's token statements outlive their connections: when the
/// server ends the lanes' idle connections (a restart, a proxy's idle
/// cut), the next tokens are written on new ones, none failing. Only idle
/// lane connections are ended, so tests beside this one lose no statement
/// in flight (their lanes reconnect the same way).
#[tokio::test]
async fn postgres_token_statements_reconnect_after_the_server_ends_them() {
    let Some((s, schema)) = postgres().await else {
        return;
    };
    s.insert_client(&client("c1")).await.unwrap();
    let far = chrono::Utc::now().timestamp() + 600;
    let tokens = |prefix: &str| -> Vec<TokenRecord> {
        (0..8)
            .map(|i| token(&format!("{prefix}{i}"), "c1", None))
            .collect()
    };
    let before = tokens("p");
    let written =
        futures_util::future::join_all(before.iter().map(|t| s.insert_cc_token(None, 0, t))).await;
    assert!(written.into_iter().all(|r| r.unwrap()));
    let ended = end_idle_connections("aspen tokens").await;
    assert!(ended >= 1, "no idle token connection to end");
    let after = tokens("q");
    let written = futures_util::future::join_all(
        after
            .iter()
            .map(|t| spend(&s, "assertion:c1", &t.token_hash, far, t)),
    )
    .await;
    for (t, r) in after.iter().zip(written) {
        assert!(r.unwrap(), "token {}", t.token_hash);
        assert!(s.token(&key(&t.token_hash)).await.unwrap().is_some());
    }
    drop_schema(&schema).await;
}

/// A PostgreSQL token whose caller went away before its statement went out
/// (its client disconnected, the request timed out) is left out of it: no
/// token, its JWT id unspent. (One thread: the write below queues and
/// starts its lane, and is dropped before the lane runs.)
#[tokio::test]
async fn postgres_a_token_whose_caller_went_away_is_not_written() {
    let Some((s, schema)) = postgres().await else {
        return;
    };
    s.insert_client(&client("c1")).await.unwrap();
    let far = chrono::Utc::now().timestamp() + 600;
    let gone = token("gone", "c1", None);
    let mut write = Box::pin(spend(&s, "assertion:c1", "gone", far, &gone));
    assert!(
        futures_util::FutureExt::now_or_never(&mut write).is_none(),
        "queued, not written yet"
    );
    drop(write);
    let next = token("next", "c1", None);
    assert!(spend(&s, "assertion:c1", "next", far, &next).await.unwrap());
    assert!(s.token(&key("gone")).await.unwrap().is_none());
    assert!(
        s.use_jti("assertion:c1", "gone", far).await.unwrap(),
        "unspent"
    );
    drop_schema(&schema).await;
}

/// Another transaction holding `client_id`'s row `FOR UPDATE` until it is
/// rolled back: a token statement for that client waits on it.
async fn lock_client_row(
    schema: &str,
    client_id: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let pool = sqlx::PgPool::connect(&pg_url()).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM {schema}.clients WHERE client_id = '{client_id}' FOR UPDATE"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx
}

/// A PostgreSQL token statement that cannot finish (here its client row is
/// locked by another transaction) is given up within the lanes' statement
/// timeout, with an error, and the lane goes on once the row is free.
#[tokio::test]
async fn postgres_a_stuck_token_statement_is_given_up() {
    let Some((s, schema)) = postgres().await else {
        return;
    };
    s.insert_client(&client("c1")).await.unwrap();
    let tx = lock_client_row(&schema, "c1").await;
    let stuck = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        s.insert_cc_token(None, 0, &token("stuck", "c1", None)),
    )
    .await
    .expect("given up within the statement timeout");
    assert!(stuck.is_err(), "{stuck:?}");
    tx.rollback().await.unwrap();
    assert!(
        s.insert_cc_token(None, 0, &token("after", "c1", None))
            .await
            .unwrap()
    );
    assert!(s.token(&key("stuck")).await.unwrap().is_none());
    drop_schema(&schema).await;
}

/// A PostgreSQL token statement that is slow (its client row locked by
/// another transaction) does not hold another client's token behind it:
/// the tokens queue for one statement at a time only while it keeps up.
#[tokio::test]
async fn postgres_a_slow_token_statement_holds_no_other_token() {
    let Some((s, schema)) = postgres().await else {
        return;
    };
    s.insert_client(&client("c1")).await.unwrap();
    s.insert_client(&client("c2")).await.unwrap();
    let tx = lock_client_row(&schema, "c1").await;
    let held = {
        let s = s.clone();
        tokio::spawn(async move { s.insert_cc_token(None, 0, &token("held", "c1", None)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let free = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        s.insert_cc_token(None, 0, &token("free", "c2", None)),
    )
    .await
    .expect("not held behind the locked client's statement");
    assert!(free.unwrap());
    assert!(!held.is_finished(), "still waiting for its client row");
    tx.rollback().await.unwrap();
    assert!(held.await.unwrap().unwrap());
    assert!(s.token(&key("held")).await.unwrap().is_some());
    drop_schema(&schema).await;
}

async fn writes_sharing_a_commit_fail_alone(s: Arc<dyn Store>) {
    s.insert_client(&client("c1")).await.unwrap();
    s.insert_token(&token("taken", "c1", None)).await.unwrap();
    let far = chrono::Utc::now().timestamp() + 600;
    let ids: Vec<String> = (0..16).map(|i| format!("g{i}")).collect();
    let tokens: Vec<TokenRecord> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| token(if i == 7 { "taken" } else { id }, "c1", None))
        .collect();
    let results = futures_util::future::join_all(
        tokens
            .iter()
            .zip(&ids)
            .map(|(t, id)| spend(&s, "assertion:c1", id, far, t)),
    )
    .await;
    for (i, r) in results.into_iter().enumerate() {
        if i == 7 {
            assert!(
                matches!(r, Err(aspen_store::StoreError::Conflict(_))),
                "{r:?}"
            );
            assert!(
                s.use_jti("assertion:c1", "g7", far).await.unwrap(),
                "unspent"
            );
        } else {
            assert!(r.unwrap(), "write {i}");
            assert!(s.token(&key(&format!("g{i}"))).await.unwrap().is_some());
            assert!(!s.use_jti("assertion:c1", &ids[i], far).await.unwrap());
        }
    }
}

/// Raw access beside a store, to see what its statements wrote.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

/// `$body` with `$p` bound to whichever pool `$raw` holds.
macro_rules! on_pool {
    ($raw:expr, $p:ident => $body:expr) => {
        match $raw {
            Raw::Sqlite($p) => $body,
            Raw::Pg($p) => $body,
        }
    };
}

impl Raw {
    /// Every transaction's id, detail and stored detail index.
    async fn details(&self) -> Vec<(String, String, Option<String>)> {
        const SQL: &str = "SELECT transaction_id, detail, detail_parts FROM transactions";
        on_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await.unwrap())
    }

    async fn without_wire(&self) -> i64 {
        const SQL: &str = "SELECT COUNT(*) FROM transactions WHERE wire IS NULL";
        on_pool!(self, p => sqlx::query_scalar(SQL).fetch_one(p).await.unwrap())
    }

    async fn wire(&self, id: &str) -> Option<String> {
        const SQL: &str = "SELECT wire FROM transactions WHERE transaction_id = $1";
        on_pool!(self, p => sqlx::query_scalar(SQL).bind(id).fetch_one(p).await.unwrap())
    }

    /// One text column of a transaction set behind the store's back, as a
    /// node of an older release or an operator would: its stored form is
    /// not written with it.
    async fn set_text(&self, column: &str, id: &str, value: &str) {
        let sql = format!("UPDATE transactions SET {column} = $1 WHERE transaction_id = $2");
        let n = on_pool!(self, p => {
            let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).bind(id);
            q.execute(p).await.unwrap().rows_affected()
        });
        assert_eq!(n, 1);
    }
}

/// Every transaction's detail is stored with its index (`TxDetail::index`),
/// by the bulk insert and by each backend's payment statement, and a page
/// reads the parts a parse of the text finds. A detail edited without its
/// index is parsed, not cut at the old places (issue 15, thirteenth pass).
async fn details_are_stored_with_their_index(s: Arc<dyn Store>, raw: Raw) {
    use aspen_domain::{DetailPart, TxDetail};
    use aspen_store::payments::{LedgerExecution, PaymentCreate, entry_id};
    s.seed_world(&world()).await.unwrap();
    let rora = s.psu_by_username("rora").await.unwrap().unwrap();
    let account = s.accounts_for_psu(&rora.id).await.unwrap()[0].clone();
    let now = 1_900_000_000_000;
    let mut c = consent("pi1");
    c.kind = "domestic-payment".into();
    c.status = "Authorised".into();
    s.insert_consent(&c).await.unwrap();
    let creditor = json!({"SchemeName": "UK.OBIE.SortCodeAccountNumber",
                          "Identification": "08080021325698", "Name": "ACME \"Ltd\""});
    let entry = aspen_domain::Transaction {
        transaction_id: entry_id("p1"),
        account_id: account.account_id.clone(),
        booking_ms: now,
        value_ms: None,
        amount_minor: 100,
        currency: account.currency.clone(),
        credit_debit: CreditDebit::Debit,
        status: "Booked".into(),
        reference: None,
        information: None,
        balance_minor: None,
        detail: json!({"CreditorAccount": creditor}).into(),
    };
    let exec = LedgerExecution {
        payment: ledger_payment("p1", 100, &account, now),
        entry,
    };
    let p = pending_payment("p1", "pi1", 100, &account, now, json!({"Initiation": {}}));
    assert_eq!(
        s.insert_payment_executed(&p, &idem("k1", "h"), now - 1, &exec)
            .await
            .unwrap(),
        PaymentCreate::Executed("AcceptedSettlementCompleted")
    );

    let rows = raw.details().await;
    assert!(rows.iter().any(|(id, ..)| *id == entry_id("p1")));
    for (id, text, index) in &rows {
        let parsed = TxDetail::from_text(text.clone()).unwrap();
        assert_eq!(index.as_deref(), Some(parsed.index().as_str()), "{id}");
    }
    let with_parts = rows
        .iter()
        .filter(|(_, _, i)| i.as_deref().is_some_and(|i| i.contains(',')))
        .count();
    assert!(
        with_parts > rows.len() / 2,
        "{with_parts} of {}",
        rows.len()
    );

    // The payment's entry reads its creditor back; then its text is edited
    // behind the index's back and the page still reads what the text says.
    let all = TxFilter::all();
    let entry_on_page = || async {
        s.transactions_page(&account.account_id, &all, None, None, 100_000)
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.transaction_id == entry_id("p1"))
            .unwrap()
    };
    assert_eq!(
        entry_on_page()
            .await
            .detail
            .part(DetailPart::CreditorAccount),
        Some(creditor.to_string().as_str())
    );
    let edited =
        json!({"CreditorAccount": {"Name": "X"}, "MerchantDetails": {"MerchantName": "Y"}});
    raw.set_text("detail", &entry_id("p1"), &edited.to_string())
        .await;
    let read = entry_on_page().await;
    assert_eq!(
        read.detail.part(DetailPart::CreditorAccount),
        Some(r#"{"Name":"X"}"#)
    );
    assert_eq!(
        read.detail.part(DetailPart::MerchantDetails),
        Some(r#"{"MerchantName":"Y"}"#)
    );
}

#[tokio::test]
async fn sqlite_details_are_stored_with_their_index() {
    let (s, _dir, path) = sqlite_file().await;
    details_are_stored_with_their_index(s, Raw::Sqlite(sqlite_raw(&path).await)).await;
}

/// A pool on PostgreSQL's `schema`, beside a store's.
/// A test on PostgreSQL with a second pool on its schema, for the raw
/// edits an older release's node or an operator would make.
async fn on_postgres_raw(body: RawBody) {
    if let Some((s, schema)) = postgres().await {
        let raw = pg_raw(&schema).await;
        body(s, Raw::Pg(raw.clone())).await;
        raw.close().await;
        drop_schema(&schema).await;
    }
}

async fn pg_raw(schema: &str) -> sqlx::PgPool {
    let schema = schema.to_string();
    sqlx::postgres::PgPoolOptions::new()
        .after_connect(move |c, _| {
            let schema = schema.clone();
            Box::pin(async move {
                sqlx::query(sqlx::AssertSqlSafe(format!("SET search_path TO {schema}")))
                    .execute(c)
                    .await
                    .map(|_| ())
            })
        })
        .connect(&pg_url())
        .await
        .unwrap()
}

async fn sqlite_raw(path: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn postgres_details_are_stored_with_their_index() {
    on_postgres_raw(|s, raw| Box::pin(details_are_stored_with_their_index(s, raw))).await;
}

/// A page written as the API writes it (`aspen_domain::wire`), in each of
/// the four forms (Detail or Basic, AIS-20; card number clear or masked,
/// AIS-21), a line a transaction: from the stored forms when `stored`.
struct Written {
    stored: bool,
    forms: [Vec<u8>; 4],
    from_stored: usize,
    from_columns: usize,
}

const FORMS: [(bool, bool); 4] = [(true, true), (true, false), (false, true), (false, false)];

impl Written {
    fn new(stored: bool) -> Self {
        Self {
            stored,
            forms: Default::default(),
            from_stored: 0,
            from_columns: 0,
        }
    }
}

impl aspen_domain::TxSink for Written {
    fn entry(&mut self, t: &aspen_domain::TransactionView<'_>) {
        for (b, (detail, pan)) in self.forms.iter_mut().zip(FORMS) {
            let mut dates = aspen_domain::wire::Dates::default();
            aspen_domain::wire::transaction(b, t, detail, pan, &mut dates);
            b.push(b'\n');
        }
        self.from_columns += 1;
    }
    fn takes_stored(&self) -> bool {
        self.stored
    }
    fn stored(&mut self, t: &aspen_domain::StoredTx<'_>) {
        for (b, (detail, pan)) in self.forms.iter_mut().zip(FORMS) {
            aspen_domain::wire::write_stored(b, &t.wire, t.balance_minor, detail, pan);
            b.push(b'\n');
        }
        self.from_stored += 1;
    }
    fn restart(&mut self) {
        *self = Self::new(self.stored);
    }
}

const PAGE: i64 = 5;

async fn written_page(
    s: &Arc<dyn Store>,
    acct: &str,
    after: &Option<TxCursor>,
    before: &Option<TxCursor>,
    stored: bool,
) -> (aspen_store::TxPageSummary, Written) {
    let mut w = Written::new(stored);
    let all = TxFilter::all();
    let p = s
        .transactions_page_summary(
            acct,
            &all,
            after.as_ref(),
            before.as_ref(),
            PAGE,
            true,
            &mut w,
        )
        .await
        .unwrap()
        .unwrap();
    (p, w)
}

/// Every page of `acct` ([`PAGE`] a page, forwards, and its last page read
/// backwards), read from the stored forms and from the columns: the same
/// summaries and, in every form, the same bytes. Gives how many
/// transactions came from stored forms and how many from columns on the
/// stored reads.
async fn stored_and_column_pages_agree(s: &Arc<dyn Store>, acct: &str) -> (usize, usize) {
    let (mut stored, mut columns) = (0, 0);
    let mut after: Option<TxCursor> = None;
    let mut reads = vec![];
    loop {
        reads.push((after.clone(), None));
        let p = written_page(s, acct, &after, &None, false).await.0;
        if p.rows < PAGE as usize {
            // The short last page's start, read backwards from there.
            reads.push((None, p.first.clone()));
            break;
        }
        after = p.last;
    }
    for (after, before) in reads {
        let (p, from_stored) = written_page(s, acct, &after, &before, true).await;
        let (q, from_columns) = written_page(s, acct, &after, &before, false).await;
        assert_eq!(p, q);
        assert_eq!(from_columns.from_columns, p.rows);
        assert_eq!(from_stored.from_stored + from_stored.from_columns, p.rows);
        for (form, (a, b)) in from_stored
            .forms
            .iter()
            .zip(&from_columns.forms)
            .enumerate()
        {
            assert_eq!(
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b),
                "form {form}, page after {after:?} before {before:?}"
            );
            for line in a.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                serde_json::from_slice::<serde_json::Value>(line).unwrap();
            }
        }
        stored += from_stored.from_stored;
        columns += from_stored.from_columns;
    }
    (stored, columns)
}

/// Every transaction is stored ready to write (`aspen_domain::wire`), by
/// the bulk insert, by each backend's payment statement, and again when
/// the ledger books a pending entry, and a page of stored forms is the
/// page its columns give (issue 15, twenty-second pass). A transaction
/// edited without its stored form loses it (a trigger), and a page holding
/// it is read from the columns.
async fn transactions_are_stored_ready_to_write(s: Arc<dyn Store>, raw: Raw) {
    use aspen_domain::TxDetail;
    use aspen_store::payments::{LedgerExecution, PaymentCreate, Step, entry_id};
    s.seed_world(&world()).await.unwrap();
    let rora = s.psu_by_username("rora").await.unwrap().unwrap();
    let accounts = s.accounts_for_psu(&rora.id).await.unwrap();
    let account = accounts[0].clone();
    let now = 1_900_000_000_000;
    let mut c = consent("pi1");
    c.kind = "domestic-payment".into();
    c.status = "Authorised".into();
    s.insert_consent(&c).await.unwrap();
    // A card as serde_json writes it (masked in place), and one that is
    // not (masked through a tree).
    let entry = |id: &str, at: i64, status: &str, card: &str| aspen_domain::Transaction {
        transaction_id: entry_id(id),
        account_id: account.account_id.clone(),
        booking_ms: at,
        value_ms: None,
        amount_minor: 100,
        currency: account.currency.clone(),
        credit_debit: CreditDebit::Debit,
        status: status.into(),
        reference: Some("R \"1\"".into()),
        information: Some("Shop\ttill".into()),
        balance_minor: None,
        detail: TxDetail::from_text(format!(
            r#"{{"CardInstrument":{card},"MerchantDetails":{{"MerchantName":"Café"}}}}"#
        ))
        .unwrap(),
    };
    let exec = LedgerExecution {
        payment: ledger_payment("p1", 100, &account, now),
        entry: entry(
            "p1",
            now,
            "Booked",
            r#"{"CardSchemeName":"VISA","Identification":"4111111111111111"}"#,
        ),
    };
    let p = pending_payment("p1", "pi1", 100, &account, now, json!({"Initiation": {}}));
    assert_eq!(
        s.insert_payment_executed(&p, &idem("k1", "h"), now - 1, &exec)
            .await
            .unwrap(),
        PaymentCreate::Executed("AcceptedSettlementCompleted")
    );
    s.ledger_submit(&ledger_payment("p2", 250, &account, now + 10))
        .await
        .unwrap();
    let pending = entry(
        "p2",
        now + 10,
        "Pending",
        r#"{ "Identification": "5500000000000004", "CardSchemeName": "MASTERCARD" }"#,
    );
    assert_eq!(
        s.ledger_accept("p2", now + 10, now + 10, &pending)
            .await
            .unwrap(),
        Step::Moved("Accepted")
    );
    assert_eq!(raw.without_wire().await, 0, "every row stored ready");
    let total: usize = accounts.iter().map(|a| a.account_id.as_str()).len();
    assert_eq!(total, 3);
    for a in &accounts {
        let (stored, columns) = stored_and_column_pages_agree(&s, &a.account_id).await;
        assert!(stored > 2 * PAGE as usize, "{stored}");
        assert_eq!(columns, 0);
    }
    let stored_entry = |id: String| {
        let raw = &raw;
        async move { raw.wire(&id).await.unwrap() }
    };
    assert!(
        stored_entry(entry_id("p2"))
            .await
            .contains(r#""Status":"Pending""#)
    );
    assert_eq!(
        s.ledger_settle("p2", now + 20).await.unwrap(),
        Step::Moved("Completed")
    );
    let settled = stored_entry(entry_id("p2")).await;
    assert!(
        settled.contains(r#""Status":"Booked""#) && settled.contains(r#""ValueDateTime":"#),
        "{settled}"
    );
    assert_eq!(
        stored_and_column_pages_agree(&s, &account.account_id)
            .await
            .1,
        0
    );
    // Edited without its stored form (an older release's node), the entry
    // loses it, and its pages come from the columns, edit included (the
    // two readings agree).
    raw.set_text("information", &entry_id("p1"), "Edited").await;
    assert_eq!(raw.wire(&entry_id("p1")).await, None);
    assert!(
        raw.wire(&entry_id("p2")).await.is_some(),
        "the others keep theirs"
    );
    let (stored, columns) = stored_and_column_pages_agree(&s, &account.account_id).await;
    assert!(
        stored > 2 * PAGE as usize && columns > 0,
        "{stored} {columns}"
    );
}

#[tokio::test]
async fn sqlite_transactions_are_stored_ready_to_write() {
    let (s, _dir, path) = sqlite_file().await;
    transactions_are_stored_ready_to_write(s, Raw::Sqlite(sqlite_raw(&path).await)).await;
}

#[tokio::test]
async fn postgres_transactions_are_stored_ready_to_write() {
    on_postgres_raw(|s, raw| Box::pin(transactions_are_stored_ready_to_write(s, raw))).await;
}

/// Two nodes starting together on one database, both asked for bulk
/// history: the world is seeded once, one node appends the history and the
/// other finds it there (it used to append the same entries again and fail
/// on their keys, so that node did not start). Then a node asked for more
/// goes on from where the history stands.
async fn two_nodes_seed_the_bulk_history_once(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let cfg = |n| aspen_sandbox::SeedConfig {
        seed: 42,
        bulk_transactions: n,
    };
    let (ca, cb) = (cfg(3000), cfg(3000));
    let (ra, rb) = tokio::join!(
        aspen_sandbox::seed(a.as_ref(), &ca),
        aspen_sandbox::seed(b.as_ref(), &cb)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        u8::from(ra.seeded) + u8::from(rb.seeded),
        1,
        "{ra:?} {rb:?}"
    );
    let mut added = [ra.bulk_added, rb.bulk_added];
    added.sort();
    assert_eq!(added, [0, 3000], "{ra:?} {rb:?}");
    assert_eq!(a.seed_state().await.unwrap().unwrap().bulk, 3000);

    let acct = aspen_sandbox::bulk_account_id(42);
    let count = || async { a.count_transactions(&acct, &TxFilter::all()).await.unwrap() };
    let listed = a
        .transactions_page(&acct, &TxFilter::all(), None, None, 100_000)
        .await
        .unwrap();
    let once = count().await;
    assert_eq!(listed.len() as i64, once);

    let (ca, cb) = (cfg(3500), cfg(4000));
    let (ra, rb) = tokio::join!(
        aspen_sandbox::seed(a.as_ref(), &ca),
        aspen_sandbox::seed(b.as_ref(), &cb)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        b.seed_state().await.unwrap().unwrap().bulk,
        4000,
        "{ra:?} {rb:?}"
    );
    assert_eq!(count().await, once + 1000, "{ra:?} {rb:?}");
}

both_nodes!(two_nodes_seed_the_bulk_history_once);

both!(
    tokens_from_before_ids_are_found_by_their_hash_alone,
    |s: Arc<dyn Store>| async move {
        s.insert_client(&client("c1")).await.unwrap();
        // What migration 14 (15 on PostgreSQL) makes of a token issued
        // before tokens carried ids: an id below zero.
        s.insert_token(&TokenRecord {
            id: -7,
            ..token("old", "c1", None)
        })
        .await
        .unwrap();
        s.insert_token(&token("new", "c1", None)).await.unwrap();
        let legacy = |h: &str| TokenKey {
            id: None,
            hash: h.into(),
        };
        assert_eq!(s.token(&legacy("old")).await.unwrap().unwrap().id, -7);
        assert!(s.access(&legacy("old"), true).await.unwrap().is_some());
        // A token with an id is found by it, never by its hash alone.
        assert!(s.token(&legacy("new")).await.unwrap().is_none());
        assert!(s.access(&legacy("new"), false).await.unwrap().is_none());
        // An id and a hash of two different rows find neither.
        let crossed = TokenKey {
            id: Some(tid("new")),
            hash: "old".into(),
        };
        assert!(s.token(&crossed).await.unwrap().is_none());
        assert!(s.access(&crossed, true).await.unwrap().is_none());
        s.revoke_token(&crossed).await.unwrap();
        assert!(!s.token(&key("new")).await.unwrap().unwrap().revoked);
        assert!(!s.token(&legacy("old")).await.unwrap().unwrap().revoked);
        s.revoke_token(&legacy("old")).await.unwrap();
        assert!(s.token(&legacy("old")).await.unwrap().unwrap().revoked);
        assert!(!s.token(&key("new")).await.unwrap().unwrap().revoked);
    }
);

/// Two nodes hand out token ids at once, each from blocks it takes from
/// the shared database: no id twice, across several blocks each.
async fn two_nodes_take_distinct_token_ids(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for s in [a, b] {
        for _ in 0..4 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..700 {
                    ids.push(s.next_token_id().await.unwrap());
                }
                ids
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    assert!(all.iter().all(|&id| id > 0));
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "an id was handed out twice");
}

both_nodes!(two_nodes_take_distinct_token_ids);

/// Two nodes (two stores on one database) race the same client assertion's
/// JWT id, four writes each, each write with its own token: one write wins
/// on all of them, only its token exists, and the id is spent (AUTH-47:
/// single use across every node). On SQLite one node's direct lane meets
/// the other's write lock and takes the sqlx path, so both of the token
/// script's paths race.
async fn two_nodes_spend_a_jwt_id_once(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let far = chrono::Utc::now().timestamp() + 600;
    a.insert_client(&client("c1")).await.unwrap();
    let mut writes = Vec::new();
    for i in 0..24 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        writes.push(tokio::spawn(async move {
            spend(
                &s,
                "assertion:c1",
                "twice",
                far,
                &token(&format!("n{i}"), "c1", None),
            )
            .await
            .unwrap()
        }));
    }
    let mut won = Vec::new();
    for (i, w) in writes.into_iter().enumerate() {
        if w.await.unwrap() {
            won.push(i);
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    for i in 0..24 {
        let stored = b.token(&key(&format!("n{i}"))).await.unwrap();
        assert_eq!(stored.is_some(), won.contains(&i), "token n{i}");
    }
    assert!(!a.use_jti("assertion:c1", "twice", far).await.unwrap());
}

both_nodes!(
    two_nodes_spend_a_jwt_id_once,
    (flavor = "multi_thread", worker_threads = 2)
);
