//! The OB Read/Write API v3.1.2 resource server: `/open-banking/v3.1/**`.

pub mod ais_consents;
pub mod common;

use std::sync::Arc;

use aspen_store::Store;
use axum::Router;
use axum::routing::{get, post};

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    /// Public base URL for absolute links (COMMON-2).
    pub base_url: String,
    /// Strict profile: unknown fields in `Data`/`Risk` are refused
    /// (COMMON-21).
    pub strict: bool,
}

impl aspen_auth::bearer::HasStore for ApiState {
    fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

pub const AISP: &str = "/open-banking/v3.1/aisp";

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(
            &format!("{AISP}/account-access-consents"),
            post(ais_consents::create),
        )
        .route(
            &format!("{AISP}/account-access-consents/{{consent_id}}"),
            get(ais_consents::read).delete(ais_consents::delete),
        )
        .with_state(state)
}
