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

pub fn sqlite() -> Migrator {
    build(&[
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
    ])
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
    ])
}
