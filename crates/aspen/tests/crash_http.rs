//! The SIGKILL test again with `[core] kind = "http"`: aspen is killed at
//! random moments while orders arrive, the reference connector keeps
//! running in its own process, and each accepted payment must reach the
//! connector's ledger exactly once (issue 12). The harness knows the mode
//! from this binary's name (`common::core_kind`).

#[path = "crash.rs"]
mod suite;
