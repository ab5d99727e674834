//! Confirmation of Funds v3.1.2 (COF-1..13): `funds-confirmation-consents`
//! and `funds-confirmations` under `/open-banking/v3.1/cbpii`. A funds
//! confirmation answers yes or no for one amount on the consent's one
//! account; it never discloses a balance and reserves nothing (COF-11).

use std::sync::Arc;

use aspen_auth::{BoundToken, GrantKind};
use aspen_http::{Json, ObError, ObErrorCode};
use aspen_store::consent::ConsentRecord;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::common::{self, core_error, format_datetime, format_ms, parse_request_datetime};
use crate::{ApiState, CBPII, pis_schema};

pub const KIND: &str = "funds-confirmation";
const SCOPE: &str = "fundsconfirmations";

/// Account identification schemes a CBPII may name (the namespaced enum of
/// OBFundsConfirmationConsent1).
const SCHEMES: &[&str] = &[
    "UK.OBIE.BBAN",
    "UK.OBIE.IBAN",
    "UK.OBIE.PAN",
    "UK.OBIE.Paym",
    "UK.OBIE.SortCodeAccountNumber",
];

fn bad(code: ObErrorCode, msg: impl Into<String>, path: &str) -> ObError {
    ObError::bad_request(code, msg, Some(path))
}

fn self_link(state: &ApiState, id: &str) -> String {
    format!("{}{CBPII}/funds-confirmation-consents/{id}", state.base_url)
}

/// OBFundsConfirmationConsentResponse1 (COF-5).
pub fn consent_body(state: &ApiState, c: &ConsentRecord) -> Value {
    let mut data = Map::new();
    data.insert("ConsentId".into(), json!(c.consent_id));
    data.insert("CreationDateTime".into(), json!(format_ms(c.created_at)));
    data.insert("Status".into(), json!(c.status));
    data.insert(
        "StatusUpdateDateTime".into(),
        json!(format_ms(c.status_updated_at)),
    );
    if let Some(e) = c.data["Data"].get("ExpirationDateTime") {
        data.insert("ExpirationDateTime".into(), e.clone());
    }
    data.insert(
        "DebtorAccount".into(),
        c.data["Data"]["DebtorAccount"].clone(),
    );
    json!({
        "Data": data,
        "Links": { "Self": self_link(state, &c.consent_id) },
        "Meta": {},
    })
}

pub async fn create_consent(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    common::require(&token, GrantKind::ClientCredentials, SCOPE)?;
    common::check_content_type(&headers)?;
    common::check_accept(&headers)?;
    common::check_fapi_headers(&headers)?;
    // COF-2: not idempotent and not signed; an x-idempotency-key or a
    // signature that comes along anyway is ignored [choice: lenient, so a
    // client that sends them on every POST works].
    let value = common::parse_json(&body)?;
    pis_schema::validate(&state.schemas.cof_consent, &value)?;
    let d = &value["Data"];
    let scheme = d["DebtorAccount"]["SchemeName"].as_str().unwrap_or("");
    if !SCHEMES.contains(&scheme) {
        return Err(bad(
            ObErrorCode::UnsupportedAccountIdentifier,
            format!("{scheme} is not an account identification scheme this bank supports"),
            "Data.DebtorAccount.SchemeName",
        ));
    }
    let expiration = match d.get("ExpirationDateTime") {
        None => None,
        Some(v) => {
            let e = v.as_str().and_then(parse_request_datetime).ok_or_else(|| {
                bad(
                    ObErrorCode::FieldInvalidDate,
                    "ExpirationDateTime is not an ISO 8601 date-time",
                    "Data.ExpirationDateTime",
                )
            })?;
            if e <= chrono::Utc::now() {
                return Err(bad(
                    ObErrorCode::FieldInvalidDate,
                    "ExpirationDateTime is in the past",
                    "Data.ExpirationDateTime",
                ));
            }
            Some(e)
        }
    };
    let mut data = Map::new();
    data.insert("DebtorAccount".into(), d["DebtorAccount"].clone());
    if let Some(e) = &expiration {
        data.insert("ExpirationDateTime".into(), json!(format_datetime(e)));
    }
    let now = chrono::Utc::now().timestamp_millis();
    let record = ConsentRecord {
        consent_id: format!("fcc-{}", uuid::Uuid::new_v4()),
        kind: KIND.into(),
        client_id: token.client_id.clone(),
        status: "AwaitingAuthorisation".into(),
        created_at: now,
        status_updated_at: now,
        expires_at: expiration.map(|e| e.timestamp_millis()),
        psu_id: None,
        accounts: Vec::new(),
        data: json!({ "Data": data }),
        authorised_at: None,
        deleted: false,
    };
    state
        .store
        .insert_consent(&record)
        .await
        .map_err(ObError::internal)?;
    tracing::info!(consent_id = %record.consent_id, client_id = %token.client_id, "funds-confirmation consent created");
    Ok(common::created(consent_body(&state, &record)))
}

async fn owned(
    state: &ApiState,
    token: &BoundToken,
    id: &str,
    path: &str,
) -> Result<Arc<ConsentRecord>, ObError> {
    common::owned_consent(state.store.as_ref(), KIND, token, id, path).await
}

pub async fn read_consent(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ObError> {
    common::require(&token, GrantKind::ClientCredentials, SCOPE)?;
    common::check_accept(&headers)?;
    common::check_fapi_headers(&headers)?;
    let c = owned(&state, &token, &id, "ConsentId").await?;
    Ok(Json(consent_body(&state, &c)).into_response())
}

/// COF-8: gone at once with every token bound to it; reading it afterwards
/// is 400 `UK.OBIE.Resource.NotFound`.
pub async fn delete_consent(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ObError> {
    common::require(&token, GrantKind::ClientCredentials, SCOPE)?;
    common::check_fapi_headers(&headers)?;
    owned(&state, &token, &id, "ConsentId").await?;
    state
        .store
        .end_consent(&id, None, chrono::Utc::now().timestamp_millis())
        .await
        .map_err(ObError::internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /funds-confirmations` (COF-9..11). Every call is a new
/// confirmation (COF-2); a repeated `Reference` is not refused [choice:
/// `UK.OBIE.Rules.DuplicateReference` is optional, and a card scheme may
/// retry with the same reference].
pub async fn confirm(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    common::require(&token, GrantKind::AuthorizationCode, SCOPE)?;
    common::check_content_type(&headers)?;
    common::check_accept(&headers)?;
    common::check_fapi_headers(&headers)?;
    let value = common::parse_json(&body)?;
    pis_schema::validate(&state.schemas.cof_confirmation, &value)?;
    let d = &value["Data"];
    let consent_id = d["ConsentId"].as_str().unwrap_or("");
    // COF-3, COMMON-64.
    if token.consent_id.as_deref() != Some(consent_id) {
        return Err(bad(
            ObErrorCode::ResourceConsentMismatch,
            "the access token was issued for another consent",
            "Data.ConsentId",
        ));
    }
    let c = owned(&state, &token, consent_id, "Data.ConsentId").await?;
    let now = chrono::Utc::now().timestamp_millis();
    // COF-10.
    if c.status != "Authorised" {
        return Err(bad(
            ObErrorCode::ResourceInvalidConsentStatus,
            format!("the consent is {}", c.status),
            "Data.ConsentId",
        ));
    }
    if c.expires_at.is_some_and(|e| e <= now) {
        return Err(bad(
            ObErrorCode::ResourceInvalidConsentStatus,
            "the consent has expired",
            "Data.ConsentId",
        ));
    }
    let account_id = c
        .accounts
        .first()
        .ok_or_else(|| ObError::internal("authorised funds consent without an account"))?;
    let account = state
        .core
        .account(account_id)
        .await
        .map_err(core_error)?
        .ok_or_else(|| ObError::internal("consent names a missing account"))?;
    let currency = d["InstructedAmount"]["Currency"].as_str().unwrap_or("");
    // COF-9: only in the account's own currency.
    if currency != account.currency {
        return Err(bad(
            ObErrorCode::UnsupportedCurrency,
            format!(
                "the account is held in {}, not {currency}",
                account.currency
            ),
            "Data.InstructedAmount.Currency",
        ));
    }
    let amount = d["InstructedAmount"]["Amount"]
        .as_str()
        .and_then(aspen_domain::parse_minor)
        .ok_or_else(|| {
            bad(
                ObErrorCode::FieldInvalid,
                "InstructedAmount.Amount has more decimals than its currency",
                "Data.InstructedAmount.Amount",
            )
        })?;
    let available = state
        .core
        .funds_available(&account.account_id, amount)
        .await
        .map_err(core_error)?;
    let id = format!("fc-{}", uuid::Uuid::new_v4().simple());
    tracing::info!(funds_confirmation_id = %id, consent_id, available, "funds confirmation");
    Ok(common::created(json!({
        "Data": {
            "FundsConfirmationId": id,
            "ConsentId": consent_id,
            "CreationDateTime": format_ms(now),
            "FundsAvailable": available,
            "Reference": d["Reference"],
            "InstructedAmount": d["InstructedAmount"],
        },
        "Links": { "Self": format!("{}{CBPII}/funds-confirmations/{id}", state.base_url) },
        "Meta": {},
    })))
}

pub fn routes() -> axum::Router<ApiState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            &format!("{CBPII}/funds-confirmation-consents"),
            post(create_consent),
        )
        .route(
            &format!("{CBPII}/funds-confirmation-consents/{{id}}"),
            get(read_consent).delete(delete_consent),
        )
        .route(&format!("{CBPII}/funds-confirmations"), post(confirm))
}
