//! HTTP plumbing shared by every role: the OB error shape, the
//! `x-fapi-interaction-id` span, request metrics and the verified client
//! certificate handed to handlers.
//!
//! This crate exists (it is not in DESIGN.md's sketch) because both the
//! authorisation server and the resource server need the same pieces, and
//! neither may depend on the other.

pub mod client_cert;
pub mod error;
pub mod interaction;
pub mod json;
pub mod metrics_layer;

pub use client_cert::{ClientCert, PeerCert};
pub use error::{Forbidden, ObError, ObErrorCode};
pub use interaction::InteractionId;
pub use json::Json;

/// The TCP peer address of the connection, inserted by the listener (for
/// throttling and logs).
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub std::net::SocketAddr);
