//! The AIS end-to-end suite again with `[core] kind = "http"`: every test of
//! `ais.rs`, with the accounts behind the reference connector
//! (`aspen connector serve`) in a process of its own (issue 12). The harness
//! knows the mode from this binary's name (`common::core_kind`).

#[path = "ais.rs"]
mod suite;
