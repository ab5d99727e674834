//! The OB Read/Write API v3.1.2 resource server: `/open-banking/v3.1/**`.

pub mod ais;
pub mod ais_consents;
pub mod cof;
pub mod common;
pub mod events;
pub mod links;
pub mod pis;
pub mod pis_schema;
mod tx_body;

use std::sync::Arc;

use aspen_store::Store;
use axum::Router;
use axum::routing::{get, post};

/// The resource server's state, one `Arc` to clone per request (as
/// `aspen_auth::AuthState`).
#[derive(Clone)]
pub struct ApiState(Arc<ApiStateInner>);

impl ApiState {
    pub fn new(inner: ApiStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for ApiState {
    type Target = ApiStateInner;

    fn deref(&self) -> &ApiStateInner {
        &self.0
    }
}

pub struct ApiStateInner {
    pub store: Arc<dyn Store>,
    /// Accounts, transactions and payment execution: the bank's core.
    pub core: Arc<dyn aspen_core::Core>,
    /// Public base URL for absolute links (COMMON-2).
    pub base_url: String,
    /// Strict profile: unknown fields in `Data`/`Risk` are refused
    /// (COMMON-21).
    pub strict: bool,
    /// Seals page links; shared by every node.
    pub link_key: Arc<aws_lc_rs::hmac::Key>,
    /// Transactions per page (COMMON-47: 25–1000).
    pub page_size: i64,
    /// Request-body schemas from the official OpenAPI files.
    pub schemas: Arc<pis_schema::Schemas>,
    /// Event notifications: SET signing and polling limits.
    pub events: Arc<events::EventSettings>,
    /// Payment initiation: profile, rates, signing, hand-off to the core.
    pub pis: Arc<pis::PisSettings>,
}

impl aspen_auth::bearer::HasStore for ApiState {
    fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

pub const AISP: &str = "/open-banking/v3.1/aisp";
pub const PISP: &str = "/open-banking/v3.1/pisp";
pub const CBPII: &str = "/open-banking/v3.1/cbpii";

pub fn router(state: ApiState) -> Router {
    let reads = ais_reads();
    // The AIS reads write nothing, and with the builtin core every read
    // they make is the store's, one after another: one snapshot serves
    // the token check and the data (issue 15, twenty-sixth pass).
    let reads = if state.core.reads_store() {
        reads.route_layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| {
                aspen_store::one_snapshot(next.run(req))
            },
        ))
    } else {
        reads
    };
    Router::new()
        .merge(pis::routes())
        .merge(cof::routes())
        .merge(events::routes())
        .route(
            &format!("{AISP}/account-access-consents"),
            post(ais_consents::create),
        )
        .route(
            &format!("{AISP}/account-access-consents/{{consent_id}}"),
            get(ais_consents::read).delete(ais_consents::delete),
        )
        .merge(reads)
        .with_state(state)
}

/// The AIS resources: every route a `GET` that reads.
fn ais_reads() -> Router<ApiState> {
    Router::new()
        .route(&format!("{AISP}/accounts"), get(ais::list_accounts))
        .route(&format!("{AISP}/accounts/{{id}}"), get(ais::one_account))
        .route(&format!("{AISP}/balances"), get(ais::balances))
        .route(
            &format!("{AISP}/accounts/{{id}}/balances"),
            get(ais::balances),
        )
        .route(&format!("{AISP}/transactions"), get(ais::bulk_transactions))
        .route(
            &format!("{AISP}/accounts/{{id}}/transactions"),
            get(ais::account_transactions),
        )
        .route(&format!("{AISP}/beneficiaries"), get(ais::beneficiaries))
        .route(
            &format!("{AISP}/accounts/{{id}}/beneficiaries"),
            get(ais::account_beneficiaries),
        )
        .route(&format!("{AISP}/direct-debits"), get(ais::direct_debits))
        .route(
            &format!("{AISP}/accounts/{{id}}/direct-debits"),
            get(ais::account_direct_debits),
        )
        .route(
            &format!("{AISP}/standing-orders"),
            get(ais::standing_orders),
        )
        .route(
            &format!("{AISP}/accounts/{{id}}/standing-orders"),
            get(ais::account_standing_orders),
        )
        .route(
            &format!("{AISP}/scheduled-payments"),
            get(ais::scheduled_payments),
        )
        .route(
            &format!("{AISP}/accounts/{{id}}/scheduled-payments"),
            get(ais::account_scheduled_payments),
        )
        .route(&format!("{AISP}/statements"), get(ais::statements))
        .route(
            &format!("{AISP}/accounts/{{id}}/statements"),
            get(ais::account_statements),
        )
        .route(
            &format!("{AISP}/accounts/{{id}}/statements/{{sid}}"),
            get(ais::statement),
        )
        .route(
            &format!("{AISP}/accounts/{{id}}/statements/{{sid}}/file"),
            get(ais::statement_file),
        )
        .route(
            &format!("{AISP}/accounts/{{id}}/statements/{{sid}}/transactions"),
            get(ais::statement_transactions),
        )
        .route(&format!("{AISP}/products"), get(ais::products))
        .route(
            &format!("{AISP}/accounts/{{id}}/product"),
            get(ais::account_product),
        )
        .route(&format!("{AISP}/offers"), get(ais::offers))
        .route(
            &format!("{AISP}/accounts/{{id}}/offers"),
            get(ais::account_offers),
        )
        .route(&format!("{AISP}/party"), get(ais::psu_party))
        .route(
            &format!("{AISP}/accounts/{{id}}/party"),
            get(ais::account_party),
        )
        .route(
            &format!("{AISP}/accounts/{{id}}/parties"),
            get(ais::account_parties),
        )
}
