//! The connector API served over any [`Core`]: with the builtin core this
//! is the reference connector (`aspen connector serve`), the starting point
//! a bank copies and what the tests run in a process of its own.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::http::{
    AccountsBody, BASE, FundsBody, ResourcesBody, TransactionsBody, TxQuery, kind_from_path,
};
use crate::{Core, CoreError, Direction, PaymentInstruction, TxPageRequest};

/// Most entries one transaction page may ask for.
pub const MAX_PAGE: u32 = 1000;

struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.0,
            axum::Json(json!({ "error": self.1, "message": self.2 })),
        )
            .into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("5"));
        }
        r
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::BadRequest(m) => ApiError(StatusCode::BAD_REQUEST, "bad_request", m),
            CoreError::Conflict(m) => ApiError(StatusCode::CONFLICT, "conflict", m),
            CoreError::Unavailable { detail, .. } => {
                ApiError(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            }
            other => {
                tracing::error!(error = %other, "connector request failed");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the core failed; see its log".into(),
                )
            }
        }
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such {what}"),
    )
}

type Result<T> = std::result::Result<T, ApiError>;
type Shared = Arc<dyn Core>;

async fn customer(State(c): State<Shared>, Path(psu): Path<String>) -> Result<Response> {
    let v = c
        .customer(&psu)
        .await?
        .ok_or_else(|| not_found("customer"))?;
    Ok(axum::Json(v).into_response())
}

async fn accounts(State(c): State<Shared>, Path(psu): Path<String>) -> Result<Response> {
    let accounts = c.accounts_for_psu(&psu).await?;
    Ok(axum::Json(AccountsBody { accounts }).into_response())
}

async fn account(State(c): State<Shared>, Path(id): Path<String>) -> Result<Response> {
    let v = c.account(&id).await?.ok_or_else(|| not_found("account"))?;
    Ok(axum::Json(v).into_response())
}

async fn known_account(c: &Shared, id: &str) -> Result<()> {
    c.account(id).await?.ok_or_else(|| not_found("account"))?;
    Ok(())
}

async fn transactions(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<TxQuery>,
) -> Result<Response> {
    known_account(&c, &id).await?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("limit must be 1..={MAX_PAGE}"),
        ));
    }
    let page = TxPageRequest {
        filter: q.filter(),
        cursor: q.cursor.clone(),
        direction: q.direction.unwrap_or(Direction::Forward),
        limit,
    };
    let transactions = c.transactions(&id, &page).await?;
    Ok(axum::Json(TransactionsBody { transactions }).into_response())
}

async fn summary(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<TxQuery>,
) -> Result<Response> {
    known_account(&c, &id).await?;
    Ok(axum::Json(c.transaction_summary(&id, &q.filter()).await?).into_response())
}

async fn resources(
    State(c): State<Shared>,
    Path((id, kind)): Path<(String, String)>,
) -> Result<Response> {
    let kind = kind_from_path(&kind).ok_or_else(|| not_found("resource kind"))?;
    known_account(&c, &id).await?;
    let resources = c.resources(&id, kind).await?;
    Ok(axum::Json(ResourcesBody { resources }).into_response())
}

async fn resource(
    State(c): State<Shared>,
    Path((id, kind, rid)): Path<(String, String, String)>,
) -> Result<Response> {
    let kind = kind_from_path(&kind).ok_or_else(|| not_found("resource kind"))?;
    let v = c
        .resource(&id, kind, &rid)
        .await?
        .ok_or_else(|| not_found("resource"))?;
    Ok(axum::Json(v).into_response())
}

#[derive(Deserialize)]
struct FundsQuery {
    amount_minor: i64,
}

async fn funds(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<FundsQuery>,
) -> Result<Response> {
    known_account(&c, &id).await?;
    if q.amount_minor < 0 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "amount_minor must not be negative".into(),
        ));
    }
    let available = c.funds_available(&id, q.amount_minor).await?;
    Ok(axum::Json(FundsBody { available }).into_response())
}

async fn put_payment(
    State(c): State<Shared>,
    Path(id): Path<String>,
    axum::Json(p): axum::Json<PaymentInstruction>,
) -> Result<Response> {
    if p.payment_id != id {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "payment_id differs from the path".into(),
        ));
    }
    if p.debit_minor <= 0 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "debit_minor must be positive".into(),
        ));
    }
    Ok(axum::Json(c.submit_payment(&p).await?).into_response())
}

async fn get_payment(State(c): State<Shared>, Path(id): Path<String>) -> Result<Response> {
    let v = c.payment(&id).await?.ok_or_else(|| not_found("payment"))?;
    Ok(axum::Json(v).into_response())
}

pub fn router(core: Arc<dyn Core>) -> Router {
    Router::new()
        .route(&format!("{BASE}/customers/{{psu}}"), get(customer))
        .route(&format!("{BASE}/customers/{{psu}}/accounts"), get(accounts))
        .route(&format!("{BASE}/accounts/{{id}}"), get(account))
        .route(
            &format!("{BASE}/accounts/{{id}}/transactions"),
            get(transactions),
        )
        .route(
            &format!("{BASE}/accounts/{{id}}/transaction-summary"),
            get(summary),
        )
        .route(
            &format!("{BASE}/accounts/{{id}}/resources/{{kind}}"),
            get(resources),
        )
        .route(
            &format!("{BASE}/accounts/{{id}}/resources/{{kind}}/{{rid}}"),
            get(resource),
        )
        .route(&format!("{BASE}/accounts/{{id}}/funds"), get(funds))
        .route(
            &format!("{BASE}/payments/{{id}}"),
            get(get_payment).put(put_payment),
        )
        .fallback(|| async { not_found("endpoint").into_response() })
        .with_state(core)
}
