//! Migrations embedded in the binary, one list per backend. New files are
//! appended with the next version number and never edited once released.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

fn build(files: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(v, desc, sql)| {
                Migration::new(
                    v,
                    Cow::Borrowed(desc),
                    MigrationType::Simple,
                    sqlx::SqlStr::from_static(sql),
                    false,
                )
            })
            .collect(),
    )
}

/// SQLite's migrations, in order.
const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "world",
        include_str!("../migrations/sqlite/0001_world.sql"),
    ),
    (
        2,
        "auth",
        include_str!("../migrations/sqlite/0002_auth.sql"),
    ),
    (
        3,
        "consents",
        include_str!("../migrations/sqlite/0003_consents.sql"),
    ),
    (
        4,
        "tx_days",
        include_str!("../migrations/sqlite/0004_tx_days.sql"),
    ),
    (
        5,
        "payments",
        include_str!("../migrations/sqlite/0005_payments.sql"),
    ),
    (
        6,
        "hardening",
        include_str!("../migrations/sqlite/0006_hardening.sql"),
    ),
    (
        7,
        "core",
        include_str!("../migrations/sqlite/0007_core.sql"),
    ),
    (
        8,
        "events",
        include_str!("../migrations/sqlite/0008_events.sql"),
    ),
    (
        9,
        "factors",
        include_str!("../migrations/sqlite/0009_factors.sql"),
    ),
    (
        10,
        "passkeys",
        include_str!("../migrations/sqlite/0010_passkeys.sql"),
    ),
    (
        11,
        "token_write",
        include_str!("../migrations/sqlite/0011_token_write.sql"),
    ),
    (
        12,
        "tx_blocks",
        include_str!("../migrations/sqlite/0012_tx_blocks.sql"),
    ),
    (
        13,
        "detail_parts",
        include_str!("../migrations/sqlite/0013_detail_parts.sql"),
    ),
    (
        14,
        "token_ids",
        include_str!("../migrations/sqlite/0014_token_ids.sql"),
    ),
    (
        15,
        "spent_ids",
        include_str!("../migrations/sqlite/0015_spent_ids.sql"),
    ),
    (
        16,
        "tx_wire",
        include_str!("../migrations/sqlite/0016_tx_wire.sql"),
    ),
    (
        17,
        "tx_page_index",
        include_str!("../migrations/sqlite/0017_tx_page_index.sql"),
    ),
    (
        18,
        "tokens_no_expiry_index",
        include_str!("../migrations/sqlite/0018_tokens_no_expiry_index.sql"),
    ),
];

pub fn sqlite() -> Migrator {
    build(SQLITE)
}

/// SQLite's migrations up to `version`: a data directory as an older
/// release left it, for the tests of a migration's data.
#[cfg(test)]
pub(crate) fn sqlite_until(version: i64) -> Migrator {
    let n = SQLITE.iter().take_while(|m| m.0 <= version).count();
    build(&SQLITE[..n])
}

pub fn postgres() -> Migrator {
    build(&[
        (
            1,
            "world",
            include_str!("../migrations/postgres/0001_world.sql"),
        ),
        (
            2,
            "auth",
            include_str!("../migrations/postgres/0002_auth.sql"),
        ),
        (
            3,
            "consents",
            include_str!("../migrations/postgres/0003_consents.sql"),
        ),
        (
            4,
            "tx_days",
            include_str!("../migrations/postgres/0004_tx_days.sql"),
        ),
        (
            5,
            "payments",
            include_str!("../migrations/postgres/0005_payments.sql"),
        ),
        (
            6,
            "hardening",
            include_str!("../migrations/postgres/0006_hardening.sql"),
        ),
        (
            7,
            "core",
            include_str!("../migrations/postgres/0007_core.sql"),
        ),
        (
            8,
            "events",
            include_str!("../migrations/postgres/0008_events.sql"),
        ),
        (
            9,
            "factors",
            include_str!("../migrations/postgres/0009_factors.sql"),
        ),
        (
            10,
            "passkeys",
            include_str!("../migrations/postgres/0010_passkeys.sql"),
        ),
        (
            11,
            "token_write",
            include_str!("../migrations/postgres/0011_token_write.sql"),
        ),
        (
            12,
            "abort",
            include_str!("../migrations/postgres/0012_abort.sql"),
        ),
        (
            13,
            "tx_blocks",
            include_str!("../migrations/postgres/0013_tx_blocks.sql"),
        ),
        (
            14,
            "detail_parts",
            include_str!("../migrations/postgres/0014_detail_parts.sql"),
        ),
        (
            15,
            "token_ids",
            include_str!("../migrations/postgres/0015_token_ids.sql"),
        ),
        (
            16,
            "tx_wire",
            include_str!("../migrations/postgres/0016_tx_wire.sql"),
        ),
    ])
}
