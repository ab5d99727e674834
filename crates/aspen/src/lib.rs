//! The `aspen` binary's library half: configuration, TLS, wiring and the
//! CLI commands, kept in a library so end-to-end tests can start the real
//! server in-process on a loopback port.

pub mod cli;
pub mod clients;
pub mod config;
pub mod connector;
pub mod datadir;
pub mod edge;
pub mod kit;
pub mod logging;
pub mod ops;
pub mod pki;
pub mod server;
pub mod tls;
pub mod tpp;

pub use config::{Config, Profile};
pub use server::{RunningServer, start};
