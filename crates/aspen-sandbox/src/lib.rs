//! The sandbox world: a small bank generated deterministically from a
//! seed, seeded once (idempotent on restart), plus optional bulk history
//! for load tests.

mod generate;

use std::time::Instant;

use aspen_store::Store;

pub use generate::{
    SandboxLogin, bulk_account_id, bulk_transactions, generate_world, iban_check_ok, sandbox_logins,
};

#[derive(Debug, Clone)]
pub struct SeedConfig {
    pub seed: u64,
    /// Extra synthetic transactions on `rora`'s GBP account.
    pub bulk_transactions: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedReport {
    /// False when the world was already there.
    pub seeded: bool,
    pub seed: i64,
    pub anchor: String,
    pub bulk_added: u64,
    pub elapsed_ms: u128,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Store(#[from] aspen_store::StoreError),
    #[error(
        "the database holds a sandbox seeded with seed {existing}, not {requested}; use a fresh database or the same seed"
    )]
    SeedMismatch { existing: i64, requested: i64 },
}

/// Every sandbox PSU but one gets an authenticator (issue 14), its secret
/// passed through `seal` before it is stored. Idempotent; run on every
/// start, so a sandbox seeded before factors existed gets them.
pub async fn seed_factors(
    store: &dyn Store,
    seed: u64,
    seal: &(dyn Fn(&str) -> String + Send + Sync),
) -> Result<(), SandboxError> {
    for login in sandbox_logins(seed) {
        let (Some(secret), Some(psu)) = (
            login.totp_secret,
            store.psu_by_username(login.username).await?,
        ) else {
            continue;
        };
        store
            .add_factor(&aspen_store::factors::Factor {
                factor_id: format!("totp-sandbox-{}", login.username),
                psu_id: psu.id,
                kind: "totp".into(),
                label: "Sandbox authenticator".into(),
                secret: seal(&secret),
                created_at: 0,
                credential_id: None,
            })
            .await?;
    }
    Ok(())
}

/// Seeds the world unless it is already there. The anchor date is stored,
/// so a restart on a later day sees the same bank.
pub async fn seed(store: &dyn Store, cfg: &SeedConfig) -> Result<SeedReport, SandboxError> {
    let started = Instant::now();
    let mut seeded = false;
    let state = match store.seed_state().await? {
        Some(s) => s,
        None => {
            let anchor = chrono::Utc::now().date_naive();
            let world = generate_world(cfg.seed, anchor);
            seeded = store.seed_world(&world).await?;
            if seeded {
                tracing::info!(seed = cfg.seed, %anchor, psus = world.psus.len(), transactions = world.transactions.len(), "sandbox world seeded");
            }
            store
                .seed_state()
                .await?
                .ok_or(aspen_store::StoreError::NotFound)?
        }
    };
    if state.seed != cfg.seed as i64 {
        return Err(SandboxError::SeedMismatch {
            existing: state.seed,
            requested: cfg.seed as i64,
        });
    }
    let mut bulk_added = 0;
    let wanted = cfg.bulk_transactions as i64;
    let mut have = state.bulk;
    // A claim lost to another node starting at the same time means the
    // history grew meanwhile: read how far, and go on from there if that
    // is still short of what this node was asked for.
    while wanted > have {
        let anchor = chrono::NaiveDate::parse_from_str(&state.anchor, "%Y-%m-%d")
            .unwrap_or_else(|_| chrono::Utc::now().date_naive());
        let account = generate::bulk_account_id(cfg.seed);
        let extra = (wanted - have) as u64;
        let mut entries = bulk_transactions(cfg.seed, anchor, &account, have as u64, extra);
        bulk_added = store
            .seed_bulk(&account, &mut entries, have, wanted)
            .await?;
        if bulk_added > 0 {
            tracing::info!(
                bulk_added,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "bulk sandbox history seeded"
            );
            break;
        }
        let now = store
            .seed_state()
            .await?
            .ok_or(aspen_store::StoreError::NotFound)?
            .bulk;
        tracing::info!(bulk = now, "bulk sandbox history grown by another node");
        if now <= have {
            // The marker only grows; if it did not, do not spin on it.
            break;
        }
        have = now;
    }
    Ok(SeedReport {
        seeded,
        seed: state.seed,
        anchor: state.anchor,
        bulk_added,
        elapsed_ms: started.elapsed().as_millis(),
    })
}
